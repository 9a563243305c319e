#!/usr/bin/python3
"""
server_bench.py — sonded's figures (SPEC.md, "Performance goals"), beside
a peer doing the same work:

  - ingest: profile uploads per second, by bench/ingest (libcurl, 8
    threads, one keep-alive connection each) PUTting a real ~50 KB gzipped
    pprof to sessions it created beforehand (creation is timed apart and
    shown too).  Median of BENCH_INGEST_RUNS (default 3) runs of
    BENCH_INGEST_COUNT (default 2000) uploads.  Goal ≥ 500 profiles/s.
  - merge: `GET /api/v1/views/flamegraph?app=A` over BENCH_MERGE_SESSIONS
    (default 1000) sessions of one app, each with a real profile (four
    different recordings, round robin), timed at the client; median of
    BENCH_MERGE_RUNS (default 5), the first (cold) one shown apart.
    Goal ≤ 1000 ms for 1000 sessions.  The peer: `go tool pprof` merging
    the same 1000 files, once printing them (-raw) and once writing one
    merged profile (-proto); median of BENCH_PEER_RUNS (default 3).

The profiles are recorded here with `sonde record -F 999` of a Python
program that calls a random mix of C-implemented work (json, re, zlib,
sqlite3, hashlib, …) under a random depth of Python recursion (0..100
levels, several native frames each): deep stacks, many distinct ones,
~50 KB gzipped for 10 s of CPU — a realistic agent upload, unlike a
synthetic profile with one stack.

    /usr/bin/python3 bench/server_bench.py BUILD_DIR

Needs BUILD_DIR/sonded, BUILD_DIR/sonde, BUILD_DIR/libsonde.so and
BUILD_DIR/bench/ingest (`make all`).  Prints the figures and writes
BUILD_DIR/bench/server-results.md and server-results.json.
"""

import http.client
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOALS = {"ingest": 500.0, "merge_ms": 1000.0}

WORKLOAD = r'''
import json, re, sys, time, zlib, hashlib, random, sqlite3, pickle, decimal, unicodedata, bz2, lzma
import xml.etree.ElementTree as ET
sys.setrecursionlimit(10000)
def rec(n, f):
    return f() if n == 0 else rec(n - 1, f)
db = sqlite3.connect(":memory:")
db.execute("create table t(a, b)")
db.executemany("insert into t values (?, ?)", [(i, str(i)) for i in range(2000)])
src = "def f(x):\n" + "".join(f"    y{i} = x * {i} + (x if x > {i} else -x)\n" for i in range(50))
xmltext = "<r>" + "".join(f"<i a='{i}'>t{i}</i>" for i in range(300)) + "</r>"
text = "\u00dcn\u00efc\u00f6d\u00e9 \u00f1 " * 200
r = random.Random(int(sys.argv[3]))
work = [
    lambda: json.dumps({str(i): [i] * 5 for i in range(300)}),
    lambda: json.loads(json.dumps([{"a": i, "b": [1.5, "x"]} for i in range(200)])),
    lambda: re.findall(r"(a+b)+c", "aab" * 400 + "c"),
    lambda: sorted(r.random() for _ in range(3000)),
    lambda: zlib.compress(r.randbytes(20000)),
    lambda: bz2.compress(r.randbytes(5000)),
    lambda: lzma.compress(r.randbytes(3000)),
    lambda: hashlib.sha256(bytes(100000)).hexdigest(),
    lambda: hashlib.md5(bytes(100000)).hexdigest(),
    lambda: db.execute("select sum(a), count(b) from t where b like '%7%'").fetchall(),
    lambda: pickle.loads(pickle.dumps([{"k": i} for i in range(500)])),
    lambda: decimal.Decimal(1) / decimal.Decimal(7) ** 50,
    lambda: unicodedata.normalize("NFKD", text),
    lambda: compile(src, "x", "exec"),
    lambda: ET.fromstring(xmltext).findall("i"),
    lambda: sum(i * i for i in range(5000)),
    lambda: "".join(str(i) for i in range(3000)).encode("utf-16"),
]
end = time.process_time() + float(sys.argv[1])
while time.process_time() < end:
    rec(r.randrange(0, int(sys.argv[2])), r.choice(work))
'''


def log(msg):
    print(msg, file=sys.stderr, flush=True)


_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def parse_wrk(stdout):
    """What `wrk --latency` printed -> {rps, requests, p50_ms, p99_ms,
    errors} (keys it did not print left out; rps None if absent)."""
    m = re.search(r"Requests/sec:\s+([0-9.]+)", stdout)
    n = re.search(r"(\d+) requests in", stdout)
    out = {"rps": float(m.group(1)) if m else None,
           "requests": int(n.group(1)) if n else None}
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        lm = re.search(rf"^\s+{pct}%\s+([0-9.]+)(us|ms|s)\s*$", stdout, re.M)
        if lm:
            out[key] = float(lm.group(1)) * _WRK_UNITS[lm.group(2)]
    errs = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", stdout)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                     stdout)
    out["errors"] = (int(errs.group(1)) if errs else 0) + (
        sum(int(x) for x in sock.groups()) if sock else 0)
    return out


def print_table(header, rows):
    """Prints rows (lists of strings) under header, columns padded to fit."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print()
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip())


def env_int(name, default):
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SONDE_") and k != "LD_PRELOAD"}
    env["LC_ALL"] = "C"
    env.update(extra or {})
    return env


def proc_cpu_s(pid):
    """A live process's CPU time so far (user + system), in seconds."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class Server:
    """sonded on a fresh data dir and a free port; stderr to a file."""

    def __init__(self, sonded, work):
        self.data = work / "data"
        self.admin = "sonde_" + secrets.token_hex(32)
        self.errlog = work / "sonded.stderr"
        extra = os.environ.get("BENCH_SONDED_ARGS", "").split()
        self.argv = [str(sonded), "--listen", "127.0.0.1:0", "--data", str(self.data)] + extra
        with open(self.errlog, "w") as err:
            self.proc = subprocess.Popen(self.argv, env=clean_env({"SONDE_ADMIN_TOKEN": self.admin}),
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=err, text=True, start_new_session=True)
        lines = []
        ready = threading.Event()

        def drain():
            for line in self.proc.stdout:
                lines.append(line)
                if "listening on" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=drain, daemon=True).start()
        ready.wait(30)
        m = re.search(r"sonded listening on http://([^\s:]+):(\d+)", "".join(lines))
        if not m:
            self.stop()
            raise RuntimeError(f"sonded did not start: {''.join(lines)} "
                               f"{self.errlog.read_text()[-1000:]}")
        self.host, self.port = m.group(1), int(m.group(2))
        self.url = f"http://{self.host}:{self.port}"

    def request(self, method, path, body=None, token=None, timeout=300):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            hdrs = {"Authorization": f"Bearer {token or self.admin}"}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                hdrs["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=hdrs)
            r = conn.getresponse()
            payload = r.read()
        finally:
            conn.close()
        try:
            return r.status, json.loads(payload)
        except ValueError:
            return r.status, payload

    def ok(self, method, path, body=None, token=None):
        st, b = self.request(method, path, body, token)
        if st not in (200, 201):
            raise RuntimeError(f"{method} {path} -> {st} {str(b)[:300]}")
        return b

    def cpu_s(self):
        """sonded's CPU time so far (user + system), in seconds."""
        return proc_cpu_s(self.proc.pid)

    def vmhwm_kb(self):
        try:
            m = re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{self.proc.pid}/status").read_text())
            return int(m.group(1)) if m else None
        except OSError:
            return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def machine_jiffies():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = f[3] + (f[4] if len(f) > 4 else 0)
    return sum(f) - idle, sum(f)


class LoadMeter:
    """CPU that processes other than ours (this script, its reaped children,
    the live processes pids: sonded, …) used meanwhile, as a percentage of
    the machine: above a few percent the figures are not to be trusted."""

    def __init__(self, pids):
        self.pids = pids
        self.start = self._sample()

    def _sample(self):
        busy, total = machine_jiffies()
        t = os.times()
        ours = t.user + t.system + t.children_user + t.children_system
        ours += sum(proc_cpu_s(p) for p in self.pids)
        return busy, total, ours

    def percent(self):
        b1, t1, o1 = self._sample()
        b0, t0, o0 = self.start
        hz = os.sysconf("SC_CLK_TCK")
        other = (b1 - b0) / hz - (o1 - o0)
        return max(0.0, other) / max(1e-9, (t1 - t0) / hz) * 100


def record(b, out, seconds, seed):
    """A real profile: `sonde record -F 999` of the deep-stack workload."""
    script = out.parent / "workload.py"
    script.write_text(WORKLOAD)
    p = subprocess.run([str(b / "sonde"), "record", "-F", "999", "-o", str(out), "--",
                        sys.executable, str(script), str(seconds), "100", str(seed)],
                       env=clean_env(), capture_output=True, text=True, timeout=300)
    if p.returncode != 0 or not out.exists():
        raise RuntimeError(f"sonde record failed: {p.stderr[-500:]}")
    return out


def run_ingest(b, srv, token, app, count, threads, profiles):
    aid = srv.ok("POST", "/api/v1/agent/register",
                 {"app": app, "instance": f"bench-{secrets.token_hex(3)}", "pid": os.getpid(),
                  "agent_version": "bench"}, token=token)["agent_id"]
    argv = [str(b / "bench" / "ingest"), srv.url, token, str(aid), str(count), str(threads)]
    argv += [str(p) for p in profiles]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=1800, env=clean_env())
    vals = {k: float(v) for k, v in re.findall(r"(\w+)=([0-9.]+)", p.stdout)}
    if p.returncode != 0 or "profiles_per_s" not in vals:
        raise RuntimeError(f"ingest failed ({p.returncode}): {p.stdout} {p.stderr[-500:]}")
    return vals


def time_pprof(args, files, runs, out_dir):
    """Median wall time (s) of `go tool pprof -symbolize=none ARGS FILES`."""
    env = clean_env({"GOCACHE": os.environ.get("GOCACHE", "/tmp/gocache"),
                     "PPROF_TMPDIR": str(out_dir)})
    times = []
    for _ in range(runs):
        t0 = time.monotonic()
        p = subprocess.run(["go", "tool", "pprof", "-symbolize=none"] + args + [str(f) for f in files],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           timeout=1800, env=env)
        times.append(time.monotonic() - t0)
        if p.returncode != 0:
            raise RuntimeError(f"go tool pprof {' '.join(args)}: {p.stderr[-300:]}")
    return statistics.median(times), times


def main():
    if len(sys.argv) != 2:
        print("usage: server_bench.py BUILD_DIR", file=sys.stderr)
        return 2
    b = Path(sys.argv[1]).resolve()
    for need in ("sonded", "sonde", "libsonde.so", "bench/ingest"):
        if not (b / need).exists():
            print(f"server_bench: {b / need} is missing (make all)", file=sys.stderr)
            return 1
    work = b / "bench" / "server-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t_start = time.monotonic()
    threads = env_int("BENCH_INGEST_THREADS", 8)
    count = env_int("BENCH_INGEST_COUNT", 2000)
    runs = env_int("BENCH_INGEST_RUNS", 3)
    nmerge = env_int("BENCH_MERGE_SESSIONS", 1000)
    merge_runs = env_int("BENCH_MERGE_RUNS", 5)
    peer_runs = env_int("BENCH_PEER_RUNS", 3)
    raw = {"threads": threads, "count": count, "runs": runs, "merge_sessions": nmerge}

    log("server: recording profiles (sonde record -F 999 of a deep-stack Python workload)")
    main_profile = record(b, work / "ingest.pb.gz", 10, 1)
    merge_profiles = [main_profile] + [record(b, work / f"merge{i}.pb.gz", 3, 100 + i)
                                       for i in range(3)]
    size = main_profile.stat().st_size
    raw["profile_bytes"] = size
    raw["merge_profile_bytes"] = [p.stat().st_size for p in merge_profiles]

    srv = Server(b / "sonded", work)
    try:
        agent = srv.ok("POST", "/api/v1/tokens", {"role": "agent", "name": "bench"})["token"]
        reader = srv.ok("POST", "/api/v1/tokens", {"role": "reader", "name": "bench"})["token"]

        log(f"server: ingest, {runs} runs of {count} uploads of {size / 1024:.0f} KB by "
            f"{threads} threads")
        ing = []
        load = LoadMeter([srv.proc.pid])
        cpu0 = srv.cpu_s()
        for r in range(runs):
            v = run_ingest(b, srv, agent, "ingest", count, threads, [main_profile])
            log(f"  run {r + 1}: {v['profiles_per_s']:.0f} profiles/s, "
                f"sessions created at {v['sessions'] / v['create_s']:.0f}/s")
            ing.append(v)
        rates = [v["profiles_per_s"] for v in ing]
        creates = [v["sessions"] / v["create_s"] for v in ing if v["create_s"] > 0]
        raw["ingest_runs"] = ing
        # What one upload costs the server, whatever the machine's load.
        raw["sonded_cpu_ms_per_session"] = (srv.cpu_s() - cpu0) / (runs * count) * 1000
        raw["other_load_percent_ingest"] = load.percent()

        log(f"server: {nmerge} sessions of app 'merge' ({len(merge_profiles)} recordings, "
            "round robin)")
        run_ingest(b, srv, agent, "merge", nmerge, threads, merge_profiles)
        path = "/api/v1/views/flamegraph?app=merge"
        merge_times, merged = [], None
        load = LoadMeter([srv.proc.pid])
        for r in range(merge_runs):
            t0 = time.monotonic()
            st, body = srv.request("GET", path, token=reader)
            merge_times.append(time.monotonic() - t0)
            if st != 200:
                raise RuntimeError(f"GET {path} -> {st} {str(body)[:300]}")
            merged = body
        if merged.get("sessions") != nmerge:
            raise RuntimeError(f"the merged view counts {merged.get('sessions')} sessions, "
                               f"not {nmerge}")
        merge_ms = statistics.median(merge_times) * 1000
        raw["other_load_percent_merge"] = load.percent()
        raw["merge_runs_ms"] = [t * 1000 for t in merge_times]
        raw["merge_total"] = merged.get("total")
        raw["sonded_vmhwm_kb"] = srv.vmhwm_kb()
        # The same merge through the JSON-free text view, for scale.
        t0 = time.monotonic()
        srv.request("GET", "/api/v1/views/collapsed?app=merge", token=reader)
        raw["collapsed_ms"] = (time.monotonic() - t0) * 1000
    finally:
        status = srv.stop()
    raw["sonded_exit"] = status

    log(f"peer: go tool pprof over the same {nmerge} files, {peer_runs} runs each")
    files_dir = work / "files"
    files_dir.mkdir()
    files = []
    for i in range(nmerge):
        f = files_dir / f"session-{i + 1}.pb.gz"
        os.link(merge_profiles[i % len(merge_profiles)], f)
        files.append(f)
    peers = {}
    for label, args in (("-raw", ["-raw"]),
                        ("-proto", ["-proto", "-output", str(work / "merged.pb.gz")])):
        try:
            med, all_ = time_pprof(args, files, peer_runs, work)
            peers[label] = med * 1000
            raw[f"pprof{label}_runs_ms"] = [t * 1000 for t in all_]
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            log(f"  go tool pprof {label}: {e}")
            peers[label] = None

    # The merged view's total must be what go tool pprof makes of the same
    # files (so the figure is for a correct merge).
    agree = None
    merged_file = work / "merged.pb.gz"
    if merged_file.exists() and merged.get("unit") == "nanoseconds":
        p = subprocess.run(["go", "tool", "pprof", "-symbolize=none", "-top", "-nodecount=1",
                            f"-sample_index={merged.get('type')}", "-unit=ns", str(merged_file)],
                           capture_output=True, text=True, timeout=300,
                           env=clean_env({"GOCACHE": os.environ.get("GOCACHE", "/tmp/gocache")}))
        m = re.search(r"of (\d+)ns total", p.stdout)
        if m:
            agree = int(m.group(1)) == merged.get("total")
            raw["pprof_merged_total"] = int(m.group(1))

    ingest_rate = statistics.median(rates)
    raw.update({"ingest_profiles_per_s": ingest_rate, "merge_ms": merge_ms, "peers_ms": peers})

    def verdict(ok):
        return "met" if ok else "MISSED"

    lines = [
        f"ingest: {ingest_rate:.0f} profiles/s (goal ≥ {GOALS['ingest']:.0f}) — "
        f"{verdict(ingest_rate >= GOALS['ingest'])}; runs "
        f"{', '.join(f'{x:.0f}' for x in rates)}; {size / 1024:.0f} KB profile, {threads} "
        f"keep-alive clients; session creation {statistics.median(creates):.0f}/s; sonded "
        f"CPU {raw['sonded_cpu_ms_per_session']:.1f} ms per session (create + upload)",
        f"merge {nmerge} sessions: {merge_ms:.0f} ms (goal ≤ {GOALS['merge_ms']:.0f}) — "
        f"{verdict(merge_ms <= GOALS['merge_ms'])}; runs "
        f"{', '.join(f'{t * 1000:.0f}' for t in merge_times)} (first is cold); "
        f"GET /api/v1/views/flamegraph, JSON tree; total "
        + {True: "equals go tool pprof's", False: "DIFFERS from go tool pprof's",
           None: "not compared"}[agree],
    ]
    for label, v in peers.items():
        what = ("print the merged samples" if label == "-raw"
                else "write one merged profile")
        lines.append(f"peer: go tool pprof {label} over the same {nmerge} files: "
                     + (f"{v:.0f} ms ({what}; sonded is {v / merge_ms:.1f}× faster)"
                        if v else "FAILED"))
    worst = max(raw["other_load_percent_ingest"], raw["other_load_percent_merge"])
    rss = (f"sonded peak RSS {raw['sonded_vmhwm_kb'] / 1024:.0f} MiB; "
           if raw.get("sonded_vmhwm_kb") else "")
    lines.append(f"{rss}exit status on SIGTERM {status}; {os.cpu_count()} CPUs; other "
                 f"processes used {raw['other_load_percent_ingest']:.0f} % of the machine during "
                 f"ingest, {raw['other_load_percent_merge']:.0f} % during the merges"
                 + (" — FIGURES ARE NOISY, rerun on a quiet machine" if worst > 5 else "")
                 + f"; {time.monotonic() - t_start:.0f} s in all")
    print()
    for line in lines:
        print(line)
    md = ["# sonded benchmark results", ""] + [f"- {line}" for line in lines] + [
        "",
        "Ingest: `bench/ingest` (libcurl, one keep-alive connection per thread) creates the "
        "sessions first (timed apart), then PUTs the profile to each; the rate is uploads / "
        "wall time from all threads starting to the last 201.  Merge: client-side wall time "
        "of the whole request (store reads, decoding, merging, JSON).  go tool pprof's "
        "figure includes its own start (the `go` tool dispatch, ~0.1 s).",
    ]
    (b / "bench" / "server-results.md").write_text("\n".join(md) + "\n")
    (b / "bench" / "server-results.json").write_text(json.dumps(raw, indent=1, default=str))
    print(f"written: {b / 'bench' / 'server-results.md'}")
    return 0 if status == 0 and agree is not False else 1


if __name__ == "__main__":
    sys.exit(main())
