#!/usr/bin/python3
"""
loadgen_bench.py — sonde's HTTP load generator (`sonde loadtest`, the
engine in src/common/loadgen*.c) beside wrk, its peer, against the same
nginx on loopback (issue 7's goal: requests/s ≥ 80 % of wrk's, p99
latency side by side).

nginx (Debian's nginx-light) runs from a config of our own in a temp dir
under BUILD_DIR/bench/loadgen-work: one process (no daemon, no master),
one worker, pid, logs and temp paths all in that dir, access log off,
serving one small static file (256 bytes) on a free 127.0.0.1 port.  Then,
in turn, BENCH_LOADGEN_RUNS (default 3) rounds of

    wrk -t2 -cN -dSs --latency URL
    sonde loadtest URL -c N -d Ss --threads 2 --json

with N = BENCH_LOADGEN_USERS (default 50), S = BENCH_LOADGEN_SECONDS
(default 5), the order swapped every round so drift hits both alike,
after one unmeasured second of each.  Medians of requests/s and of p99
(and p50) latency; the ratio sonde/wrk of the medians, and round by
round (each round's pair back to back, so drift in the machine's speed
cancels); the CPU each generator used (its process's user + system
time).  Nothing is pinned: the machine's
cores are shared by nginx and the generator, as they would be.

    /usr/bin/python3 bench/loadgen_bench.py BUILD_DIR

Needs BUILD_DIR/sonde (`make all`), nginx and wrk (`make deps`).  Prints
the figures and writes BUILD_DIR/bench/loadgen-results.md and
loadgen-results.json.  Exit 1 when a run fails, else 0 (a missed goal is
reported, not an error).
"""

import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from server_bench import LoadMeter, clean_env, env_int, log, parse_wrk, print_table

GOAL_RATIO = 0.80
NGINX = "/usr/sbin/nginx"

NGINX_CONF = """\
# loadgen_bench.py's nginx: everything in {work}, nothing of the system's.
daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    default_type text/plain;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    client_body_temp_path {work}/tmp/body;
    proxy_temp_path {work}/tmp/proxy;
    fastcgi_temp_path {work}/tmp/fastcgi;
    uwsgi_temp_path {work}/tmp/uwsgi;
    scgi_temp_path {work}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {work}/www;
        location / {{ }}
    }}
}}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    """nginx in the foreground on a free loopback port, from work."""

    def __init__(self, work):
        self.work = work
        for d in ("tmp", "www"):
            (work / d).mkdir(parents=True, exist_ok=True)
        (work / "www" / "index.html").write_text(("sonde loadgen bench " * 13)[:255] + "\n")
        self.port = free_port()
        conf = work / "nginx.conf"
        conf.write_text(NGINX_CONF.format(work=work, port=self.port))
        self.errlog = work / "nginx.stderr"
        with open(self.errlog, "w") as err:
            # -e: the error log before the config is read (not /var/log).
            self.proc = subprocess.Popen([NGINX, "-p", str(work), "-e", str(work / "error.log"),
                                          "-c", str(conf)], stdin=subprocess.DEVNULL,
                                         stdout=err, stderr=err, env=clean_env(),
                                         start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}/index.html"
        deadline = time.monotonic() + 15
        while not self._accepts():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx did not start: {self.errlog.read_text()[-600:]} "
                                   f"{self._error_log()[-600:]}")
            time.sleep(0.05)

    def _accepts(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def _error_log(self):
        try:
            return (self.work / "error.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful stop
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def timed(argv, timeout):
    """Runs argv: (completed process, CPU seconds it used)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=clean_env())
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return p, cpu


def run_wrk(url, users, seconds):
    """{rps, p50_ms, p99_ms, errors, cpu_s, requests}."""
    p, cpu = timed(["wrk", "-t2", f"-c{users}", f"-d{seconds}s", "--latency", url],
                   seconds + 60)
    out = parse_wrk(p.stdout)
    if p.returncode != 0 or out["rps"] is None:
        raise RuntimeError(f"wrk failed ({p.returncode}): {p.stdout[-300:]} {p.stderr[-300:]}")
    out["cpu_s"] = cpu
    return out


def run_sonde(sonde, url, users, seconds):
    """The same figures from `sonde loadtest --json`."""
    p, cpu = timed([str(sonde), "loadtest", url, "-c", str(users), "-d", f"{seconds}s",
                    "--threads", "2", "--json"], seconds + 60)
    try:
        r = json.loads(p.stdout)
    except ValueError:
        r = None
    if p.returncode != 0 or not r:
        raise RuntimeError(f"sonde loadtest failed ({p.returncode}): {p.stdout[-300:]} "
                           f"{p.stderr[-300:]}")
    lat = r.get("latency_ms") or {}
    non2xx = sum(v for k, v in r["status"].items() if not k.startswith("2"))
    out = {"rps": r["requests_per_s"], "cpu_s": cpu, "requests": r["requests"],
           "errors": r["errors"]["total"] + non2xx}
    if lat:
        out["p50_ms"], out["p99_ms"] = lat["p50"], lat["p99"]
    return out


def main():
    if len(sys.argv) != 2:
        print("usage: loadgen_bench.py BUILD_DIR", file=sys.stderr)
        return 2
    b = Path(sys.argv[1]).resolve()
    sonde = b / "sonde"
    if not sonde.exists():
        print(f"loadgen_bench: {sonde} is missing (make all)", file=sys.stderr)
        return 1
    for tool, pkg in ((NGINX, "nginx-light"), ("wrk", "wrk")):
        if not shutil.which(tool):
            print(f"loadgen_bench: {tool} is not installed (Debian package {pkg}; make deps)",
                  file=sys.stderr)
            return 1
    runs = env_int("BENCH_LOADGEN_RUNS", 3)
    seconds = env_int("BENCH_LOADGEN_SECONDS", 5)
    users = env_int("BENCH_LOADGEN_USERS", 50)
    work = b / "bench" / "loadgen-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t_start = time.monotonic()
    gens = {"wrk": lambda url: run_wrk(url, users, seconds),
            "sonde": lambda url: run_sonde(sonde, url, users, seconds)}
    results = {g: [] for g in gens}
    raw = {"runs": runs, "seconds": seconds, "users": users, "threads": 2,
           "cpus": os.cpu_count()}
    nginx = Nginx(work)
    try:
        log(f"loadgen: nginx at {nginx.url}; wrk and sonde loadtest, -c{users} 2 threads "
            f"{seconds}s, {runs} rounds")
        for g in gens:  # warm-up, not measured
            (run_wrk(nginx.url, users, 1) if g == "wrk" else run_sonde(sonde, nginx.url, users, 1))
        load = LoadMeter([nginx.proc.pid])
        for r in range(runs):
            order = list(gens) if r % 2 == 0 else list(reversed(gens))
            for g in order:
                if nginx.proc.poll() is not None:
                    raise RuntimeError(f"nginx exited ({nginx.proc.returncode}): "
                                       f"{nginx._error_log()[-600:]}")
                results[g].append(gens[g](nginx.url))
            log(f"  round {r + 1}/{runs}: " + ", ".join(
                f"{g} {results[g][-1]['rps']:.0f}/s p99 {results[g][-1].get('p99_ms', 0):.2f} ms"
                for g in gens))
        raw["other_load_percent"] = load.percent()
    finally:
        raw["nginx_exit"] = nginx.stop()
    raw["results"] = results

    def median(g, key):
        vals = [m[key] for m in results[g] if m.get(key) is not None]
        return statistics.median(vals) if vals else None

    base = median("wrk", "rps")
    rows = []
    for g, label in (("wrk", "wrk 4.1 (-t2)"), ("sonde", "sonde loadtest (--threads 2)")):
        v = median(g, "rps")
        ratio = v / base if v and base else None
        p50, p99, cpu = median(g, "p50_ms"), median(g, "p99_ms"), median(g, "cpu_s")
        errors = sum(m.get("errors", 0) for m in results[g])
        goal = ""
        if g == "sonde" and ratio is not None:
            goal = (f"goal ≥ {GOAL_RATIO * 100:.0f} % of wrk: "
                    + ("met" if ratio >= GOAL_RATIO else "MISSED"))
        rows.append([label, f"{v:.0f}", "" if g == "wrk" else f"{ratio * 100:.1f} %",
                     f"{p50:.3f} ms" if p50 is not None else "",
                     f"{p99:.3f} ms" if p99 is not None else "",
                     f"{cpu / seconds * 100:.0f} %" if cpu is not None else "",
                     ", ".join(f"{m['rps']:.0f}" for m in results[g])
                     + (f"; {errors} errors" if errors else ""), goal])
        raw[f"median_rps {g}"] = v
        raw[f"median_p99_ms {g}"] = p99
        if g == "sonde" and ratio is not None:
            raw["ratio sonde/wrk"] = ratio
    # Each round's sonde/wrk, measured back to back: drift in the machine's
    # speed between rounds cancels out of these.
    paired = [s_["rps"] / w["rps"] for s_, w in zip(results["sonde"], results["wrk"])
              if w["rps"] > 0]
    raw["paired ratios"] = paired
    paired_note = ("sonde/wrk round by round: "
                   + ", ".join(f"{x * 100:.1f} %" for x in paired)
                   + (f" (median {statistics.median(paired) * 100:.1f} %)" if paired else ""))
    header = ["generator", "requests/s (median)", "vs wrk", "p50 latency", "p99 latency",
              "CPU (of one core)", "runs", "note"]
    print_table(header, rows)
    others = raw.get("other_load_percent", 0.0)
    details = (f"nginx 1.22 (one worker, a 256-byte static file, access log off) on loopback; "
               f"{users} connections, 2 threads, {seconds} s per run, {runs} rounds, wrk and "
               f"sonde in turn (order swapped each round); {os.cpu_count()} CPUs shared by "
               f"nginx and the generator, nothing pinned; other processes used {others:.1f} % "
               f"of the machine"
               + (" — FIGURES ARE NOISY, rerun on a quiet machine" if others > 5 else "")
               + f"; {time.monotonic() - t_start:.0f} s in all")
    print()
    print(details)
    print(paired_note)
    md = ["# sonde loadtest beside wrk, against nginx on loopback", "",
          "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(x.replace("|", "\\|") for x in r) + " |" for r in rows]
    md += ["", details + ".", "", paired_note[0].upper() + paired_note[1:] + ".", "",
           "Both generators run closed-model keep-alive connections as fast as nginx "
           "answers; latency is per request from send to the whole response.  CPU is the "
           "generator's own (user + system) over the run."]
    (b / "bench" / "loadgen-results.md").write_text("\n".join(md) + "\n")
    (b / "bench" / "loadgen-results.json").write_text(json.dumps(raw, indent=1, default=str))
    print(f"written: {b / 'bench' / 'loadgen-results.md'}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as e:
        print(f"loadgen_bench: {e}", file=sys.stderr)
        sys.exit(1)
