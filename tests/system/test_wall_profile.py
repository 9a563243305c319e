"""
test_wall_profile.py — wall-clock profiles: every thread, running or
blocked, without disturbing the blocked ones (progs/blocking.c).
"""

import re

import pytest

from conftest import pprof_raw, pprof_traces, prog

BLOCKERS = ["block_in_sleep", "block_in_poll", "block_in_epoll", "block_in_select"]


@pytest.fixture(scope="module")
def blocking_wall_profile(record_module):
    # Two 1 s calls in each of four threads, sampled at 100 Hz: every call
    # spans ~100 sampling intervals.
    return record_module([prog("blocking"), "all", "2"], hz=100, mode="wall", check=False)


def test_wall_blocking_calls_not_interrupted(blocking_wall_profile):
    r = blocking_wall_profile
    calls = re.findall(r"^(block_in_\w+) call=\d+ rc=(-?\d+) elapsed=([0-9.]+)(.*)$", r.stdout, re.M)
    assert len(calls) == 8, f"expected 8 blocking calls\n{r.describe()}"
    short = [c for c in calls if float(c[2]) < 0.999 or c[1] != "0" or c[3]]
    assert not short, f"calls interrupted by the profiler: {short}\n{r.describe()}"
    assert r.returncode == 0, r.describe()


def test_wall_profile_shows_blocked_threads_sleeping(blocking_wall_profile):
    r = blocking_wall_profile
    assert r.output.exists(), r.describe()
    raw = pprof_raw(r.output)
    assert raw.sample_types == ["samples/count", "wall/nanoseconds"], raw.text[:2000]
    assert "state" in raw.label_keys, f"no state label; label keys {raw.label_keys}"
    traces = pprof_traces(r.output)
    for fn in BLOCKERS:
        mine = [t for t in traces if t.has(fn)]
        assert mine, f"no sample in {fn}"
        states = {t.labels.get("state") for t in mine}
        assert "sleeping" in states, f"{fn}: states {states}"
        thread = {t.labels.get("thread") for t in mine}
        assert thread == {"blk-" + fn.split("_")[-1]}, f"{fn}: thread labels {thread}"


def test_wall_samples_cover_blocked_time(blocking_wall_profile):
    # Each blocking thread lives ~2 s: a wall profile that samples every
    # thread at 100 Hz holds ~2 s for each of them.
    r = blocking_wall_profile
    assert r.output.exists(), r.describe()
    traces = pprof_traces(r.output)
    for fn in BLOCKERS:
        wall = sum(t.seconds for t in traces if t.has(fn))
        assert 1.6 <= wall <= 2.4, f"{fn}: {wall:.2f}s of wall time in the profile, want ~2s"


def test_wall_profile_labels_running_threads(record):
    r = record([prog("split"), "2", "0.5"], hz=100, mode="wall")
    traces = [t for t in pprof_traces(r.output) if t.has("work_seventy") or t.has("work_thirty")]
    assert traces, "no sample in split's work functions"
    running = sum(t.seconds for t in traces if t.labels.get("state") == "running")
    total = sum(t.seconds for t in traces)
    # Two busy threads on two cores: preemption by other tests' processes
    # may show as runnable, but most of the time they run.
    assert running >= 0.5 * total, (
        f"only {running:.2f}s of {total:.2f}s in busy functions labelled state=running; states "
        f"{ {t.labels.get('state') for t in traces} }")
