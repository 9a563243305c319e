"""
test_cli_task.py — `sonde task ...` and `sonde capture show` (active
profiling) against a real sonded: create, list (with --from/--to times),
show, log, captures (sorted), cancel and one capture's snapshot timeline, as
a user types them (tables) and as a script does (--json); and the errors:
unknown ids, bad flag values (usage, exit 2, nothing sent), a refusal only
the server makes (its message passed through), wrong tokens and roles, a
server that is not there.

Captures reach the server through the agent routes, as an agent's uplink
sends them: a slot claim with the call's metadata, then the snapshots as a
gzipped pprof (one sample per snapshot, the labels of docs/api.md); the
helpers below do that.  The exact times --from/--to send are read by a
stand-in server that records the request.
"""

import http.server
import json
import re
import socket
import threading
import time
from datetime import datetime

import pytest

from conftest import SONDE, encode_snapshots

ZERO_TOKEN = "sonde_" + "0" * 64


# ---- helpers -----------------------------------------------------------------

@pytest.fixture
def cli(run, sonded):
    """cli(*args, token=admin, server=sonded.url) -> Completed.  token=None:
    no SONDE_TOKEN at all.  Server and token go in through the environment,
    as a user would set them."""

    def _go(*args, token="admin", server=None):
        env = {"SONDE_SERVER": server or sonded.url, "NO_PROXY": "*"}
        if token == "admin":
            token = sonded.admin_token
        if token is not None:
            env["SONDE_TOKEN"] = token
        return run([SONDE, *[str(a) for a in args]], env=env)

    return _go


def ok(c):
    assert c.returncode == 0, c.describe()
    return c


def failed(c, status, text):
    """A server refusal: exit 1, 'sonde ...: <text> (HTTP status)' on stderr,
    nothing on stdout."""
    assert c.returncode == 1, c.describe()
    assert f"(HTTP {status})" in c.stderr and text in c.stderr, c.describe()
    assert c.stdout == "", c.describe()


def table(text):
    """A CLI table -> (header columns, [row cells]).  Cells are separated by
    two or more spaces (a cell may hold one space: 'GET /slow')."""
    lines = [l for l in text.splitlines() if l.strip() and not l.startswith("(")]
    split = [re.split(r"\s{2,}", l.strip()) for l in lines]
    return split[0], split[1:]


def sections(text):
    """`task show` / `capture show`: the key-value block, then the table
    after the blank line -> ({key: value}, table text)."""
    head, _, rest = text.partition("\n\n")
    kv = {}
    for line in head.splitlines():
        k, v = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        kv[k] = v
    return kv, rest


def closed_port():
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create_task(sonded, app="shop", interface="GET /slow", **fields):
    body = {"app": app, "interface": interface, "duration_min": 5, "threshold_ms": 200}
    body.update(fields)
    return sonded.ok("POST", "/api/v1/tasks", body, expect=201)


def deliver(sonded, agent_id):
    """One poll of the agent, as its uplink makes it: the server hands it the
    app's running tasks (and records them as delivered)."""
    return sonded.ok("GET", f"/api/v1/agent/poll?agent_id={agent_id}&cursor=0"
                            f"&tasks_version=0&timeout_s=1", token=sonded.agent_token())


def snapshot_pprof(snaps, frequency_ms=100):
    """The snapshots of one capture as the agent sends them (conftest's
    encode_snapshots), all of thread demo-worker (4321).  snaps:
    [(offset_ms, state, syscall or None, frames root-first)]."""
    return encode_snapshots([dict(offset_ms=offset_ms, state=state, syscall=syscall,
                                  frames=frames, thread="demo-worker", thread_id=4321)
                             for offset_ms, state, syscall, frames in snaps], frequency_ms)


SLOW_STACK = ["main", "serve", "demo_slow_poll", "poll"]
CPU_STACK = ["main", "serve", "demo_checksum_work"]


def catch(sonded, task_id, agent_id, trace_id, total_ms, code=200, peer="127.0.0.1:50000",
          start_ms=None, snaps=None, interface="GET /slow"):
    """One caught call: its slot claimed, then its snapshots uploaded (unless
    snaps is None).  -> the capture id."""
    tok = sonded.agent_token()
    claim = {"agent_id": agent_id, "trace_id": trace_id, "interface": interface,
             "start_ms": start_ms if start_ms is not None else int(time.time() * 1000),
             "response_code": code, "peer": peer, "total_ms": total_ms,
             "snapshots": len(snaps or [])}
    cid = sonded.ok("POST", f"/api/v1/agent/tasks/{task_id}/captures", claim, token=tok,
                    expect=201)["capture_id"]
    if snaps is not None:
        sonded.ok("PUT", f"/api/v1/agent/captures/{cid}/snapshots", snapshot_pprof(snaps),
                  token=tok, expect=201)
    return cid


# ---- create ------------------------------------------------------------------

def test_task_create_says_what_it_watches(cli, sonded):
    r = ok(cli("task", "create", "--app", "shop", "--interface", "GET /slow", "--duration",
               "5m", "--threshold", "200", token=sonded.token("writer", "ops")))
    m = re.match(r"created task (\d+): GET /slow of app shop\n"
                 r"  calls slower than 200ms, snapshots every 100ms, at most 10 calls, for 5m "
                 r"\(until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\)\n$", r.stdout)
    assert m, r.describe()
    t = sonded.ok("GET", f"/api/v1/tasks/{m.group(1)}")
    assert (t["app"], t["interface"], t["duration_min"], t["threshold_ms"], t["frequency_ms"],
            t["max_samples"], t["state"]) == ("shop", "GET /slow", 5, 200, 100, 10,
                                              "running"), t
    assert t["creator"]["name"] == "ops", t


@pytest.mark.parametrize("duration,minutes", [("5", 5), ("10m", 10), ("15min", 15)])
def test_task_create_json_and_duration_forms(cli, duration, minutes):
    t = json.loads(ok(cli("task", "create", "--json", "--app", "search", "--interface",
                          "GET /cpu", "--duration", duration, "--threshold", "50",
                          "--frequency", "5", "--max", "1")).stdout)
    assert (t["duration_min"], t["threshold_ms"], t["frequency_ms"], t["max_samples"]) == \
        (minutes, 50, 5, 1), t
    assert t["ends_ms"] - t["created_ms"] == minutes * 60000, t


def test_server_refusal_is_passed_through(cli, sonded):
    # A C1 control character is valid UTF-8 and passes the CLI's checks;
    # the server refuses it, and its words reach the user.
    r = cli("task", "create", "--app", "shop", "--interface", "GET /x\u0085", "--duration", "5",
            "--threshold", "200")
    failed(r, 400, "interface must be printable text (UTF-8, no control characters)")
    assert sonded.ok("GET", "/api/v1/tasks")["tasks"] == []


def test_reader_cannot_create_or_cancel(cli, sonded):
    reader = sonded.token("reader")
    r = cli("task", "create", "--app", "shop", "--interface", "GET /slow", "--duration", "5",
            "--threshold", "200", token=reader)
    assert r.returncode == 1 and "(HTTP 403)" in r.stderr, r.describe()
    tid = create_task(sonded)["id"]
    r = cli("task", "cancel", tid, token=reader)
    assert r.returncode == 1 and "(HTTP 403)" in r.stderr, r.describe()
    ok(cli("task", "show", tid, token=reader))           # but it may look


# ---- list --------------------------------------------------------------------

def test_task_list_table_filters_and_json(cli, sonded):
    a = create_task(sonded, "shop", "GET /slow", max_samples=3)
    b = create_task(sonded, "search", "GET /cpu", duration_min=15, threshold_ms=500,
                    frequency_ms=20)
    sonded.ok("POST", f"/api/v1/tasks/{b['id']}/cancel")

    head, rows = table(ok(cli("task", "list")).stdout)
    assert head == ["ID", "APP", "INTERFACE", "STATE", "DURATION", "THRESHOLD", "FREQUENCY",
                    "CAPTURES", "CREATED", "END"], head
    assert [r[0] for r in rows] == [str(b["id"]), str(a["id"])], rows      # newest first
    assert rows[0][1:8] == ["search", "GET /cpu", "cancelled", "15m", "500ms", "20ms", "0/10"], \
        rows
    assert rows[1][1:8] == ["shop", "GET /slow", "running", "5m", "200ms", "100ms", "0/3"], rows
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", c) for c in rows[1][8:]), rows

    _, rows = table(ok(cli("task", "list", "--app", "shop")).stdout)
    assert [r[0] for r in rows] == [str(a["id"])], rows
    _, rows = table(ok(cli("task", "list", "--state", "cancelled")).stdout)
    assert [r[0] for r in rows] == [str(b["id"])], rows
    _, rows = table(ok(cli("task", "list", "--limit", "1")).stdout)
    assert [r[0] for r in rows] == [str(b["id"])], rows

    # Tasks overlapping [from, to): both ran within the last hour, none
    # before 2020 or after 2999.
    _, rows = table(ok(cli("task", "list", "--from", "-1h", "--to", "now")).stdout)
    assert len(rows) == 2, rows
    _, rows = table(ok(cli("task", "list", "--to", "2020-01-01")).stdout)
    assert rows == [], rows
    _, rows = table(ok(cli("task", "list", "--from", "2999-01-01T00:00:00Z")).stdout)
    assert rows == [], rows

    out = json.loads(ok(cli("task", "list", "--json", "--app", "shop")).stdout)
    assert [t["id"] for t in out["tasks"]] == [a["id"]], out
    assert out["tasks"][0]["max_samples"] == 3, out


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every GET with an empty task list; keeps the paths asked."""
    paths = []

    def do_GET(self):
        type(self).paths.append(self.path)
        body = b'{"tasks": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def recorder():
    """A stand-in sonded on a free port that records the request paths."""
    _Recorder.paths = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", _Recorder.paths
    srv.shutdown()
    srv.server_close()


def sent_times(path):
    q = dict(p.split("=", 1) for p in path.split("?", 1)[1].split("&"))
    return int(q.get("from", -1)), int(q.get("to", -1))


def test_task_list_sends_the_times_as_epoch_ms(cli, recorder):
    url, paths = recorder
    ok(cli("task", "list", "--from", "2024-05-01T10:00:00+02:00", "--to",
           "2024-05-01T12:00:00.25Z", server=url))
    assert sent_times(paths[-1]) == (1714550400000, 1714564800250), paths

    before = int(time.time() * 1000)
    ok(cli("task", "list", "--from", "-1h30m", "--to", "now", server=url))
    after = int(time.time() * 1000)
    f, t = sent_times(paths[-1])
    assert before - 5_400_000 <= f <= after - 5_400_000, (f, before)
    assert before <= t <= after, (t, before)

    ok(cli("task", "list", "--from", "2d", server=url))           # as --since 2d
    f, t = sent_times(paths[-1])
    assert abs(f - (int(time.time() * 1000) - 2 * 86_400_000)) < 60_000 and t == -1, paths

    # A date without a zone is local time.
    ok(cli("task", "list", "--from", "2024-05-01 12:30", server=url))
    local = int(datetime(2024, 5, 1, 12, 30).timestamp() * 1000)
    assert sent_times(paths[-1])[0] == local, paths
    ok(cli("task", "list", "--from", "2024-05-01", server=url))
    assert sent_times(paths[-1])[0] == int(datetime(2024, 5, 1).timestamp() * 1000), paths

    ok(cli("task", "list", "--app", "a b", "--state", "limit-reached", server=url))
    assert paths[-1] == "/api/v1/tasks?app=a%20b&state=limit-reached", paths


# ---- show, log, cancel ---------------------------------------------------------

def test_task_show_parameters_and_agents(cli, sonded):
    t = create_task(sonded, max_samples=4, frequency_ms=50)
    r = ok(cli("task", "show", t["id"]))
    kv, rest = sections(r.stdout)
    assert kv["task"] == str(t["id"]) and kv["app"] == "shop", kv
    assert (kv["interface"], kv["state"], kv["duration"], kv["threshold"], kv["frequency"],
            kv["max calls"], kv["captures"]) == ("GET /slow", "running", "5m", "200ms", "50ms",
                                                 "4", "0"), kv
    assert kv["creator"] == "admin (token 1)" and kv["started"] == "-" and kv["ended"] == "-", kv
    assert "no agent has received the task yet" in rest, r.stdout

    aid = sonded.register_agent("shop", instance="web-1", pid=4242)
    sonded.register_agent("other", instance="web-9", pid=9)          # another app's
    assert [x["id"] for x in deliver(sonded, aid)["tasks"]] == [t["id"]]
    sonded.ok("POST", f"/api/v1/agent/tasks/{t['id']}/events",
              {"agent_id": aid, "event": "started"}, token=sonded.agent_token())
    catch(sonded, t["id"], aid, "trace-1", 900)

    kv, rest = sections(ok(cli("task", "show", t["id"])).stdout)
    assert kv["captures"] == "1" and re.fullmatch(r"\d{4}-.*", kv["started"]), kv
    head, rows = table(rest)
    assert head == ["AGENT", "INSTANCE", "PID", "DELIVERED", "STARTED", "STOPPED", "CAPTURES"]
    assert len(rows) == 1 and rows[0][:3] == [str(aid), "web-1", "4242"], rows
    assert rows[0][5:] == ["-", "1"] and rows[0][3] != "-" and rows[0][4] != "-", rows

    out = json.loads(ok(cli("task", "show", t["id"], "--json")).stdout)
    assert out["id"] == t["id"] and out["agents"][0]["agent_id"] == aid, out


def test_task_log_tells_the_story_in_order(cli, sonded):
    t = create_task(sonded)
    aid = sonded.register_agent("shop", instance="web-1", pid=4242)
    deliver(sonded, aid)
    sonded.ok("POST", f"/api/v1/agent/tasks/{t['id']}/events",
              {"agent_id": aid, "event": "started"}, token=sonded.agent_token())
    catch(sonded, t["id"], aid, "trace-7", 700)
    ok(cli("task", "cancel", t["id"]))

    head, rows = table(ok(cli("task", "log", t["id"])).stdout)
    assert head == ["TIME", "EVENT", "AGENT", "INSTANCE", "PID", "MESSAGE"], head
    events = [r[1] for r in rows]
    assert events[:5] == ["created", "delivered", "started", "capture", "cancelled"], rows
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", rows[0][0]), rows
    assert rows[0][2:5] == ["-", "-", "-"], rows                  # by a person
    assert rows[1][2:5] == [str(aid), "web-1", "4242"], rows
    assert "trace-7" in rows[3][5], rows

    out = json.loads(ok(cli("task", "log", t["id"], "--json")).stdout)
    assert out["task_id"] == t["id"] and [e["event"] for e in out["logs"]][:5] == events[:5]


def test_task_cancel_then_cancel_again(cli, sonded):
    t = create_task(sonded)
    r = ok(cli("task", "cancel", t["id"]))
    assert r.stdout == f"cancelled task {t['id']} (GET /slow of app shop): 0 captures\n", r.stdout
    assert sonded.ok("GET", f"/api/v1/tasks/{t['id']}")["state"] == "cancelled"

    failed(cli("task", "cancel", t["id"]), 409,
           f"task {t['id']} has already ended (cancelled)")
    out = json.loads(ok(cli("task", "show", t["id"], "--json")).stdout)
    assert out["state"] == "cancelled" and out["ended_ms"], out


def test_task_cancel_json(cli, sonded):
    t = create_task(sonded)
    out = json.loads(ok(cli("task", "cancel", t["id"], "--json")).stdout)
    assert out["id"] == t["id"] and out["state"] == "cancelled", out


# ---- captures ------------------------------------------------------------------

def test_task_captures_table_sorted(cli, sonded):
    t = create_task(sonded)
    aid = sonded.register_agent("shop", instance="web-1", pid=4242)
    now = int(time.time() * 1000)
    c1 = catch(sonded, t["id"], aid, "bbb", 1500, code=200, peer="10.0.0.2:4000",
               start_ms=now - 3000)
    c2 = catch(sonded, t["id"], aid, "aaa", 400, code=503, peer="10.0.0.1:4000",
               start_ms=now - 2000)
    c3 = catch(sonded, t["id"], aid, "ccc", 900, code=0, peer="", start_ms=now - 1000)

    r = ok(cli("task", "captures", t["id"]))
    head, rows = table(r.stdout)
    assert head == ["ID", "SLOT", "TRACE-ID", "STARTED", "INTERFACE", "CODE", "PEER", "TIME",
                    "SNAPSHOTS", "INSTANCE", "STATE"], head
    assert [x[0] for x in rows] == [str(c1), str(c2), str(c3)], rows    # by slot
    assert rows[0][1:3] == ["1", "bbb"] and rows[0][4:8] == ["GET /slow", "200",
                                                             "10.0.0.2:4000", "1500ms"], rows
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", rows[0][3]), rows
    assert rows[0][9] == "web-1", rows
    assert "sonde capture show ID" in r.stdout, r.stdout

    _, rows = table(ok(cli("task", "captures", t["id"], "--sort", "total_ms")).stdout)
    assert [x[0] for x in rows] == [str(c2), str(c3), str(c1)], rows
    _, rows = table(ok(cli("task", "captures", t["id"], "--sort", "total_ms", "--desc")).stdout)
    assert [x[0] for x in rows] == [str(c1), str(c3), str(c2)], rows
    _, rows = table(ok(cli("task", "captures", "--sort", "trace_id", t["id"])).stdout)
    assert [x[2] for x in rows] == ["aaa", "bbb", "ccc"], rows

    out = json.loads(ok(cli("task", "captures", t["id"], "--json", "--sort",
                            "response_code", "--desc")).stdout)
    assert [c["id"] for c in out["captures"]] == [c2, c1, c3], out


def test_task_captures_empty(cli, sonded):
    t = create_task(sonded)
    head, rows = table(ok(cli("task", "captures", t["id"])).stdout)
    assert head[0] == "ID" and rows == [], rows


# ---- capture show --------------------------------------------------------------

def test_capture_show_metadata_and_timeline(cli, sonded):
    t = create_task(sonded)
    aid = sonded.register_agent("shop", instance="web-1", pid=4242)
    snaps = [(200.4, "running", None, CPU_STACK),
             (300.5, "sleeping", "poll", SLOW_STACK),
             (400.0, "sleeping", "poll", SLOW_STACK)]
    cid = catch(sonded, t["id"], aid, "4bf92f3577b34da6", 1503, code=200, peer="127.0.0.1:5123",
                snaps=snaps)

    r = ok(cli("capture", "show", cid))
    kv, rest = sections(r.stdout)
    assert kv["capture"] == str(cid) and kv["task"] == f"{t['id']} (slot 1)", kv
    assert (kv["app"], kv["instance"], kv["trace id"], kv["interface"], kv["time"],
            kv["response"], kv["peer"], kv["snapshots"]) == \
        ("shop", "web-1", "4bf92f3577b34da6", "GET /slow", "1503ms", "200", "127.0.0.1:5123",
         "3"), kv
    assert kv["process"] == f"pid 4242, agent {aid}", kv
    head, rows = table(rest)
    assert head == ["#", "OFFSET", "STATE", "SYSCALL", "THREAD", "TOP FRAMES"], head
    assert rows == [
        ["1", "200.4ms", "running", "-", "demo-worker",
         "demo_checksum_work < serve < main"],
        ["2", "300.5ms", "sleeping", "poll", "demo-worker",
         "poll < demo_slow_poll < serve < ..."],
        ["3", "400.0ms", "sleeping", "poll", "demo-worker",
         "poll < demo_slow_poll < serve < ..."],
    ], r.stdout

    _, rest = sections(ok(cli("capture", "show", cid, "--frames", "1")).stdout)
    assert [x[5] for x in table(rest)[1]] == ["demo_checksum_work < ...", "poll < ...",
                                               "poll < ..."], rest
    _, rest = sections(ok(cli("capture", "show", "--frames=64", cid)).stdout)
    assert table(rest)[1][1][5] == "poll < demo_slow_poll < serve < main", rest

    out = json.loads(ok(cli("capture", "show", cid, "--json")).stdout)
    assert out["id"] == cid and [s["offset_ms"] for s in out["timeline"]] == [200.4, 300.5, 400.0]
    assert out["timeline"][1]["frames"] == list(reversed(SLOW_STACK)), out


def test_capture_show_before_its_snapshots_arrive(cli, sonded):
    t = create_task(sonded)
    cid = catch(sonded, t["id"], sonded.register_agent("shop"), "t-9", 600)
    kv, rest = sections(ok(cli("capture", "show", cid)).stdout)
    assert kv["time"] == "600ms" and "no snapshots stored (yet)" in rest, rest


# ---- errors --------------------------------------------------------------------

@pytest.mark.parametrize("args,text", [
    (["task", "show", "424242"], "task 424242 not found"),
    (["task", "log", "424242"], "task 424242 not found"),
    (["task", "captures", "424242"], "task 424242 not found"),
    (["task", "cancel", "424242"], "task 424242 not found"),
    (["capture", "show", "424242"], "capture 424242 not found"),
], ids=lambda a: " ".join(a) if isinstance(a, list) else "")
def test_unknown_id_is_exit_1_with_the_servers_404(cli, args, text):
    failed(cli(*args), 404, text)


@pytest.mark.parametrize("token", [ZERO_TOKEN, None], ids=["wrong", "none"])
def test_bad_token_is_exit_1_with_the_servers_401(cli, sonded, token):
    st, body, _ = sonded.request("GET", "/api/v1/tasks", token=token)
    assert st == 401, body
    for args in (["task", "list"], ["capture", "show", "1"]):
        failed(cli(*args, token=token), 401, body["error"])


def test_unreachable_server_is_exit_1(cli):
    url = f"http://127.0.0.1:{closed_port()}"
    for args in (["task", "list"], ["task", "show", "1"], ["task", "log", "1"],
                 ["task", "captures", "1"], ["task", "cancel", "1"], ["capture", "show", "1"],
                 ["task", "create", "--app", "a", "--interface", "i", "--duration", "5",
                  "--threshold", "50"]):
        r = cli(*args, server=url)
        assert r.returncode == 1, r.describe()
        assert f"cannot reach sonded at {url}" in r.stderr, r.describe()


CREATE = ["task", "create", "--app", "shop", "--interface", "GET /slow"]


@pytest.mark.parametrize("args,message", [
    (["task"], "which one"),
    (["task", "frob"], "unknown subcommand 'frob'"),
    (CREATE + ["--threshold", "200"], "--duration 5m|10m|15m is required"),
    (CREATE + ["--duration", "5"], "--threshold MS is required"),
    (["task", "create", "--interface", "i", "--duration", "5", "--threshold", "50"],
     "--app A is required"),
    (["task", "create", "--app", "a", "--duration", "5", "--threshold", "50"],
     "--interface I is required"),
    (CREATE + ["--duration", "7m", "--threshold", "200"], "--duration must be 5, 10 or 15"),
    (CREATE + ["--duration", "20", "--threshold", "200"], "--duration must be 5, 10 or 15"),
    (CREATE + ["--duration", "5h", "--threshold", "200"], "--duration must be 5, 10 or 15"),
    (CREATE + ["--duration", "", "--threshold", "200"], "--duration must be 5, 10 or 15"),
    (CREATE + ["--duration", "5", "--threshold", "49"],
     "--threshold must be an integer from 50 to 30000"),
    (CREATE + ["--duration", "5", "--threshold", "30001"],
     "--threshold must be an integer from 50 to 30000"),
    (CREATE + ["--duration", "5", "--threshold", "2s"],
     "--threshold must be an integer from 50 to 30000"),
    (CREATE + ["--duration", "5", "--threshold", "200", "--frequency", "4"],
     "--frequency must be an integer from 5 to 1000"),
    (CREATE + ["--duration", "5", "--threshold", "200", "--frequency", "1001"],
     "--frequency must be an integer from 5 to 1000"),
    (CREATE + ["--duration", "5", "--threshold", "200", "--max", "0"],
     "--max must be an integer from 1 to 100"),
    (CREATE + ["--duration", "5", "--threshold", "200", "--max", "101"],
     "--max must be an integer from 1 to 100"),
    (["task", "create", "--app", "a" * 128, "--interface", "i", "--duration", "5",
      "--threshold", "50"], "--app must be a string of 1 to 127 bytes"),
    (["task", "create", "--app", "a", "--interface", "i" * 96, "--duration", "5",
      "--threshold", "50"], "--interface must be a string of 1 to 95 bytes"),
    (["task", "create", "--app", "a", "--interface", "GET\t/x", "--duration", "5",
      "--threshold", "50"], "--interface must be printable text"),
    (["task", "create", "--app", "", "--interface", "i", "--duration", "5",
      "--threshold", "50"], "--app needs an app name"),
    (CREATE + ["--duration", "5", "--threshold", "200", "extra"], "unexpected argument"),
    (["task", "list", "--from", "yesterday"], "--from needs a time like"),
    (["task", "list", "--to", "2023-02-29"], "--to needs a time like"),
    (["task", "list", "--from", "2024-05-01T25:00:00Z"], "--from needs a time like"),
    (["task", "list", "--from", "1969-12-31"], "--from needs a time like"),
    (["task", "list", "--from", "now", "--to", "-1h"], "--from must be earlier than --to"),
    (["task", "list", "--state", "done"], "--state must be running, limit-reached"),
    (["task", "list", "--limit", "0"], "--limit must be a count in 1..1000"),
    (["task", "list", "--limit", "1001"], "--limit must be a count in 1..1000"),
    (["task", "list", "7"], "unexpected argument '7'"),
    (["task", "show"], "no task id given"),
    (["task", "show", "abc"], "a task id is a positive integer"),
    (["task", "log", "0"], "a task id is a positive integer"),
    (["task", "cancel", "-3"], "unknown option '-3'"),
    (["task", "show", "1", "2"], "unexpected argument '2'"),
    (["task", "show", "1", "--desc"], "unknown option '--desc'"),
    (["task", "captures", "1", "--sort", "speed"], "--sort must be slot, start_ms"),
    (["task", "captures", "1", "--sort"], "--sort must be slot, start_ms"),
    (["capture"], "which one"),
    (["capture", "list"], "unknown subcommand 'list'"),
    (["capture", "show"], "no capture id given"),
    (["capture", "show", "x"], "a capture id is a positive integer"),
    (["capture", "show", "1", "--frames", "0"], "--frames must be a count in 1..64"),
    (["capture", "show", "1", "--frames", "65"], "--frames must be a count in 1..64"),
    (["task", "list", "--server", "localhost:7070"], "--server needs a URL"),
], ids=lambda a: " ".join(a) if isinstance(a, list) else "")
def test_bad_arguments_are_usage_errors(cli, args, message):
    # A dead server: were anything sent, the status would be 1, not 2.
    r = cli(*args, server=f"http://127.0.0.1:{closed_port()}")
    assert r.returncode == 2, r.describe()
    assert r.stderr.startswith("sonde task" if args[0] == "task" else "sonde capture"), \
        r.describe()
    assert message in r.stderr and "usage: sonde" in r.stderr, r.describe()
    assert r.stdout == "", r.describe()


def test_help(run):
    r = run([SONDE, "help"], check=True)
    for text in ("task create --app A --interface I --duration 5m|10m|15m --threshold MS",
                 "task list", "task show|log|cancel ID", "task captures ID",
                 "capture show ID"):
        assert text in r.stdout, r.stdout
    for args in (["task", "--help"], ["capture", "--help"], ["task", "create", "--help"],
                 ["capture", "show", "-h"]):
        r = run([SONDE, *args])
        assert r.returncode == 0 and r.stdout.startswith("usage: sonde "), r.describe()
