"""
test_host_safety.py — the agent is a guest: the host behaves the same with
it as without it.  Exceptions, glibc backtrace(), the host's own SIGPROF
profiler, fork (prefork workers, snapshot children, exec), dlopen/dlclose
churn and thread churn, all while sampling at 1000 Hz.
"""

import re

import conftest
from conftest import pprof_top, prog


def test_exceptions_unchanged(run, record):
    argv = [prog("exceptions"), "100000", "2"]
    plain = run(argv, check=True)
    profiled = record(argv, hz=1000, timeout=120)
    assert profiled.stdout == plain.stdout, profiled.describe()
    assert plain.stdout.rstrip().endswith(" ok"), plain.describe()
    top = pprof_top(profiled.output)
    assert any("throw_depth" in f or "Unwind" in f or "exception_round" in f for f in top), top.text


def test_backtrace_unchanged(run, record):
    argv = [prog("backtrace_prog"), "20000"]
    plain = run(argv, check=True)
    profiled = record(argv, hz=1000, timeout=120)
    assert profiled.stdout == plain.stdout, profiled.describe()
    assert plain.stdout.strip() == "iterations=20000 found=20000", plain.describe()


def test_host_sigprof_handler_kept(record):
    r = record([prog("sigprof_host"), "1"], hz=1000)
    v = r.values()
    assert v.get("handler") == "kept" and v.get("timer") == "kept", r.describe()
    assert int(v["ticks"]) >= 50, f"the host's ITIMER_PROF delivered {v['ticks']} ticks in 1s CPU"
    top = pprof_top(r.output)
    assert "host_busy_loop" in top, f"the agent did not profile alongside the host\n{top.text}"


def test_forking_host_does_not_deadlock(record, tmp_path):
    out = tmp_path / "forker.pb.gz"
    r = record([prog("forker"), "1"], hz=1000, output=out, timeout=30)
    assert re.search(r"^workers=2 snapshots=\d+ exec=ok$", r.stdout, re.M), r.describe()
    top = pprof_top(out)
    assert "master_compute" in top, f"the master's profile lacks master_compute\n{top.text}"
    # Without --follow-fork no child writes a profile of its own.
    children = sorted(p.name for p in tmp_path.glob("forker.pb.gz.*"))
    assert not children, f"child profiles written without --follow-fork: {children}"


def test_follow_fork_writes_child_profile(record, tmp_path):
    out = tmp_path / "parent.pb.gz"
    r = record([prog("forker"), "1"], hz=1000, output=out, flags=["--follow-fork"], timeout=30)
    workers = re.findall(r"^worker_pid=(\d+)$", r.stdout, re.M)
    assert len(workers) == 2, r.describe()
    for pid in workers:
        child = tmp_path / f"parent.pb.gz.{pid}"
        assert child.exists(), (f"no profile for worker {pid}; files: "
                                f"{sorted(p.name for p in tmp_path.iterdir())}")
        top = pprof_top(child)
        assert "worker_compute" in top and top["worker_compute"][0] >= 80, (
            f"worker {pid}'s profile\n{top.text}")
    parent = pprof_top(out)
    assert "master_compute" in parent, parent.text
    assert parent.get("worker_compute", (0, 0))[0] < 5, (
        f"the workers' samples ended up in the parent's profile\n{parent.text}")


def test_dlopen_dlclose_10000_cycles_at_1000hz(record):
    r = record([prog("dlopen_loop"), "cycles", "10000"], hz=1000, timeout=120)
    assert "mode=cycles cycles=10000" in r.stdout, r.describe()
    top = pprof_top(r.output)
    assert top.total > 0, top.text


def test_thread_churn(record):
    # 600 threads, 8 at a time, 2 ms of CPU each.
    r = record([prog("threads_churn"), "600", "8", "2000"], hz=1000, timeout=60)
    v = r.values()
    assert v.get("threads") == "600", r.describe()
    timers = int(v["posix_timers_at_end"])
    # With only the main thread left, at most a few timers may remain (the
    # main thread's, the agent's own); one per dead thread is a leak.
    assert timers <= 4, f"{timers} POSIX timers left after 600 threads exited"
    top = pprof_top(r.output)
    assert "churn_work" in top, f"no sample from the short-lived threads\n{top.text}"


def test_short_lived_threads_cpu_in_profile(record):
    # 300 threads of 4 ms CPU each: 1.2 s under churn_thread -> churn_work.
    # CPU-time timers are checked at scheduler ticks (4 ms at HZ=250), so a
    # thread's CPU after its last tick is never signalled; the agent adds
    # it at thread exit, on the thread's last sampled stack or, for a
    # thread no tick ever met, on the pseudo frame "[unsampled thread CPU]"
    # under its start routine.  So the total is right, all of it lies under
    # churn_thread, and churn_thread itself gets no self time it did not use.
    # (Under ASan its pthread_create interceptor wraps every start routine,
    # so there the pseudo frame sits under asan_thread_start instead.)
    r = record([prog("threads_churn"), "300", "4", "4000"], hz=1000, timeout=60)
    top = pprof_top(r.output)
    assert top.total >= 0.9 * 1.2, f"profile total {top.total:.3f}s < 1.2s used\n{top.text}"
    assert top.cum.get("churn_work", 0.0) > 0.3 * 1.2, top.text
    if not conftest.SAN:
        got = top.cum.get("churn_thread", 0.0)
        assert got >= 0.9 * 1.2, (f"churn_thread holds {got:.3f}s of the 1.2s CPU the threads used"
                                  f"\n{top.text}")
        self_time = top.flat.get("churn_thread", 0.0)
        assert self_time < 0.05 * 1.2, f"churn_thread got {self_time:.3f}s self time\n{top.text}"


def test_exec_children_not_profiled_by_default(record, tmp_path):
    out = tmp_path / "sh.pb.gz"
    r = record(["sh", "-c", '"$0" 1 0.3; exit 3', prog("split")], hz=1000, output=out,
               check=False)
    assert r.returncode == 3, r.describe()
    assert "cpu_seconds=" in r.stdout, r.describe()
    extra = sorted(p.name for p in tmp_path.glob("sh.pb.gz.*"))
    assert not extra, f"a program the shell ran wrote a profile without --follow-exec: {extra}"


def test_follow_exec_profiles_exec_children(record, tmp_path):
    out = tmp_path / "sh.pb.gz"
    r = record(["sh", "-c", '"$0" 1 0.3; exit 3', prog("split")], hz=1000, output=out,
               flags=["--follow-exec"], check=False)
    assert r.returncode == 3, r.describe()
    children = sorted(tmp_path.glob("sh.pb.gz.*"))
    assert len(children) == 1, f"want one child profile, have {[p.name for p in children]}"
    top = pprof_top(children[0])
    assert "work_seventy" in top, top.text
