"""
test_active_profiling.py — slow-call tasks end to end (SPEC B, issue 6):
a real sonded, the real demo service with libsonde.so preloaded, tasks
made through the people's API, and what a user then sees: the captures of
the slow calls of one interface with their snapshot timelines, flame graph,
pprof and trace, the task's state and its log.

What is asserted is what the issue promises: calls of 1.5 s with threshold
200 ms and frequency 100 ms give 13 +- 1 snapshots 100 +- 10 ms apart
showing the demo's slow function; faster calls and other interfaces are
never captured; a call blocked in poll() is captured from inside poll and
its poll still lasts its whole time; maximum samples hold exactly over two
agents under load, the task ends "limit-reached" and its log tells the
story in order; cancelled and expired tasks stop the agents.
"""

import json
import re
import time
import urllib.request

import pytest

from conftest import SAN, list_agents, pprof, set_profiling, stays, wait_for

SLOW = 2.5 if SAN else 1.0
ALL_OFF = dict(cpu=False, memory=False, sampling=False)


@pytest.fixture
def server(sonded_factory):
    return sonded_factory(args=["--heartbeat-s", "2"])


# -- helpers -------------------------------------------------------------------

def wait_agents(s, app, pids, timeout=10 * SLOW):
    want = set(pids)

    def ready():
        ags = [a for a in list_agents(s, app=app) if a["status"] == "running"]
        return ags if {a["pid"] for a in ags} == want else None

    return wait_for(ready, timeout, f"running agents of {app!r} to be pids {sorted(want)}")


def create_task(s, app, interface, **fields):
    body = dict(app=app, interface=interface, duration_min=5, threshold_ms=200,
                frequency_ms=100, max_samples=10)
    body.update(fields)
    return s.ok("POST", "/api/v1/tasks", body, expect=201)


def task(s, tid):
    return s.ok("GET", f"/api/v1/tasks/{tid}")


def task_log(s, tid):
    return s.ok("GET", f"/api/v1/tasks/{tid}/logs")["logs"]


def captures(s, tid, **params):
    q = "&".join(f"{k}={v}" for k, v in params.items())
    return s.ok("GET", f"/api/v1/tasks/{tid}/captures" + (f"?{q}" if q else ""))["captures"]


def wait_watching(s, tid, pids, timeout=10 * SLOW):
    """Waits until every agent pid reported "started" for task tid."""
    want = set(pids)

    def ready():
        ags = task(s, tid)["agents"]
        return ags if {a["pid"] for a in ags if a["started_ms"]} >= want else None

    return wait_for(ready, timeout, lambda: f"agents {sorted(want)} to start watching task {tid} "
                    f"(task: {task(s, tid)}, log: {task_log(s, tid)})")


def wait_captures(s, tid, n, timeout):
    """The task's captures once n of them are complete (snapshots stored)."""
    def ready():
        cs = captures(s, tid)
        return cs if sum(c["state"] == "complete" for c in cs) >= n else None

    return wait_for(ready, timeout, lambda: f"{n} complete captures of task {tid} "
                    f"(have {captures(s, tid)}; log {task_log(s, tid)})")


def call(base, path, trace_id=None, timeout=30):
    """GET base+path -> (status, body text, seconds)."""
    hdr = {"X-Trace-Id": trace_id} if trace_id else {}
    t0 = time.monotonic()
    with urllib.request.urlopen(urllib.request.Request(base + path, headers=hdr),
                                timeout=timeout) as r:
        return r.status, r.read().decode(), time.monotonic() - t0


def intervals(timeline):
    offs = [x["offset_ms"] for x in timeline]
    return [b - a for a, b in zip(offs, offs[1:])]


# -- the slow calls of one interface ---------------------------------------------

def test_slow_calls_snapshotted_every_frequency(server, hosts, tmp_path):
    s = server
    set_profiling(s, **ALL_OFF)
    d = hosts.demo(s, app="shop", instance="shop-1", args=["--threads", "8"])
    wait_agents(s, "shop", [d.pid])
    t = create_task(s, "shop", "GET /cpu", threshold_ms=200, frequency_ms=100, max_samples=10)
    wait_watching(s, t["id"], [d.pid])

    # Fast calls of the watched interface, slow calls of another one.
    for i in range(10):
        assert call(d.url, "/cpu?ms=20", f"fast{i:028d}")[0] == 200
    assert call(d.url, "/slow?ms=600", "other" + "0" * 27)[0] == 200
    # Three slow calls of the watched interface, one after the other (a
    # 2-core machine: calls at once would measure the scheduler).
    ids = [f"{i:x}" * 32 for i in (10, 11, 12)]
    for tid in ids:
        st, body, _ = call(d.url, "/cpu?ms=1500", tid)
        assert st == 200, body

    cs = wait_captures(s, t["id"], 3, 15 * SLOW)
    stays(lambda: len(captures(s, t["id"])) == 3, 2.0,
          lambda: f"only the 3 slow calls captured (have {captures(s, t['id'])})")
    assert sorted(c["trace_id"] for c in cs) == sorted(ids), cs
    for c in cs:
        assert c["interface"] == "GET /cpu" and c["app"] == "shop" and c["pid"] == d.pid, c
        assert c["response_code"] == 200 and c["peer"] and "127.0.0.1" in c["peer"], c
        assert 1450 <= c["total_ms"] <= 1500 + 400 * SLOW, c
        x = s.ok("GET", f"/api/v1/captures/{c['id']}")
        tl = x["timeline"]
        assert 12 <= len(tl) <= 14 and x["snapshots"] == len(tl), \
            f"capture {c['id']}: {len(tl)} snapshots (want 13 +- 1): {[e['offset_ms'] for e in tl]}"
        # The first at the threshold (a running thread answers its signal
        # when the scheduler next runs it: a few ms).
        assert 199 <= tl[0]["offset_ms"] <= 230, [e["offset_ms"] for e in tl]
        gaps = intervals(tl)
        assert all(90 <= g <= 110 for g in gaps), f"snapshot intervals {gaps}"
        with_fn = [e for e in tl if "demo_checksum_work" in e["frames"]]
        assert len(with_fn) >= len(tl) - 1, \
            f"demo_checksum_work in {len(with_fn)} of {len(tl)} snapshots: {tl[:3]}"
        assert all(e["state"] == "running" for e in with_fn), tl

    # The capture's flame graph, its pprof (read by go tool pprof), its trace.
    c = cs[0]
    flame = s.ok("GET", f"/api/v1/captures/{c['id']}/flame")
    assert "demo_checksum_work" in json.dumps(flame["tree"])
    st, body, _ = s.request("GET", f"/api/v1/captures/{c['id']}/profile", raw=True)
    assert st == 200
    path = tmp_path / "capture.pb.gz"
    path.write_bytes(body)
    assert "demo_checksum_work" in pprof("-top", path)
    tr = s.ok("GET", f"/api/v1/traces/{c['trace_id']}")
    assert [x["id"] for x in tr["captures"]] == [c["id"]], tr
    # The table sorts.
    by_total = captures(s, t["id"], sort="total_ms", order="desc")
    assert [x["total_ms"] for x in by_total] == sorted((x["total_ms"] for x in cs), reverse=True)


def test_blocked_call_captured_inside_poll_without_interrupting_it(server, hosts):
    s = server
    set_profiling(s, **ALL_OFF)
    d = hosts.demo(s, app="io", instance="io-1")
    wait_agents(s, "io", [d.pid])
    t = create_task(s, "io", "GET /slow", threshold_ms=200, frequency_ms=50, max_samples=5)
    wait_watching(s, t["id"], [d.pid])

    st, body, secs = call(d.url, "/slow?ms=2000", "b" * 32)
    assert st == 200, body
    answer = json.loads(body)
    assert answer["interrupted"] is False and answer["slept_ms"] >= 2000, \
        f"the watched call's poll() was cut short: {answer}"
    c = wait_captures(s, t["id"], 1, 10 * SLOW)[0]
    assert c["trace_id"] == "b" * 32 and 1990 <= c["total_ms"] <= 2000 + 400 * SLOW, c
    tl = s.ok("GET", f"/api/v1/captures/{c['id']}")["timeline"]
    # (2000 - 200) / 50 + 1 = 37 snapshots.
    assert 35 <= len(tl) <= 38, [e["offset_ms"] for e in tl]
    for e in tl:
        assert e["state"] == "sleeping" and e["syscall"] in ("poll", "ppoll"), e
        assert any("poll" in f for f in e["frames"][:3]), e["frames"][:6]
        assert "demo_slow_io" in e["frames"], e["frames"]


# -- the limit, over two agents ---------------------------------------------------

def test_max_samples_hold_over_two_agents_under_load(server, hosts, load_clients):
    s = server
    set_profiling(s, **ALL_OFF)
    ds = [hosts.demo(s, app="shop", instance=f"shop-{i}", args=["--threads", "6"]) for i in (1, 2)]
    wait_agents(s, "shop", [d.pid for d in ds])
    t = create_task(s, "shop", "GET /cpu", threshold_ms=50, frequency_ms=20, max_samples=3)
    wait_watching(s, t["id"], [d.pid for d in ds])

    loads = [load_clients(d.url, ["/cpu?ms=150", "/fast"], threads=3) for d in ds]
    wait_for(lambda: task(s, t["id"])["state"] == "limit-reached", 20 * SLOW,
             lambda: f"task {t['id']} to reach its limit: {task(s, t['id'])}")
    # Load goes on; the captures stay 3.
    stays(lambda: len(captures(s, t["id"])) == 3, 3.0,
          lambda: f"exactly 3 captures (have {captures(s, t['id'])})")
    for ld in loads:
        ld.stop()
        assert not ld.errors, ld.errors[:5]
    cs = wait_captures(s, t["id"], 3, 10 * SLOW)
    assert sorted(c["slot"] for c in cs) == [1, 2, 3]
    x = task(s, t["id"])
    assert x["captures"] == 3 and x["ended_ms"], x

    # The log, in order: created; each agent delivered, then started; three
    # captures; limit reached; each agent stopped within a heartbeat (2 s).
    log = task_log(s, t["id"])
    ev = [e["event"] for e in log]
    assert ev[0] == "created", log
    pids = {d.pid for d in ds}
    for pid in pids:
        mine = [e["event"] for e in log if e.get("pid") == pid]
        assert mine.index("delivered") < mine.index("started") < mine.index("stopped"), log
        # The task reached each running agent within 2 s of its creation.
        started = next(e for e in log if e.get("pid") == pid and e["event"] == "started")
        assert started["ts_ms"] - log[0]["ts_ms"] <= 2000, log
    caps = [i for i, e in enumerate(ev) if e == "capture"]
    lim = ev.index("limit-reached")
    assert len(caps) == 3 and max(caps) < lim, log
    assert all(e["event"] != "capture" for e in log[lim:]), log
    t_lim = log[lim]["ts_ms"]
    stops = [e for e in log if e["event"] == "stopped"]
    assert {e["pid"] for e in stops} == pids, log
    assert all(t_lim <= e["ts_ms"] <= t_lim + 2000 + 1000 * SLOW for e in stops), log


def test_cancelled_and_expired_tasks_stop_the_agent(sonded_factory, hosts):
    # A task minute of 400 ms: a 5-minute task lasts 2 s.
    s = sonded_factory(args=["--heartbeat-s", "2", "--task-minute-ms", "400"])
    set_profiling(s, **ALL_OFF)
    d = hosts.demo(s, app="shop", instance="shop-1")
    wait_agents(s, "shop", [d.pid])

    t = create_task(s, "shop", "GET /cpu", threshold_ms=50, frequency_ms=20)
    wait_watching(s, t["id"], [d.pid])
    wait_for(lambda: task(s, t["id"])["state"] == "expired", 10 * SLOW, "the task to expire")
    wait_for(lambda: any(e["event"] == "stopped" for e in task_log(s, t["id"])), 5 * SLOW,
             lambda: f"the agent to stop watching the expired task: {task_log(s, t['id'])}")
    call(d.url, "/cpu?ms=300")
    stays(lambda: captures(s, t["id"]) == [], 1.0, "no capture after the task expired")

    t2 = create_task(s, "shop", "GET /slow", threshold_ms=50, frequency_ms=20)
    wait_watching(s, t2["id"], [d.pid])
    assert s.ok("POST", f"/api/v1/tasks/{t2['id']}/cancel")["state"] == "cancelled"
    wait_for(lambda: any(e["event"] == "stopped" for e in task_log(s, t2["id"])), 5 * SLOW,
             lambda: f"the agent to stop watching the cancelled task: {task_log(s, t2['id'])}")
    call(d.url, "/slow?ms=300")
    stays(lambda: captures(s, t2["id"]) == [], 1.0, "no capture after the task was cancelled")
    ev = [e["event"] for e in task_log(s, t2["id"])]
    assert ev.index("cancelled") < ev.index("stopped"), ev
    assert re.fullmatch(r"\d+", str(task(s, t2["id"])["ended_ms"]))
