"""
test_agent_protocol.py — docs/agent-protocol.md driven the way an agent
would drive it, against a real sonded: register, long-poll, heartbeat,
sessions, uploads, stop; Profile Now reaching exactly the agents it is
for; settings changes reaching polls; agent status over time; and the
upload's defences (truncated gzip, gzip bomb, dangling ids, limits).
"""

import gzip
import time
import zlib

import pytest

from conftest import Poller, encode_pprof, pb_field, pb_packed, start_pollers, wait_for

POLL = "/api/v1/agent/poll"


def register(s, app, instance="host-1", pid=1000, **fields):
    """POST register -> the whole answer."""
    body = {"app": app, "instance": instance, "pid": pid, "agent_version": "0.4.0"}
    body.update(fields)
    return s.ok("POST", "/api/v1/agent/register", body, token=s.agent_token(), expect=201)


def agent_call(s, method, path, body=None):
    """A request with the agent token -> (status, body)."""
    st, b, _ = s.request(method, path, body, token=s.agent_token())
    return st, b


def start_polls(s, agents, timeout_s):
    """agents: [(agent_id, cursor, settings_version)] -> started Pollers,
    each with its request sent."""
    return start_pollers([Poller(s, a, c, v, timeout_s) for a, c, v in agents])


# --------------------------------------------------------------------------
# The whole flow
# --------------------------------------------------------------------------

def test_agent_flow_register_poll_heartbeat_session_upload_stop(sonded, recorded_profiles):
    s = sonded
    prof = recorded_profiles(1)[0]
    reg = register(s, "checkout", "web-1", 4242, cmdline="./checkout --port 8080",
                   started_ms=1795000000000)
    aid = reg["agent_id"]
    assert reg["heartbeat_s"] == 10 and 1 <= reg["poll_timeout_s"] <= 10
    assert reg["cursor"] == 0
    assert reg["settings"]["triggers"]["cpu"] == {"enabled": True, "threshold": 80,
                                                  "duration_s": 120, "cooldown_s": 600}
    assert reg["settings"]["default_sampling"] == {"enabled": True, "window_s": 120,
                                                   "period_s": 3600}

    agent = s.ok("GET", f"/api/v1/agents/{aid}")
    assert (agent["app"], agent["instance"], agent["pid"], agent["status"]) == \
        ("checkout", "web-1", 4242, "running")
    assert agent["cmdline"] == "./checkout --port 8080"
    assert agent["started_ms"] == 1795000000000

    # Nothing to do: the poll is held for its timeout, then answers empty.
    t0 = time.monotonic()
    st, b = agent_call(s, "GET", f"{POLL}?agent_id={aid}&cursor={reg['cursor']}"
                       f"&settings_version={reg['settings_version']}&timeout_s=1")
    waited = time.monotonic() - t0
    assert st == 200, b
    assert b == {"cursor": reg["cursor"], "settings_version": reg["settings_version"],
                 "profile_now": [], "settings": None, "tasks_version": 0, "tasks": None}
    assert 0.8 <= waited < 5, f"an empty poll with timeout_s=1 took {waited:.2f}s"

    st, b = agent_call(s, "POST", "/api/v1/agent/heartbeat",
                       {"agent_id": aid, "cpu_pct": 12.5, "mem_pct": 3.1})
    assert st == 200 and b == {"status": "running", "settings_version": reg["settings_version"]}
    agent = s.ok("GET", f"/api/v1/agents/{aid}")
    assert (agent["cpu_pct"], agent["mem_pct"]) == (12.5, 3.1)

    # Profile Now -> the next poll carries it -> a session for it.
    req = s.ok("POST", "/api/v1/profile-now", {"app": "checkout", "duration_s": 60}, expect=201)
    assert req["agents"] == 1
    st, b = agent_call(s, "GET", f"{POLL}?agent_id={aid}&cursor={reg['cursor']}"
                       f"&settings_version={reg['settings_version']}&timeout_s=5")
    assert st == 200 and [r["id"] for r in b["profile_now"]] == [req["id"]], b
    assert b["profile_now"][0]["duration_s"] == 60 and b["cursor"] == req["id"]

    st, sess = agent_call(s, "POST", "/api/v1/agent/sessions", {
        "agent_id": aid, "triggered_by": "profile-now", "request_id": req["id"],
        "profile_types": ["cpu", "wall"], "start_ms": 1795000001000, "duration_s": 60})
    assert st == 201, sess
    assert sess["state"] == "running" and sess["request_id"] == req["id"]
    assert (sess["app"], sess["instance"], sess["pid"]) == ("checkout", "web-1", 4242)
    assert sess["profile_types"] == ["cpu", "wall"] and sess["duration_s"] == 60
    assert sess["has_profile"] is False
    listed = s.ok("GET", "/api/v1/sessions?app=checkout")
    assert [x["id"] for x in listed["sessions"]] == [sess["id"]]

    st, b = agent_call(s, "PATCH", f"/api/v1/agent/sessions/{sess['id']}",
                       {"samples": 42, "traces": 3, "cpu_pct": 63.2, "mem_pct": 3.4})
    assert st == 200, b
    assert (b["samples"], b["traces"], b["cpu_pct"], b["mem_pct"], b["state"]) == \
        (42, 3, 63.2, 3.4, "running")

    st, up = agent_call(s, "PUT", f"/api/v1/agent/sessions/{sess['id']}/profile", prof)
    assert st == 201, up
    assert up["session_id"] == sess["id"] and up["bytes"] == len(prof)
    assert up["sample_types"] == ["samples/count", "cpu/nanoseconds"]
    assert up["samples"] > 0
    got = s.ok("GET", f"/api/v1/sessions/{sess['id']}")
    assert got["state"] == "completed" and got["has_profile"] is True
    assert got["profile_bytes"] == len(prof)
    st, data, _ = s.request("GET", f"/api/v1/sessions/{sess['id']}/profile", raw=True)
    assert st == 200 and data == prof, "the download is not the upload"

    # A second upload for the same session is a conflict, and changes nothing.
    st, b = agent_call(s, "PUT", f"/api/v1/agent/sessions/{sess['id']}/profile",
                       recorded_profiles(2)[1])
    assert st == 409, b
    st, data, _ = s.request("GET", f"/api/v1/sessions/{sess['id']}/profile", raw=True)
    assert data == prof

    st, b = agent_call(s, "POST", "/api/v1/agent/stop", {"agent_id": aid})
    assert st == 200 and b == {"status": "stopped"}
    assert s.ok("GET", f"/api/v1/agents/{aid}")["status"] == "stopped"
    # A stopped agent gets 409 (register again) where it asks for work.
    assert agent_call(s, "GET", f"{POLL}?agent_id={aid}&timeout_s=1")[0] == 409
    assert agent_call(s, "POST", "/api/v1/agent/heartbeat", {"agent_id": aid})[0] == 409
    assert agent_call(s, "POST", "/api/v1/agent/sessions", {
        "agent_id": aid, "triggered_by": "cpu-trigger", "profile_types": ["cpu"],
        "duration_s": 5})[0] == 409
    # A repeated stop is answered the same (a retry after a lost answer).
    assert agent_call(s, "POST", "/api/v1/agent/stop", {"agent_id": aid}) == \
        (200, {"status": "stopped"})


def test_raw_protobuf_upload_is_accepted_and_stored_gzipped(sonded):
    s = sonded
    aid = s.register_agent("raw")
    sid = s.create_session(aid)["id"]
    raw = encode_pprof([(["main", "work"], [3, 30_000_000])], gz=False)
    st, b = agent_call(s, "PUT", f"/api/v1/agent/sessions/{sid}/profile", raw)
    assert st == 201, b
    assert b["samples"] == 3
    st, data, _ = s.request("GET", f"/api/v1/sessions/{sid}/profile", raw=True)
    assert st == 200 and data[:2] == b"\x1f\x8b" and gzip.decompress(data) == raw


def test_registration_cursor_skips_earlier_requests(sonded):
    s = sonded
    old = s.ok("POST", "/api/v1/profile-now", {"app": "late"}, expect=201)
    reg = register(s, "late")
    assert reg["cursor"] == old["id"]
    st, b = agent_call(s, "GET", f"{POLL}?agent_id={reg['agent_id']}&cursor={reg['cursor']}"
                       f"&settings_version={reg['settings_version']}&timeout_s=1")
    assert st == 200 and b["profile_now"] == [], "a request older than the agent reached it"


def test_expired_profile_now_is_not_delivered(sonded):
    s = sonded
    reg = register(s, "exp")
    req = s.ok("POST", "/api/v1/profile-now", {"app": "exp", "duration_s": 1}, expect=201)
    # Once created + duration has passed, the request is over for everyone.
    wait_for(lambda: time.time() * 1000 > req["created_ms"] + 1100, 5, "the request to expire")
    st, b = agent_call(s, "GET", f"{POLL}?agent_id={reg['agent_id']}&cursor={reg['cursor']}"
                       f"&settings_version={reg['settings_version']}&timeout_s=1")
    assert st == 200 and b["profile_now"] == []


# --------------------------------------------------------------------------
# Long-poll: Profile Now reaches exactly the agents it is for
# --------------------------------------------------------------------------

def test_profile_now_reaches_only_app_agents_within_2s(sonded):
    s = sonded
    regs = [register(s, "alpha", "a-1", 11), register(s, "alpha", "a-2", 12),
            register(s, "beta", "b-1", 21)]
    alpha, beta = regs[:2], regs[2:]
    polls = start_polls(s, [(r["agent_id"], r["cursor"], r["settings_version"]) for r in alpha],
                        timeout_s=30)
    beta_poll = start_polls(s, [(beta[0]["agent_id"], beta[0]["cursor"],
                                 beta[0]["settings_version"])], timeout_s=3)[0]

    t0 = time.monotonic()
    req = s.ok("POST", "/api/v1/profile-now", {"app": "alpha", "duration_s": 120}, expect=201)
    assert req["app"] == "alpha" and req["agents"] == 2, req
    for p in polls:
        st, b = p.result(timeout=10)
        latency = p.t_done - t0
        assert st == 200, b
        assert [r["id"] for r in b["profile_now"]] == [req["id"]], b
        assert b["profile_now"][0]["app"] == "alpha"
        assert b["cursor"] == req["id"]
        assert latency < 2.0, f"agent {p.agent_id} learned of the request after {latency:.2f}s"

    # beta's poll runs to its timeout and answers empty.
    st, b = beta_poll.result(timeout=15)
    assert st == 200 and b["profile_now"] == [], f"beta's agent received alpha's request: {b}"
    assert beta_poll.t_done - beta_poll.t_sent >= 2.5, "beta's poll was answered early"

    # A request for every app reaches all three, from their new cursors.
    cursors = {r["agent_id"]: req["id"] for r in alpha}
    cursors[beta[0]["agent_id"]] = beta[0]["cursor"]
    polls = start_polls(s, [(a, c, regs[0]["settings_version"]) for a, c in cursors.items()],
                        timeout_s=30)
    t0 = time.monotonic()
    every = s.ok("POST", "/api/v1/profile-now", {}, expect=201)
    assert every["app"] is None and every["duration_s"] == 120 and every["agents"] == 3
    for p in polls:
        st, b = p.result(timeout=10)
        assert st == 200 and [r["id"] for r in b["profile_now"]] == [every["id"]], b
        assert b["profile_now"][0]["app"] is None
        assert p.t_done - t0 < 2.0, f"agent {p.agent_id} got the request after {p.t_done - t0:.2f}s"


def test_waiting_polls_hold_no_threads(sonded):
    # Three times the default pool of 4 threads wait at once: the server
    # still answers other requests, and one Profile Now wakes them all.
    s = sonded
    regs = [register(s, "many", f"m-{i}", 100 + i) for i in range(12)]
    polls = start_polls(s, [(r["agent_id"], r["cursor"], r["settings_version"]) for r in regs],
                        timeout_s=30)
    t0 = time.monotonic()
    assert s.ok("GET", "/api/v1/triggers?app=many")["app"] == "many"
    assert time.monotonic() - t0 < 2.0, "the server stalled while polls were waiting"
    req = s.ok("POST", "/api/v1/profile-now", {"app": "many"}, expect=201)
    assert req["agents"] == 12
    for p in polls:
        st, b = p.result(timeout=10)
        assert st == 200 and [r["id"] for r in b["profile_now"]] == [req["id"]], b
        assert p.t_done - t0 < 2.0


def test_settings_change_wakes_polls_with_new_settings(sonded):
    s = sonded
    reg_a = register(s, "svc-a")
    reg_b = register(s, "svc-b")
    polls = start_polls(s, [(r["agent_id"], r["cursor"], r["settings_version"])
                            for r in (reg_a, reg_b)], timeout_s=30)
    t0 = time.monotonic()
    s.ok("PUT", "/api/v1/triggers?app=svc-a", {"cpu": {"threshold": 95}})
    answers = {}
    for p in polls:
        st, b = p.result(timeout=10)
        assert st == 200, b
        assert p.t_done - t0 < 2.0, f"settings reached agent {p.agent_id} after {p.t_done - t0:.2f}s"
        assert b["settings_version"] > reg_a["settings_version"] and b["profile_now"] == []
        answers[p.agent_id] = b["settings"]
    assert answers[reg_a["agent_id"]]["triggers"]["cpu"]["threshold"] == 95
    # Every agent learns that settings changed; svc-b's effective ones did not.
    assert answers[reg_b["agent_id"]]["triggers"]["cpu"]["threshold"] == 80

    # Default sampling too, and a poll already up to date waits again.
    version = s.ok("POST", "/api/v1/agent/heartbeat", {"agent_id": reg_a["agent_id"]},
                   token=s.agent_token())["settings_version"]
    p = start_polls(s, [(reg_a["agent_id"], reg_a["cursor"], version)], timeout_s=30)[0]
    t0 = time.monotonic()
    s.ok("PUT", "/api/v1/default-sampling", {"window_s": 300})
    st, b = p.result(timeout=10)
    assert p.t_done - t0 < 2.0
    assert b["settings"]["default_sampling"] == {"enabled": True, "window_s": 300,
                                                 "period_s": 3600}
    assert b["settings"]["triggers"]["cpu"]["threshold"] == 95


def test_poll_answers_at_once_when_settings_version_is_behind(sonded):
    s = sonded
    s.ok("PUT", "/api/v1/triggers", {"memory": {"enabled": False}})
    reg = register(s, "behind")
    t0 = time.monotonic()
    st, b = agent_call(s, "GET", f"{POLL}?agent_id={reg['agent_id']}&cursor={reg['cursor']}"
                       f"&settings_version=0&timeout_s=30")
    assert st == 200 and time.monotonic() - t0 < 2.0
    assert b["settings_version"] == reg["settings_version"]
    assert b["settings"]["triggers"]["memory"]["enabled"] is False


# --------------------------------------------------------------------------
# Agent status over time
# --------------------------------------------------------------------------

def test_agent_status_running_then_stale_then_running_then_stopped(sonded_factory):
    s = sonded_factory(args=["--heartbeat-s", "1"])
    reg = register(s, "pulse")
    aid = reg["agent_id"]
    assert reg["heartbeat_s"] == 1 and reg["poll_timeout_s"] == 1

    def status():
        return s.ok("GET", f"/api/v1/agents/{aid}")["status"]

    assert status() == "running"
    wait_for(lambda: status() == "stale", 10, "the agent to turn stale after 2 missed beats")
    assert s.ok("GET", "/api/v1/agents?status=stale")["agents"][0]["id"] == aid
    # A poll counts as a heartbeat.
    assert agent_call(s, "GET", f"{POLL}?agent_id={aid}&cursor=0&timeout_s=1")[0] == 200
    assert status() == "running"
    wait_for(lambda: status() == "stale", 10, "stale again")
    st, b = agent_call(s, "POST", "/api/v1/agent/heartbeat", {"agent_id": aid})
    assert (st, b["status"]) == (200, "running")
    assert status() == "running"
    assert agent_call(s, "POST", "/api/v1/agent/stop", {"agent_id": aid})[0] == 200
    assert status() == "stopped"


def test_agent_waiting_in_a_long_poll_stays_running(sonded_factory):
    # A poll longer than two heartbeat intervals: the agent is alive and
    # listening all along, so it must not show as stale meanwhile.
    s = sonded_factory(args=["--heartbeat-s", "1"])
    reg = register(s, "patient")
    p = start_polls(s, [(reg["agent_id"], reg["cursor"], reg["settings_version"])],
                    timeout_s=5)[0]
    seen = set()
    while not p.done.is_set():
        seen.add(s.ok("GET", f"/api/v1/agents/{reg['agent_id']}")["status"])
        time.sleep(0.1)
    st, b = p.result(timeout=1)
    assert st == 200 and b["profile_now"] == []
    assert p.t_done - p.t_sent >= 4.5
    assert seen == {"running"}, f"statuses seen during the poll: {seen}"


def test_profile_now_counts_only_running_agents(sonded_factory):
    s = sonded_factory(args=["--heartbeat-s", "1"])
    gone = register(s, "count", "h-gone")["agent_id"]
    stopped = register(s, "count", "h-stop")["agent_id"]
    agent_call(s, "POST", "/api/v1/agent/stop", {"agent_id": stopped})
    wait_for(lambda: s.ok("GET", f"/api/v1/agents/{gone}")["status"] == "stale", 10,
             "the silent agent to turn stale")
    live = register(s, "count", "h-live")["agent_id"]
    register(s, "other", "h-other")
    req = s.ok("POST", "/api/v1/profile-now", {"app": "count"}, expect=201)
    assert req["agents"] == 1, f"{req} (only agent {live} is running)"


# --------------------------------------------------------------------------
# Upload defences
# --------------------------------------------------------------------------

@pytest.fixture
def session(sonded):
    """(server, session id) of a fresh running session."""
    aid = sonded.register_agent("uploads")
    return sonded, sonded.create_session(aid)["id"]


def put_profile(s, sid, data):
    st, b = agent_call(s, "PUT", f"/api/v1/agent/sessions/{sid}/profile", data)
    return st, b


def assert_nothing_stored(s, sid):
    got = s.ok("GET", f"/api/v1/sessions/{sid}")
    assert got["has_profile"] is False and got["state"] == "running", got
    st, _, _ = s.request("GET", f"/api/v1/sessions/{sid}/profile", raw=True)
    assert st == 404


def test_upload_truncated_gzip_is_400_and_stores_nothing(session, recorded_profiles):
    s, sid = session
    prof = recorded_profiles(1)[0]
    st, b = put_profile(s, sid, prof[: len(prof) // 2])
    assert st == 400 and "truncated" in b["error"], b
    assert_nothing_stored(s, sid)
    # The session still takes its real profile afterwards.
    assert put_profile(s, sid, prof)[0] == 201


def test_upload_gzip_with_trailing_garbage_is_400(session, recorded_profiles):
    s, sid = session
    st, b = put_profile(s, sid, recorded_profiles(1)[0] + b"garbage!")
    assert st == 400 and "garbage" in b["error"], b
    assert_nothing_stored(s, sid)


def test_upload_corrupt_gzip_is_400(session, recorded_profiles):
    s, sid = session
    prof = bytearray(recorded_profiles(1)[0])
    for i in range(20, len(prof) - 8, 7):
        prof[i] ^= 0x5A
    st, b = put_profile(s, sid, bytes(prof))
    assert st == 400, b
    assert_nothing_stored(s, sid)


def test_upload_gzip_bomb_is_413(session):
    s, sid = session
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1 << 20)
    bomb = b"".join(z.compress(chunk) for _ in range(200)) + z.flush()   # 200 MiB of zeros
    assert len(bomb) < 1 << 20
    t0 = time.monotonic()
    st, b = put_profile(s, sid, bomb)
    assert st == 413 and "64 MiB" in b["error"], b
    assert time.monotonic() - t0 < 10
    assert_nothing_stored(s, sid)


def test_upload_over_max_profile_mb_is_413(sonded_factory):
    s = sonded_factory(args=["--max-profile-mb", "1"])
    aid = s.register_agent("small")
    sid = s.create_session(aid)["id"]
    st, b = put_profile(s, sid, gzip.compress(bytes(2 << 20)))
    assert st == 413 and "1 MiB" in b["error"], b


def test_upload_over_max_upload_mb_is_413(sonded_factory):
    s = sonded_factory(args=["--max-upload-mb", "1"])
    aid = s.register_agent("big")
    sid = s.create_session(aid)["id"]
    st, b = put_profile(s, sid, bytes(2 << 20))
    assert st == 413, b
    assert_nothing_stored(s, sid)
    assert s.alive()


def test_upload_dangling_location_id_is_400(session):
    s, sid = session
    bad = encode_pprof([(["main", "work"], [1, 10_000_000])],
                       location_override=lambda i, ids: ids + [999])
    st, b = put_profile(s, sid, bad)
    assert st == 400 and "999" in b["error"], b
    assert_nothing_stored(s, sid)


def test_upload_profile_with_wrong_value_count_is_400(session):
    s, sid = session
    st, b = put_profile(s, sid, encode_pprof([(["main"], [1])]))   # 2 sample types, 1 value
    assert st == 400, b
    assert_nothing_stored(s, sid)


def test_upload_dangling_string_index_is_400(session):
    s, sid = session
    # A sample type whose name is string 77 of a 3-string table.
    raw = (pb_field(1, pb_field(1, 77) + pb_field(2, 1))
           + pb_field(2, pb_packed(2, [5]))
           + pb_field(6, "") + pb_field(6, "count") + pb_field(6, "x"))
    st, b = put_profile(s, sid, gzip.compress(raw))
    assert st == 400, b
    assert_nothing_stored(s, sid)


def test_upload_not_a_profile_is_400(session):
    s, sid = session
    for data in (b"\xff" * 100, gzip.compress(b"\xff" * 100)):
        st, b = put_profile(s, sid, data)
        assert st == 400, b
    assert put_profile(s, sid, b"")[0] == 400
    assert_nothing_stored(s, sid)


def test_upload_unknown_session_is_404(sonded, recorded_profiles):
    st, b = put_profile(sonded, 999999, recorded_profiles(1)[0])
    assert st == 404 and "999999" in b["error"], b


# --------------------------------------------------------------------------
# Bad input on every field, unknown ids
# --------------------------------------------------------------------------

GOOD_REGISTER = {"app": "v", "instance": "h", "pid": 7, "agent_version": "0.4.0"}
BAD_REGISTER = [
    ("app", None), ("app", ""), ("app", "x" * 128), ("app", 5), ("app", "a\nb"),
    ("instance", None), ("instance", ""), ("instance", "x" * 256), ("instance", []),
    ("pid", None), ("pid", 0), ("pid", 4194305), ("pid", "7"), ("pid", 7.5), ("pid", True),
    ("agent_version", None), ("agent_version", "x" * 64), ("agent_version", 4),
    ("cmdline", "x" * 1024), ("cmdline", 3), ("cmdline", None),
    ("started_ms", -1), ("started_ms", "now"), ("started_ms", 1.5),
    ("bogus", 1),
]


def _with(good, field, value):
    """good with field set to value; None removes a field good has (a
    missing required field) and sends null for one it has not (a wrong
    type)."""
    body = dict(good)
    if value is None and field in good:
        del body[field]          # missing a required field
    else:
        body[field] = value
    return body


@pytest.mark.parametrize("field,value", BAD_REGISTER, ids=lambda x: repr(x)[:20])
def test_register_refuses_bad_field(sonded_module, field, value):
    s = sonded_module
    st, b = agent_call(s, "POST", "/api/v1/agent/register", _with(GOOD_REGISTER, field, value))
    assert st == 400 and field in b["error"], (field, value, st, b)


def test_register_accepts_empty_cmdline_and_boundaries(sonded_module):
    s = sonded_module
    st, b = agent_call(s, "POST", "/api/v1/agent/register", {
        "app": "x" * 127, "instance": "y" * 255, "pid": 4194304, "agent_version": "z" * 63,
        "cmdline": "", "started_ms": 0})
    assert st == 201, b
    a = s.ok("GET", f"/api/v1/agents/{b['agent_id']}")
    assert a["cmdline"] == "" and a["app"] == "x" * 127


def test_agent_routes_refuse_malformed_json(sonded_module):
    for path in ("register", "heartbeat", "stop", "sessions"):
        st, b = agent_call(sonded_module, "POST", f"/api/v1/agent/{path}", '{"agent_id": ')
        assert st == 400 and "JSON" in b["error"], (path, b)


@pytest.fixture(scope="module")
def module_agent(sonded_module):
    s = sonded_module
    aid = s.register_agent("fields")
    sid = s.create_session(aid)["id"]
    return s, aid, sid


@pytest.mark.parametrize("field,value", [
    ("agent_id", None), ("agent_id", 0), ("agent_id", "1"), ("cpu_pct", -1),
    ("cpu_pct", 100001), ("cpu_pct", "5"), ("mem_pct", -0.5), ("mem_pct", 100.5),
    ("mem_pct", False), ("load", 1)], ids=lambda x: repr(x)[:20])
def test_heartbeat_refuses_bad_field(module_agent, field, value):
    s, aid, _ = module_agent
    body = _with({"agent_id": aid}, field, value)
    st, b = agent_call(s, "POST", "/api/v1/agent/heartbeat", body)
    assert st == 400 and field in b["error"], (field, value, st, b)


def test_heartbeat_dropped_uploads_is_stored_and_shown(sonded):
    s = sonded
    aid = s.register_agent("drops")
    assert s.ok("GET", f"/api/v1/agents/{aid}")["dropped_uploads"] == 0
    st, b = agent_call(s, "POST", "/api/v1/agent/heartbeat", {"agent_id": aid, "dropped_uploads": 3})
    assert st == 200, b
    assert s.ok("GET", f"/api/v1/agents/{aid}")["dropped_uploads"] == 3
    listed = s.ok("GET", "/api/v1/agents?app=drops")["agents"]
    assert [a["dropped_uploads"] for a in listed] == [3]
    # Absent: the last total stays.
    assert agent_call(s, "POST", "/api/v1/agent/heartbeat", {"agent_id": aid})[0] == 200
    assert s.ok("GET", f"/api/v1/agents/{aid}")["dropped_uploads"] == 3
    for bad in (-1, "x", 1.5, None, True):
        st, b = agent_call(s, "POST", "/api/v1/agent/heartbeat",
                           {"agent_id": aid, "dropped_uploads": bad})
        assert st == 400 and "dropped_uploads" in b["error"], (bad, st, b)
    assert s.ok("GET", f"/api/v1/agents/{aid}")["dropped_uploads"] == 3


@pytest.mark.parametrize("field,value", [
    ("agent_id", None), ("agent_id", -3), ("agent_id", 1.0),
    ("triggered_by", None), ("triggered_by", "cron"), ("triggered_by", 1),
    ("request_id", 0), ("request_id", "5"),
    ("profile_types", None), ("profile_types", []), ("profile_types", "cpu"),
    ("profile_types", ["heap"]), ("profile_types", ["cpu", "cpu"]),
    ("profile_types", ["cpu", "wall", "cpu", "wall", "cpu"]), ("profile_types", [1]),
    ("start_ms", -1), ("start_ms", "x"),
    ("duration_s", None), ("duration_s", 0), ("duration_s", 86401), ("duration_s", 2.5),
    ("state", "running")], ids=lambda x: repr(x)[:20])
def test_session_create_refuses_bad_field(module_agent, field, value):
    s, aid, _ = module_agent
    good = {"agent_id": aid, "triggered_by": "cpu-trigger", "profile_types": ["cpu"],
            "duration_s": 10}
    st, b = agent_call(s, "POST", "/api/v1/agent/sessions", _with(good, field, value))
    assert st == 400 and field in b["error"], (field, value, st, b)


@pytest.mark.parametrize("field,value", [
    ("state", "done"), ("state", 1), ("state", ""), ("duration_s", 0), ("duration_s", 86401),
    ("samples", -1), ("samples", "1"), ("traces", -1), ("traces", 0.5), ("cpu_pct", -1),
    ("cpu_pct", 100001), ("mem_pct", 101), ("mem_pct", None), ("agent_id", 1)],
    ids=lambda x: repr(x)[:20])
def test_session_patch_refuses_bad_field(module_agent, field, value):
    s, _, sid = module_agent
    before = s.ok("GET", f"/api/v1/sessions/{sid}")
    st, b = agent_call(s, "PATCH", f"/api/v1/agent/sessions/{sid}", {field: value})
    assert st == 400 and field in b["error"], (field, value, st, b)
    assert s.ok("GET", f"/api/v1/sessions/{sid}") == before


def test_session_patch_changes_only_given_fields(module_agent):
    s, aid, _ = module_agent
    sid = s.create_session(aid, duration_s=30)["id"]
    b = s.ok("PATCH", f"/api/v1/agent/sessions/{sid}", {"state": "failed", "duration_s": 12},
             token=s.agent_token())
    assert (b["state"], b["duration_s"], b["samples"], b["cpu_pct"]) == ("failed", 12, 0, None)
    assert s.ok("GET", f"/api/v1/sessions/{sid}")["state"] == "failed"


@pytest.mark.parametrize("query,name", [
    ("cursor=0", "agent_id"), ("agent_id=abc", "agent_id"), ("agent_id=-1", "agent_id"),
    ("agent_id={aid}&cursor=-1", "cursor"), ("agent_id={aid}&cursor=x", "cursor"),
    ("agent_id={aid}&timeout_s=0", "timeout_s"), ("agent_id={aid}&timeout_s=61", "timeout_s"),
    ("agent_id={aid}&settings_version=v", "settings_version")])
def test_poll_refuses_bad_query(module_agent, query, name):
    s, aid, _ = module_agent
    st, b = agent_call(s, "GET", f"{POLL}?{query.format(aid=aid)}")
    assert st == 400 and name in b["error"], (query, st, b)


@pytest.mark.parametrize("method,path,body", [
    ("POST", "/api/v1/agent/heartbeat", {"agent_id": 999999}),
    ("POST", "/api/v1/agent/stop", {"agent_id": 999999}),
    ("GET", f"{POLL}?agent_id=999999&timeout_s=1", None),
    ("POST", "/api/v1/agent/sessions", {"agent_id": 999999, "triggered_by": "profile-now",
                                        "profile_types": ["cpu"], "duration_s": 5}),
    ("PATCH", "/api/v1/agent/sessions/999999", {"samples": 1}),
], ids=["heartbeat", "stop", "poll", "sessions", "patch"])
def test_unknown_ids_are_404(sonded_module, method, path, body):
    st, b = agent_call(sonded_module, method, path, body)
    assert st == 404 and "999999" in b["error"], (st, b)
