"""
test_cli_server.py — the sonde CLI against a real sonded: tokens, agents,
sessions, get, top SESSION, profile-now, triggers and sampling as a user
types them (tables) and as a script does (--json), and the errors: a wrong
token, a server that is not there, bad flag values — each with its message
and exit status (0 ok, 1 server or network error, 2 usage).

Agents and their profiles reach the server through the agent routes, as
an agent would send them (conftest's Sonded helpers).
"""

import json
import re
import socket

import pytest

from conftest import SONDE, encode_pprof

ZERO_TOKEN = "sonde_" + "0" * 64


@pytest.fixture
def cli(run, sonded):
    """cli(*args, token=admin, server=sonded.url, cwd=None) -> Completed.
    token=None: no SONDE_TOKEN at all.  Server and token go in through the
    environment, as a user would set them."""

    def _go(*args, token="admin", server=None, cwd=None):
        env = {"SONDE_SERVER": server or sonded.url, "NO_PROXY": "*"}
        if token == "admin":
            token = sonded.admin_token
        if token is not None:
            env["SONDE_TOKEN"] = token
        return run([SONDE, *[str(a) for a in args]], env=env, cwd=cwd)

    return _go


def ok(c):
    assert c.returncode == 0, c.describe()
    return c


def table(text):
    """A CLI table -> (header columns, [row cells]).  Cells are separated by
    two or more spaces (a cell may hold one space: '5s ago')."""
    lines = [l for l in text.splitlines() if l.strip() and not l.startswith("(")]
    split = [re.split(r"\s{2,}", l.strip()) for l in lines]
    return split[0], split[1:]


def closed_port():
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def heartbeat(sonded, agent_id, cpu, mem):
    sonded.ok("POST", "/api/v1/agent/heartbeat", {"agent_id": agent_id, "cpu_pct": cpu,
                                                  "mem_pct": mem}, token=sonded.agent_token())


# A profile whose top functions are known exactly: self main 0, spin_a
# 600ms, spin_b 300ms, helper 100ms (under spin_b).
KNOWN = [(["main", "spin_a"], [60, 600_000_000]),
         (["main", "spin_b"], [20, 200_000_000]),
         (["main", "spin_b", "helper"], [10, 100_000_000]),
         (["main", "spin_b"], [10, 100_000_000])]


# ---- tokens ----------------------------------------------------------------

def test_token_create_list_revoke_round_trip(cli):
    c = ok(cli("token", "create", "--role", "reader", "--name", "ci"))
    secret = c.stdout.strip()
    assert re.fullmatch(r"sonde_[0-9a-f]{64}", secret), c.describe()
    assert "shown only" in c.stderr, c.describe()

    tokens = json.loads(ok(cli("token", "list", "--json")).stdout)["tokens"]
    mine = [t for t in tokens if t["name"] == "ci"]
    assert len(mine) == 1 and mine[0]["role"] == "reader", tokens
    assert all("token" not in t for t in tokens), "token list shows secrets"
    tid = mine[0]["id"]

    head, rows = table(ok(cli("token", "list")).stdout)
    assert head == ["ID", "NAME", "ROLE", "CREATED", "LAST-USED", "REVOKED"], head
    row = next(r for r in rows if r[0] == str(tid))
    assert row[1:3] == ["ci", "reader"] and row[5] == "-", rows

    ok(cli("agents", token=secret))               # the new token works
    r = ok(cli("token", "revoke", tid))
    assert f"revoked token {tid}" in r.stdout, r.describe()

    r = cli("agents", token=secret)               # and no longer
    assert r.returncode == 1 and "401" in r.stderr, r.describe()
    revoked = [t for t in json.loads(ok(cli("token", "list", "--json")).stdout)["tokens"]
               if t["id"] == tid]
    assert revoked[0]["revoked_ms"], revoked

    r = cli("token", "revoke", tid)               # already revoked: the server's 404
    assert r.returncode == 1 and "404" in r.stderr, r.describe()


def test_token_create_json_has_the_secret(cli):
    out = json.loads(ok(cli("token", "create", "--role", "agent", "--json")).stdout)
    assert out["role"] == "agent" and out["token"].startswith("sonde_"), out


# ---- agents and sessions ---------------------------------------------------

def test_agents_table_and_json(cli, sonded):
    aid = sonded.register_agent("checkout", instance="web-1", pid=4242)
    sonded.register_agent("search", instance="web-2", pid=77)
    heartbeat(sonded, aid, 12.5, 3.1)

    head, rows = table(ok(cli("agents")).stdout)
    assert head == ["ID", "APP", "INSTANCE", "PID", "STATUS", "LAST-SEEN", "CPU%", "MEM%"], head
    row = next(r for r in rows if r[1] == "checkout")
    assert row[0] == str(aid) and row[2:5] == ["web-1", "4242", "running"], rows
    assert row[6:8] == ["12.5", "3.1"], rows
    assert re.fullmatch(r"just now|\d+s ago", row[5]), row

    head, rows = table(ok(cli("agents", "--app", "search")).stdout)
    assert [r[1] for r in rows] == ["search"], rows
    head, rows = table(ok(cli("agents", "--status", "stopped")).stdout)
    assert rows == [], rows

    agents = json.loads(ok(cli("agents", "--json", "--app", "checkout")).stdout)["agents"]
    assert len(agents) == 1, agents
    a = agents[0]
    assert (a["id"], a["app"], a["instance"], a["pid"], a["status"]) == \
        (aid, "checkout", "web-1", 4242, "running"), a
    assert a["cpu_pct"] == pytest.approx(12.5) and a["mem_pct"] == pytest.approx(3.1), a


def test_sessions_table_and_json(cli, sonded, recorded_profiles):
    aid = sonded.register_agent("checkout", instance="web-1", pid=4242)
    other = sonded.register_agent("search", instance="web-2", pid=77)
    sid = sonded.upload(aid, recorded_profiles(1)[0], duration_s=90)
    sonded.create_session(other, triggered_by="cpu-trigger", duration_s=30)

    head, rows = table(ok(cli("sessions")).stdout)
    assert head == ["ID", "TRIGGERED-BY", "APP", "INSTANCE", "STARTED", "DURATION", "TRACES",
                    "CPU%", "MEM%", "STATE"], head
    assert len(rows) == 2, rows
    row = next(r for r in rows if r[0] == str(sid))
    assert row[1:4] == ["profile-now", "checkout", "web-1"], row
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row[4]), row
    assert row[5] == "1m30s" and row[9] == "completed", row

    head, rows = table(ok(cli("sessions", "--triggered-by", "cpu-trigger")).stdout)
    assert [r[2] for r in rows] == ["search"], rows
    head, rows = table(ok(cli("sessions", "--app", "checkout", "--since", "1h")).stdout)
    assert [r[0] for r in rows] == [str(sid)], rows
    r = ok(cli("sessions", "--limit", "1"))
    assert len(table(r.stdout)[1]) == 1 and "1 of 2 sessions" in r.stdout, r.describe()

    out = json.loads(ok(cli("sessions", "--json", "--app", "checkout")).stdout)
    assert out["total"] == 1 and out["sessions"][0]["id"] == sid, out
    assert out["sessions"][0]["has_profile"] is True, out


def test_get_writes_the_uploaded_bytes(cli, sonded, recorded_profiles, tmp_path):
    data = recorded_profiles(1)[0]
    sid = sonded.upload(sonded.register_agent("checkout"), data)
    out = tmp_path / "got.pb.gz"
    ok(cli("get", sid, "-o", out))
    assert out.read_bytes() == data

    ok(cli("get", sid, cwd=tmp_path))             # default name, as the server's
    assert (tmp_path / f"session-{sid}.pb.gz").read_bytes() == data


def test_get_unknown_session_is_exit_1_and_writes_nothing(cli, tmp_path):
    out = tmp_path / "none.pb.gz"
    r = cli("get", "999999", "-o", out)
    assert r.returncode == 1 and "404" in r.stderr and "999999" in r.stderr, r.describe()
    assert not out.exists()


# ---- top SESSION -----------------------------------------------------------

def top_rows(text):
    """sonde top's table -> {name: (flat%, cum%)} and the 'Type:' line."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^\s*\S+\s+([0-9.]+)%\s+[0-9.]+%\s+\S+\s+([0-9.]+)%\s+(.+)$", line)
        if m:
            rows[m.group(3)] = (float(m.group(1)), float(m.group(2)))
    return rows


def test_top_session_prints_the_known_functions(cli, sonded):
    sid = sonded.upload(sonded.register_agent("checkout"), encode_pprof(KNOWN))
    r = ok(cli("top", sid))
    assert f"Session: {sid}" in r.stdout and "Type: cpu" in r.stdout, r.describe()
    rows = top_rows(r.stdout)
    assert rows == {"spin_a": (60.0, 60.0), "spin_b": (30.0, 40.0), "helper": (10.0, 10.0),
                    "main": (0.0, 100.0)}, r.stdout
    # The order of go tool pprof -top: self, then total.
    assert list(rows) == ["spin_a", "spin_b", "helper", "main"], r.stdout

    r = ok(cli("top", "-n", "2", sid))
    assert list(top_rows(r.stdout)) == ["spin_a", "spin_b"], r.stdout
    assert "Showing top 2 nodes out of 4" in r.stdout, r.stdout

    r = ok(cli("top", "--type", "samples", sid))
    assert "Type: samples" in r.stdout and top_rows(r.stdout)["spin_a"][0] == 60.0, r.stdout

    out = json.loads(ok(cli("top", sid, "--json")).stdout)
    assert {f["name"]: (f["self"], f["total"]) for f in out["functions"]}["spin_b"] == \
        (300_000_000, 400_000_000), out


def test_top_session_matches_local_top_of_the_same_profile(cli, sonded, recorded_profiles,
                                                           tmp_path):
    data = recorded_profiles(1)[0]
    sid = sonded.upload(sonded.register_agent("checkout"), data)
    f = tmp_path / "p.pb.gz"
    f.write_bytes(data)
    remote = top_rows(ok(cli("top", "-n", "0", sid)).stdout)
    local = top_rows(ok(cli("top", "-n", "0", f)).stdout)
    # Symbolized functions carry the same shares either way.
    named = {n: v for n, v in local.items() if "+0x" not in n and not n.startswith("0x")}
    assert named and all(remote.get(n) == v for n, v in named.items()), (remote, local)


def test_top_existing_file_named_like_a_number_stays_local(cli, tmp_path):
    (tmp_path / "17").write_bytes(encode_pprof(KNOWN))
    r = cli("top", "17", server=f"http://127.0.0.1:{closed_port()}", cwd=tmp_path)
    assert r.returncode == 0 and top_rows(r.stdout)["spin_a"] == (60.0, 60.0), r.describe()


def test_top_unknown_session_is_exit_1(cli):
    r = cli("top", "424242")
    assert r.returncode == 1 and "404" in r.stderr, r.describe()


# ---- profile-now, triggers, sampling ---------------------------------------

def test_profile_now_reports_request_and_matching_agents(cli, sonded):
    sonded.register_agent("checkout", instance="a", pid=1)
    sonded.register_agent("checkout", instance="b", pid=2)
    sonded.register_agent("search", instance="c", pid=3)
    r = ok(cli("profile-now", "--app", "checkout", "--duration", "30"))
    m = re.search(r"request (\d+): app checkout, 30s; 2 running agents matched", r.stdout)
    assert m, r.describe()
    reqs = sonded.ok("GET", "/api/v1/profile-now")["requests"]
    assert [q["id"] for q in reqs][:1] == [int(m.group(1))], reqs

    out = json.loads(ok(cli("profile-now", "--json")).stdout)
    assert out["agents"] == 3 and out["duration_s"] == 120 and out["app"] is None, out


def test_triggers_set_and_show(cli):
    r = ok(cli("triggers", "set", "--cpu-threshold", "90", "--memory", "off",
               "--memory-duration", "5m"))
    head, rows = table(r.stdout.split("\n", 1)[1])
    assert head == ["TRIGGER", "ENABLED", "THRESHOLD", "DURATION", "COOLDOWN"], r.stdout
    assert rows == [["cpu", "on", "90%", "2m", "10m"], ["memory", "off", "80%", "5m", "10m"]], \
        r.stdout
    assert table(ok(cli("triggers")).stdout.split("\n", 1)[1])[1] == rows

    doc = json.loads(ok(cli("triggers", "--json")).stdout)
    assert doc["cpu"]["threshold"] == 90 and doc["memory"]["enabled"] is False, doc
    assert doc["memory"]["duration_s"] == 300, doc

    # An app's override, its own until reset.
    ok(cli("triggers", "set", "--app", "checkout", "--cpu-cooldown", "1h"))
    r = ok(cli("triggers", "--app", "checkout"))
    assert "its own override" in r.stdout and "1h" in r.stdout, r.stdout
    doc = json.loads(ok(cli("triggers", "--app", "checkout", "--json")).stdout)
    assert doc["overridden"] is True and doc["cpu"]["cooldown_s"] == 3600, doc
    assert doc["cpu"]["threshold"] == 90, "the override did not start from the effective values"
    ok(cli("triggers", "reset", "--app", "checkout"))
    doc = json.loads(ok(cli("triggers", "--app", "checkout", "--json")).stdout)
    assert doc["overridden"] is False and doc["cpu"]["cooldown_s"] == 600, doc


def test_sampling_set_and_show(cli):
    r = ok(cli("sampling", "set", "--enabled", "off", "--window", "5m", "--period", "2h"))
    assert table(r.stdout.split("\n", 1)[1])[1] == [["off", "5m", "2h"]], r.stdout
    doc = json.loads(ok(cli("sampling", "--json")).stdout)
    assert (doc["enabled"], doc["window_s"], doc["period_s"]) == (False, 300, 7200), doc

    # window > period passes the CLI's ranges; the server refuses it.
    r = cli("sampling", "set", "--window", "30m", "--period", "10m")
    assert r.returncode == 1 and "400" in r.stderr and "window_s" in r.stderr, r.describe()


# ---- errors ----------------------------------------------------------------

@pytest.mark.parametrize("token", [ZERO_TOKEN, None], ids=["wrong", "none"])
def test_bad_token_is_exit_1_with_the_servers_401_message(cli, sonded, token):
    st, body, _ = sonded.request("GET", "/api/v1/agents", token=token)
    assert st == 401, body
    r = cli("agents", token=token)
    assert r.returncode == 1, r.describe()
    assert "401" in r.stderr and body["error"] in r.stderr, r.describe()
    assert r.stdout == "", r.describe()


def test_reader_token_cannot_change_triggers(cli, sonded):
    r = cli("triggers", "set", "--cpu", "off", token=sonded.token("reader"))
    assert r.returncode == 1 and "403" in r.stderr, r.describe()


def test_token_flag_overrides_the_environment(cli, sonded):
    r = cli("agents", "--token", sonded.admin_token, token=ZERO_TOKEN)
    assert r.returncode == 0, r.describe()


def test_unreachable_server_is_exit_1_cannot_reach(cli):
    url = f"http://127.0.0.1:{closed_port()}"
    for args in (["agents"], ["sessions"], ["top", "5"], ["token", "list"]):
        r = cli(*args, server=url)
        assert r.returncode == 1, r.describe()
        assert f"cannot reach sonded at {url}" in r.stderr, r.describe()


@pytest.mark.parametrize("args", [
    ["agents", "--status", "sleeping"],
    ["agents", "--no-such-flag"],
    ["sessions", "--since", "yesterday"],
    ["sessions", "--limit", "0"],
    ["sessions", "--limit", "1001"],
    ["sessions", "--triggered-by", "cron"],
    ["get"],
    ["get", "abc", "-o", "x"],
    ["get", "0"],
    ["top", "-n", "-1", "5"],
    ["profile-now", "--duration", "0"],
    ["profile-now", "--duration", "2h"],
    ["triggers", "set"],
    ["triggers", "set", "--cpu", "maybe"],
    ["triggers", "set", "--cpu-threshold", "0"],
    ["triggers", "set", "--memory-duration", "5s"],
    ["triggers", "frob"],
    ["triggers", "reset"],
    ["sampling", "set", "--period", "30s"],
    ["token"],
    ["token", "create"],
    ["token", "create", "--role", "root"],
    ["token", "revoke", "x"],
    ["agents", "--server", "localhost:7070"],
], ids=lambda a: " ".join(a))
def test_bad_flag_values_are_usage_errors(cli, args):
    # A dead server: were anything sent, the status would be 1, not 2.
    r = cli(*args, server=f"http://127.0.0.1:{closed_port()}")
    assert r.returncode == 2, r.describe()
    assert r.stderr.startswith("sonde "), r.describe()


def test_help_lists_the_server_commands(run):
    r = run([SONDE, "help"], check=True)
    for cmd in ("agents", "sessions", "get SESSION", "top", "profile-now", "triggers",
                "sampling", "token create"):
        assert cmd in r.stdout, r.stdout
