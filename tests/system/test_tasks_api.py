"""
test_tasks_api.py — active profiling on the server (docs/api.md "Active
profiling", docs/agent-protocol.md "7. Active profiling"), against a real
sonded with simulated agents over HTTP: tasks created, listed, read,
cancelled and logged; every bad parameter and its message; roles; tasks
reaching exactly the app's agents through their polls; task events;
the capture limit holding under concurrent claims from two agents; expiry
(with a shortened task minute); snapshot uploads with their timeline,
flame graph and pprof; trace lookups over captures and session spans; and
the defences of the snapshot upload.
"""

import gzip
import json
import threading
import time
import urllib.parse

import pytest

from conftest import (SONDED, agent_poll, claim_capture, encode_pprof, encode_snapshots,
                      flame_names, pprof_top, register_task_agent, start_task_polls, task_body)

TASKS = "/api/v1/tasks"


def create(s, token=None, **fields):
    """POST /api/v1/tasks (201 asserted) -> the task."""
    kw = {"token": token} if token else {}
    return s.ok("POST", TASKS, task_body(**fields), expect=201, **kw)


def logs(s, tid):
    return s.ok("GET", f"{TASKS}/{tid}/logs")["logs"]


def events(s, tid):
    return [line["event"] for line in logs(s, tid)]


def agent_req(s, method, path, body=None):
    st, b, _ = s.request(method, path, body, token=s.agent_token())
    return st, b


# --------------------------------------------------------------------------
# Create, get, list, cancel, log
# --------------------------------------------------------------------------

def test_create_answers_the_task_with_defaults_and_creator(sonded):
    s = sonded
    writer = s.new_token("writer", "alice")
    t0 = int(time.time() * 1000)
    t = create(s, token=writer["token"], frequency_ms=None, max_samples=None)
    assert t["app"] == "shop" and t["interface"] == "GET /slow"
    assert (t["duration_min"], t["threshold_ms"], t["frequency_ms"], t["max_samples"]) == \
        (5, 200, 100, 10)
    assert t["state"] == "running" and t["captures"] == 0
    assert t["creator"] == {"token_id": writer["id"], "name": "alice"}
    assert t0 <= t["created_ms"] <= t0 + 5000
    assert t["ends_ms"] == t["created_ms"] + 5 * 60000
    assert t["started_ms"] is None and t["ended_ms"] is None
    assert s.ok("GET", f"{TASKS}/{t['id']}") == dict(t, agents=[])
    assert events(s, t["id"]) == ["created"]
    line = logs(s, t["id"])[0]
    assert line["agent_id"] is None and line["instance"] is None and line["pid"] is None
    assert "alice" in line["message"]


BAD_FIELDS = [
    # (override, message fragments)
    ({"app": None}, ["app is required", "1 to 127"]),
    ({"app": ""}, ["app must be a string of 1 to 127 bytes"]),
    ({"app": "a" * 128}, ["app must be a string of 1 to 127 bytes"]),
    ({"app": 7}, ["app must be a string"]),
    ({"app": "bad\u0001app"}, ["app must be printable"]),
    ({"interface": None}, ["interface is required", "1 to 95"]),
    ({"interface": ""}, ["interface must be a string of 1 to 95 bytes"]),
    ({"interface": "x" * 96}, ["interface must be a string of 1 to 95 bytes"]),
    ({"interface": ["GET /slow"]}, ["interface must be a string"]),
    ({"duration_min": None}, ["duration_min is required: 5, 10 or 15"]),
    ({"duration_min": 4}, ["duration_min must be 5, 10 or 15"]),
    ({"duration_min": 16}, ["duration_min must be 5, 10 or 15"]),
    ({"duration_min": 7}, ["duration_min must be 5, 10 or 15"]),
    ({"duration_min": 0}, ["duration_min must be 5, 10 or 15"]),
    ({"duration_min": "5"}, ["duration_min must be 5, 10 or 15"]),
    ({"duration_min": 5.0}, ["duration_min must be 5, 10 or 15"]),
    ({"threshold_ms": None}, ["threshold_ms is required: an integer from 50 to 30000"]),
    ({"threshold_ms": 49}, ["threshold_ms must be an integer from 50 to 30000"]),
    ({"threshold_ms": 30001}, ["threshold_ms must be an integer from 50 to 30000"]),
    ({"threshold_ms": "200"}, ["threshold_ms must be an integer from 50 to 30000"]),
    ({"threshold_ms": True}, ["threshold_ms must be an integer from 50 to 30000"]),
    ({"frequency_ms": 4}, ["frequency_ms must be an integer from 5 to 1000"]),
    ({"frequency_ms": 1001}, ["frequency_ms must be an integer from 5 to 1000"]),
    ({"frequency_ms": 10.5}, ["frequency_ms must be an integer from 5 to 1000"]),
    ({"frequency_ms": "fast"}, ["frequency_ms must be an integer from 5 to 1000"]),
    ({"max_samples": 0}, ["max_samples must be an integer from 1 to 100"]),
    ({"max_samples": 101}, ["max_samples must be an integer from 1 to 100"]),
    ({"max_samples": -1}, ["max_samples must be an integer from 1 to 100"]),
    ({"max_samples": None, "frequency_ms": None, "extra": 1}, ["unknown field 'extra'"]),
    ({"threshold": 200}, ["unknown field 'threshold'"]),
]


@pytest.mark.parametrize("override,fragments", BAD_FIELDS,
                         ids=[f"{list(o)[0]}={list(o.values())[0]!r}"[:40] for o, _ in BAD_FIELDS])
def test_create_refuses_each_bad_field_naming_it_and_its_range(sonded_module, override,
                                                               fragments):
    s = sonded_module
    before = s.ok("GET", TASKS)["tasks"]
    st, b, _ = s.request("POST", TASKS, task_body(**override))
    assert st == 400, b
    for f in fragments:
        assert f in b["error"], (f, b)
    assert s.ok("GET", TASKS)["tasks"] == before


def test_create_accepts_every_bound(sonded):
    s = sonded
    for d in (5, 10, 15):
        assert create(s, duration_min=d)["duration_min"] == d
    t = create(s, threshold_ms=50, frequency_ms=5, max_samples=1, app="a" * 127,
               interface="i" * 95)
    assert (t["threshold_ms"], t["frequency_ms"], t["max_samples"]) == (50, 5, 1)
    t = create(s, threshold_ms=30000, frequency_ms=1000, max_samples=100, interface="GET /é")
    assert (t["threshold_ms"], t["frequency_ms"], t["max_samples"]) == (30000, 1000, 100)
    assert t["interface"] == "GET /é"


def test_create_refuses_malformed_non_object_and_huge_bodies(sonded):
    s = sonded
    for body in ("{", '{"app": "shop",}', "[]", "null", "42", ""):
        st, b, _ = s.request("POST", TASKS, body)
        assert st == 400 and "body" in b["error"], (body, b)
    huge = json.dumps(dict(task_body(), interface="x" * (2 << 20)))
    st, b, _ = s.request("POST", TASKS, huge)
    assert st == 413, b
    st, b, _ = s.request("POST", TASKS, '{"app": "a", "app": "b"}')
    assert st == 400
    assert s.ok("GET", TASKS)["tasks"] == []


def test_roles_reader_views_writer_creates_agent_and_nobody_refused(sonded):
    s = sonded
    reader, writer = s.token("reader"), s.token("writer")
    t = create(s, token=writer)
    tid = t["id"]
    reads = [TASKS, f"{TASKS}/{tid}", f"{TASKS}/{tid}/logs", f"{TASKS}/{tid}/captures",
             "/api/v1/traces/abc"]
    for path in reads:
        for tok in (reader, writer, s.admin_token):
            st, b, _ = s.request("GET", path, token=tok)
            assert st == 200, (path, b)
        st, b, _ = s.request("GET", path, token=s.agent_token())
        assert st == 403 and "agent" in b["error"], (path, b)
        st, b, _ = s.request("GET", path, token=None)
        assert st == 401, (path, b)
        st, b, _ = s.request("GET", path, token="sonde_" + "0" * 64)
        assert st == 401, (path, b)
    for tok in (reader, s.agent_token()):
        st, b, _ = s.request("POST", TASKS, task_body(), token=tok)
        assert st == 403 and "writer or admin" in b["error"], b
        st, b, _ = s.request("POST", f"{TASKS}/{tid}/cancel", token=tok)
        assert st == 403, b
    st, _, _ = s.request("POST", TASKS, task_body(), token=None)
    assert st == 401
    # The agent routes refuse people's tokens.
    st, b, _ = s.request("POST", f"/api/v1/agent/tasks/{tid}/events",
                         {"agent_id": 1, "event": "started"}, token=writer)
    assert st == 403
    assert s.ok("GET", f"{TASKS}/{tid}")["state"] == "running"
    assert s.ok("POST", f"{TASKS}/{tid}/cancel", token=writer)["state"] == "cancelled"


def test_unknown_ids_are_404(sonded):
    s = sonded
    reg = register_task_agent(s, "shop")
    for method, path in [("GET", f"{TASKS}/99"), ("GET", f"{TASKS}/99/logs"),
                         ("GET", f"{TASKS}/99/captures"), ("POST", f"{TASKS}/99/cancel"),
                         ("GET", "/api/v1/captures/99"), ("GET", "/api/v1/captures/99/flame"),
                         ("GET", "/api/v1/captures/99/top"),
                         ("GET", "/api/v1/captures/99/profile")]:
        st, b, _ = s.request(method, path)
        assert st == 404 and "99 not found" in b["error"], (path, b)
    st, b = agent_req(s, "POST", "/api/v1/agent/tasks/99/events",
                      {"agent_id": reg["agent_id"], "event": "started"})
    assert st == 404 and "task 99 not found" in b["error"]
    st, b = claim_capture(s, 99, reg["agent_id"])
    assert st == 404 and "task 99 not found" in b["error"]
    st, b = agent_req(s, "PUT", "/api/v1/agent/captures/99/snapshots",
                      encode_snapshots([{"frames": ["main"], "offset_ms": 200}]))
    assert st == 404 and "capture 99 not found" in b["error"]
    tid = create(s)["id"]
    st, b = agent_req(s, "POST", f"/api/v1/agent/tasks/{tid}/events",
                      {"agent_id": 999, "event": "started"})
    assert st == 404 and "agent 999 not found" in b["error"]
    st, b = claim_capture(s, tid, 999)
    assert st == 404 and "agent 999 not found" in b["error"]
    assert s.ok("GET", f"{TASKS}/{tid}")["captures"] == 0


def test_list_by_time_range_app_and_state(sonded):
    s = sonded
    a = create(s, app="shop")
    b = create(s, app="pay")
    c = create(s, app="shop")
    s.ok("POST", f"{TASKS}/{b['id']}/cancel")
    ids = lambda q="": [t["id"] for t in s.ok("GET", f"{TASKS}{q}")["tasks"]]  # noqa: E731
    assert ids() == [c["id"], b["id"], a["id"]]                 # newest first
    assert ids("?app=shop") == [c["id"], a["id"]]
    assert ids("?state=cancelled") == [b["id"]]
    assert ids("?state=running&app=pay") == []
    assert ids("?limit=2") == [c["id"], b["id"]]
    # Overlapping [from, to): running tasks last until ends_ms; a cancelled
    # one until it ended.
    assert ids(f"?to={a['created_ms']}") == []
    early = ids(f"?from=0&to={a['created_ms'] + 1}")   # b, c too if made in the same ms
    assert a["id"] in early and c["id"] not in early or c["created_ms"] == a["created_ms"]
    assert ids(f"?from={c['ends_ms'] + 1}") == []
    assert set(ids(f"?from={a['ends_ms'] - 1}")) == {a["id"], c["id"]}
    bt = s.ok("GET", f"{TASKS}/{b['id']}")
    assert b["id"] not in ids(f"?from={bt['ended_ms'] + 1}")
    for q, frag in [("?from=-1", "'from'"), ("?to=0", "'to'"), ("?from=10&to=10", "'to'"),
                    ("?from=x", "'from'"), ("?limit=0", "'limit'"), ("?limit=1001", "'limit'"),
                    ("?state=done", "'state'"), ("?app=" + "a" * 128, "'app'"),
                    ("?to=253402300800000", "'to'")]:
        st, body, _ = s.request("GET", f"{TASKS}{q}")
        assert st == 400 and frag in body["error"], (q, body)


def test_cancel_ends_the_task_once_and_logs_who(sonded):
    s = sonded
    writer = s.new_token("writer", "bob")
    t = create(s)
    st, b, _ = s.request("POST", f"{TASKS}/{t['id']}/cancel", {"why": 1}, token=writer["token"])
    assert st == 400 and "unknown field 'why'" in b["error"]
    st, b, _ = s.request("POST", f"{TASKS}/{t['id']}/cancel", "{", token=writer["token"])
    assert st == 400
    c = s.ok("POST", f"{TASKS}/{t['id']}/cancel", {}, token=writer["token"])
    assert c["state"] == "cancelled" and c["ended_ms"] >= c["created_ms"]
    st, b, _ = s.request("POST", f"{TASKS}/{t['id']}/cancel")
    assert st == 409 and b["error"] == f"task {t['id']} has already ended (cancelled)"
    assert events(s, t["id"]) == ["created", "cancelled"]
    assert "bob" in logs(s, t["id"])[1]["message"]


# --------------------------------------------------------------------------
# Tasks reaching agents
# --------------------------------------------------------------------------

def test_poll_delivers_tasks_to_the_apps_agents_within_2s_and_logs_delivery_once(sonded):
    s = sonded
    shop = [register_task_agent(s, "shop", f"web-{i}", 100 + i) for i in range(2)]
    other = register_task_agent(s, "pay", "pay-1", 200)
    # No task yet: version 0, and a poll at 0 is up to date (it waits, and
    # answers at its timeout with tasks null).
    st, b = agent_poll(s, shop[0], tasks_version=0, timeout_s=1)
    assert st == 200 and b["tasks"] is None and b["tasks_version"] == 0, b
    version = 0

    polls = start_task_polls(s, shop + [other], version, timeout_s=30)
    t0 = time.monotonic()
    t = create(s, app="shop", threshold_ms=300, frequency_ms=50, max_samples=3)
    for p in polls:
        st, b = p.result(timeout=10)
        assert st == 200, b
        assert time.monotonic() - t0 < 2.0, "a task took over 2 s to reach a polling agent"
        assert b["tasks_version"] > version
    want = {"id": t["id"], "interface": "GET /slow", "threshold_ms": 300, "frequency_ms": 50,
            "max_samples": 3, "captures": 0, "ends_ms": t["ends_ms"]}
    assert polls[0].body["tasks"] == [want] and polls[1].body["tasks"] == [want]
    assert polls[2].body["tasks"] == []                       # another app's agent
    # Polling again from an old version gets the list again, but the
    # delivery is logged once per agent.
    for _ in range(2):
        st, b = agent_poll(s, shop[0], tasks_version=0)
        assert b["tasks"] == [want]
    lines = [x for x in logs(s, t["id"]) if x["event"] == "delivered"]
    assert sorted((x["agent_id"], x["instance"], x["pid"]) for x in lines) == \
        [(shop[0]["agent_id"], "web-0", 100), (shop[1]["agent_id"], "web-1", 101)]
    agents = s.ok("GET", f"{TASKS}/{t['id']}")["agents"]
    assert sorted(a["agent_id"] for a in agents) == sorted(r["agent_id"] for r in shop)
    assert all(a["delivered_ms"] and a["started_ms"] is None and a["captures"] == 0
               for a in agents)


def test_poll_lists_running_tasks_oldest_first_and_drops_cancelled(sonded):
    s = sonded
    reg = register_task_agent(s, "shop")
    a, b = create(s, interface="GET /a"), create(s, interface="GET /b")
    st, body = agent_poll(s, reg)
    assert [x["id"] for x in body["tasks"]] == [a["id"], b["id"]]
    version = body["tasks_version"]
    p = start_task_polls(s, [reg], version)[0]
    s.ok("POST", f"{TASKS}/{a['id']}/cancel")
    st, body = p.result(timeout=5)
    assert p.elapsed < 2.0
    assert [x["id"] for x in body["tasks"]] == [b["id"]]
    st, body, _ = s.request("GET", f"/api/v1/agent/poll?agent_id={reg['agent_id']}"
                            "&tasks_version=-1", token=s.agent_token())
    assert st == 400 and "tasks_version" in body["error"]


def test_agent_events_are_logged_and_set_started(sonded):
    s = sonded
    reg = register_task_agent(s, "shop", "web-1", 4242)
    aid = reg["agent_id"]
    t = create(s)
    path = f"/api/v1/agent/tasks/{t['id']}/events"
    for body, frag in [({"agent_id": aid, "event": "begun"}, "'event'"),
                       ({"agent_id": aid}, "'event'"),
                       ({"event": "started"}, "'agent_id'"),
                       ({"agent_id": aid, "event": "started", "message": "x" * 512}, "'message'"),
                       ({"agent_id": aid, "event": "started", "message": 5}, "'message'"),
                       ({"agent_id": aid, "event": "started", "extra": 1}, "unknown field")]:
        st, b = agent_req(s, "POST", path, body)
        assert st == 400 and frag in b["error"], (body, b)
    st, b = agent_req(s, "POST", path, {"agent_id": aid, "event": "started", "message": "go"})
    assert st == 200 and b == {"task_id": t["id"], "state": "running"}
    st, b = agent_req(s, "POST", path, {"agent_id": aid, "event": "error",
                                        "message": "cannot read /proc/self/task/7/syscall"})
    assert st == 200
    got = s.ok("GET", f"{TASKS}/{t['id']}")
    assert got["started_ms"] is not None
    (agent,) = got["agents"]
    assert agent["agent_id"] == aid and agent["instance"] == "web-1" and agent["pid"] == 4242
    assert agent["started_ms"] is not None and agent["stopped_ms"] is None
    s.ok("POST", f"{TASKS}/{t['id']}/cancel")
    # A late "stopped" of an ended task is still logged.
    st, b = agent_req(s, "POST", path, {"agent_id": aid, "event": "stopped"})
    assert st == 200 and b["state"] == "cancelled"
    lines = logs(s, t["id"])
    assert [x["event"] for x in lines] == ["created", "started", "error", "cancelled", "stopped"]
    assert lines[2]["message"].endswith("syscall") and lines[2]["instance"] == "web-1"
    assert s.ok("GET", f"{TASKS}/{t['id']}")["agents"][0]["stopped_ms"] is not None


# --------------------------------------------------------------------------
# The capture limit
# --------------------------------------------------------------------------

def test_claims_from_two_agents_never_exceed_max_samples(sonded):
    s = sonded
    regs = [register_task_agent(s, "shop", f"web-{i}", 300 + i) for i in range(2)]
    t = create(s, max_samples=3)
    st, b = agent_poll(s, regs[0])
    version = b["tasks_version"]
    polls = start_task_polls(s, regs, version)
    results, lock = [], threading.Lock()
    start = threading.Barrier(12)

    def claim(i):
        start.wait()
        r = claim_capture(s, t["id"], regs[i % 2]["agent_id"], trace_id=f"trace-{i}",
                          total_ms=1000 + i)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(12)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    granted = [b for st, b in results if st == 201]
    refused = [b for st, b in results if st == 409]
    assert len(granted) == 3 and len(refused) == 9, results
    assert sorted(b["slot"] for b in granted) == [1, 2, 3]
    assert sorted(b["task_state"] for b in granted) == ["limit-reached", "running", "running"]
    for b in refused:
        assert b["task_state"] == "limit-reached"
        assert b["error"] == f"task {t['id']} reached its limit of 3 captures"
    got = s.ok("GET", f"{TASKS}/{t['id']}")
    assert got["state"] == "limit-reached" and got["captures"] == 3 and got["ended_ms"]
    assert sum(a["captures"] for a in got["agents"]) == 3
    # The polls were woken by the limit: their lists no longer hold the task.
    for p in polls:
        st, b = p.result(timeout=5)
        assert b["tasks"] == [] and b["tasks_version"] > version
    ev = events(s, t["id"])
    assert ev.count("capture") == 3 and ev.count("refused") == 9
    assert ev.count("limit-reached") == 1
    assert ev.index("limit-reached") > max(i for i, e in enumerate(ev) if e == "capture")
    # Later claims are refused too, and logged.
    st, b = claim_capture(s, t["id"], regs[0]["agent_id"], trace_id="late")
    assert st == 409 and b["task_state"] == "limit-reached"
    assert events(s, t["id"]).count("refused") == 10
    caps = s.ok("GET", f"{TASKS}/{t['id']}/captures")["captures"]
    assert [c["slot"] for c in caps] == [1, 2, 3]


def test_claim_validation_and_ended_tasks(sonded):
    s = sonded
    reg = register_task_agent(s, "shop")
    other = register_task_agent(s, "pay")
    t = create(s)
    aid = reg["agent_id"]
    for fields, frag in [({"interface": "GET /fast"}, "task's interface 'GET /slow'"),
                         ({"trace_id": ""}, "'trace_id'"), ({"trace_id": "t" * 64}, "'trace_id'"),
                         ({"trace_id": None}, "'trace_id'"), ({"start_ms": -1}, "'start_ms'"),
                         ({"response_code": 1000}, "'response_code'"),
                         ({"peer": "p" * 64}, "'peer'"), ({"total_ms": 86400001}, "'total_ms'"),
                         ({"total_ms": None}, "'total_ms'"),
                         ({"snapshots": 1000001}, "'snapshots'"), ({"agent": 0}, "'agent_id'"),
                         ({"extra": 1}, "unknown field 'extra'")]:
        if "agent" in fields:
            st, b = claim_capture(s, t["id"], fields["agent"])
        else:
            st, b = claim_capture(s, t["id"], aid, **fields)
        assert st == 400 and frag in b["error"], (fields, b)
    st, b = claim_capture(s, t["id"], other["agent_id"])
    assert st == 400 and "app 'pay'" in b["error"]
    assert s.ok("GET", f"{TASKS}/{t['id']}")["captures"] == 0
    st, b = claim_capture(s, t["id"], aid, response_code=0, peer="")
    assert st == 201 and b["slot"] == 1 and b["task_state"] == "running"
    cap = s.ok("GET", f"/api/v1/captures/{b['capture_id']}")
    assert cap["response_code"] is None and cap["peer"] is None
    s.ok("POST", f"{TASKS}/{t['id']}/cancel")
    st, b = claim_capture(s, t["id"], aid)
    assert st == 409 and b == {"error": f"task {t['id']} has ended (cancelled)",
                               "task_state": "cancelled"}
    assert events(s, t["id"])[-1] == "refused"


def test_task_expires_after_its_duration_with_short_task_minute(sonded_factory):
    s = sonded_factory(args=["--task-minute-ms", "200"])
    reg = register_task_agent(s, "shop")
    t = create(s, duration_min=5)
    assert t["ends_ms"] == t["created_ms"] + 1000
    st, b = agent_poll(s, reg)
    assert [x["id"] for x in b["tasks"]] == [t["id"]]
    p = start_task_polls(s, [reg], b["tasks_version"])[0]
    # The poll is woken by the expiry, about 1 s after creation.
    st, b = p.result(timeout=5)
    assert b["tasks"] == []
    got = s.ok("GET", f"{TASKS}/{t['id']}")
    assert got["state"] == "expired" and got["ended_ms"] == t["ends_ms"]
    assert events(s, t["id"])[-1] == "expired"
    assert time.time() * 1000 - t["created_ms"] < 4000
    st, b = claim_capture(s, t["id"], reg["agent_id"])
    assert st == 409 and b["task_state"] == "expired"
    st, b, _ = s.request("POST", f"{TASKS}/{t['id']}/cancel")
    assert st == 409 and "has already ended (expired)" in b["error"]


def test_task_minute_option_is_checked_and_documented(run):
    for bad in ("99", "60001", "x"):
        c = run([SONDED, "--task-minute-ms", bad])
        assert c.returncode == 2 and "--task-minute-ms" in c.stderr, c.describe()
    c = run([SONDED, "--help"], check=True)
    assert "--task-minute-ms" in c.stdout and "for tests only" in c.stdout


# --------------------------------------------------------------------------
# Snapshots: upload, timeline, views, download
# --------------------------------------------------------------------------

SNAPSHOTS = [
    {"frames": ["main", "serve", "handle_slow", "compute"], "offset_ms": 200.0,
     "state": "running", "thread": "demo-worker"},
    {"frames": ["main", "serve", "handle_slow", "compute"], "offset_ms": 300.4,
     "state": "running", "thread": "demo-worker"},
    {"frames": ["main", "serve", "handle_slow", "poll"], "offset_ms": 400.1,
     "state": "sleeping", "syscall": "poll", "thread": "demo-worker"},
]


def claimed(s, app="shop", **claim_fields):
    """A task, an agent and one granted claim -> (task, reg, capture_id)."""
    reg = register_task_agent(s, app)
    t = create(s, app=app)
    st, b = claim_capture(s, t["id"], reg["agent_id"], **claim_fields)
    assert st == 201, b
    return t, reg, b["capture_id"]


def test_snapshots_give_timeline_flame_top_and_profile(sonded, tmp_path):
    s = sonded
    t, reg, cid = claimed(s, trace_id="abc-123", total_ms=1500, snapshots=3)
    cap = s.ok("GET", f"/api/v1/captures/{cid}")
    assert cap["state"] == "uploading" and cap["timeline"] == [] and cap["profile_bytes"] == 0
    st, b, _ = s.request("GET", f"/api/v1/captures/{cid}/flame")
    assert st == 404 and b["error"] == f"capture {cid} has no snapshots yet"
    st, b, _ = s.request("GET", f"/api/v1/captures/{cid}/profile")
    assert st == 404 and "no snapshots yet" in b["error"]

    data = encode_snapshots(SNAPSHOTS)
    st, b = agent_req(s, "PUT", f"/api/v1/agent/captures/{cid}/snapshots", data)
    assert st == 201 and b == {"capture_id": cid, "snapshots": 3, "bytes": len(data)}, b

    cap = s.ok("GET", f"/api/v1/captures/{cid}")
    assert cap["state"] == "complete" and cap["snapshots"] == 3
    assert cap["profile_bytes"] == len(data)
    assert (cap["task_id"], cap["agent_id"], cap["slot"], cap["app"], cap["trace_id"]) == \
        (t["id"], reg["agent_id"], 1, "shop", "abc-123")
    assert cap["interface"] == "GET /slow" and cap["total_ms"] == 1500
    assert cap["response_code"] == 200 and cap["peer"] == "10.0.0.7:51234"
    tl = cap["timeline"]
    assert [x["snapshot"] for x in tl] == [1, 2, 3]
    assert [x["offset_ms"] for x in tl] == [200.0, 300.4, 400.1]
    assert [x["state"] for x in tl] == ["running", "running", "sleeping"]
    assert [x["syscall"] for x in tl] == [None, None, "poll"]
    assert {x["thread"] for x in tl} == {"demo-worker"} and tl[0]["thread_id"] == 4242
    assert tl[0]["frames"] == ["compute", "handle_slow", "serve", "main"]
    assert tl[2]["frames"][0] == "poll"

    fl = s.ok("GET", f"/api/v1/captures/{cid}/flame")
    assert fl["type"] == "samples" and fl["unit"] == "count" and fl["total"] == 3
    assert fl["sessions"] == 1
    assert {"main", "serve", "handle_slow", "compute", "poll"} <= flame_names(fl["tree"])
    assert s.ok("GET", f"/api/v1/captures/{cid}/flamegraph") == fl
    wall = s.ok("GET", f"/api/v1/captures/{cid}/flame?type=wall")
    assert wall["type"] == "wall" and wall["total"] == 3 * 100_000_000
    top = s.ok("GET", f"/api/v1/captures/{cid}/top")
    assert top["functions"][0] == {"name": "compute", "self": 2, "total": 2}
    st, b, _ = s.request("GET", f"/api/v1/captures/{cid}/flame?type=cpu")
    assert st == 400 and "samples, wall" in b["error"]
    fl_label = s.ok("GET", f"/api/v1/captures/{cid}/flame?label=state:sleeping")
    assert fl_label["total"] == 1

    st, raw, h = s.request("GET", f"/api/v1/captures/{cid}/profile", raw=True)
    assert st == 200 and raw == data
    assert h["Content-Type"] == "application/octet-stream"
    assert f"capture-{cid}.pb.gz" in h["Content-Disposition"]
    path = tmp_path / "capture.pb.gz"
    path.write_bytes(raw)
    top = pprof_top(path, sample_index="samples")
    assert top.flat.get("compute") == 2 and top.flat.get("poll") == 1

    # A second upload is refused and changes nothing.
    st, b = agent_req(s, "PUT", f"/api/v1/agent/captures/{cid}/snapshots",
                      encode_snapshots(SNAPSHOTS[:1]))
    assert st == 409 and "already has its snapshots" in b["error"]
    assert s.ok("GET", f"/api/v1/captures/{cid}")["timeline"] == tl


def test_timeline_keeps_at_most_64_frames_leaf_first(sonded):
    s = sonded
    _, _, cid = claimed(s)
    deep = [f"f{i}" for i in range(100)]   # root f0 … leaf f99
    st, b = agent_req(s, "PUT", f"/api/v1/agent/captures/{cid}/snapshots",
                      encode_snapshots([{"frames": deep, "offset_ms": 250}]))
    assert st == 201, b
    (snap,) = s.ok("GET", f"/api/v1/captures/{cid}")["timeline"]
    assert snap["frames"] == [f"f{i}" for i in range(99, 35, -1)]
    assert snap["syscall"] is None


def test_task_captures_table_sorts_by_each_column(sonded):
    s = sonded
    regs = [register_task_agent(s, "shop", f"web-{i}") for i in range(2)]
    t = create(s, max_samples=5)
    rows = [("c", 900, 500, "10.0.0.3:1"), ("a", 1200, 200, "10.0.0.1:1"),
            ("b", 700, 404, "10.0.0.2:1")]
    for i, (trace, total, code, peer) in enumerate(rows):
        st, b = claim_capture(s, t["id"], regs[i % 2]["agent_id"], trace_id=trace,
                              total_ms=total, response_code=code, peer=peer,
                              start_ms=1_700_000_000_000 + i * 10)
        assert st == 201, b
    url = f"{TASKS}/{t['id']}/captures"

    def col(q, key="trace_id"):
        return [c[key] for c in s.ok("GET", f"{url}{q}")["captures"]]

    assert col("") == ["c", "a", "b"]
    assert col("?sort=slot&order=desc") == ["b", "a", "c"]
    assert col("?sort=trace_id") == ["a", "b", "c"]
    assert col("?sort=total_ms&order=desc") == ["a", "c", "b"]
    assert col("?sort=response_code") == ["a", "b", "c"]
    assert col("?sort=peer&order=desc") == ["c", "b", "a"]
    assert col("?sort=start_ms&order=desc") == ["b", "a", "c"]
    assert col("?sort=interface") == ["c", "a", "b"]
    body = s.ok("GET", url)
    assert body["task_id"] == t["id"] and len(body["captures"]) == 3
    for q, frag in [("?sort=size", "'sort'"), ("?order=up", "'order'"), ("?sort=", "'sort'")]:
        st, b, _ = s.request("GET", f"{url}{q}")
        assert st == 400 and frag in b["error"], (q, b)


def test_bad_snapshot_uploads_are_refused_and_store_nothing(sonded):
    s = sonded
    t, reg, cid = claimed(s)
    good = encode_snapshots(SNAPSHOTS)
    path = f"/api/v1/agent/captures/{cid}/snapshots"
    for body, status, frag in [(good[:len(good) // 2], 400, "corrupt"),
                               (b"garbage that is no profile", 400, "corrupt"),
                               (good + b"trailing", 400, "corrupt"),
                               (b"", 400, "empty body")]:
        st, b = agent_req(s, "PUT", path, body)
        assert st == status and frag in b["error"], (status, b)
        cap = s.ok("GET", f"/api/v1/captures/{cid}")
        assert cap["state"] == "uploading" and cap["timeline"] == []
    # Other roles may not upload.
    st, _, _ = s.request("PUT", path, good)
    assert st == 403
    # After all that, the good upload goes through and everything is intact.
    st, b = agent_req(s, "PUT", path, good)
    assert st == 201 and b["snapshots"] == 3
    got = s.ok("GET", f"{TASKS}/{t['id']}")
    assert got["state"] == "running" and got["captures"] == 1
    assert [c["state"] for c in s.ok("GET", f"{TASKS}/{t['id']}/captures")["captures"]] == \
        ["complete"]


def test_snapshot_upload_over_the_profile_limit_is_413(sonded_factory):
    s = sonded_factory(args=["--max-profile-mb", "1"])
    _, _, cid = claimed(s)
    bomb = gzip.compress(b"\0" * (2 << 20))
    st, b = agent_req(s, "PUT", f"/api/v1/agent/captures/{cid}/snapshots", bomb)
    assert st == 413 and "1 MiB" in b["error"]


# --------------------------------------------------------------------------
# Traces
# --------------------------------------------------------------------------

def test_trace_lookup_finds_captures_and_session_spans(sonded):
    s = sonded
    t, reg, cid = claimed(s, trace_id="trace:42.a_b-c")
    data = encode_pprof([
        (["main", "serve", "handle_slow"], [3, 30_000_000],
         {"trace_id": "trace:42.a_b-c", "interface": "GET /slow"}),
        (["main", "serve", "handle_fast"], [2, 20_000_000],
         {"trace_id": "other", "interface": "GET /fast"}),
        (["main", "serve", "handle_slow", "compute"], [4, 40_000_000],
         {"trace_id": "trace:42.a_b-c", "interface": "GET /slow"}),
        (["main", "idle"], [5, 50_000_000], {}),
        (["main", "weird"], [1, 10_000_000], {"trace_id": "not/ok id"}),
    ])
    sid = s.upload(reg["agent_id"], data)
    q = urllib.parse.quote("trace:42.a_b-c", safe="")
    got = s.ok("GET", f"/api/v1/traces/{q}")
    assert got["trace_id"] == "trace:42.a_b-c"
    assert [c["id"] for c in got["captures"]] == [cid]
    assert got["captures"][0]["task_id"] == t["id"]
    (span,) = got["sessions"]
    assert (span["session_id"], span["interface"], span["samples"]) == (sid, "GET /slow", 7)
    assert span["session"]["id"] == sid and span["session"]["has_profile"]
    other = s.ok("GET", "/api/v1/traces/other")
    assert other["captures"] == [] and [x["samples"] for x in other["sessions"]] == [2]
    assert s.ok("GET", "/api/v1/traces/nothing-here") == \
        {"trace_id": "nothing-here", "captures": [], "sessions": []}
    for bad in ["t" * 64, "a%20b", "%C3%A9", "a*b", "x" * 255]:
        st, b, _ = s.request("GET", f"/api/v1/traces/{bad}")
        assert st == 400 and "trace id must be 1 to 63 characters" in b["error"], (bad, b)
    st, b, _ = s.request("GET", "/api/v1/traces/" + "x" * 256)
    assert st == 404
    assert s.ok("GET", "/api/v1/traces/" + "t" * 63)["sessions"] == []
