#!/usr/bin/python3
"""
bench.py — sonde's CPU-profiling figures, measured side by side with its
peers in the same run: gperftools' profiler (LD_PRELOAD=libprofiler.so
CPUPROFILE=...) and `perf record -e cpu-clock -g`.  Called by bench/run.sh
(`make bench`):

    /usr/bin/python3 bench/bench.py BUILD_DIR

Figures (SPEC.md, "Performance goals"):
  - steady-state wall and CPU overhead at 100 Hz and 1000 Hz on a CPU-bound
    2-thread program with a fixed amount of work (bench/busy2.c), from two
    run lengths W and 2W: (median T_prof(2W) - median T_prof(W)) /
    (median T_none(2W) - median T_none(W)) - 1, so what a profiler pays once
    per process (start, symbolizing and writing at exit) cancels.  Wall
    time is busy2's own, from entering main to its threads joined (start
    and exit work are outside it anyway, and an exit that waits for a
    periodic tick would add up to a tick of jitter to a difference of
    whole-process times); CPU time is the whole process tree's (bench/measure,
    perf's own process included).  With a 90 % bootstrap interval.
    BENCH_RUNS (default 5) runs of every configuration and length,
    interleaved in a shuffled order each round so drift in the machine's
    speed hits all of them alike;
  - the old single-length ratio, profiled / unprofiled whole-process time
    of the 2W run, labelled "whole run incl. start and exit";
  - the fixed cost per process (start + symbolizing + writing the profile),
    twice: from short runs of busy2 (~0.1-0.2 s, long enough for both
    threads to be sampled, so their stacks through libc's start_thread /
    clone3 are symbolized at exit), their lengths spread over 100 ms so a
    periodic effect (a tick the exit waits for) is averaged, not sampled at
    one phase; and from a ~2 ms run (busy2 1), which takes next to no
    samples and so symbolizes nothing;
  - samples per CPU second at 1000 Hz (what a 1000 Hz profile really holds);
  - attribution error on the 70/30 program (tests/system/progs/split.c),
    one thread and four threads, in percentage points: BENCH_ATTR_RUNS
    (default 3) runs pooled, with the sample count (a binomial share over n
    samples has a standard error of sqrt(0.21/n)) and the worst single run;
  - RSS added, twice: while profiling (busy2's own VmHWM at the end of
    main) and through exit (bench/measure.c: wait4's maxrss, so work done
    at exit — symbolizing, writing the profile — counts); for perf the
    second is the perf process's own peak;
  - handler cost per sample at 64 frames (bench/deep64.c), median and p99,
    from the agent's own histogram (SONDE_SELFTIME=1 writes a "selftime:"
    line into SONDE_LOG); "n/a" if the agent does not provide it; beside it
    the stack walk alone (bench/unwind_cost.c, the agent's walker outside
    the handler), so the rest of the handler's cost shows.
  - span begin+end (bench/span_cost.c): sonde_span_begin + sonde_span_end
    through libsonde.so, median ns per pair, one thread and two at once,
    beside one clock_gettime(CLOCK_MONOTONIC) measured in the same run.
  - active profiling (bench/task_cost.c): the interval error of snapshots
    at 5 ms frequency (|interval - 5 ms|, median and p90, a running and a
    blocked call), and what a watched but fast call pays (span begin+end
    with a task watching its interface, beside the same without task).

Set BENCH_RUNS, BENCH_ATTR_RUNS, BENCH_BUSY2_WORK (W in mega-iterations
per thread, default 900: ~1.6 s on 2 cores) to trade time for noise;
BENCH_FIXED_WORK (default 50) is the shortest fixed-cost run.
The run notes how much CPU other processes took meanwhile, for the
overhead runs, the fixed-cost runs and the whole run; above 5 % the
wall-time figures are not to be trusted.

sonde is started the way gperftools is, by LD_PRELOAD and environment
(SONDE_OUTPUT, SONDE_FREQUENCY), so the two in-process profilers are
measured alike; `sonde record` does exactly this plus a waiting parent.

Prints a table and writes BUILD_DIR/bench/results.md (markdown, for the
README) and results.json (every raw measurement).
"""

import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBPROFILER_CANDIDATES = ["/usr/lib/x86_64-linux-gnu/libprofiler.so.0",
                          "/usr/lib/x86_64-linux-gnu/libprofiler.so",
                          "/usr/lib/libprofiler.so.0"]
PROFILERS = ["sonde", "gperftools", "perf"]
GOALS = {
    "wall100": "≤ 1 %",
    "handler": "median ≤ 1 µs",
    "attr1": "≤ 2 pts",
    "attr4": "≤ 2 pts",
    "rss": "≤ 16 MiB",
    "span": "≤ 100 ns",
    "task_interval": "median ≤ 1 ms",
    "task_cost": "≤ 200 ns added",
}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Bench:
    def __init__(self, build):
        self.build = build.resolve()
        self.runs = max(1, int(os.environ.get("BENCH_RUNS", "5")))
        self.work = self.build / "bench" / "work"
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        self.measure = self.build / "bench" / "measure"
        self.busy2 = self.build / "bench" / "busy2"
        self.deep64 = self.build / "bench" / "deep64"
        self.split = self.build / "progs" / "split"
        self.libsonde = self.build / "libsonde.so"
        self.libprofiler = next((p for p in LIBPROFILER_CANDIDATES if os.path.exists(p)), None)
        self.perf = shutil.which("perf")
        # W, mega-iterations per thread: ~1.6 s of wall time on 2 cores;
        # the overhead runs use W and 2W.
        self.busy_work = max(1, int(os.environ.get("BENCH_BUSY2_WORK", "900")))
        self.lengths = (self.busy_work, 2 * self.busy_work)
        self.fixed_work = max(1, int(os.environ.get("BENCH_FIXED_WORK", "50")))
        self.counter = 0
        self.raw = {"runs": self.runs, "busy2_work": self.lengths, "measurements": []}

    # -- running --------------------------------------------------------

    def available(self, profiler):
        if profiler == "sonde":
            return self.libsonde.exists()
        if profiler == "gperftools":
            return self.libprofiler is not None
        if profiler == "perf":
            return self.perf is not None
        return True

    def command(self, profiler, hz, argv):
        """(argv, extra env, output path) to run argv under profiler at hz."""
        self.counter += 1
        out = self.work / f"{profiler}-{hz}-{self.counter}"
        if profiler == "none":
            return argv, {}, None
        if profiler == "sonde":
            return argv, {"LD_PRELOAD": str(self.libsonde), "SONDE_OUTPUT": str(out),
                          "SONDE_FREQUENCY": str(hz), "SONDE_TYPES": "cpu"}, out
        if profiler == "gperftools":
            return argv, {"LD_PRELOAD": self.libprofiler, "CPUPROFILE": str(out),
                          "CPUPROFILE_FREQUENCY": str(hz)}, out
        if profiler == "perf":
            return ([self.perf, "record", "-q", "-e", "cpu-clock", "-F", str(hz), "-g", "-o",
                     str(out), "--"] + argv), {}, out
        raise ValueError(profiler)

    def run(self, profiler, hz, argv, extra_env=None, timeout=300):
        """Runs argv under profiler through bench/measure; returns a dict
        with status, wall_s, cpu_s, maxrss_kb, stdout, output (profile)."""
        full, env_extra, out = self.command(profiler, hz, [str(a) for a in argv])
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SONDE_", "CPUPROFILE")) and k != "LD_PRELOAD"}
        env.update(env_extra)
        if extra_env:
            env.update(extra_env)
        stat = self.work / f"measure-{self.counter}.txt"
        p = subprocess.run([str(self.measure), str(stat)] + full, env=env, capture_output=True,
                           text=True, timeout=timeout)
        m = {"profiler": profiler, "hz": hz, "argv": [str(a) for a in argv], "stdout": p.stdout,
             "stderr": p.stderr[-2000:], "output": str(out) if out else None}
        try:
            m.update({k: float(v) for k, v in
                      re.findall(r"(\w+)=([0-9.]+)", stat.read_text())})
        except OSError:
            m["status"] = -1
        m["ok"] = m.get("status") == 0 and (out is None or out.exists())
        prog = dict(re.findall(r"(\w+)=([0-9.]+)", p.stdout))
        if "cpu_seconds" in prog:
            m["prog_cpu_s"] = float(prog["cpu_seconds"])
        if "vmhwm_kb" in prog:
            m["prog_vmhwm_kb"] = float(prog["vmhwm_kb"])
        if "wall_seconds" in prog:
            m["prog_wall_s"] = float(prog["wall_seconds"])
        self.raw["measurements"].append(m)
        if not m["ok"]:
            log(f"  {profiler} @{hz} Hz {' '.join(m['argv'])}: FAILED status={m.get('status')} "
                f"{p.stderr.strip()[-400:]}")
        return m

    # -- reading profiles -------------------------------------------------

    def pprof_top(self, profiler, out, binary, sample_index=None):
        """{function: flat value} and the total, from go tool pprof -top."""
        args = ["go", "tool", "pprof", "-top", "-nodecount=500", "-nodefraction=0"]
        if sample_index:
            args.append(f"-sample_index={sample_index}")
        if profiler == "sonde":
            args += ["-symbolize=none", str(out)]
        else:
            args += [str(binary), str(out)]
        p = subprocess.run(args, capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise RuntimeError(f"pprof: {p.stderr.strip()[-300:]}")
        total = re.search(r"of ([^ ]+) total", p.stdout)
        flat = {}
        for line in p.stdout.splitlines():
            r = re.match(r"^\s*(\S+)\s+[0-9.]+%\s+[0-9.]+%\s+\S+\s+[0-9.]+%\s+(.+?)\s*$", line)
            if r:
                flat[r.group(2)] = flat.get(r.group(2), 0.0) + quantity(r.group(1))
        return flat, quantity(total.group(1)) if total else 0.0

    def perf_report(self, out):
        """({symbol: percent of period}, {symbol: samples}) from perf report."""
        p = subprocess.run([self.perf, "report", "-i", str(out), "--stdio", "--no-children",
                            "--sort", "sym", "-n", "-g", "none"], capture_output=True, text=True,
                           timeout=120)
        pct, count = {}, {}
        for line in p.stdout.splitlines():
            r = re.match(r"^\s*([0-9.]+)%\s+(\d+)\s+\[[.k]\]\s+(\S+)", line)
            if r:
                pct[r.group(3)] = pct.get(r.group(3), 0) + float(r.group(1))
                count[r.group(3)] = count.get(r.group(3), 0) + int(r.group(2))
        return pct, count

    def sample_count(self, profiler, out, binary):
        if profiler == "perf":
            return sum(self.perf_report(out)[1].values())
        return self.pprof_top(profiler, out, binary, "samples")[1]

    def share(self, profiler, out, binary, a, b):
        """(share of a in a+b in percent by CPU time, samples in a and b)."""
        if profiler == "perf":
            pct, count = self.perf_report(out)
            va, vb = pct.get(a, 0.0), pct.get(b, 0.0)
            n = count.get(a, 0) + count.get(b, 0)
        else:
            cpu = self.pprof_top(profiler, out, binary)[0]
            cnt = self.pprof_top(profiler, out, binary, "samples")[0]
            va, vb = cpu.get(a, 0.0), cpu.get(b, 0.0)
            n = int(cnt.get(a, 0) + cnt.get(b, 0))
        if va + vb <= 0:
            raise RuntimeError(f"neither {a} nor {b} in the profile")
        return 100.0 * va / (va + vb), n

    # -- the figures ------------------------------------------------------

    def overhead(self):
        """{(profiler, hz, work): [measurement]}: busy2 at W and 2W under
        every configuration, BENCH_RUNS rounds, shuffled within a round."""
        configs = [("none", 0, w) for w in self.lengths] + [
            (p, hz, w) for hz in (100, 1000) for p in PROFILERS if self.available(p)
            for w in self.lengths]
        log(f"overhead: busy2 {self.lengths[0]}M and {self.lengths[1]}M iterations x 2 threads, "
            f"{self.runs} runs of {len(configs)} configurations, interleaved")
        # Warm the page cache: the program, and each profiler with what it
        # reads (its libraries, debug information) on a short run.
        self.run("none", 0, [self.busy2, self.lengths[0]])
        for p in PROFILERS:
            if self.available(p):
                self.run(p, 100, [self.busy2, self.fixed_work])
        rng = random.Random(20240601)
        results = {c: [] for c in configs}
        for r in range(self.runs):
            order = configs[:]
            rng.shuffle(order)
            for prof, hz, w in order:
                results[(prof, hz, w)].append(self.run(prof, hz, [self.busy2, w]))
            log(f"  round {r + 1}/{self.runs} done")
        return results

    def fixed_cost(self, span):
        """What a profiler costs once per process: start, symbolizing and
        writing the profile at exit.  {("short"|"tiny", profiler): [(none
        measurement, profiled measurement)]}.  "short": busy2 at
        fixed_work + i*span/n mega-iterations, i = 0..n-1 (span ~ 100 ms
        of work), so both threads are sampled and their stacks, through
        libc's start_thread/clone3, are symbolized, and the run lengths
        cover a 100 ms period evenly.  "tiny": busy2 1, a ~2 ms run that
        takes next to no samples.  Paired by round, shuffled in a round."""
        n = max(5, self.runs)
        sizes = [self.fixed_work + round(span * i / n) for i in range(n)]
        configs = [("none", 0)] + [(p, 100) for p in PROFILERS if self.available(p)]
        rng = random.Random(20240602)
        results = {}
        for size in sizes:
            order = [(c, kind, w) for c in configs for kind, w in (("short", size), ("tiny", 1))]
            rng.shuffle(order)
            got = {}
            for (prof, hz), kind, w in order:
                got[(kind, prof)] = self.run(prof, hz, [self.busy2, w])
            for (kind, prof), m in got.items():
                if prof != "none":
                    results.setdefault((kind, prof), []).append((got[(kind, "none")], m))
        return sizes, results

    def attribution(self):
        """{(profiler, key): (|pooled share - 70|, pooled share, samples,
        worst single-run error)}: BENCH_ATTR_RUNS (default 3) runs each,
        the shares pooled by sample count."""
        runs = max(1, int(os.environ.get("BENCH_ATTR_RUNS", "3")))
        got = {}
        for _ in range(runs):
            for prof in PROFILERS:
                if not self.available(prof):
                    continue
                for key, args in (("attr1", ["1", "3"]), ("attr4", ["4", "0.75"])):
                    m = self.run(prof, 1000, [self.split] + args)
                    if not m["ok"]:
                        got.setdefault((prof, key), []).append(None)
                        continue
                    try:
                        got.setdefault((prof, key), []).append(
                            self.share(prof, m["output"], self.split, "work_seventy",
                                       "work_thirty"))
                    except (RuntimeError, ValueError, subprocess.SubprocessError) as e:
                        log(f"  {prof} {key}: {e}")
                        got.setdefault((prof, key), []).append(None)
        out = {}
        for k, lst in got.items():
            if not lst or any(x is None for x in lst):
                out[k] = None
                continue
            n = sum(x[1] for x in lst)
            pooled = sum(x[0] * x[1] for x in lst) / n if n else statistics.mean(x[0] for x in lst)
            out[k] = (abs(pooled - 70.0), pooled, n, max(abs(x[0] - 70.0) for x in lst))
        return out

    def handler_cost(self):
        """(median ns, p99 ns, samples, per-run p50s) of the agent's signal
        handler at 64 frames: three runs of deep64, the median of each
        figure (one run's calibration or a preemption cannot set it)."""
        if not self.available("sonde"):
            return None
        p50s, p99s, ns = [], [], []
        for i in range(3):
            logfile = self.work / f"selftime-{i}.log"
            m = self.run("sonde", 1000, [self.deep64, "2"],
                         extra_env={"SONDE_SELFTIME": "1", "SONDE_LOG": str(logfile)})
            if not m["ok"] or not logfile.exists():
                continue
            text = logfile.read_text(errors="replace")
            p50 = re.search(r"handler_ns_(?:p50|median)=(\d+(?:\.\d+)?)", text)
            p99 = re.search(r"handler_ns_p99=(\d+(?:\.\d+)?)", text)
            n = re.search(r"selftime:.*?samples=(\d+)", text)
            if p50:
                p50s.append(float(p50.group(1)))
                if p99:
                    p99s.append(float(p99.group(1)))
                if n:
                    ns.append(int(n.group(1)))
        if not p50s:
            return None
        return (statistics.median(p50s), statistics.median(p99s) if p99s else None,
                sum(ns) if ns else None, p50s)


def bench_output(build, name, timeout):
    """stdout of build/bench/NAME, or None if it is missing or failed
    (logged)."""
    exe = build / "bench" / name
    if not exe.exists():
        return None
    p = subprocess.run([str(exe)], capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        log(f"  {name}: {p.stderr.strip()[-300:]}")
        return None
    return p.stdout


def unwind_walk_cost(build):
    """{figure: (median ns, p99 ns)} from bench/unwind_cost (the agent's
    walker alone, outside any signal handler), or {} if unavailable."""
    text = bench_output(build, "unwind_cost", 300)
    if text is None:
        return {}
    return {m.group(1): (float(m.group(2)), float(m.group(3))) for m in
            re.finditer(r"^(\w+)_ns_median=([0-9.]+) p99=([0-9.]+)", text, re.M)}


def span_pair_cost(build):
    """{figure: (median ns, min ns)} from bench/span_cost (sonde_span_begin
    + sonde_span_end through libsonde.so, beside one clock_gettime), or {}."""
    text = bench_output(build, "span_cost", 600)
    if text is None:
        return {}
    return {m.group(1): (float(m.group(2)), float(m.group(3))) for m in
            re.finditer(r"^(\w+)_ns_median=([0-9.]+) min=([0-9.]+)", text, re.M)}


def task_cost(build):
    """Figures of bench/task_cost (active profiling): {name: {key: value}}
    from its key=value lines, or {}."""
    text = bench_output(build, "task_cost", 600)
    if text is None:
        return {}
    out = {}
    for line in text.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        first = line.split("=", 1)[0]
        name = re.sub(r"_(ns_median|median)$", "", first)
        val = fields.pop(first, None)
        try:
            out[name] = {"median": float(val), **{k: float(v) for k, v in fields.items()}}
        except (TypeError, ValueError):
            out[name] = {}
    return out


def cpu_jiffies():
    """(busy, total) CPU time of the whole machine, in seconds."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    idle = f[3] + (f[4] if len(f) > 4 else 0)
    return (sum(f[:8]) - idle) / hz, sum(f[:8]) / hz


def children_cpu():
    import resource
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def quantity(text):
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "mins": 60.0, "hrs": 3600.0,
             "": 1.0}
    m = re.fullmatch(r"(-?[0-9.]+(?:e[+-]?\d+)?)([a-zµ]*)", text.strip())
    if not m or m.group(2) not in units:
        raise ValueError(text)
    return float(m.group(1)) * units[m.group(2)]


def med(ms, key):
    vals = [m[key] for m in ms if m.get("ok") and key in m]
    return statistics.median(vals) if vals else None


def fmt_ratio(r):
    return "—" if r is None else f"{r:.3f} ({(r - 1) * 100:+.1f} %)"


def steady_state(p1, p2, n1, n2, key):
    """(median p2 - median p1) / (median n2 - median n1) - 1: the overhead
    per unit of extra work, start and exit costs cancelled; None if a
    figure is missing."""
    a, b, c, d = med(p1, key), med(p2, key), med(n1, key), med(n2, key)
    if None in (a, b, c, d) or d - c <= 0:
        return None
    return (b - a) / (d - c) - 1


def bootstrap(p1, p2, n1, n2, key, iters=2000, seed=7):
    """90 % percentile-bootstrap interval of steady_state: every list of
    runs resampled with replacement."""
    lists = [[m[key] for m in ms if m.get("ok") and key in m] for ms in (p1, p2, n1, n2)]
    if any(not x for x in lists):
        return None
    rng = random.Random(seed)
    est = []
    for _ in range(iters):
        a, b, c, d = (statistics.median(rng.choices(x, k=len(x))) for x in lists)
        if d - c > 0:
            est.append((b - a) / (d - c) - 1)
    if len(est) < iters // 2:
        return None
    est.sort()
    return est[int(0.05 * (len(est) - 1))], est[int(0.95 * (len(est) - 1))]


class LoadMeter:
    """CPU that processes other than this one and its children used
    between start() and percent(), as a percentage of the machine."""

    def __init__(self):
        self.busy0, self.total0 = cpu_jiffies()
        self.ours0 = children_cpu() + time.process_time()

    def percent(self):
        busy1, total1 = cpu_jiffies()
        ours1 = children_cpu() + time.process_time()
        return (max(0.0, (busy1 - self.busy0) - (ours1 - self.ours0))
                / max(1e-9, total1 - self.total0) * 100)


def main():
    if len(sys.argv) != 2:
        print("usage: bench.py BUILD_DIR", file=sys.stderr)
        return 2
    b = Bench(Path(sys.argv[1]))
    for need in (b.measure, b.busy2, b.deep64, b.split):
        if not need.exists():
            print(f"bench: {need} is missing (make all first)", file=sys.stderr)
            return 1
    t0 = time.monotonic()
    load_all = LoadMeter()
    rows = []  # (figure, {profiler: text}, goal, goal_key)
    W, W2 = b.lengths

    load = LoadMeter()
    ov3 = b.overhead()
    load_overhead = load.percent()
    b.raw["other_load_percent_overhead"] = load_overhead
    # The single-length figures (whole-run ratios, samples, RSS) use the 2W
    # runs: as long as the old single-length runs.
    ov = {(p, hz): ms for (p, hz, w), ms in ov3.items() if w == W2}
    base = ov[("none", 0)]
    base1 = ov3[("none", 0, W)]
    base_wall, base_cpu, base_rss = med(base, "wall_s"), med(base, "cpu_s"), med(base, "maxrss_kb")
    base_wall1, base_cpu1 = med(base1, "wall_s"), med(base1, "cpu_s")
    base_pwall, base_pwall1 = med(base, "prog_wall_s"), med(base1, "prog_wall_s")

    # Steady state, from W and 2W: wall in busy2's main, CPU of the process tree.
    b.raw["steady_state"] = {}
    for hz in (100, 1000):
        for what, key in (("wall", "prog_wall_s"), ("CPU", "cpu_s")):
            cells = {}
            for prof in PROFILERS:
                if not b.available(prof):
                    cells[prof] = "not installed"
                    continue
                p1, p2 = ov3[(prof, hz, W)], ov3[(prof, hz, W2)]
                o = steady_state(p1, p2, base1, base, key)
                ci = bootstrap(p1, p2, base1, base, key)
                # the same from whole-process wall time, for the record
                o_proc = steady_state(p1, p2, base1, base, "wall_s") if what == "wall" else None
                b.raw["steady_state"][f"{prof}_{what}_{hz}"] = {
                    "overhead": o, "ci90": ci, "overhead_from_process_wall": o_proc}
                if o is None:
                    cells[prof] = "FAILED"
                    continue
                cells[prof] = f"{o * 100:+.1f} %" + (
                    f" [{ci[0] * 100:+.1f}, {ci[1] * 100:+.1f}]" if ci else "")
                if prof == "sonde":
                    b.raw[f"sonde_steady_{what}_{hz}"] = o
                    b.raw[f"sonde_steady_{what}_{hz}_ci90"] = ci
            goal_key = "wall100" if (what == "wall" and hz == 100) else None
            rows.append((f"{what} time overhead @{hz} Hz, steady state (from W and 2W; "
                         "90 % interval)", cells, GOALS.get(goal_key, ""), goal_key))

    # Whole run, one length: what the old figure was.
    secs = f"{base_wall:.1f} s" if base_wall else f"{W2}M"
    for hz in (100, 1000):
        for what, key in (("wall", "wall_s"), ("CPU", "cpu_s")):
            cells = {}
            for prof in PROFILERS:
                ms = ov.get((prof, hz))
                if not ms:
                    cells[prof] = "not installed"
                    continue
                v = med(ms, key)
                ref = base_wall if key == "wall_s" else base_cpu
                cells[prof] = fmt_ratio(v / ref) if v and ref else "FAILED"
                if prof == "sonde" and v and ref:
                    b.raw[f"sonde_{what}_{hz}"] = v / ref
            rows.append((f"{what} time @{hz} Hz, whole run incl. start and exit ({secs}; "
                         "profiled/unprofiled)", cells, "", None))

    # Fixed cost implied by the two lengths (the intercept), for the notes:
    # (2 T_prof(W) - T_prof(2W)) - (2 T_none(W) - T_none(2W)), process wall.
    implied = {}
    for prof in PROFILERS:
        if not b.available(prof):
            continue
        a, c = med(ov3[(prof, 100, W)], "wall_s"), med(ov3[(prof, 100, W2)], "wall_s")
        if None not in (a, c, base_wall1, base_wall):
            implied[prof] = (2 * a - c) - (2 * base_wall1 - base_wall)
    b.raw["implied_fixed_cost_100hz_s"] = implied

    # Work for ~100 ms, from the unprofiled W runs.
    span = max(1, round(0.1 / (base_pwall1 / W))) if base_pwall1 else 56
    log(f"fixed cost: busy2 {b.fixed_work}..{b.fixed_work + span}M (~0.1-0.2 s, 2 threads "
        "sampled) and busy2 1 (~2 ms) under each profiler @100 Hz")
    load = LoadMeter()
    fc_sizes, fc = b.fixed_cost(span)
    load_fixed = load.percent()
    b.raw["other_load_percent_fixed_cost"] = load_fixed
    b.raw["fixed_cost_short_sizes"] = fc_sizes
    short_none = [m for (kind, _), pairs in fc.items() if kind == "short" for m, _ in pairs
                  if m.get("ok")]
    short_lo = min((m["wall_s"] for m in short_none), default=0)
    short_hi = max((m["wall_s"] for m in short_none), default=0)
    b.raw["fixed_cost"] = {}
    for kind, label in (
            ("short", f"fixed cost per process @100 Hz, busy2 {short_lo:.2f}-{short_hi:.2f} s, "
                      "both threads sampled and symbolized: wall mean (min…max) / CPU mean"),
            ("tiny", "fixed cost per process @100 Hz: ~2 ms run, next to no samples "
                     "(busy2 1; median wall)")):
        cells = {}
        for prof in PROFILERS:
            if not b.available(prof):
                cells[prof] = "not installed"
                continue
            pairs = [(n, m) for n, m in fc.get((kind, prof), []) if n.get("ok") and m.get("ok")]
            if not pairs:
                cells[prof] = "FAILED"
                continue
            if kind == "short":
                dw = [m["wall_s"] - n["wall_s"] for n, m in pairs]
                dc = [m["cpu_s"] - n["cpu_s"] for n, m in pairs]
                b.raw["fixed_cost"][f"{prof}_short_wall_s"] = dw
                b.raw["fixed_cost"][f"{prof}_short_cpu_s"] = dc
                cells[prof] = (f"{statistics.mean(dw) * 1000:+.0f} ms ({min(dw) * 1000:.0f}…"
                               f"{max(dw) * 1000:.0f}) / {statistics.mean(dc) * 1000:+.0f} ms")
            else:
                v = statistics.median(m["wall_s"] for _, m in pairs)
                ref = statistics.median(n["wall_s"] for n, _ in pairs)
                b.raw["fixed_cost"][f"{prof}_tiny_wall_s"] = v - ref
                cells[prof] = f"{(v - ref) * 1000:+.0f} ms"
        rows.append((label, cells, "", None))

    # Samples per CPU second at 1000 Hz, from each profiler's last good run.
    cells = {}
    for prof in PROFILERS:
        ms = [m for m in ov.get((prof, 1000), []) if m["ok"] and m.get("prog_cpu_s")]
        if not ms:
            cells[prof] = "not installed" if not b.available(prof) else "FAILED"
            continue
        rates = []
        for m in ms:
            try:
                rates.append(b.sample_count(prof, m["output"], b.busy2) / m["prog_cpu_s"])
            except (RuntimeError, ValueError, subprocess.SubprocessError) as e:
                log(f"  {prof}: {e}")
        cells[prof] = f"{statistics.median(rates):.0f}" if rates else "FAILED"
    rows.append(("samples per CPU second @1000 Hz (ideal 1000)", cells, "", None))

    log("attribution: split 1 thread x 3 s and 4 threads x 0.75 s CPU at 1000 Hz, "
        f"{os.environ.get('BENCH_ATTR_RUNS', '3')} runs each")
    attr = b.attribution()
    for key, label in (("attr1", "attribution error 70/30, 1 thread @1000 Hz"),
                       ("attr4", "attribution error 70/30, 4 threads @1000 Hz")):
        cells = {}
        for prof in PROFILERS:
            if not b.available(prof):
                cells[prof] = "not installed"
                continue
            a = attr.get((prof, key))
            cells[prof] = ("FAILED" if a is None else
                           f"{a[0]:.2f} pts ({a[1]:.1f} %, n={a[2]}, worst run {a[3]:.1f})")
            if prof == "sonde" and a is not None:
                b.raw[f"sonde_{key}"] = a[0]
        rows.append((label, cells, GOALS[key], key))

    # RSS: while profiling (the program's own VmHWM at the end of main) and
    # through exit (wait4 maxrss: includes writing the profile).
    base_hwm = med(base, "prog_vmhwm_kb")
    for key, label, base_v in (
            ("prog_vmhwm_kb", "RSS added while profiling @100 Hz (VmHWM at end of main)", base_hwm),
            ("maxrss_kb", "peak RSS added through exit @100 Hz (incl. writing the profile)",
             base_rss)):
        cells = {}
        for prof in PROFILERS:
            ms = ov.get((prof, 100))
            if not ms:
                cells[prof] = "not installed"
                continue
            v = med(ms, key)
            if v is None or base_v is None:
                cells[prof] = "FAILED"
                continue
            added = (v - base_v) / 1024.0
            if prof == "perf" and key == "maxrss_kb":
                cells[prof] = f"{v / 1024.0:.1f} MiB (perf process)"
            else:
                cells[prof] = f"{added:+.2f} MiB"
            if prof == "sonde":
                b.raw[f"sonde_{key}_added_mib"] = added
        unprofiled = f"; unprofiled {base_v / 1024.0:.1f} MiB" if base_v else ""
        rows.append((label.replace(")", unprofiled + ")", 1) if unprofiled else label, cells,
                     GOALS["rss"], "rss_" + key))

    log("handler cost: deep64 at 1000 Hz with SONDE_SELFTIME=1")
    hc = b.handler_cost()
    cells = {"gperftools": "n/a", "perf": "n/a (in kernel)"}
    if hc is None:
        cells["sonde"] = "n/a"
    else:
        cells["sonde"] = (f"{hc[0]:.0f} ns / {hc[1]:.0f} ns" if hc[1] is not None
                          else f"{hc[0]:.0f} ns / n/a") + (f" (n={hc[2]})" if hc[2] else "")
        b.raw["sonde_handler_p50_ns"] = hc[0]
        b.raw["sonde_handler_p50_runs_ns"] = hc[3]
    rows.append(("handler cost per sample, 64 frames (median / p99)", cells, GOALS["handler"],
                 "handler"))

    log("stack walk alone: bench/unwind_cost")
    walk = unwind_walk_cost(b.build)
    b.raw["unwind_cost"] = walk
    for fig, label in (("unwind_64_frames", "stack walk alone, 64 frames, warm (median / p99)"),
                       ("unwind_64_frames_cold", "stack walk alone, 64 frames, cold caches"),
                       ("unwind_64_frames_libc_cold", "stack walk alone, 64 frames via libc, cold")):
        v = walk.get(fig)
        rows.append((label, {"sonde": f"{v[0]:.0f} ns / {v[1]:.0f} ns" if v else "n/a",
                             "gperftools": "n/a", "perf": "n/a"}, "", None))

    log("span cost: bench/span_cost")
    sc = span_pair_cost(b.build)
    b.raw["span_cost"] = sc
    one, two, clk, clk2 = (sc.get(k) for k in ("span_pair_1thread", "span_pair_2threads",
                                               "clock_gettime_monotonic",
                                               "clock_gettime_monotonic_2threads"))
    if one:
        b.raw["sonde_span_pair_ns"] = one[0]
    rows.append(("span begin+end, median, 1 thread / 2 threads (peer: one clock_gettime)",
                 {"sonde": (f"{one[0]:.0f} ns / {two[0]:.0f} ns (clock_gettime {clk[0]:.0f} ns / "
                            f"{clk2[0]:.0f} ns)" if one and two and clk and clk2 else "n/a"),
                  "gperftools": "n/a", "perf": "n/a"}, GOALS["span"], "span"))

    log("active profiling: bench/task_cost")
    tc = task_cost(b.build)
    b.raw["task_cost"] = tc
    run, blk = tc.get("task_interval_running_error"), tc.get("task_interval_blocked_error")
    pk = tc.get("task_interval_sleep_peer_error")
    if run and blk and "p90" in run and "p90" in blk:
        b.raw["sonde_task_interval_err_ms"] = max(run["median"], blk["median"]) / 1e6
    rows.append(("snapshot interval error at 5 ms, median / p90: running call, blocked call "
                 "(peer: a bare clock_nanosleep loop)",
                 {"sonde": (f"{run['median'] / 1e6:.3f} / {run['p90'] / 1e6:.3f} ms, "
                            f"{blk['median'] / 1e6:.3f} / {blk['p90'] / 1e6:.3f} ms (sleep loop "
                            + (f"{pk['median'] / 1e6:.3f} / {pk['p90'] / 1e6:.3f} ms)"
                               if pk and "p90" in pk else "n/a)")
                            if run and blk and "p90" in run and "p90" in blk else "n/a"),
                  "gperftools": "n/a", "perf": "n/a"}, GOALS["task_interval"], "task_interval"))
    wt, nt, add = (tc.get(k) for k in ("task_watched_span_pair", "task_unwatched_span_pair",
                                        "task_added_per_call"))
    if add:
        b.raw["sonde_task_added_ns"] = add["median"]
    rows.append(("watched but fast call, span begin+end (peer: same without task)",
                 {"sonde": (f"{wt['median']:.0f} ns vs {nt['median']:.0f} ns: "
                            f"{add['median']:+.0f} ns" if wt and nt and add else "n/a"),
                  "gperftools": "n/a", "perf": "n/a"}, GOALS["task_cost"], "task_cost"))

    # Verdicts for sonde against the spec's goals.
    def verdict(key):
        if key == "wall100":
            v, ci = b.raw.get("sonde_steady_wall_100"), b.raw.get("sonde_steady_wall_100_ci90")
            if v is None:
                return "n/a"
            if ci and ci[0] * 100 <= 1.0 < ci[1] * 100:
                # The interval holds both sides of the goal: the machine's
                # noise is larger than what the goal asks to resolve.
                return f"inconclusive (estimate {v * 100:+.1f} %, interval spans 1 %)"
            return "met" if v * 100 <= 1.0 else "MISSED"
        value = {
                 "attr1": ("sonde_attr1", lambda v: v <= 2),
                 "attr4": ("sonde_attr4", lambda v: v <= 2),
                 "rss_prog_vmhwm_kb": ("sonde_prog_vmhwm_kb_added_mib", lambda v: v <= 16),
                 "rss_maxrss_kb": ("sonde_maxrss_kb_added_mib", lambda v: v <= 16),
                 "handler": ("sonde_handler_p50_ns", lambda v: v <= 1000),
                 "span": ("sonde_span_pair_ns", lambda v: v <= 100),
                 "task_interval": ("sonde_task_interval_err_ms", lambda v: v <= 1),
                 "task_cost": ("sonde_task_added_ns", lambda v: v <= 200)}.get(key)
        if value is None:
            return ""
        v = b.raw.get(value[0])
        if v is None:
            return "n/a"
        return "met" if value[1](v) else "MISSED"

    header = ["figure", "sonde", "gperftools", "perf", "goal (sonde)", "sonde vs goal"]
    table = [[r[0], r[1].get("sonde", ""), r[1].get("gperftools", ""), r[1].get("perf", ""), r[2],
              verdict(r[3]) if r[3] else ""] for r in rows]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    print()
    print(line)
    print("-" * len(line))
    for t in table:
        print("  ".join(c.ljust(w) for c, w in zip(t, widths)))
    print()
    others = load_all.percent()
    b.raw["other_load_percent"] = others
    worst = max(others, load_overhead, load_fixed)
    details = (f"unprofiled busy2 (medians of {b.runs} runs): {W}M iterations: wall "
               f"{base_wall1:.3f} s ({base_pwall1:.3f} s in main), CPU {base_cpu1:.3f} s; "
               f"{W2}M: wall {base_wall:.3f} s ({base_pwall:.3f} s in main), CPU "
               f"{base_cpu:.3f} s; machine: {os.cpu_count()} CPUs, kernel "
               f"{os.uname().release}; other processes used {load_overhead:.1f} % of the "
               f"machine's CPU during the overhead runs, {load_fixed:.1f} % during the "
               f"fixed-cost runs, {others:.1f} % over the whole run ({time.monotonic() - t0:.0f} s)"
               + (" — FIGURES ARE NOISY, rerun on a quiet machine" if worst > 5 else ""))
    print(details)

    def ms_(v):
        return f"{v * 1000:+.0f} ms"
    implied_text = ", ".join(f"{p} {ms_(v)}" for p, v in implied.items()) or "n/a"
    proc_wall = ", ".join(
        f"{p} {v['overhead_from_process_wall'] * 100:+.1f} %"
        for p in PROFILERS
        for v in [b.raw["steady_state"].get(f"{p}_wall_100")]
        if v and v.get("overhead_from_process_wall") is not None) or "n/a"

    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(c.replace("|", "\\|") for c in t) + " |" for t in table]
    notes = [
        "",
        details + ".",
        "",
        f"- Steady-state overhead (the spec's goal): `bench/busy2` (2 threads, fixed work) at "
        f"two lengths, W = {W}M and 2W = {W2}M iterations per thread, {b.runs} runs of every "
        "profiler × frequency × length, interleaved in a shuffled order each round.  "
        "Overhead = (median T_prof(2W) − median T_prof(W)) / (median T_none(2W) − median "
        "T_none(W)) − 1: what is paid once per process (the profiler's start, symbolizing "
        "and writing at exit) is in both lengths and cancels; what is left is the cost per "
        "second of profiled work.  Wall time is busy2's own, from entering main to both "
        "threads joined: start and exit work are outside it (they would cancel anyway), "
        "and an exit that waits for a periodic tick of the profiler (sonde's agent thread "
        "sleeps up to 100 ms before it sees the stop) would add up to a tick of jitter to "
        "a difference of whole-process times.  CPU time is the whole process tree's "
        "(wait4 in `bench/measure`; perf's own process included).  In brackets: a 90 % "
        "bootstrap interval (the runs of each of the four medians resampled).  The same "
        f"wall figure @100 Hz from whole-process wall times: {proc_wall}.",
        f"- Whole run incl. start and exit: the old single-length figure, median "
        f"profiled / unprofiled over the 2W runs ({base_wall:.1f} s unprofiled), process "
        "wall and CPU time from `bench/measure`; perf's figures include the perf process "
        "(its start-up and writing the file).  It is roughly the steady-state overhead plus "
        "the fixed cost divided by the run's length.",
        "- Fixed cost per process @100 Hz, paid once per process on top of the steady "
        f"state: (1) short runs of busy2 ({b.fixed_work}M to {b.fixed_work + span}M "
        "iterations, one length per round, spread over ~100 ms so a periodic effect is "
        "averaged over its phase rather than sampled at one), long enough that both worker "
        "threads are sampled, so their stacks through libc's start_thread / clone3 are "
        "symbolized at exit (for sonde: libdw reading libc's separate debug information); "
        "profiled minus unprofiled of the same round, mean with min…max for wall time, mean "
        "for CPU time.  It also holds the steady-state overhead of ~0.1-0.2 s of work "
        "(≤ 2 ms at 1 %).  (2) a ~2 ms run (busy2 1), median profiled minus median "
        "unprofiled: next to no samples, so nothing is symbolized — start and an "
        "empty profile only.  Cross-check: the fixed cost implied by the two overhead "
        "lengths @100 Hz, (2 T_prof(W) − T_prof(2W)) − (2 T_none(W) − T_none(2W)) on "
        f"whole-process wall medians: {implied_text}.",
        "- sonde and gperftools are started alike (LD_PRELOAD + environment); perf as "
        "`perf record -e cpu-clock -F HZ -g`.",
        "- Samples per CPU second: samples in the profile / the program's own CPU time.  "
        "Per-thread CPU timers fire on the kernel tick (CONFIG_HZ), so a profiler that "
        "does not count timer overruns is capped at HZ samples per thread-second.",
        "- Attribution: `tests/system/progs/split` (70 % / 30 % of CPU time by construction), "
        "BENCH_ATTR_RUNS runs (default 3) pooled by sample count; error = |pooled share − 70| "
        "in percentage points; n = samples in the two functions over all runs; worst run = the "
        "largest single-run error.",
        "- RSS while profiling: busy2's own VmHWM (/proc/self/status) at the end of main, "
        "minus the unprofiled one.  Through exit: wait4's maxrss from `bench/measure`, which "
        "also covers what an in-process profiler does at exit (symbolizing, writing the "
        "file); for perf, the perf process's own peak.",
        "- Handler cost: the agent's own histogram of its signal handler (SONDE_SELFTIME=1), "
        "measured from handler entry to the sample stored; median of three 2 s runs of "
        "`bench/deep64` at 1000 Hz.  The histogram tops out at 10230 ns: a figure of 10230 "
        "means \"that or more\".",
        "- Stack walk alone: `bench/unwind_cost`, the agent's own walker and tables timed "
        "outside the handler (warm: back to back; cold: 32 MiB of other memory read between "
        "walks).  The difference to the handler cost is what the handler does besides the "
        "walk (system calls such as re-arming its timer, the ring).",
        "- Active profiling: `bench/task_cost` on the agent's own code (watcher thread, signal "
        "handler, blocked-thread read).  Interval error: a task with threshold 50 ms and "
        "frequency 5 ms watches a 1.4 s call that burns CPU (snapshots through the signal) and "
        "one that blocks in poll() (read from outside); |interval − 5 ms| over consecutive "
        "snapshots of each capture's pprof offsets.  Watched but fast call: span begin+end of "
        "the watched interface (no duration) with a task running (threshold 200 ms) minus the "
        "same without task, median of 7 interleaved runs.",
    ]
    out_md = b.build / "bench" / "results.md"
    out_md.write_text("# sonde benchmark results\n\n" + "\n".join(md + notes) + "\n")
    (b.build / "bench" / "results.json").write_text(json.dumps(b.raw, indent=1, default=str))
    print(f"written: {out_md} ({time.monotonic() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
