"""
test_agent_online.py — the agent in server mode, end to end: real programs
with libsonde.so preloaded (SONDE_SERVER=...) against a real sonded.

What a user sees: agents register and show as running; Profile Now reaches
every running agent of the workspace or of one app and each one's session
arrives with a profile; the CPU and memory triggers fire on the process's
own capacity (a cgroup's memory limit, never counting page cache) and then
cool down; request spans of the demo service label the samples (traces
count, endpoint filter); the host is unaffected when the server is killed,
slow or never there, and what it profiled meanwhile arrives later; a
prefork master's workers are agents of their own; a clean exit marks the
agent stopped.

The defaults are on (triggers at 80 %, default sampling), so every test
sets what it needs for the workspace before any agent starts.  sonded runs
with --heartbeat-s 2 so the agents' CPU % and memory % show within
seconds.
"""

import os
import socket
import time

import pytest

from conftest import (SAN, SONDE, free_port, decode_pprof, flame_names, list_agents,
                      list_sessions, median, mem_available_bytes, mem_total_bytes, pprof,
                      pprof_top, prog, session_flamegraph, set_profiling, stays, wait_for)

# Timing slack: an ASan build runs everything 2-3x slower.
SLOW = 2.5 if SAN else 1.0
REGISTER_TIMEOUT = 10 * SLOW
MIB = 1 << 20
ALL_OFF = dict(cpu=False, memory=False, sampling=False)


@pytest.fixture
def server(sonded_factory):
    return sonded_factory(args=["--heartbeat-s", "2"])


def process_cpu_seconds(pid):
    """utime + stime of a process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_agents(s, app, pids, timeout=REGISTER_TIMEOUT):
    """Waits until app's running agents are exactly the processes pids
    -> {pid: agent}."""
    want = set(pids)

    def ready():
        ags = [a for a in list_agents(s, app=app) if a["status"] == "running"]
        return {a["pid"]: a for a in ags} if {a["pid"] for a in ags} == want else None

    return wait_for(ready, timeout, lambda: f"running agents of {app!r} to be pids "
                    f"{sorted(want)} (have {[(a['pid'], a['status']) for a in list_agents(s)]})")


def profile_now(s, duration_s, app=None, expect_agents=None):
    body = {"duration_s": duration_s}
    if app is not None:
        body["app"] = app
    req = s.ok("POST", "/api/v1/profile-now", body, expect=201)
    if expect_agents is not None:
        assert req["agents"] == expect_agents, req
    return req


def request_sessions(s, req):
    return [x for x in list_sessions(s, triggered_by="profile-now")
            if x["request_id"] == req["id"]]


def wait_request_sessions(s, req, n, timeout):
    """The n sessions of Profile Now request req, once all have started."""
    return wait_for(lambda: (lambda xs: xs if len(xs) >= n else None)(request_sessions(s, req)),
                    timeout, lambda: f"{n} sessions for Profile Now request {req['id']} "
                    f"(have {list_sessions(s)})")


def wait_completed(s, ids, timeout):
    """Waits until every session id is completed with a profile -> the
    session objects."""
    def done():
        xs = [s.ok("GET", f"/api/v1/sessions/{i}") for i in ids]
        return xs if all(x["state"] == "completed" and x["has_profile"] for x in xs) else None

    return wait_for(done, timeout, lambda: f"sessions {ids} to be completed with a profile "
                    f"(now {[s.ok('GET', f'/api/v1/sessions/{i}') for i in ids]})")


def session_profile(s, sid):
    st, body, _ = s.request("GET", f"/api/v1/sessions/{sid}/profile", raw=True)
    assert st == 200, f"GET profile of session {sid}: {st} {body[:200]!r}"
    return body


def save_profile(s, sid, directory):
    p = directory / f"session-{sid}.pb.gz"
    p.write_bytes(session_profile(s, sid))
    return p


# --------------------------------------------------------------------------
# Profile Now
# --------------------------------------------------------------------------

def test_profile_now_all_then_one_app(server, hosts, load_clients, tmp_path):
    s = server
    set_profiling(s, **ALL_OFF)
    shop = [hosts.demo(s, app="shop", instance=f"shop-{i}") for i in (1, 2)]
    # No SONDE_INSTANCE: the instance is the host name.
    batch = hosts.start([prog("burn")], s, app="batch", instance=None)
    want = {shop[0].pid: ("shop", "shop-1"), shop[1].pid: ("shop", "shop-2"),
            batch.pid: ("batch", socket.gethostname())}
    wait_agents(s, "shop", [h.pid for h in shop])
    wait_agents(s, "batch", [batch.pid])
    for h in shop:
        load_clients(h.url, ["/cpu"], threads=2)

    # Profile Now for every app: one session per agent, within 2 s.
    req = profile_now(s, 3, expect_agents=3)
    started = wait_request_sessions(s, req, 3, 5 * SLOW)
    assert len(started) == 3, started
    assert {x["pid"]: (x["app"], x["instance"]) for x in started} == want, started
    for x in started:
        assert x["start_ms"] - req["created_ms"] <= 2000 * SLOW, \
            f"session {x['id']} started {x['start_ms'] - req['created_ms']} ms after the request"
    done = wait_completed(s, [x["id"] for x in started], (3 + 15) * SLOW)
    for x in done:
        assert x["samples"] > 0, x
        assert 2 <= x["duration_s"] <= 3 + 2 * SLOW, x
        assert x["cpu_pct"] is not None and x["mem_pct"] is not None, x
        assert x["profile_types"] == ["cpu"], x
    by_pid = {x["pid"]: x for x in done}
    assert by_pid[batch.pid]["traces"] == 0, by_pid[batch.pid]
    assert by_pid[batch.pid]["cpu_pct"] > 0, by_pid[batch.pid]
    for h in shop:
        x = by_pid[h.pid]
        assert x["traces"] > 0, f"/cpu was under load during the session: {x}"
        names = flame_names(session_flamegraph(s, x["id"])["tree"])
        assert "demo_checksum_work" in names, f"session {x['id']}: {sorted(names)[:80]}"
        top = pprof_top(save_profile(s, x["id"], tmp_path))
        assert "demo_checksum_work" in top, top.text
    names = flame_names(session_flamegraph(s, by_pid[batch.pid]["id"])["tree"])
    assert "burn_work" in names, sorted(names)

    # Profile Now for app shop: its two agents only.
    req2 = profile_now(s, 3, app="shop", expect_agents=2)
    started2 = wait_request_sessions(s, req2, 2, 5 * SLOW)
    assert sorted(x["pid"] for x in started2) == sorted(h.pid for h in shop), started2
    wait_completed(s, [x["id"] for x in started2], (3 + 15) * SLOW)
    assert len(request_sessions(s, req2)) == 2
    batch_sessions = list_sessions(s, app="batch")
    assert [x["request_id"] for x in batch_sessions] == [req["id"]], batch_sessions
    assert len(list_sessions(s)) == 5, list_sessions(s)


# --------------------------------------------------------------------------
# Triggers
# --------------------------------------------------------------------------

def test_cpu_trigger_fires_once_then_cools_down(server, hosts):
    s = server
    set_profiling(s, cpu={"threshold": 20, "duration_s": 10, "cooldown_s": 600},
                  memory=False, sampling=False)
    b = hosts.start([prog("burn")], s, app="hot", instance="hot-1")
    wait_agents(s, "hot", [b.pid])

    first = wait_for(lambda: list_sessions(s, app="hot"), 10 * SLOW,
                     "a session once the burner is past 20 % CPU")
    cpu0, t0 = process_cpu_seconds(b.pid), time.time()
    assert [(x["triggered_by"], x["pid"]) for x in first] == [("cpu-trigger", b.pid)], first
    sid = first[0]["id"]
    # The CPU the burner really used over (nearly) the session's 10 s, as a
    # percent of the CPUs it may run on: what the session's cpu_pct says.
    end = first[0]["start_ms"] / 1000 + 10
    wait_for(lambda: time.time() >= end, 15, "the session's planned end")
    used = 100 * (process_cpu_seconds(b.pid) - cpu0) / (time.time() - t0) / \
        len(os.sched_getaffinity(b.pid))
    x = wait_completed(s, [sid], 15 * SLOW)[0]
    assert 9 <= x["duration_s"] <= 12, f"a 10 s trigger session lasted {x['duration_s']} s: {x}"
    assert x["samples"] > 0, x
    assert abs(x["cpu_pct"] - used) <= max(8, used / 4), \
        f"session cpu_pct {x['cpu_pct']:.1f}, the burner used {used:.1f} % of its CPUs: {x}"
    names = flame_names(session_flamegraph(s, sid)["tree"])
    assert "burn_work" in names, sorted(names)

    # Cooldown 600 s from the end of that session: nothing more, although
    # the burner stays far over the threshold.
    stays(lambda: [y["id"] for y in list_sessions(s, app="hot")] == [sid], 15,
          lambda: f"one session only during the cooldown (have {list_sessions(s, app='hot')})")
    agent = list_agents(s, app="hot")[0]
    assert agent["cpu_pct"] is not None and agent["cpu_pct"] > 0, agent


def test_cpu_trigger_cooldown_counts_from_session_end(server, hosts):
    s = server
    set_profiling(s, **ALL_OFF)
    b = hosts.start([prog("burn")], s, app="warm", instance="warm-1")
    wait_agents(s, "warm", [b.pid])
    # Settings reach a running agent without a restart.
    stays(lambda: not list_sessions(s, app="warm"), 2, "no session with the trigger off")
    set_profiling(s, cpu={"threshold": 20, "duration_s": 10, "cooldown_s": 4})
    t_on = time.time()
    wait_for(lambda: list_sessions(s, app="warm"), 5 * SLOW,
             "a cpu-trigger session once the trigger is turned on")
    assert list_sessions(s, app="warm")[0]["start_ms"] / 1000 - t_on < 4 * SLOW
    two = wait_for(lambda: (lambda xs: xs if len(xs) >= 2 else None)(
        list_sessions(s, app="warm")), (10 + 4 + 10) * SLOW,
        lambda: f"a second cpu-trigger session after the cooldown "
        f"(have {list_sessions(s, app='warm')})")
    first, second = two[0], two[1]
    assert {x["triggered_by"] for x in two} == {"cpu-trigger"}, two
    first = wait_completed(s, [first["id"]], 10 * SLOW)[0]
    gap = second["start_ms"] - (first["start_ms"] + first["duration_s"] * 1000)
    # Cooldown from the END of the first session: 4 s, give or take the
    # 1 s evaluation tick and the session's whole-second duration.
    print(f"second session began {gap} ms after the first ended (cooldown 4 s)")
    assert 4000 - 1000 <= gap <= 4000 + 3000 * SLOW, \
        f"second session began {gap} ms after the first ended (cooldown 4 s): {two}"


class MemoryScene:
    """Where the memory trigger is tested: a 256 MiB cgroup (512 MiB under
    ASan, whose shadow memory is resident) with threshold 30, or else the
    machine (threshold 1 % of MemTotal).  .trip: bytes of working set at
    the threshold; .wrap(argv); .working_set(pid)."""

    def __init__(self, memory_cgroup):
        limit = (512 if SAN else 256) * MIB
        self.cg = memory_cgroup(limit)
        if self.cg is not None:
            self.threshold, self.capacity = 30, limit
            self.where = f"cgroup {self.cg.path} (limit {limit // MIB} MiB)"
        else:
            total = mem_total_bytes()
            self.threshold, self.capacity = 1, total
            self.where = f"the machine (MemTotal {total // MIB} MiB; {memory_cgroup.why})"
            if mem_available_bytes() < 3 * total // 100 + 512 * MIB:
                pytest.skip(f"no memory cgroup ({memory_cgroup.why}) and too little free memory "
                            f"to cross 1 % of MemTotal")
        self.trip = self.capacity * self.threshold // 100

    def wrap(self, argv):
        return self.cg.wrap(argv) if self.cg else argv

    def working_set(self, pid):
        """What the contract counts: the cgroup's usage minus inactive file
        cache, else the process's RssAnon + RssShmem."""
        if self.cg:
            return self.cg.working_set()
        kb = 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("RssAnon:", "RssShmem:")):
                    kb += int(line.split()[1])
        return kb * 1024


def grow_until(h, scene, target, held=0, step_mib=8):
    """Makes memgrow (holding `held` MiB) grow in steps until the working
    set reaches target; returns what it holds then."""
    while scene.working_set(h.pid) < target:
        held += step_mib
        h.send(f"grow {step_mib}")
        h.wait_line(rf"^held_mib={held}$", 10 * SLOW)
        assert held * MIB < 4 * target, f"working set stays below {target} bytes"
    return held


def test_default_sampling_profiles_one_window_per_period(server, hosts):
    """Default sampling (SPEC A3): one window of window_s at a random
    moment of every period_s — here 10 s in the first 60 s period, which
    starts when the agent gets the settings."""
    s = server
    set_profiling(s, cpu=False, memory=False, sampling={"window_s": 10, "period_s": 60})
    b = hosts.start([prog("burn")], s, app="steady", instance="steady-1")
    t_start = time.time()
    wait_agents(s, "steady", [b.pid])
    first = wait_for(lambda: list_sessions(s, app="steady"), (50 + 10) * SLOW,
                     "a default-sampling window within the first 60 s period")
    assert [(x["triggered_by"], x["pid"]) for x in first] == [("default-sampling", b.pid)], first
    # The window starts at most period - window = 50 s into the period.
    assert first[0]["start_ms"] / 1000 - t_start <= 50 + 5 * SLOW, first
    x = wait_completed(s, [first[0]["id"]], 20 * SLOW)[0]
    assert 9 <= x["duration_s"] <= 12 and x["samples"] > 0, x
    assert "burn_work" in flame_names(session_flamegraph(s, x["id"])["tree"])
    # Still the one window of this period.
    assert [y["id"] for y in list_sessions(s, app="steady")] == [x["id"]]


def test_memory_trigger_in_cgroup(server, hosts, memory_cgroup):
    s = server
    scene = MemoryScene(memory_cgroup)
    set_profiling(s, cpu=False, sampling=False,
                  memory={"threshold": scene.threshold, "duration_s": 10, "cooldown_s": 600})
    h = hosts.start(scene.wrap([prog("memgrow")]), s, app="grower", instance="grow-1",
                    stdin=True)
    h.wait_line(r"^memgrow_pid=")
    wait_agents(s, "grower", [h.pid])
    base = scene.working_set(h.pid)
    assert base < scene.trip // 2, (f"working set {base // MIB} MiB at start, already near "
                                    f"the threshold in {scene.where}")

    # Half way to the threshold: nothing fires.
    held = grow_until(h, scene, scene.trip // 2)
    stays(lambda: not list_sessions(s, app="grower"), 3 * SLOW,
          lambda: f"no session below the threshold in {scene.where} "
          f"(have {list_sessions(s, app='grower')})")

    # Well past it: a memory-trigger session starts.
    grow_until(h, scene, scene.trip * 13 // 10, held)
    ws = scene.working_set(h.pid)
    first = wait_for(lambda: list_sessions(s, app="grower"), 8 * SLOW,
                     f"a memory-trigger session at a working set of {ws // MIB} MiB "
                     f"(threshold {scene.trip // MIB} MiB in {scene.where})")
    assert [(x["triggered_by"], x["pid"]) for x in first] == [("memory-trigger", h.pid)], first
    x = wait_completed(s, [first[0]["id"]], (10 + 15) * SLOW)[0]
    assert 9 <= x["duration_s"] <= 12, x
    assert x["mem_pct"] >= scene.threshold, \
        f"session mem_pct {x['mem_pct']} for {ws // MIB} MiB of {scene.capacity // MIB} MiB: {x}"
    agent = list_agents(s, app="grower")[0]
    now = scene.working_set(h.pid)
    print(f"{scene.where}: working set {ws // MIB} MiB -> session mem_pct {x['mem_pct']}, "
          f"agent mem_pct {agent['mem_pct']}, working set now {now // MIB} MiB")
    # The memory % is the working set over the capacity, as the test
    # counts it from the same files.
    want = 100 * now / scene.capacity
    assert abs(x["mem_pct"] - want) <= 0.1 * want + 0.1 * scene.threshold, \
        f"session mem_pct {x['mem_pct']:.2f}, the working set is {want:.2f} % of capacity"
    assert agent["mem_pct"] is not None and agent["mem_pct"] >= scene.threshold, agent
    assert [y["id"] for y in list_sessions(s, app="grower")] == [x["id"]]


def test_memory_trigger_ignores_page_cache(server, hosts, memory_cgroup, tmp_path):
    s = server
    scene = MemoryScene(memory_cgroup)
    size = (200 * MIB if scene.cg and not SAN else scene.trip * 3 // 2 + 64 * MIB)
    big = tmp_path / "big.bin"
    block = os.urandom(MIB)
    with open(big, "wb") as f:
        for _ in range(size // MIB):
            f.write(block)
    set_profiling(s, cpu=False, sampling=False,
                  memory={"threshold": scene.threshold, "duration_s": 10, "cooldown_s": 600})
    h = hosts.start(scene.wrap([prog("pagecache"), big]), s, app="reader", instance="read-1")
    wait_agents(s, "reader", [h.pid])
    h.wait_line(r"^read_mib=\d+", 60 * SLOW)

    if scene.cg:
        st = scene.cg.stat()
        usage = scene.cg.usage()
        assert usage > scene.trip * 12 // 10, (
            f"the file's pages were not charged to the cgroup (usage {usage // MIB} MiB, "
            f"cache {st.get('total_cache', 0) // MIB} MiB): the test shows nothing")
        ws = scene.cg.working_set()
        if ws >= scene.trip * 8 // 10:
            pytest.skip(f"the kernel keeps {ws // MIB} MiB of the cache active: "
                        f"the working set itself is near the threshold")
    # For a few evaluations (and two heartbeats) nothing fires.
    stays(lambda: not list_sessions(s, app="reader"), 6 * SLOW,
          lambda: f"no memory-trigger session for page cache in {scene.where} "
          f"(have {list_sessions(s, app='reader')})")
    agent = list_agents(s, app="reader")[0]
    if scene.cg:
        print(f"{scene.where}: usage {scene.cg.usage() // MIB} MiB, working set "
              f"{scene.cg.working_set() // MIB} MiB, agent mem_pct {agent['mem_pct']}")
    assert agent["mem_pct"] is not None and agent["mem_pct"] < scene.threshold, agent


# --------------------------------------------------------------------------
# Spans
# --------------------------------------------------------------------------

def test_traces_count_and_endpoint_filter(server, hosts, load_clients, tmp_path):
    s = server
    set_profiling(s, **ALL_OFF)
    d = hosts.demo(s, app="traced", instance="t-1")
    wait_agents(s, "traced", [d.pid])
    load = load_clients(d.url, ["/cpu", "/slow"], threads=4)
    wait_for(lambda: load.done >= 8, 10 * SLOW, "requests to the demo to succeed")

    req = profile_now(s, 4, app="traced", expect_agents=1)
    sid = wait_request_sessions(s, req, 1, 5 * SLOW)[0]["id"]
    x = wait_completed(s, [sid], (4 + 15) * SLOW)[0]
    load.stop()
    assert not load.errors, load.errors[:5]

    prof = decode_pprof(session_profile(s, sid))
    tids = prof.label_values("trace_id")
    assert x["samples"] > 0 and tids, f"no sample carries a trace_id: {x}"
    assert x["traces"] == len(tids), \
        f"session says {x['traces']} traces, its profile has {len(tids)} distinct trace ids"
    sent = set().union(*load.trace_ids.values())
    assert tids <= sent, f"trace ids not from X-Trace-Id: {sorted(tids - sent)[:5]}"
    assert prof.label_values("interface") <= {"GET /cpu", "GET /slow"}, \
        prof.label_values("interface")
    for smp in prof.samples:
        assert ("trace_id" in smp.labels) == ("interface" in smp.labels), smp
    cpu_samples = [smp for smp in prof.samples if smp.labels.get("interface") == "GET /cpu"]
    assert cpu_samples, "no sample labelled interface GET /cpu"
    assert {smp.labels["trace_id"] for smp in cpu_samples} <= load.trace_ids["/cpu"]
    assert any("demo_checksum_work" in smp.frames for smp in cpu_samples)

    # The views: label=interface:GET /cpu keeps that endpoint's stacks only.
    names = flame_names(session_flamegraph(s, sid, label="interface:GET /cpu")["tree"])
    assert "demo_checksum_work" in names and "demo_slow_io" not in names, sorted(names)
    tags = pprof("-tags", save_profile(s, sid, tmp_path))
    assert "trace_id" in tags and "GET /cpu" in tags, tags[:2000]


def test_wall_session_sees_the_slow_endpoint(server, hosts, load_clients):
    """SONDE_TYPES=cpu,wall: a session has both types; the wall view of
    the /slow requests shows where they block, the CPU view barely."""
    s = server
    set_profiling(s, **ALL_OFF)
    d = hosts.demo(s, app="walled", instance="w-1", extra={"SONDE_TYPES": "cpu,wall"})
    wait_agents(s, "walled", [d.pid])
    load = load_clients(d.url, ["/slow", "/cpu"], threads=4)
    wait_for(lambda: load.done >= 8, 10 * SLOW, "requests to the demo to succeed")
    req = profile_now(s, 3, app="walled", expect_agents=1)
    sid = wait_request_sessions(s, req, 1, 5 * SLOW)[0]["id"]
    x = wait_completed(s, [sid], (3 + 15) * SLOW)[0]
    load.stop()
    assert sorted(x["profile_types"]) == ["cpu", "wall"], x
    wall = session_flamegraph(s, sid, type="wall", label="interface:GET /slow")
    assert "demo_slow_io" in flame_names(wall["tree"]), sorted(flame_names(wall["tree"]))
    assert wall["total"] > 0, wall


# --------------------------------------------------------------------------
# Fail-open
# --------------------------------------------------------------------------

def test_fail_open_server_killed_mid_session(server, hosts, load_clients):
    s = server
    set_profiling(s, **ALL_OFF)
    d = hosts.demo(s, app="sturdy", instance="st-1", args=["--threads", "8"])
    # The same service without the agent, under the same load at the same
    # time: the machine's own noise (other work on its 2 CPUs) shows in
    # both, so the ratio of the two rates measures what the agent does.
    control = hosts.demo(agent=False, name="control", args=["--threads", "8"])
    wait_agents(s, "sturdy", [d.pid])
    # /slow is bound by its ~50 ms sleep: 8 clients on 8 server threads
    # give a rate set by latency (~150/s), not by the CPUs.
    load = load_clients(d.url, ["/slow"], threads=8)
    ctl = load_clients(control.url, ["/slow"], threads=8, t0=load.t0)
    wait_for(lambda: load.now() > 5 and load.done > 0 and ctl.done > 0, 15,
             "5 s of load before the session")

    req = profile_now(s, 40, app="sturdy", expect_agents=1)
    first = wait_request_sessions(s, req, 1, 5 * SLOW)[0]
    sid = first["id"]
    assert first["state"] == "running" and not first["has_profile"], first
    t_session = load.now()
    wait_for(lambda: load.now() > t_session + 8, 12, "8 s of load with the session running")
    t_kill = load.now()
    s.kill()
    wait_for(lambda: load.now() > t_kill + 30, 35, "30 s of load with the server gone",
             interval=0.5)
    t_up = load.now()
    s.restart(keep_port=True)

    assert not load.errors, f"{len(load.errors)} failed requests: {load.errors[:5]}"
    # Throughput before the kill (idle agent, then profiling) and with the
    # server gone, each as a ratio to the control's in the same seconds.
    before, during = load.rates(1, t_kill), load.rates(t_kill + 1, t_up)
    cbefore, cduring = ctl.rates(1, t_kill), ctl.rates(t_kill + 1, t_up)
    assert sum(before) > 0 and sum(cbefore) > 0, (before, cbefore)
    ratio_before = sum(before) / sum(cbefore)
    ratio_during = sum(during) / max(1, sum(cduring))
    change = ratio_during / ratio_before - 1
    print(f"throughput vs control: before {ratio_before:.3f}, server gone {ratio_during:.3f} "
          f"({change:+.1%}); medians {median(before)} -> {median(during)} req/s")
    # "Within 5 %": the host must not lose more than 5 % while the server
    # is gone (running faster than before is no failure).
    assert change >= -0.05, (
        f"requests/s relative to the same service without the agent: {ratio_during:.3f} with "
        f"the server gone, {ratio_before:.3f} before ({change:+.1%}); medians: "
        f"{median(during)} vs {median(before)} (control {median(cduring)} vs "
        f"{median(cbefore)})\nagent before {before}\ncontrol before {cbefore}\n"
        f"agent during {during}\ncontrol during {cduring}")

    # The session ends 40 s after it began; its profile arrives once the
    # agent has found the server again (backoff at most 30 s).
    x = wait_completed(s, [sid], 45 * SLOW)[0]
    assert x["duration_s"] >= 35, x
    agent = wait_for(lambda: (lambda a: a if a["status"] == "running" else None)(
        list_agents(s, app="sturdy")[0]), 30 * SLOW, "the agent to be running again")
    assert agent["pid"] == d.pid and agent["dropped_uploads"] == 0, agent
    assert d.alive()


def test_profile_finished_while_server_down_is_uploaded_later(server, hosts, load_clients):
    s = server
    set_profiling(s, **ALL_OFF)
    d = hosts.demo(s, app="queued", instance="q-1")
    wait_agents(s, "queued", [d.pid])
    load = load_clients(d.url, ["/cpu"], threads=2)

    req = profile_now(s, 3, app="queued", expect_agents=1)
    first = wait_request_sessions(s, req, 1, 5 * SLOW)[0]
    sid = first["id"]
    s.kill()
    # The session ends (3 s) while the server is away; its profile waits.
    t_end = time.time() + 3 + 3 * SLOW
    wait_for(lambda: time.time() > t_end, 20, "the session to have ended with the server away")
    assert d.alive()
    s.restart(keep_port=True)
    x = wait_completed(s, [sid], 45 * SLOW)[0]
    assert x["samples"] > 0 and x["traces"] > 0, x
    load.stop()
    assert not load.errors, load.errors[:5]


def test_server_never_reachable(hosts, load_clients):
    url = f"http://127.0.0.1:{free_port()}"
    d = hosts.demo(url, app="alone", instance="a-1", token="sonde_" + "0" * 64)
    load = load_clients(d.url, ["/fast", "/cpu", "/health"], threads=2)
    # Past the register delay and a few failed attempts.
    wait_for(lambda: load.now() > 3 and load.done >= 30, 15 * SLOW,
             "the demo to serve requests")
    load.stop()
    assert not load.errors, load.errors[:5]
    if SAN:
        # An uninstrumented host with the ASan runtime preloaded hangs in
        # exit() (p11-kit's destructor, in freelocale) once libcurl has
        # failed a connect: the same without the agent (a 10-line program:
        # curl_global_init, one refused GET, return 0).  Not the agent's.
        pytest.xfail("ASan runtime + libcurl: exit after a refused connect hangs")
    rc, took = d.terminate(timeout=10)
    assert rc == 0, f"exit status {rc}"
    assert took < 3, f"exit took {took:.2f} s after SIGTERM"


# --------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------

def agent_threads_cpu(pids, seconds):
    """CPU seconds that the agent's threads (named sonde-*) of each process
    use over the next `seconds` -> {pid: {thread name: seconds}}."""
    def sample():
        out = {}
        for pid in pids:
            per = out.setdefault(pid, {})
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except FileNotFoundError:
                continue
            for tid in tids:
                try:
                    with open(f"/proc/{pid}/task/{tid}/stat") as f:
                        head, tail = f.read().rsplit(")", 1)
                except FileNotFoundError:
                    continue
                name, x = head.split("(", 1)[1], tail.split()
                if name.startswith("sonde"):
                    per[f"{name}/{tid}"] = (int(x[11]) + int(x[12])) / os.sysconf("SC_CLK_TCK")
        return out

    c0, t_end = sample(), time.monotonic() + seconds
    wait_for(lambda: time.monotonic() >= t_end, seconds + 5, "the measuring window")
    c1 = sample()
    return {pid: {t: round(v - c0.get(pid, {}).get(t, 0.0), 3) for t, v in c1[pid].items()}
            for pid in pids}


def check_prefork(s, hosts, app, early):
    h = hosts.start([prog("prefork"), "1000", early], s, app=app, instance="pre-1",
                    extra={"SONDE_REGISTER_DELAY_MS": 300})
    h.wait_line(r"^ready$", 10 * SLOW)
    v = h.values()
    master = int(v["master_pid"][0])
    workers = [int(p) for p in v["worker_pid"]]
    short = [int(v["child_pid"][0]), int(v["exec_pid"][0])]
    assert master == h.pid and len(workers) == 2 + early
    want = {master, *workers}
    agents = wait_for(lambda: (lambda ags: ags if {a["pid"] for a in ags} == want else None)(
        [a for a in list_agents(s, app=app) if a["status"] == "running"]), REGISTER_TIMEOUT,
        lambda: f"the master and its {len(workers)} workers {sorted(want)} as running agents "
        f"(have {sorted((a['pid'], a['status']) for a in list_agents(s, app=app))}); the "
        f"agent threads of those missing used, over 1 s: "
        f"{agent_threads_cpu(sorted(want - {a['pid'] for a in list_agents(s, app=app)}), 1)}")
    # The short-lived child and the exec of /bin/true never register.
    stays(lambda: {a["pid"] for a in list_agents(s, app=app)} == want, 2,
          lambda: f"exactly the master and its workers as agents (short-lived: {short}; "
          f"have {list_agents(s, app=app)})")
    assert {a["instance"] for a in agents} == {"pre-1"}
    assert len({a["id"] for a in agents}) == len(want)
    # Idle agents (no session) cost nothing: no thread of theirs spins.
    cpu = agent_threads_cpu(sorted(want), 1.0)
    busy = {pid: t for pid, t in cpu.items() if sum(t.values()) > 0.1}
    assert not busy, f"agent threads busy while idle (CPU seconds over 1 s): {busy}"
    return h, master, workers


# A forked worker's agent threads start in the child before fork() has
# returned there.  Under GCC 12's ASan, preloaded into an uninstrumented
# host, that fails two ways, neither the agent's logic: the agent's threads
# (made through libc's pthread_create, found by dlsym(RTLD_NEXT) past the
# ASan runtime) are unknown to ASan ("thread T-1"), so a stack reused from
# the parent keeps its stale poison -> a false stack-buffer-overflow in
# agent_main; and with that unpoisoned (tried), ASan's allocator locks,
# not fork-safe in this version, can be held by a parent thread at fork ->
# the child's agent threads spin in free() for ever.
SAN_FORK = pytest.mark.skipif(SAN, reason="GCC 12 ASan with fork in a threaded host: "
                              "unknown agent threads, allocator locks held across fork")


@SAN_FORK
def test_prefork_workers_are_agents(server, hosts):
    s = server
    set_profiling(s, **ALL_OFF)
    h, master, workers = check_prefork(s, hosts, "pre", 0)
    req = profile_now(s, 2, app="pre", expect_agents=3)
    started = wait_request_sessions(s, req, 3, 5 * SLOW)
    assert sorted(x["pid"] for x in started) == sorted([master] + workers), started
    for x in wait_completed(s, [x["id"] for x in started], (2 + 15) * SLOW):
        assert x["samples"] > 0, x
    rc, _ = h.terminate(timeout=10)
    assert rc == 0


@SAN_FORK
def test_workers_forked_at_any_moment_are_agents(server, hosts):
    """Eight more workers forked 3 ms apart from the start: some fork while
    the master's agent threads are starting up (loading and initialising
    libraries, connecting); every one must become an agent."""
    s = server
    set_profiling(s, **ALL_OFF)
    h, _, _ = check_prefork(s, hosts, "storm", 8)
    rc, _ = h.terminate(timeout=10)
    assert rc == 0


def test_clean_exit_marks_agent_stopped(server, hosts):
    s = server
    set_profiling(s, **ALL_OFF)
    d = hosts.demo(s, app="leaver", instance="l-1")
    agent = wait_agents(s, "leaver", [d.pid])[d.pid]
    rc, took = d.terminate(timeout=10)
    assert rc == 0 and took < 3 * SLOW, f"exit status {rc} after {took:.2f} s"
    a = wait_for(lambda: (lambda a: a if a["status"] == "stopped" else None)(
        s.ok("GET", f"/api/v1/agents/{agent['id']}")), 5 * SLOW, "the agent to show stopped")
    assert a["stopped_ms"], a


def test_clean_exit_during_session_uploads_what_it_has(server, hosts, load_clients):
    s = server
    set_profiling(s, **ALL_OFF)
    d = hosts.demo(s, app="partial", instance="p-1")
    wait_agents(s, "partial", [d.pid])
    load = load_clients(d.url, ["/cpu"], threads=2)
    req = profile_now(s, 60, app="partial", expect_agents=1)
    sid = wait_request_sessions(s, req, 1, 5 * SLOW)[0]["id"]
    wait_for(lambda: load.done >= 20, 10 * SLOW, "some requests in the session")
    load.stop()
    rc, took = d.terminate(timeout=10)
    assert rc == 0 and took < 3 * SLOW, f"exit status {rc} after {took:.2f} s"
    x = s.ok("GET", f"/api/v1/sessions/{sid}")
    assert x["state"] == "completed" and x["has_profile"], \
        f"the session cut short by the exit was not flushed within {took:.2f} s: {x}"
    assert x["samples"] > 0 and x["duration_s"] < 60, x


def test_sonde_run_starts_an_agent(server, hosts):
    s = server
    set_profiling(s, **ALL_OFF)
    h = hosts.start([SONDE, "run", "--server", s.url, "--app", "viarun", "--instance", "r-1",
                     "--token", s.agent_token(), "--", prog("burn")], s, agent=False,
                    log=hosts.dir / "sonde-run-agent.log", name="sonde run")
    burn_pid = int(h.wait_line(r"^burn_pid=(\d+)").group(1))
    agent = wait_agents(s, "viarun", [burn_pid])[burn_pid]
    assert agent["instance"] == "r-1" and "burn" in agent["cmdline"], agent
    req = profile_now(s, 2, app="viarun", expect_agents=1)
    sid = wait_request_sessions(s, req, 1, 5 * SLOW)[0]["id"]
    assert wait_completed(s, [sid], 17 * SLOW)[0]["samples"] > 0
    rc, took = h.terminate(timeout=10)
    assert rc == 0, f"sonde run exited {rc}"
    wait_for(lambda: list_agents(s, app="viarun")[0]["status"] == "stopped", 5 * SLOW,
             "the agent started by sonde run to show stopped")
