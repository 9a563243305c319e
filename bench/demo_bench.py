#!/usr/bin/python3
"""
demo_bench.py — what the connected agent costs a real HTTP service: the
demo service (examples/demo_service.c) loaded by wrk, requests per second
side by side in three configurations:

  (a) no agent;
  (b) the agent loaded by `sonde run`, registered with a real sonded and
      idle (it long-polls; no session runs: default sampling and triggers
      are switched off on the bench's sonded, and checked at the end);
  (c) the agent profiling at 100 Hz (CPU): a Profile Now session for its
      app, running — the bench waits until GET /api/v1/sessions shows it
      `running` — through every (c) measurement.

One demo process per configuration, all started at the beginning and kept
(an idle process costs the others nothing; each gets its own app name, so
the Profile Now reaches only (c)).  Each round measures /fast (a few bytes:
the per-request cost of spans and the agent's presence) and /cpu (~2 ms of
arithmetic per request: the cost of sampling) for every configuration, in
an order shuffled per round so drift in the machine's speed hits all of
them alike: `wrk -t1 -c8 -d BENCH_DEMO_SECONDS (default 3)`, after one
unmeasured second of warm-up per configuration and endpoint.
BENCH_DEMO_RUNS (default 5) rounds; medians, the runs beside them, and the
ratios b/a and c/a (goal c/a ≥ 98 % on both endpoints).  Nothing is
pinned: the machine has 2 cores, shared by wrk, the demo and sonded.

When the agent cannot register or the session does not start (an agent
without its server link), (b) or (c) is "n/a" with the reason; (a) is
measured in any case.  At the end the (c) demo is stopped (SIGTERM) and
its session's profile checked: it must hold samples, with
demo_checksum_work among its top functions (so (c) really profiled).

    /usr/bin/python3 bench/demo_bench.py BUILD_DIR

Needs BUILD_DIR/{sonded,sonde,libsonde.so,examples/demo_service} (`make
all`) and wrk (Debian package `wrk`).  Prints the figures and writes
BUILD_DIR/bench/demo-results.md and demo-results.json.
"""

import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

# sonded on a fresh data dir, the machine-load meter and small helpers are
# shared with the server benchmark beside this file.
from server_bench import (LoadMeter, Server, clean_env, env_int, log, parse_wrk,
                          print_table, proc_cpu_s)

GOAL_RATIO = 0.98
ENDPOINTS = ("/fast", "/cpu")
CONFIGS = ("a", "b", "c")
LABELS = {"a": "(a) no agent", "b": "(b) agent connected, idle",
          "c": "(c) agent profiling @100 Hz"}
APPS = {"b": "bench-demo-idle", "c": "bench-demo-prof"}
REGISTER_S = 20     # deadline for an agent to show as running
SESSION_S = 15      # deadline for the Profile Now session to show as running


def started_line(proc, pattern, timeout):
    """Reads proc's stdout (by a thread) until a line matches pattern: the
    match, or None when the process ends or timeout passes first."""
    lines, found = [], threading.Event()

    def drain():
        for line in proc.stdout:
            lines.append(line)
            if re.search(pattern, line):
                found.set()
        found.set()

    threading.Thread(target=drain, daemon=True).start()
    found.wait(timeout)
    return re.search(pattern, "".join(lines))


class Demo:
    """One demo_service on a free port: directly (a) or under `sonde run`
    (b, c; `sonde run` execs in place, so the pid is the demo's)."""

    def __init__(self, b, config, work, srv=None, agent_token=None):
        self.config = config
        self.agent_log = work / f"agent-{config}.log"
        self.errlog = work / f"demo-{config}.stderr"
        demo = [str(b / "examples" / "demo_service"), "--port", "0"]
        if srv is None:
            argv = demo
        else:
            argv = [str(b / "sonde"), "run", "--server", srv.url, "--app", APPS[config],
                    "--token", agent_token, "--frequency", "100", "--types", "cpu",
                    "--log", str(self.agent_log), "--"] + demo
        with open(self.errlog, "w") as err:
            self.proc = subprocess.Popen(argv, env=clean_env(), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=err, text=True,
                                         start_new_session=True)
        m = started_line(self.proc, r"demo listening on (http://\S+)", 30)
        if not m:
            self.stop()
            raise RuntimeError(f"demo ({config}) did not start: "
                               f"{self.errlog.read_text()[-1000:]}")
        self.url = m.group(1)

    def agent_log_tail(self):
        try:
            lines = self.agent_log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no agent log"
        return lines[-1] if lines else "the agent log is empty"

    def stop(self, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def wait_until(cond, timeout, interval=0.1):
    """Polls cond() until truthy (its value) or timeout: None."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def registered(srv, demo):
    """The demo's agent shows as running in GET /api/v1/agents."""
    st, body = srv.request("GET", f"/api/v1/agents?app={APPS[demo.config]}")
    agents = body.get("agents", []) if st == 200 and isinstance(body, dict) else []
    return [a for a in agents if a.get("pid") == demo.proc.pid and a.get("status") == "running"]


def running_session(srv, app, request_id):
    st, body = srv.request("GET", f"/api/v1/sessions?app={app}&limit=20")
    sessions = body.get("sessions", []) if st == 200 and isinstance(body, dict) else []
    return [s for s in sessions if s.get("request_id") == request_id
            and s.get("state") == "running"]




def wrk(url, seconds):
    """One `wrk -t1 -c8 --latency` run: {rps, p50_ms, p99_ms, errors}."""
    p = subprocess.run(["wrk", "-t1", "-c8", f"-d{seconds}s", "--latency", url],
                       capture_output=True, text=True, timeout=seconds + 60, env=clean_env())
    out = parse_wrk(p.stdout)
    if p.returncode != 0 or out["rps"] is None:
        raise RuntimeError(f"wrk {url} failed ({p.returncode}): {p.stdout[-300:]} "
                           f"{p.stderr[-300:]}")
    return out


def check_profile(b, srv, app, request_id, work):
    """After (c)'s demo stopped: its session's profile, uploaded.  A short
    description, or raises RuntimeError."""
    def uploaded():
        st, body = srv.request("GET", f"/api/v1/sessions?app={app}&limit=20")
        for s in body.get("sessions", []) if st == 200 and isinstance(body, dict) else []:
            if s.get("request_id") == request_id and s.get("has_profile"):
                return s
        return None

    s = wait_until(uploaded, 30)
    if not s:
        raise RuntimeError("the session's profile was not uploaded within 30 s of the demo's "
                           "exit")
    st, data = srv.request("GET", f"/api/v1/sessions/{s['id']}/profile")
    if st != 200 or not isinstance(data, bytes):
        raise RuntimeError(f"GET the session's profile -> {st}")
    path = work / "session-c.pb.gz"
    path.write_bytes(data)
    top = subprocess.run([str(b / "sonde"), "top", "-n", "5", str(path)], capture_output=True,
                         text=True, timeout=120, env=clean_env())
    if "demo_checksum_work" not in top.stdout:
        raise RuntimeError(f"demo_checksum_work is not among the top functions: "
                           f"{top.stdout[-600:]}")
    return f"session {s['id']}: {s.get('samples')} samples, demo_checksum_work among the top 5"


def main():
    if len(sys.argv) != 2:
        print("usage: demo_bench.py BUILD_DIR", file=sys.stderr)
        return 2
    b = Path(sys.argv[1]).resolve()
    for need in ("sonded", "sonde", "libsonde.so", "examples/demo_service"):
        if not (b / need).exists():
            print(f"demo_bench: {b / need} is missing (make all)", file=sys.stderr)
            return 1
    if not shutil.which("wrk"):
        print("demo_bench: wrk is not installed (Debian package wrk; make deps)", file=sys.stderr)
        return 1
    runs = env_int("BENCH_DEMO_RUNS", 5)
    seconds = env_int("BENCH_DEMO_SECONDS", 3)
    work = b / "bench" / "demo-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t_start = time.monotonic()
    raw = {"runs": runs, "seconds": seconds, "wrk": "-t1 -c8", "cpus": os.cpu_count()}
    na = {}            # config -> why it is not measured
    demos = {}
    srv = None
    request_id = None
    profile_note = None
    try:
        srv = Server(b / "sonded", work)
        agent_token = srv.ok("POST", "/api/v1/tokens", {"role": "agent", "name": "bench"})["token"]
        # Idle means idle: no default-sampling window, no trigger (the load
        # of /cpu would fire the CPU trigger) — only (c)'s Profile Now.
        srv.ok("PUT", "/api/v1/default-sampling", {"enabled": False})
        srv.ok("PUT", "/api/v1/triggers", {"cpu": {"enabled": False},
                                           "memory": {"enabled": False}})
        log(f"demo: sonded at {srv.url}; starting the demo three times: "
            + ", ".join(LABELS.values()))
        demos["a"] = Demo(b, "a", work)
        for c in ("b", "c"):
            try:
                demos[c] = Demo(b, c, work, srv, agent_token)
            except RuntimeError as e:
                na[c] = str(e)
        # Both agents register meanwhile: one deadline for the two.
        deadline = time.monotonic() + REGISTER_S
        for c in ("b", "c"):
            if c not in na and not wait_until(lambda: registered(srv, demos[c]),
                                              max(0.0, deadline - time.monotonic())):
                na[c] = (f"the agent did not register within {REGISTER_S} s "
                         f"({demos[c].agent_log_tail()})")
        # An idle connected agent, no request at all: the CPU its process
        # uses over IDLE_S beside the same demo without an agent.
        if "b" not in na:
            idle_s = env_int("BENCH_DEMO_IDLE_SECONDS", 10)
            before = {c: proc_cpu_s(demos[c].proc.pid) for c in ("a", "b")}
            time.sleep(idle_s)
            used = {c: proc_cpu_s(demos[c].proc.pid) - before[c] for c in ("a", "b")}
            raw["idle"] = {"seconds": idle_s, "cpu_s": used}
            log(f"demo: idle for {idle_s} s, no requests: (a) no agent used "
                f"{used['a'] * 1000:.0f} ms CPU, (b) idle connected agent "
                f"{used['b'] * 1000:.0f} ms CPU ({used['b'] / idle_s * 100:.2f} % of one core)")
        if "c" not in na:
            pn = srv.ok("POST", "/api/v1/profile-now", {"app": APPS["c"], "duration_s": 3600})
            request_id = pn.get("id")
            t0 = time.monotonic()
            if not wait_until(lambda: running_session(srv, APPS["c"], request_id), SESSION_S):
                na["c"] = (f"no running session within {SESSION_S} s of the Profile Now "
                           f"({demos['c'].agent_log_tail()})")
            else:
                raw["session_start_s"] = time.monotonic() - t0
                log(f"demo: (c) is profiling: session running {raw['session_start_s']:.1f} s "
                    "after the Profile Now")
        for c, why in na.items():
            log(f"demo: {LABELS[c]}: n/a — {why}")

        live = [c for c in CONFIGS if c not in na]
        results = {(c, ep): [] for c in CONFIGS for ep in ENDPOINTS}
        for ep in ENDPOINTS:
            for c in live:
                wrk(demos[c].url + ep, 1)   # warm-up, not measured
        load = LoadMeter([srv.proc.pid] + [d.proc.pid for d in demos.values()])
        rng = random.Random(11)
        for r in range(runs):
            order = [(c, ep) for c in live for ep in ENDPOINTS]
            rng.shuffle(order)
            for c, ep in order:
                if demos[c].proc.poll() is not None:
                    raise RuntimeError(f"demo ({c}) exited with status {demos[c].proc.returncode}"
                                       f": {demos[c].errlog.read_text()[-600:]}")
                results[(c, ep)].append(wrk(demos[c].url + ep, seconds))
            log(f"  round {r + 1}/{runs}: " + ", ".join(
                f"{c}{ep} {results[(c, ep)][-1]['rps']:.0f}/s" for c in live for ep in ENDPOINTS))
        raw["other_load_percent"] = load.percent()
        if "c" not in na and not running_session(srv, APPS["c"], request_id):
            na["c"] = "the session was no longer running at the end of the measurements"
        if "b" not in na:
            st, body = srv.request("GET", f"/api/v1/sessions?app={APPS['b']}")
            if st != 200 or body.get("total"):
                na["b"] = f"not idle: it ran sessions ({str(body)[:200]})"
        raw["results"] = {f"{c} {ep}": v for (c, ep), v in results.items()}
    finally:
        statuses = {c: d.stop() for c, d in demos.items()}
        raw["demo_exit"] = statuses
        if srv is not None and "c" not in na and request_id is not None:
            try:
                profile_note = check_profile(b, srv, APPS["c"], request_id, work)
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                profile_note = f"PROFILE CHECK FAILED: {e}"
        if srv is not None:
            raw["sonded_exit"] = srv.stop()

    def median(c, ep, key="rps"):
        vals = [m[key] for m in results[(c, ep)] if key in m]
        return statistics.median(vals) if vals else None

    rows = []
    for ep in ENDPOINTS:
        base = median("a", ep)
        for c in CONFIGS:
            if c in na:
                rows.append([f"GET {ep}", LABELS[c], "n/a", "", "", "", na[c]])
                continue
            v = median(c, ep)
            ratio = v / base if v and base else None
            p99 = median(c, ep, "p99_ms")
            errors = sum(m.get("errors", 0) for m in results[(c, ep)])
            goal = ""
            if c == "c" and ratio is not None:
                goal = f"goal ≥ {GOAL_RATIO * 100:.0f} %: " + ("met" if ratio >= GOAL_RATIO
                                                               else "MISSED")
            rows.append([f"GET {ep}", LABELS[c], f"{v:.0f}",
                         "" if c == "a" else (f"{ratio * 100:.1f} %" if ratio else "—"),
                         f"{p99:.2f} ms" if p99 is not None else "",
                         ", ".join(f"{m['rps']:.0f}" for m in results[(c, ep)])
                         + (f"; {errors} errors" if errors else ""), goal])
            raw[f"median_rps {c} {ep}"] = v
            if ratio is not None:
                raw[f"ratio {c}/a {ep}"] = ratio
    header = ["endpoint", "configuration", "requests/s (median)", "vs (a)", "p99 latency",
              "runs", "note"]
    print_table(header, rows)
    others = raw.get("other_load_percent", 0.0)
    details = (f"wrk -t1 -c8 -d{seconds}s, {runs} rounds, configurations and endpoints in a "
               f"shuffled order each round; demo: 4 worker threads; {os.cpu_count()} CPUs, "
               f"nothing pinned; other processes used {others:.1f} % of the machine"
               + (" — FIGURES ARE NOISY, rerun on a quiet machine" if others > 5 else "")
               + f"; demo exit statuses on SIGTERM {statuses}; "
               f"{time.monotonic() - t_start:.0f} s in all")
    idle = raw.get("idle")
    idle_note = None
    if idle:
        ia, ib = idle["cpu_s"]["a"], idle["cpu_s"]["b"]
        idle_note = (f"idle, no requests, {idle['seconds']} s: (a) no agent {ia * 1000:.0f} ms CPU, "
                     f"(b) agent connected and idle {ib * 1000:.0f} ms CPU = "
                     f"{ib / idle['seconds'] * 100:.2f} % of one core")
    print()
    print(details)
    if idle_note:
        print(idle_note)
    if profile_note:
        print(f"(c) {profile_note}")
    md = ["# The demo service under wrk: no agent, agent idle, agent profiling", "",
          "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(x.replace("|", "\\|") for x in r) + " |" for r in rows]
    md += ["", details + ".", ""]
    if idle_note:
        md += [idle_note[0].upper() + idle_note[1:] + ".", ""]
    if profile_note:
        md += [f"(c) {profile_note}.", ""]
    md += ["/fast answers a few bytes: its ratio is the agent's cost per request (spans, "
           "its presence in the process).  /cpu spends ~2 ms of arithmetic per request: its "
           "ratio is the cost of sampling at 100 Hz.  (b) and (c) run under `sonde run` with "
           "a real sonded; (c)'s Profile Now session runs through all its measurements."]
    (b / "bench" / "demo-results.md").write_text("\n".join(md) + "\n")
    (b / "bench" / "demo-results.json").write_text(json.dumps(raw, indent=1, default=str))
    print(f"written: {b / 'bench' / 'demo-results.md'}")
    failed = profile_note and profile_note.startswith("PROFILE CHECK FAILED")
    return 1 if failed or any(s != 0 for s in statuses.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
