"""
test_sessions_api.py — what people read about agents and sessions
(docs/api.md "Agents", "Sessions"): lists with their filters and paging,
one agent or session, the download of a profile exactly as uploaded, and
the 400/404 answers to bad queries.

Everything goes in through the agent routes, as an agent would send it,
and is read back with a reader token.
"""

import time
import urllib.parse

import pytest

HOUR_MS = 3600_000


def get(s, path, token, expect=200, **params):
    """GET path?params → body; asserts the status."""
    q = urllib.parse.urlencode(params)
    st, body, _ = s.request("GET", path + ("?" + q if q else ""), token=token)
    assert st == expect, f"GET {path}?{q} -> {st} {body!r}, wanted {expect}"
    return body


def ids(body):
    return [x["id"] for x in body["sessions"]]


@pytest.fixture
def sessions(sonded):
    """Five sessions of two apps on two hosts with every trigger, an hour
    ago at 1 s intervals (known start_ms); returns (server, reader token,
    t0, {name: session id})."""
    s = sonded
    read = s.token("reader")
    t0 = int(time.time() * 1000) - HOUR_MS
    a1h1 = s.register_agent("app-1", instance="host-1", pid=11)
    a1h2 = s.register_agent("app-1", instance="host-2", pid=12)
    a2h1 = s.register_agent("app-2", instance="host-1", pid=21)
    plan = [("s1", a1h1, "profile-now"), ("s2", a1h2, "cpu-trigger"),
            ("s3", a2h1, "default-sampling"), ("s4", a1h1, "memory-trigger"),
            ("s5", a1h1, "load-test")]
    sid = {}
    for i, (name, agent, trig) in enumerate(plan, 1):
        sid[name] = s.create_session(agent, trig, start_ms=t0 + i * 1000)["id"]
    return s, read, t0, sid


# --------------------------------------------------------------------------
# Session list
# --------------------------------------------------------------------------

def test_session_list_newest_first_with_total(sessions):
    s, read, t0, sid = sessions
    body = get(s, "/api/v1/sessions", read)
    assert ids(body) == [sid[n] for n in ("s5", "s4", "s3", "s2", "s1")]
    assert (body["total"], body["limit"], body["offset"]) == (5, 50, 0)
    s1 = body["sessions"][-1]
    assert (s1["app"], s1["instance"], s1["pid"], s1["triggered_by"], s1["start_ms"]) == (
        "app-1", "host-1", 11, "profile-now", t0 + 1000)
    assert s1["has_profile"] is False and s1["profile_bytes"] == 0


@pytest.mark.parametrize("params, want", [
    ({"app": "app-1"}, ["s5", "s4", "s2", "s1"]),
    ({"app": "app-2"}, ["s3"]),
    ({"instance": "host-1"}, ["s5", "s4", "s3", "s1"]),
    ({"triggered_by": "cpu-trigger"}, ["s2"]),
    ({"triggered_by": "load-test"}, ["s5"]),
    ({"app": "app-1", "instance": "host-1", "triggered_by": "memory-trigger"}, ["s4"]),
    ({"app": "nobody"}, []),
])
def test_session_list_filters(sessions, params, want):
    s, read, _, sid = sessions
    body = get(s, "/api/v1/sessions", read, **params)
    assert ids(body) == [sid[n] for n in want]
    assert body["total"] == len(want)


def test_session_list_time_range_is_from_inclusive_to_exclusive(sessions):
    s, read, t0, sid = sessions
    body = get(s, "/api/v1/sessions", read, **{"from": t0 + 2000, "to": t0 + 4000})
    assert ids(body) == [sid["s3"], sid["s2"]]
    body = get(s, "/api/v1/sessions", read, **{"from": t0 + 4000})
    assert ids(body) == [sid["s5"], sid["s4"]]
    body = get(s, "/api/v1/sessions", read, to=t0 + 2000)
    assert ids(body) == [sid["s1"]]


def test_session_list_paging(sessions):
    s, read, _, sid = sessions
    order = [sid[n] for n in ("s5", "s4", "s3", "s2", "s1")]
    seen = []
    for offset in range(0, 6, 2):
        body = get(s, "/api/v1/sessions", read, limit=2, offset=offset)
        assert (body["total"], body["limit"], body["offset"]) == (5, 2, offset)
        seen += ids(body)
    assert seen == order
    body = get(s, "/api/v1/sessions", read, app="app-1", limit=1, offset=3)
    assert ids(body) == [sid["s1"]] and body["total"] == 4
    body = get(s, "/api/v1/sessions", read, offset=10)
    assert ids(body) == [] and body["total"] == 5


@pytest.mark.parametrize("name, value", [
    ("limit", "abc"), ("limit", "0"), ("limit", "1001"), ("limit", "1.5"), ("limit", ""),
    ("offset", "-1"), ("offset", "x"), ("offset", "99999999999999999999"),
    ("from", "yesterday"), ("from", "-1"), ("to", "1e12"), ("to", "-5"),
    ("triggered_by", "cron"), ("triggered_by", "Profile-Now"),
])
def test_session_list_bad_parameter_is_400_naming_it(sessions, name, value):
    s, read, _, _ = sessions
    body = get(s, "/api/v1/sessions", read, 400, **{name: value})
    assert f"'{name}'" in body["error"], body
    if name in ("limit", "offset", "from", "to"):
        assert ".." in body["error"], f"no valid range in {body['error']!r}"
    # Nothing changed, the server still answers.
    assert get(s, "/api/v1/sessions", read)["total"] == 5


def test_session_list_reversed_range_is_400(sessions):
    s, read, t0, _ = sessions
    body = get(s, "/api/v1/sessions", read, 400, **{"from": t0 + 5000, "to": t0 + 1000})
    assert "'to'" in body["error"]


# --------------------------------------------------------------------------
# One session and its profile
# --------------------------------------------------------------------------

def test_session_get_and_unknown_is_404(sessions):
    s, read, t0, sid = sessions
    one = get(s, f"/api/v1/sessions/{sid['s2']}", read)
    assert (one["id"], one["app"], one["instance"], one["triggered_by"], one["start_ms"]) == (
        sid["s2"], "app-1", "host-2", "cpu-trigger", t0 + 2000)
    body = get(s, "/api/v1/sessions/424242", read, 404)
    assert "424242" in body["error"]


def test_profile_download_is_the_exact_upload(sonded, recorded_profiles):
    s = sonded
    read = s.token("reader")
    data = recorded_profiles(2)
    agent = s.register_agent("dl-app")
    sids = [s.upload(agent, d) for d in data]
    for sid, d in zip(sids, data):
        st, body, hdr = s.request("GET", f"/api/v1/sessions/{sid}/profile", token=read,
                                  raw=True)
        assert st == 200
        assert body == d, f"session {sid}: {len(body)} bytes back, {len(d)} uploaded"
        assert hdr["Content-Type"] == "application/octet-stream"
        assert hdr["Content-Disposition"] == f'attachment; filename="session-{sid}.pb.gz"'
        one = get(s, f"/api/v1/sessions/{sid}", read)
        assert one["has_profile"] is True and one["profile_bytes"] == len(d)
        assert one["state"] == "completed"


def test_profile_of_session_without_one_or_unknown_is_404(sonded):
    s = sonded
    read = s.token("reader")
    sid = s.create_session(s.register_agent("np-app"))["id"]
    body = get(s, f"/api/v1/sessions/{sid}/profile", read, 404)
    assert "no profile" in body["error"]
    body = get(s, "/api/v1/sessions/777777/profile", read, 404)
    assert "777777" in body["error"] and "not found" in body["error"]


# --------------------------------------------------------------------------
# Agents
# --------------------------------------------------------------------------

@pytest.fixture
def agents(sonded):
    s = sonded
    read = s.token("reader")
    a = {
        "a1h1": s.register_agent("app-1", instance="host-1", pid=11, cmdline="./svc --port 1"),
        "a1h2": s.register_agent("app-1", instance="host-2", pid=12),
        "a2h1": s.register_agent("app-2", instance="host-1", pid=21),
    }
    s.ok("POST", "/api/v1/agent/stop", {"agent_id": a["a1h2"]}, token=s.agent_token())
    return s, read, a


def agent_ids(body):
    return sorted(x["id"] for x in body["agents"])


@pytest.mark.parametrize("params, want", [
    ({}, ["a1h1", "a1h2", "a2h1"]),
    ({"app": "app-1"}, ["a1h1", "a1h2"]),
    ({"instance": "host-1"}, ["a1h1", "a2h1"]),
    ({"app": "app-2", "instance": "host-1"}, ["a2h1"]),
    ({"status": "stopped"}, ["a1h2"]),
    ({"status": "running"}, ["a1h1", "a2h1"]),
    ({"status": "stale"}, []),
    ({"app": "app-1", "status": "running"}, ["a1h1"]),
])
def test_agent_list_filters(agents, params, want):
    s, read, a = agents
    assert agent_ids(get(s, "/api/v1/agents", read, **params)) == sorted(a[n] for n in want)


def test_agent_get_shows_its_fields_and_status(agents):
    s, read, a = agents
    one = get(s, f"/api/v1/agents/{a['a1h1']}", read)
    assert (one["id"], one["app"], one["instance"], one["pid"], one["cmdline"],
            one["status"], one["stopped_ms"]) == (a["a1h1"], "app-1", "host-1", 11,
                                                  "./svc --port 1", "running", None)
    stopped = get(s, f"/api/v1/agents/{a['a1h2']}", read)
    assert stopped["status"] == "stopped" and stopped["stopped_ms"] is not None
    body = get(s, "/api/v1/agents/31337", read, 404)
    assert "31337" in body["error"]


def test_agent_list_bad_status_is_400(agents):
    s, read, _ = agents
    body = get(s, "/api/v1/agents", read, 400, status="dead")
    assert "'status'" in body["error"]


def test_agent_not_seen_for_two_heartbeats_is_stale(sonded_factory):
    s = sonded_factory(args=["--heartbeat-s", "1"])
    read = s.token("reader")
    aid = s.register_agent("stale-app")
    assert get(s, f"/api/v1/agents/{aid}", read)["status"] == "running"
    deadline = time.monotonic() + 10
    while get(s, f"/api/v1/agents/{aid}", read)["status"] != "stale":
        assert time.monotonic() < deadline, "agent never became stale"
        time.sleep(0.1)
    assert agent_ids(get(s, "/api/v1/agents", read, status="stale")) == [aid]
    s.ok("POST", "/api/v1/agent/heartbeat", {"agent_id": aid}, token=s.agent_token())
    assert get(s, f"/api/v1/agents/{aid}", read)["status"] == "running"


# --------------------------------------------------------------------------
# Roles
# --------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/v1/agents", "/api/v1/sessions", "/api/v1/sessions/1",
                                  "/api/v1/agents/1", "/api/v1/sessions/1/profile"])
def test_read_routes_need_a_reader_token(sessions, path):
    s, read, _, _ = sessions
    assert s.request("GET", path, token=None)[0] == 401
    assert s.request("GET", path, token="sonde_" + "0" * 64)[0] == 401
    assert s.request("GET", path, token=s.agent_token())[0] == 403
    for tok in (read, s.token("writer"), s.admin_token):
        assert s.request("GET", path, token=tok)[0] in (200, 404)
