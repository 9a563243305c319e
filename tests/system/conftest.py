"""
conftest.py — the one place the system tests get their helpers from.

System tests run real programs (tests/system/progs, built by `make progs`)
under the real agent (libsonde.so) and the real CLI (sonde), and read the
profiles with the real reader, `go tool pprof`.  Tests stay short; anything
they share lives here:

  build dir      $SONDE_BUILD, default `build` (`build/san` when SONDE_SAN=1),
                 relative to the repository root.
  prog(name)     path of a built test program.
  sanitizer      with SONDE_SAN=1 the agent is built with ASan/UBSan, so every
                 process that loads it gets the ASan runtime first in
                 LD_PRELOAD and ASAN_OPTIONS that leave the host's signal
                 handling alone (see san_env()).
  record(...)    fixture: runs `sonde record ... -- PROG ARGS` with a timeout
                 in its own process group, returns (completed process, output
                 path); kills the whole group if the timeout hits.
                 record_module: the same, shared by a module's tests.
  run(...)       fixture: the same for any command (LD_PRELOAD-only runs,
                 programs without the agent, `sonde top`).
  pprof helpers  pprof_top(), pprof_traces(), pprof_raw(), parse_collapsed():
                 run `go tool pprof -symbolize=none` (what is in the file is
                 what the test sees; pprof does not symbolize behind our back)
                 and parse its text output.

Run:  /usr/bin/python3 -m pytest tests/system -q
      SONDE_BUILD=build/hC /usr/bin/python3 -m pytest tests/system -q
"""

import functools
import math
import os
import re
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAN = os.environ.get("SONDE_SAN") == "1"


def _build_dir():
    b = os.environ.get("SONDE_BUILD") or ("build/san" if SAN else "build")
    p = Path(b)
    return p if p.is_absolute() else ROOT / p


BUILD = _build_dir()
SONDE = BUILD / "sonde"
LIBSONDE = BUILD / "libsonde.so"
PROGS = BUILD / "progs"

# Anything here on a process's stderr fails the test, sanitizer run or not.
SANITIZER_REPORT = re.compile(r"ERROR: (Address|Leak|Thread)Sanitizer|runtime error:|"
                              r"AddressSanitizer:DEADLYSIGNAL")


def prog(name):
    """Path of a built test program (tests/system/progs/NAME.c)."""
    p = PROGS / name
    if not p.exists():
        pytest.fail(f"{p} is missing: build it with `make BUILDDIR={BUILD.relative_to(ROOT)} progs`"
                    if BUILD.is_relative_to(ROOT) else f"{p} is missing")
    return str(p)


# --------------------------------------------------------------------------
# Sanitizer runs
# --------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def asan_runtime():
    """The ASan runtime the agent was linked against, for LD_PRELOAD.

    An uninstrumented host (every test program) that loads an ASan-built
    libsonde.so must have the runtime loaded first, or ASan refuses to start
    ("ASan runtime does not come first").  ldd names the one libsonde.so
    needs; gcc knows where its own is."""
    ldd = subprocess.run(["ldd", str(LIBSONDE)], capture_output=True, text=True)
    m = re.search(r"libasan\.so\S*\s+=>\s+(\S+)", ldd.stdout)
    if m:
        return m.group(1)
    out = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True,
                         check=True).stdout.strip()
    return os.path.realpath(out)


# detect_leaks=0: LSan would report the host program's own (and libc's)
#   allocations that are still live at exit; agent leaks are for the unit
#   tests' ASan run, where the host is ours.
# handle_segv=0, allow_user_segv_handler=1: the host and the agent keep their
#   own SIGSEGV/SIGBUS handling (the agent may probe memory under a handler).
# handle_sigill=0, handle_abort=0: same for those signals.
# verify_asan_link_order=0: belt and braces for hosts that preload other
#   libraries before ours.
ASAN_OPTIONS = ("detect_leaks=0:handle_segv=0:handle_sigbus=0:handle_sigill=0:handle_abort=0:"
                "allow_user_segv_handler=1:verify_asan_link_order=0:abort_on_error=0:"
                "exitcode=99")
UBSAN_OPTIONS = "print_stacktrace=1:halt_on_error=1:exitcode=98"


def san_env(env):
    """Adds what a sanitizer build needs to env (a dict), in place."""
    if not SAN:
        return env
    rt = asan_runtime()
    pre = env.get("LD_PRELOAD", "")
    if rt not in pre.split(":"):
        env["LD_PRELOAD"] = rt + (":" + pre if pre else "")
    env.setdefault("ASAN_OPTIONS", os.environ.get("SONDE_ASAN_OPTIONS", ASAN_OPTIONS))
    env.setdefault("UBSAN_OPTIONS", UBSAN_OPTIONS)
    return env


def base_env(extra=None, agent=False):
    """The environment for a process under test: ours, minus any SONDE_*
    that would leak settings into it, plus extra.  agent: the process (or
    one it starts) loads libsonde.so, so a sanitizer run needs its runtime
    preloaded too."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SONDE_") and k not in ("LD_PRELOAD", "CPUPROFILE")}
    env["LC_ALL"] = "C"
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return san_env(env) if agent else env


def preload_env(output, extra=None):
    """Environment that starts the agent without the CLI: LD_PRELOAD and
    SONDE_OUTPUT (plus extra SONDE_* settings)."""
    env = {"LD_PRELOAD": str(LIBSONDE), "SONDE_OUTPUT": str(output)}
    if extra:
        env.update(extra)
    return base_env(env, agent=True)


# --------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------

class ProcessTracker:
    """Every process a test starts, so that none outlives it.  Each runs in
    its own session (so a group holds the program and anything it forked);
    cleanup signals that group by the pid we started, nothing else."""

    def __init__(self):
        self.procs = []

    def start(self, argv, env, cwd):
        p = subprocess.Popen([str(a) for a in argv], env=env, cwd=cwd, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, errors="replace",
                             start_new_session=True)
        self.procs.append(p)
        return p

    @staticmethod
    def kill_group(p):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def cleanup(self):
        for p in self.procs:
            # Only a leader that has not been reaped: its pid (and so its
            # group id) cannot have been reused by anyone else's process.
            if p.poll() is None:
                self.kill_group(p)
                p.wait(timeout=10)
            for s in (p.stdout, p.stderr):
                if s:
                    s.close()


@dataclass
class Completed:
    argv: list
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    output: Path = None  # the profile `sonde record` was asked to write

    def describe(self):
        return (f"$ {shlex.join(str(a) for a in self.argv)}\n"
                f"exit status {self.returncode} after {self.seconds:.2f}s\n"
                f"--- stdout ---\n{self.stdout[-3000:]}\n--- stderr ---\n{self.stderr[-3000:]}")

    def values(self):
        """key=value pairs from the program's stdout, the last one winning."""
        return dict(re.findall(r"(\w+)=(\S+)", self.stdout))


def _run(tracker, argv, env, cwd, timeout):
    t0 = time.monotonic()
    p = tracker.start(argv, env, cwd)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        tracker.kill_group(p)
        out, err = p.communicate(timeout=10)
        c = Completed(list(argv), p.returncode, out, err, time.monotonic() - t0)
        pytest.fail(f"timed out after {timeout}s (hung or deadlocked); killed its process "
                    f"group\n{c.describe()}")
    c = Completed(list(argv), p.returncode, out, err, time.monotonic() - t0)
    if SANITIZER_REPORT.search(err):
        pytest.fail(f"sanitizer report on stderr\n{c.describe()}")
    return c


@pytest.fixture
def processes():
    tracker = ProcessTracker()
    yield tracker
    tracker.cleanup()


@pytest.fixture
def run(processes, tmp_path):
    """run(argv, env=None, cwd=tmp_path, timeout=60, check=False) -> Completed.

    env: extra variables over base_env() (no agent unless they ask for it:
    raw_env=preload_env(...)).
    check: fail the test unless the exit status is 0."""

    def _go(argv, env=None, cwd=None, timeout=60, check=False, raw_env=None):
        e = raw_env if raw_env is not None else base_env(env)
        c = _run(processes, argv, e, cwd or tmp_path, timeout)
        if check and c.returncode != 0:
            pytest.fail(f"command failed\n{c.describe()}")
        return c

    return _go


def make_recorder(processes, directory):
    """record(prog_argv, hz=None, mode=None, fmt=None, output=None,
              flags=(), env=None, timeout=60, check=True, cwd=None) -> Completed

    Runs `sonde record [-F hz] [--cpu|--wall] [--format fmt] -o output
    [flags] -- prog_argv`.  output defaults to a fresh file in directory
    (output=False: no -o, the CLI's default).  check: fail unless the exit
    status is 0 and the output file exists.  The result's .output is the
    profile's path."""
    counter = [0]

    def _go(prog_argv, hz=None, mode=None, fmt=None, output=None, flags=(), env=None,
            timeout=60, check=True, cwd=None):
        if not SONDE.exists():
            pytest.fail(f"{SONDE} is missing: build with make")
        argv = [str(SONDE), "record"]
        if hz is not None:
            argv += ["-F", str(hz)]
        if mode is not None:
            argv.append(f"--{mode}")
        if fmt is not None:
            argv += ["--format", fmt]
        if output is None:
            counter[0] += 1
            ext = "txt" if fmt == "collapsed" else "pb.gz"
            output = directory / f"profile{counter[0]}.{ext}"
        if output is not False:
            argv += ["-o", str(output)]
        argv += [str(f) for f in flags]
        argv += ["--"] + [str(a) for a in prog_argv]
        c = _run(processes, argv, base_env(env, agent=True), cwd or directory, timeout)
        c.output = Path(output) if output is not False else None
        if check:
            if c.returncode != 0:
                pytest.fail(f"sonde record failed\n{c.describe()}")
            if c.output is not None and not c.output.exists():
                pytest.fail(f"sonde record wrote no {c.output}\n{c.describe()}")
        return c

    return _go


@pytest.fixture
def record(processes, tmp_path):
    """make_recorder() for one test, writing into its tmp_path."""
    return make_recorder(processes, tmp_path)


@pytest.fixture(scope="module")
def record_module(tmp_path_factory):
    """make_recorder() shared by a module's tests (one recording, several
    tests that each assert one behaviour on it)."""
    tracker = ProcessTracker()
    yield make_recorder(tracker, tmp_path_factory.mktemp("module"))
    tracker.cleanup()


# --------------------------------------------------------------------------
# Reading profiles with go tool pprof
# --------------------------------------------------------------------------

def pprof(*args, timeout=60):
    """Runs `go tool pprof -symbolize=none ARGS`; returns stdout, fails the
    test (with pprof's stderr) if pprof cannot read the file."""
    argv = ["go", "tool", "pprof", "-symbolize=none"] + [str(a) for a in args]
    env = dict(os.environ, PPROF_TMPDIR=os.environ.get("TMPDIR", "/tmp"))
    env.pop("LD_PRELOAD", None)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    if p.returncode != 0:
        pytest.fail(f"go tool pprof could not read the profile\n$ {shlex.join(argv)}\n{p.stderr}")
    return p.stdout


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "mins": 60.0, "hrs": 3600.0,
          "B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "": 1.0}


def parse_quantity(text):
    """'2.99s' -> 2.99, '250ms' -> 0.25, '750' -> 750.0 (seconds or a count)."""
    m = re.fullmatch(r"(-?[0-9.]+(?:e[+-]?\d+)?)([a-zµ]*)", text.strip(), re.I)
    if not m or m.group(2) not in _UNITS:
        raise ValueError(f"not a pprof quantity: {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


class TopTable(dict):
    """{function: (flat%, cum%)} with .total (seconds or count, from 'of X
    total'), .flat / .cum ({function: absolute value}) and .text."""
    total = 0.0
    text = ""

    def __init__(self):
        super().__init__()
        self.flat = {}
        self.cum = {}


_TOP_ROW = re.compile(r"^\s*(\S+)\s+([0-9.]+)%\s+([0-9.]+)%\s+(\S+)\s+([0-9.]+)%\s+(.+?)\s*$")


def pprof_top(path, sample_index=None, extra=()):
    """`go tool pprof -top -nodecount=200` parsed into a TopTable.  Functions
    with the same name (pprof keeps one row per name and file) are summed."""
    args = ["-top", "-nodecount=200", "-nodefraction=0", "-edgefraction=0"]
    if sample_index:
        args.append(f"-sample_index={sample_index}")
    text = pprof(*args, *extra, path)
    t = TopTable()
    t.text = text
    m = re.search(r"of ([^ ]+) total", text)
    t.total = parse_quantity(m.group(1)) if m else 0.0
    for line in text.splitlines():
        r = _TOP_ROW.match(line)
        if not r:
            continue
        flat, flat_pct, _sum, cum, cum_pct, name = r.groups()
        f0, c0 = t.get(name, (0.0, 0.0))
        t[name] = (f0 + float(flat_pct), max(c0, float(cum_pct)))
        t.flat[name] = t.flat.get(name, 0.0) + parse_quantity(flat)
        t.cum[name] = max(t.cum.get(name, 0.0), parse_quantity(cum))
    return t


@dataclass
class Trace:
    value: str                                   # pprof's text, e.g. "10ms"
    frames: list                                 # leaf first, as pprof prints
    labels: dict = field(default_factory=dict)   # key -> value text

    @property
    def seconds(self):
        return parse_quantity(self.value)

    def root_to_leaf(self):
        return list(reversed(self.frames))

    def has(self, name):
        return any(name in f for f in self.frames)


def pprof_traces(path, sample_index=None):
    """`go tool pprof -traces` parsed into a list of Trace."""
    args = ["-traces"]
    if sample_index:
        args.append(f"-sample_index={sample_index}")
    text = pprof(*args, path)
    traces, cur = [], None
    for line in text.splitlines():
        if line.startswith("-----------+"):
            if cur is not None and cur.frames:
                traces.append(cur)
            cur = Trace("", [], {})
            continue
        if cur is None or not line.strip():
            continue
        if not cur.frames:
            lab = re.match(r"^\s*([A-Za-z_][\w.-]*):\s+(.*)$", line)
            if lab and not cur.value:
                cur.labels[lab.group(1)] = lab.group(2).strip().strip("[]")
                continue
            v = re.match(r"^\s*(\S+)\s+(.*?)\s*$", line)
            if v:
                cur.value = v.group(1)
                cur.frames.append(v.group(2))
            continue
        cur.frames.append(line.strip())
    if cur is not None and cur.frames:
        traces.append(cur)
    return traces


@dataclass
class RawProfile:
    text: str
    sample_types: list      # ["samples/count", "cpu/nanoseconds"]
    period_type: str        # "cpu nanoseconds"
    period: int
    label_keys: set
    locations: list         # the text after "N: 0xADDR M=n " per location


def pprof_raw(path):
    """`go tool pprof -raw`: sample types, period, label keys, locations."""
    text = pprof("-raw", path)
    types, period_type, period, keys, locs = [], "", 0, set(), []
    lines = text.splitlines()
    section = None
    for i, line in enumerate(lines):
        if line.startswith("PeriodType:"):
            period_type = line.split(":", 1)[1].strip()
        elif line.startswith("Period:"):
            period = int(float(line.split(":", 1)[1]))
        elif line.startswith("Samples:"):
            section = "samples"
            if i + 1 < len(lines):
                types = [t.replace("[dflt]", "") for t in lines[i + 1].split()]
            continue
        elif line.startswith("Locations"):
            section = "locations"
            continue
        elif line.startswith("Mappings"):
            section = "mappings"
            continue
        if section == "samples":
            keys.update(re.findall(r"(\w+):\[", line))
        elif section == "locations" and re.match(r"^\s*\d+:", line):
            locs.append(re.sub(r"^\s*\d+:\s+\S+\s+M=\d+\s*", "", line).strip())
        elif section == "locations" and line.startswith("      "):
            # Inlined frames are printed on continuation lines.
            locs.append(line.strip())
    return RawProfile(text, types, period_type, period, keys, locs)


def parse_collapsed(text):
    """flamegraph.pl lines 'root;...;leaf VALUE' -> [(frames root-first,
    value)].  Fails the test on a line that is not in that form."""
    stacks = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = re.fullmatch(r"(.+) (\d+)", line)
        if not m:
            pytest.fail(f"collapsed line {n} is not 'a;b;c VALUE': {line!r}")
        stacks.append((m.group(1).split(";"), int(m.group(2))))
    return stacks


# --------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------

def share_tolerance(spec_points, share, n):
    """The tolerance, in percentage points, for a sampled share: the spec's
    figure, or 3 standard errors of a binomial share over n samples when n
    is too small for the spec's figure to be a fair test (so a test fails
    for a biased profiler, not for an unlucky one)."""
    if n <= 0:
        return spec_points
    p = min(max(share / 100.0, 0.01), 0.99)
    return max(spec_points, 300.0 * math.sqrt(p * (1 - p) / n))


def pytest_report_header(config):
    return [f"sonde build dir: {BUILD}" + (" (sanitizer run)" if SAN else "")]


# --------------------------------------------------------------------------
# sonded: the server, started for real on a free port
# --------------------------------------------------------------------------
#
#   sonded            fixture: one fresh server (empty data dir) for a test.
#   sonded_factory    fixture: sonded_factory(data_dir=None, admin_token=None,
#                     args=(), env=None) -> Sonded; several per test, or the
#                     same data dir again.
#   Sonded            .url .port .data_dir .db_path .admin_token .proc .log
#                     .request() .token() .register_agent() .upload()
#                     .stop() .kill() .restart() .wait_healthy()
#   recorded_profiles fixture (session): recorded_profiles(n) -> n distinct
#                     real gzipped pprofs (bytes) made by `sonde record`.
#   encode_pprof()    a small pprof encoder (Python, no modules) for
#                     profiles with known stacks, or deliberately broken ones.

import gzip
import http.client
import json
import threading

SONDED = BUILD / "sonded"
_LISTENING = re.compile(r"sonded listening on http://([^\s:]+):(\d+)")
_ADMIN_LINE = re.compile(r"admin token: (sonde_[0-9a-f]{64})")
_DEFAULT = object()   # "the admin token" for Sonded.request(token=...)

# The server is our own program, not a guest in someone else's: leaks count.
SONDED_ASAN_OPTIONS = "detect_leaks=1:abort_on_error=0:exitcode=99"


def sonded_env(extra=None):
    """The environment sonded runs in (sanitizer options on a SAN build)."""
    env = base_env(extra)
    if SAN:
        env.setdefault("ASAN_OPTIONS", os.environ.get("SONDE_SONDED_ASAN_OPTIONS",
                                                      SONDED_ASAN_OPTIONS))
        env.setdefault("UBSAN_OPTIONS", UBSAN_OPTIONS)
    return env


class Sonded:
    """One sonded process over one data dir (which outlives restarts).

    stdout is drained by a thread (the listening line, the admin token);
    stderr (one log line per request) goes to a file beside the data dir, so
    a busy server never blocks on a full pipe; .log reads it."""

    START_TIMEOUT = 30 if SAN else 15

    def __init__(self, data_dir, admin_token=None, args=(), env=None):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.data_dir / "sonde.db"
        self.admin_token = admin_token
        self._admin_from_env = admin_token is not None
        self.args = [str(a) for a in args]
        self.extra_env = dict(env or {})
        self.proc = None
        self.host = "127.0.0.1"
        self.port = None
        self.url = None
        self.starts = 0
        self.stdout_lines = []
        self._agent_token = None
        self._listen_port = 0    # 0: any free port (restart(keep_port=True) reuses one)
        self._log_path = None
        self._logs = []          # every start's stderr file, oldest first

    # -- life -------------------------------------------------------------

    def start(self):
        if not SONDED.exists():
            pytest.fail(f"{SONDED} is missing: build it with `make BUILDDIR=... server`")
        self.starts += 1
        self._log_path = self.data_dir.parent / f"{self.data_dir.name}.stderr.{self.starts}"
        self._logs.append(self._log_path)
        extra = dict(self.extra_env)
        if self._admin_from_env and self.starts == 1:
            extra["SONDE_ADMIN_TOKEN"] = self.admin_token
        argv = [str(SONDED), "--listen", f"127.0.0.1:{self._listen_port}", "--data",
                str(self.data_dir)] + self.args
        self.argv = argv
        errf = open(self._log_path, "w")
        try:
            self.proc = subprocess.Popen(argv, env=sonded_env(extra), cwd=self.data_dir.parent,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=errf, text=True, errors="replace",
                                         start_new_session=True)
        finally:
            errf.close()
        lines = []
        self.stdout_lines = lines
        seen = threading.Event()
        proc = self.proc

        def drain():
            for line in proc.stdout:
                lines.append(line)
                if _LISTENING.search(line):
                    seen.set()
            seen.set()   # EOF: the process is gone, stop waiting

        threading.Thread(target=drain, daemon=True).start()
        deadline = time.monotonic() + self.START_TIMEOUT
        # The first start prints the admin token (unless it came from the
        # environment): wait for both lines, whichever comes first.
        want_admin = self.admin_token is None
        while True:
            out = "".join(lines)
            m = _LISTENING.search(out)
            a = _ADMIN_LINE.search(out)
            if m and (a or not want_admin):
                break
            if self.proc.poll() is not None and seen.is_set():
                pytest.fail(f"sonded exited with status {self.proc.returncode} before listening"
                            f"\n{self.describe()}")
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail("sonded did not print its listening line"
                            + (" and admin token" if want_admin else "")
                            + f" within {self.START_TIMEOUT}s\n{self.describe()}")
            time.sleep(0.01)
        if want_admin:
            self.admin_token = a.group(1)
        self.host, self.port = m.group(1), int(m.group(2))
        self.url = f"http://{self.host}:{self.port}"
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=30, check=True):
        """SIGTERM; waits for the exit; with check, fails unless the exit
        status is 0 and stderr holds no sanitizer report.  Returns the
        exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                pytest.fail(f"sonded did not exit within {timeout}s of SIGTERM\n{self.describe()}")
        rc = self.proc.returncode
        if check:
            if rc != 0:
                pytest.fail(f"sonded exited with status {rc} on SIGTERM\n{self.describe()}")
            self.check_log()
        return rc

    def kill(self):
        """SIGKILL (a crash: nothing gets flushed) and reap."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
            self.proc.wait(timeout=30)

    def restart(self, keep_port=False):
        """Stops (SIGTERM, checked) if running, then starts again on the same
        data dir; the admin token stays the same.  The port may change,
        unless keep_port: then it listens on the same port again (what
        agents that know the old URL need)."""
        if self.alive():
            self.stop()
        self._listen_port = self.port if keep_port and self.port else 0
        return self.start()

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)   # our own group, by pid
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait(timeout=30)
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()

    # -- output -----------------------------------------------------------

    @property
    def log(self):
        """stderr of the current (or last) run so far."""
        return self._read(self._log_path)

    @property
    def all_logs(self):
        return "".join(self._read(p) for p in self._logs)

    @staticmethod
    def _read(p):
        try:
            return Path(p).read_text(errors="replace") if p else ""
        except FileNotFoundError:
            return ""

    def check_log(self):
        text = self.all_logs
        if SANITIZER_REPORT.search(text):
            pytest.fail(f"sanitizer report on sonded's stderr\n{self.describe(all_logs=True)}")

    def describe(self, all_logs=False):
        log = self.all_logs if all_logs else self.log
        rc = self.proc.returncode if self.proc is not None else None
        return (f"$ {shlex.join(getattr(self, 'argv', []))}\nstatus {rc}\n"
                f"--- stdout ---\n{''.join(self.stdout_lines)[-2000:]}\n"
                f"--- stderr (last 4000 chars) ---\n{log[-4000:]}")

    # -- HTTP -------------------------------------------------------------

    def connection(self, timeout=30):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(self, method, path, body=None, token=_DEFAULT, headers=None, raw=False,
                timeout=30):
        """-> (status, body, headers).  body: dict/list -> JSON, bytes/str as
        is.  token: default the admin token; None sends no Authorization.
        The answer is parsed JSON when the server says application/json
        (and it parses), text for text/*, else bytes; raw=True: bytes."""
        hdrs = {}
        data = None
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        elif isinstance(body, str):
            data = body.encode()
            hdrs["Content-Type"] = "application/json"
        elif body is not None:
            data = bytes(body)
            hdrs["Content-Type"] = "application/octet-stream"
        if token is _DEFAULT:
            token = self.admin_token
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        if headers:
            hdrs.update(headers)
        conn = self.connection(timeout)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            payload = resp.read()
            status, rh = resp.status, resp.headers
        finally:
            conn.close()
        if raw:
            return status, payload, rh
        ctype = (rh.get("Content-Type") or "").lower()
        if ctype.startswith("application/json"):
            try:
                return status, json.loads(payload), rh
            except ValueError:
                return status, payload, rh
        if ctype.startswith("text/"):
            return status, payload.decode(errors="replace"), rh
        return status, payload, rh

    def ok(self, method, path, body=None, token=_DEFAULT, expect=(200, 201)):
        """request() that fails the test unless the status is in expect;
        returns the parsed body."""
        st, b, _ = self.request(method, path, body, token=token)
        expect = (expect,) if isinstance(expect, int) else expect
        if st not in expect:
            pytest.fail(f"{method} {path} -> {st} {b!r}, wanted {expect}\n{self.describe()}")
        return b

    def health(self, timeout=5):
        """True when GET /api/v1/health answers 200."""
        try:
            st, _, _ = self.request("GET", "/api/v1/health", token=None, timeout=timeout)
            return st == 200
        except (OSError, http.client.HTTPException):
            return False

    def wait_healthy(self, timeout=10):
        deadline = time.monotonic() + timeout
        while not self.health():
            if time.monotonic() > deadline or not self.alive():
                pytest.fail(f"sonded does not answer /api/v1/health\n{self.describe()}")
            time.sleep(0.05)

    def new_token(self, role, name=None):
        """POST /api/v1/tokens -> the whole answer (id, name, role, token…)."""
        body = {"role": role}
        if name is not None:
            body["name"] = name
        return self.ok("POST", "/api/v1/tokens", body, expect=201)

    def token(self, role, name=None):
        """A new token of that role; returns its secret."""
        return self.new_token(role, name)["token"]

    def agent_token(self):
        """One agent-role token per Sonded (made on first use)."""
        if self._agent_token is None:
            self._agent_token = self.token("agent", "test-agent")
        return self._agent_token

    def register_agent(self, app, instance="host-1", pid=1000, token=None, **fields):
        """POST /api/v1/agent/register -> agent_id."""
        body = {"app": app, "instance": instance, "pid": pid, "agent_version": "0.4.0"}
        body.update(fields)
        b = self.ok("POST", "/api/v1/agent/register", body, token=token or self.agent_token(),
                    expect=201)
        return b["agent_id"]

    def create_session(self, agent_id, triggered_by="profile-now", types=("cpu",), token=None,
                       duration_s=1, **fields):
        """POST /api/v1/agent/sessions -> the session object."""
        body = {"agent_id": agent_id, "triggered_by": triggered_by,
                "profile_types": list(types), "duration_s": duration_s}
        body.update(fields)
        return self.ok("POST", "/api/v1/agent/sessions", body, token=token or self.agent_token(),
                       expect=201)

    def upload(self, agent_id, pprof_bytes, triggered_by="profile-now", types=("cpu",),
               token=None, **fields):
        """Creates a session and uploads its profile (201 asserted) -> session id."""
        tok = token or self.agent_token()
        sid = self.create_session(agent_id, triggered_by, types, token=tok, **fields)["id"]
        self.ok("PUT", f"/api/v1/agent/sessions/{sid}/profile", bytes(pprof_bytes), token=tok,
                expect=201)
        return sid


def _sonded_factory(base):
    made = []
    counter = [0]

    def _make(data_dir=None, admin_token=None, args=(), env=None):
        if data_dir is None:
            counter[0] += 1
            data_dir = base / f"sonded{counter[0]}"
        s = Sonded(data_dir, admin_token=admin_token, args=args, env=env)
        made.append(s)
        return s.start()

    return _make, made


def _sonded_teardown(made):
    for s in made:
        s.cleanup()
    for s in made:
        s.check_log()


@pytest.fixture
def sonded_factory(tmp_path):
    """sonded_factory(data_dir=None, admin_token=None, args=(), env=None)
    -> a started Sonded.  data_dir defaults to a fresh dir under tmp_path;
    admin_token: passed as SONDE_ADMIN_TOKEN on the first start (else the
    printed one is used).  Every server is killed (by its pid) after the
    test, and a sanitizer report in any server's stderr fails the test."""
    make, made = _sonded_factory(tmp_path)
    yield make
    _sonded_teardown(made)


@pytest.fixture
def sonded(sonded_factory):
    """One started sonded on an empty data dir."""
    return sonded_factory()


# --------------------------------------------------------------------------
# Real profiles to upload
# --------------------------------------------------------------------------

# Short recordings of different programs, so consecutive profiles differ in
# stacks as well as in bytes.
_RECORD_PROGRAMS = [
    ("split", ["1", "0.2"]),
    ("qsort_cmp", ["0.2"]),
    ("split", ["--equal", "2", "0.1"]),
    ("threads_churn", ["50", "2", "200"]),
]


@pytest.fixture(scope="session")
def recorded_profiles(tmp_path_factory):
    """recorded_profiles(n) -> [bytes] * n: gzipped pprofs recorded with
    `sonde record -F 999` of the test programs, each one distinct.  Cached
    for the whole pytest run (the first n are shared by every caller)."""
    tracker = ProcessTracker()
    directory = tmp_path_factory.mktemp("recorded")
    rec = make_recorder(tracker, directory)
    cache = []

    def _get(n):
        while len(cache) < n:
            i = len(cache)
            name, args = _RECORD_PROGRAMS[i % len(_RECORD_PROGRAMS)]
            c = rec([prog(name)] + args, hz=999, output=directory / f"rec{i}.pb.gz")
            data = c.output.read_bytes()
            if data in cache:
                pytest.fail(f"recording {i} is byte-identical to an earlier one")
            cache.append(data)
        return list(cache[:n])

    yield _get
    tracker.cleanup()


# --------------------------------------------------------------------------
# A tiny pprof encoder: profiles with known stacks, or broken on purpose
# --------------------------------------------------------------------------

def pb_varint(n):
    """Protobuf base-128 varint (n >= 0; negative int64s as 10 bytes)."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_field(num, value):
    """One field: int -> varint, bytes/str -> length-delimited."""
    if isinstance(value, int):
        return pb_varint(num << 3) + pb_varint(value)
    if isinstance(value, str):
        value = value.encode()
    return pb_varint((num << 3) | 2) + pb_varint(len(value)) + bytes(value)


def pb_packed(num, values):
    return pb_field(num, b"".join(pb_varint(v) for v in values))


def encode_pprof(samples, sample_types=(("samples", "count"), ("cpu", "nanoseconds")),
                 period_type=("cpu", "nanoseconds"), period=1001001, time_nanos=None,
                 duration_nanos=1_000_000_000, default_type=None, gz=True,
                 location_override=None):
    """A profile.proto with one function and location per distinct frame name.

    samples: [(frames root-first, values list, labels dict)] (labels
    optional: {key: str value}).  location_override(sample_index, ids):
    returns the location ids to write for that sample instead (for a
    dangling id).  gz: gzip it (mtime 0, so equal input -> equal bytes).
    Returns bytes."""
    strings = [""]
    index = {"": 0}

    def s(x):
        if x not in index:
            index[x] = len(strings)
            strings.append(x)
        return index[x]

    funcs = {}
    body = bytearray()
    for t, u in sample_types:
        body += pb_field(1, pb_field(1, s(t)) + pb_field(2, s(u)))
    for i, smp in enumerate(samples):
        frames, values = smp[0], smp[1]
        labels = smp[2] if len(smp) > 2 else {}
        ids = []
        for name in reversed(frames):          # pprof: leaf first
            if name not in funcs:
                funcs[name] = len(funcs) + 1
            ids.append(funcs[name])
        if location_override is not None:
            ids = location_override(i, ids)
        msg = pb_packed(1, ids) + pb_packed(2, list(values))
        for k, v in labels.items():
            msg += pb_field(3, pb_field(1, s(k)) + pb_field(2, s(str(v))))
        body += pb_field(2, msg)
    body += pb_field(3, pb_field(1, 1) + pb_field(2, 0x400000) + pb_field(3, 0x500000)
                     + pb_field(5, s("/bin/prog")))
    for name, fid in funcs.items():
        # Location fid -> function fid, in mapping 1.
        line = pb_field(1, fid)
        body += pb_field(4, pb_field(1, fid) + pb_field(2, 1) + pb_field(3, 0x400000 + fid * 16)
                         + pb_field(4, line))
    for name, fid in funcs.items():
        body += pb_field(5, pb_field(1, fid) + pb_field(2, s(name)) + pb_field(3, s(name)))
    # Everything that names a string is encoded before the table is.
    pt = pb_field(1, s(period_type[0])) + pb_field(2, s(period_type[1]))
    tail = bytearray()
    tail += pb_field(9, time_nanos if time_nanos is not None else time.time_ns())
    tail += pb_field(10, duration_nanos)
    tail += pb_field(11, pt)
    tail += pb_field(12, period)
    if default_type is not None:
        tail += pb_field(14, s(default_type))
    table = b"".join(pb_field(6, x) for x in strings)
    data = bytes(body) + table + bytes(tail)
    return gzip.compress(data, mtime=0) if gz else data


@pytest.fixture(scope="module")
def sonded_module(tmp_path_factory):
    """One started sonded shared by a module's tests (a fresh data dir)."""
    make, made = _sonded_factory(tmp_path_factory.mktemp("sonded"))
    yield make()
    _sonded_teardown(made)


def wait_for(cond, timeout=10.0, what="the condition", interval=0.05):
    """Polls cond() until it is truthy (returns its value) or fails the test
    after timeout seconds naming what was awaited (what: a string, or a
    callable that makes one then, to show the state at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for "
                        f"{what() if callable(what) else what}")
        time.sleep(interval)


# --------------------------------------------------------------------------
# Agents online: real programs under the agent, connected to a real sonded
# --------------------------------------------------------------------------
#
#   hosts             fixture: hosts.start(argv, server, app, ...) -> Host, a
#                     program run with LD_PRELOAD=libsonde.so and SONDE_SERVER
#                     (stdout/stderr drained by threads, agent log in a
#                     file); hosts.demo(...) starts examples/demo_service and
#                     waits for its URL.  A failing test gets every host's
#                     output and agent log (and sonded's log) in its report.
#   memory_cgroup     fixture: memory_cgroup(limit_bytes) -> MemoryCgroup (a
#                     child of this process's v1 memory cgroup) or None when
#                     none can be made; .wrap(argv) starts a program in it.
#   set_profiling()   triggers and default sampling for a workspace or app.
#   list_sessions(), list_agents(), flame_names(), LoadClient,
#   decode_pprof()    reading what the agents did.

import random
import socket
import statistics
import urllib.error
import urllib.parse
import urllib.request

DEMO = BUILD / "examples" / "demo_service"
_DEMO_LISTENING = re.compile(r"demo listening on (http://[\w.]+:\d+)")


def free_port():
    """A TCP port on 127.0.0.1 nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sk:
        sk.bind(("127.0.0.1", 0))
        return sk.getsockname()[1]


def agent_env(server, app, instance, log, token=None, extra=None):
    """Environment for a program under the agent in server mode.  server:
    a Sonded (its URL and agent token) or a URL string (token must then be
    given, or none is sent)."""
    if isinstance(server, Sonded):
        url = server.url
        token = token if token is not None else server.agent_token()
    else:
        url = server
    env = {"LD_PRELOAD": str(LIBSONDE), "SONDE_SERVER": url, "SONDE_APP": app,
           "SONDE_LOG": str(log)}
    if instance is not None:           # None: the agent's default, the host name
        env["SONDE_INSTANCE"] = instance
    if token:
        env["SONDE_TOKEN"] = token
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return base_env(env, agent=True)


class Host:
    """One program under test (usually with the agent).  .proc .pid .name
    .lines (stdout so far) .err (stderr so far) .log_path .url (demo)."""

    def __init__(self, proc, name, log_path):
        self.proc, self.pid, self.name, self.log_path = proc, proc.pid, name, log_path
        self.url = None
        self.lines, self._err = [], []
        self._cond = threading.Condition()
        self._threads = [threading.Thread(target=self._drain, args=(proc.stdout, self.lines),
                                          daemon=True),
                         threading.Thread(target=self._drain, args=(proc.stderr, self._err),
                                          daemon=True)]
        for t in self._threads:
            t.start()

    def _drain(self, stream, sink):
        for line in stream:
            with self._cond:
                sink.append(line)
                self._cond.notify_all()

    @property
    def err(self):
        return "".join(self._err)

    @property
    def agent_log(self):
        try:
            return Path(self.log_path).read_text(errors="replace") if self.log_path else ""
        except FileNotFoundError:
            return ""

    def wait_line(self, pattern, timeout=15.0):
        """The first stdout line matching pattern (a regex) -> its match;
        fails the test if the program exits or the time runs out first."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    m = rx.search(line)
                    if m:
                        return m
                if self.proc.poll() is not None and not any(t.is_alive() for t in self._threads[:1]):
                    pytest.fail(f"{self.name} exited ({self.proc.returncode}) before printing "
                                f"/{pattern}/\n{self.describe()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"{self.name} did not print /{pattern}/ within {timeout}s\n"
                                f"{self.describe()}")
                self._cond.wait(min(left, 0.2))

    def values(self):
        """key=value pairs from stdout; a key seen again keeps every value
        in order: {key: [v1, v2, ...]}."""
        out = {}
        for k, v in re.findall(r"(\w+)=(\S+)", "".join(self.lines)):
            out.setdefault(k, []).append(v)
        return out

    def send(self, line):
        """Writes a line to the program's stdin (started with stdin=True)."""
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def alive(self):
        return self.proc.poll() is None

    def terminate(self, timeout=10.0):
        """SIGTERM to the program (its pid only) -> (exit status, seconds it
        took); fails the test if it does not exit within timeout."""
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} did not exit within {timeout}s of SIGTERM\n{self.describe()}")
        self.join()
        return self.proc.returncode, time.monotonic() - t0

    def kill(self):
        """SIGKILL to its process group (the program and what it forked)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.join()

    def join(self):
        for t in self._threads:
            t.join(timeout=5)

    def sanitizer_report(self):
        return bool(SANITIZER_REPORT.search(self.err))

    def describe(self, log_chars=6000):
        rc = self.proc.poll()
        return (f"=== {self.name} (pid {self.pid}, status {rc}) ===\n"
                f"$ {shlex.join(self.proc.args)}\n"
                f"--- stdout ---\n{''.join(self.lines)[-1500:]}\n"
                f"--- stderr ---\n{self.err[-3000:]}\n"
                f"--- agent log {self.log_path} ---\n{self.agent_log[-log_chars:]}")


class Hosts:
    """Every Host a test starts; all are killed (by process group, by pid)
    at the end of the test."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.all = []
        self.servers = []      # Sondeds whose logs go into a failure report
        self.counter = 0

    def start(self, argv, server=None, app="app", instance="host-1", extra=None, token=None,
              stdin=False, agent=True, name=None, cwd=None, log=None):
        """Starts argv under the agent with the agent log in a fresh file;
        server: a Sonded or URL (see agent_env); extra: more environment
        (SONDE_REGISTER_DELAY_MS…).  agent=False: no LD_PRELOAD nor
        SONDE_SERVER (a launcher like `sonde run`), but the sanitizer
        runtime on a SAN build, and SONDE_LOG=log if given."""
        self.counter += 1
        name = name or f"{Path(str(argv[0])).name}#{self.counter}"
        if isinstance(server, Sonded) and server not in self.servers:
            self.servers.append(server)
        if agent:
            log = self.dir / f"agent-{self.counter}-{Path(str(argv[0])).name}.log"
            env = agent_env(server, app, instance, log, token=token, extra=extra)
        else:
            env = base_env(dict(extra or {}, **({"SONDE_LOG": log} if log else {})), agent=True)
        proc = subprocess.Popen([str(a) for a in argv], env=env, cwd=cwd or self.dir,
                                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                errors="replace", start_new_session=True)
        h = Host(proc, name, log)
        self.all.append(h)
        return h

    def demo(self, server=None, app="demo", instance="host-1", extra=None, token=None,
             agent=True, wrap=None, timeout=None, args=(), name=None):
        """examples/demo_service --port 0 [args] under the agent; waits for
        its "demo listening on URL" line and sets .url.  wrap(argv) -> argv
        (a cgroup's .wrap)."""
        if not DEMO.exists():
            pytest.fail(f"{DEMO} is missing: build it with `make BUILDDIR=... all`")
        argv = [str(DEMO), "--port", "0"] + [str(a) for a in args]
        h = self.start(wrap(argv) if wrap else argv, server, app, instance, extra=extra,
                       token=token, agent=agent,
                       name=name or f"demo_service#{self.counter + 1}")
        h.url = h.wait_line(_DEMO_LISTENING.pattern, timeout or (30 if SAN else 15)).group(1)
        return h

    def cleanup(self):
        for h in self.all:
            h.kill()
        for h in self.all:
            for s in (h.proc.stdin, h.proc.stdout, h.proc.stderr):
                if s:
                    try:
                        s.close()
                    except OSError:
                        pass

    def describe(self):
        parts = [h.describe() for h in self.all]
        for s in self.servers:
            # The agents' requests and the test's changes; not the test's
            # own polling of the lists.
            lines = [ln for ln in s.all_logs.splitlines()
                     if not re.search(r" GET /api/v1/(agents|sessions)[?/ ]", ln)]
            parts.append(f"=== sonded {s.url} (status {s.proc.poll() if s.proc else None}; "
                         f"log without the test's GETs of agents and sessions) ===\n"
                         + "\n".join(lines[-80:]))
        return "\n".join(parts)


@pytest.fixture
def hosts(tmp_path):
    h = Hosts(tmp_path)
    yield h
    h.cleanup()
    bad = [x for x in h.all if x.sanitizer_report()]
    if bad:
        pytest.fail("sanitizer report on a host's stderr\n" + "\n".join(x.describe() for x in bad))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test that used `hosts` gets each program's output and agent
    log (and sonded's log) as a section of its report."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        h = getattr(item, "funcargs", {}).get("hosts")
        if isinstance(h, Hosts) and (h.all or h.servers):
            rep.sections.append(("agents and servers", h.describe()))


# -- settings, sessions, agents ----------------------------------------------

def set_profiling(s, app=None, cpu=None, memory=None, sampling=None):
    """Sets triggers and default sampling (for app, else the workspace).
    cpu / memory: False = off, a dict = on with those fields (threshold,
    duration_s, cooldown_s), None = leave.  sampling: False = off, a dict
    = on with window_s / period_s, None = leave."""
    q = f"?app={urllib.parse.quote(app)}" if app else ""
    body = {}
    for name, v in (("cpu", cpu), ("memory", memory)):
        if v is False:
            body[name] = {"enabled": False}
        elif v is not None:
            body[name] = dict(v, enabled=True)
    if body:
        s.ok("PUT", f"/api/v1/triggers{q}", body)
    if sampling is False:
        s.ok("PUT", f"/api/v1/default-sampling{q}", {"enabled": False})
    elif sampling is not None:
        s.ok("PUT", f"/api/v1/default-sampling{q}", dict(sampling, enabled=True))


def _query(params):
    return urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})


def list_sessions(s, **params):
    """GET /api/v1/sessions with params (app, triggered_by, …) -> the
    sessions, oldest first."""
    params.setdefault("limit", 1000)
    return list(reversed(s.ok("GET", f"/api/v1/sessions?{_query(params)}")["sessions"]))


def list_agents(s, **params):
    """GET /api/v1/agents with params (app, status, …) -> the agents."""
    return s.ok("GET", f"/api/v1/agents?{_query(params)}")["agents"]


def flame_names(tree):
    """Every frame name in a flame graph tree (besides root)."""
    names, stack = set(), [tree]
    while stack:
        n = stack.pop()
        if n is not tree:
            names.add(n["name"])
        stack.extend(n.get("children", []))
    return names


def session_flamegraph(s, sid, **params):
    """GET /api/v1/sessions/{sid}/flamegraph; label=... may be a list."""
    q = []
    for k, v in params.items():
        for x in (v if isinstance(v, (list, tuple)) else [v]):
            q.append((k, x))
    path = f"/api/v1/sessions/{sid}/flamegraph" + (f"?{urllib.parse.urlencode(q)}" if q else "")
    return s.ok("GET", path)


def stays(cond, seconds, what, interval=0.25):
    """Asserts cond() holds every time it is checked for `seconds` (what:
    a string, or a callable that makes one at a failure)."""
    deadline = time.monotonic() + seconds
    while True:
        v = cond()
        if not v:
            pytest.fail(f"{what() if callable(what) else what}: no longer holds")
        if time.monotonic() > deadline:
            return v
        time.sleep(interval)


# -- load on a demo service ----------------------------------------------------

class LoadClient:
    """Client threads that request paths of a service round-robin with
    urllib (a new connection per request) until stopped.  Each request
    carries a fresh X-Trace-Id (recorded in .trace_ids by path).
    .per_second: {whole second since start: completed requests}.
    .errors: failed requests (text), .done: completed requests."""

    def __init__(self, base_url, paths, threads=4, timeout=10.0):
        self.base, self.paths, self.timeout = base_url, list(paths), timeout
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        self.per_second, self.errors, self.done = {}, [], 0
        self.trace_ids = {p: set() for p in self.paths}
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(threads)]

    def start(self, t0=None):
        """t0: the clock's zero (another client's .t0, to compare seconds)."""
        self.t0 = time.monotonic() if t0 is None else t0
        for t in self.threads:
            t.start()
        return self

    def _run(self, i):
        rng = random.Random(i * 7919 + os.getpid())
        n = i
        while not self.stop_event.is_set():
            path = self.paths[n % len(self.paths)]
            n += 1
            tid = "%032x" % rng.getrandbits(128)
            req = urllib.request.Request(self.base + path, headers={"X-Trace-Id": tid})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as r:
                    r.read()
                    ok = r.status == 200
                    err = None if ok else f"{path}: status {r.status}"
            except (OSError, urllib.error.URLError, http.client.HTTPException) as e:
                ok, err = False, f"{path}: {e!r}"
            sec = int(time.monotonic() - self.t0)
            with self.lock:
                if ok:
                    self.done += 1
                    self.per_second[sec] = self.per_second.get(sec, 0) + 1
                    self.trace_ids[path].add(tid)
                else:
                    self.errors.append(err)
            if err:
                time.sleep(0.05)

    def now(self):
        """Seconds since start (the clock .per_second keys use)."""
        return time.monotonic() - self.t0

    def rates(self, t_from, t_to):
        """Requests completed in each whole second k with t_from <= k and
        k + 1 <= t_to (seconds since start)."""
        with self.lock:
            return [self.per_second.get(k, 0) for k in range(math.ceil(t_from), int(t_to))]

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=self.timeout + 5)


@pytest.fixture
def load_clients():
    """load_clients(base_url, paths, threads, t0=None) -> a started
    LoadClient, stopped at the end of the test."""
    made = []

    def _make(base_url, paths, threads=4, timeout=10.0, t0=None):
        c = LoadClient(base_url, paths, threads, timeout).start(t0)
        made.append(c)
        return c

    yield _make
    for c in made:
        c.stop()


def median(xs):
    return statistics.median(xs) if xs else 0.0


# -- cgroups -------------------------------------------------------------------

CGROUP_V1_MEMORY = Path("/sys/fs/cgroup/memory")


class MemoryCgroup:
    """A cgroup v1 memory cgroup made for one test: .path, .limit; .wrap(argv)
    -> an argv that moves itself into the cgroup and execs argv (same pid);
    .stat() memory.stat as a dict; .usage() bytes; .working_set() usage
    minus total_inactive_file (as container runtimes count it)."""

    def __init__(self, path, limit):
        self.path, self.limit = Path(path), limit

    def wrap(self, argv):
        # This machine's cgroupfs now and then answers a move with EIO (seen
        # once in ~30 runs); the move is retried, not the test.
        script = ('n=0; until echo $$ 2>/dev/null > "$0/cgroup.procs"; do n=$((n+1)); '
                  '[ $n -ge 40 ] && { echo "cannot join $0" >&2; exit 1; }; sleep 0.05; done; '
                  'exec "$@"')
        return ["/bin/sh", "-c", script, str(self.path)] + [str(a) for a in argv]

    def read(self, name):
        return (self.path / name).read_text()

    def stat(self):
        out = {}
        for line in self.read("memory.stat").splitlines():
            k, _, v = line.partition(" ")
            out[k] = int(v)
        return out

    def usage(self):
        return int(self.read("memory.usage_in_bytes"))

    def working_set(self):
        st = self.stat()
        return max(0, self.usage() - st.get("total_inactive_file", st.get("inactive_file", 0)))

    def pids(self):
        try:
            return [int(x) for x in self.read("cgroup.procs").split()]
        except OSError:
            return []

    def remove(self):
        """rmdir once its processes are gone (they are the test's, killed
        by then; waits up to 10 s for the kernel to let them go)."""
        deadline = time.monotonic() + 10
        while True:
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def own_memory_cgroup_v1():
    """This process's memory cgroup directory (v1), or None (also with
    SONDE_TEST_CGROUP=0, to run the tests' machine-memory fallback)."""
    if os.environ.get("SONDE_TEST_CGROUP") == "0":
        return None
    try:
        text = Path("/proc/self/cgroup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        _, controllers, rel = line.split(":", 2)
        if "memory" in controllers.split(","):
            p = CGROUP_V1_MEMORY / rel.lstrip("/")
            return p if (p / "memory.limit_in_bytes").exists() else None
    return None


@pytest.fixture
def memory_cgroup(hosts):
    """memory_cgroup(limit_bytes) -> a fresh MemoryCgroup, a child of this
    process's v1 memory cgroup, or None (with the reason in
    memory_cgroup.why) when one cannot be made.  Removed at the end of the
    test, after the hosts (which are all killed first)."""
    made = []

    def _make(limit):
        parent = own_memory_cgroup_v1()
        if parent is None:
            _make.why = "no cgroup v1 memory hierarchy at /sys/fs/cgroup/memory"
            return None
        path = parent / f"sonde-test-{os.getpid()}-{len(made)}-{random.randrange(1 << 30):x}"
        try:
            path.mkdir()
        except OSError as e:
            _make.why = f"cannot create {path}: {e}"
            return None
        cg = MemoryCgroup(path, limit)
        made.append(cg)
        try:
            (path / "memory.limit_in_bytes").write_text(str(limit))
        except OSError as e:
            _make.why = f"cannot set {path}/memory.limit_in_bytes: {e}"
            return None
        return cg

    _make.why = ""
    yield _make
    hosts.cleanup()
    for cg in made:
        cg.remove()


def mem_total_bytes():
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def mem_available_bytes():
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


# -- a pprof decoder (Python only, no modules) ----------------------------------

@dataclass
class DecodedSample:
    values: list
    frames: list          # function names, leaf first (inline frames expanded)
    labels: dict          # string labels {key: value}
    num_labels: dict      # numeric labels {key: value}


@dataclass
class DecodedProfile:
    sample_types: list    # [(type, unit)]
    samples: list         # [DecodedSample]
    period_type: tuple
    period: int
    duration_nanos: int

    def label_values(self, key):
        """Distinct values of string label key over every sample."""
        return {s.labels[key] for s in self.samples if key in s.labels}

    def total(self, index=0):
        return sum(s.values[index] for s in self.samples if len(s.values) > index)


def _pb_fields(buf):
    """Yields (field number, wire type, value) of one message: ints for
    varint/fixed, memoryview for length-delimited."""
    i, n = 0, len(buf)

    def varint():
        nonlocal i
        shift = result = 0
        while True:
            if i >= n:
                raise ValueError("truncated varint")
            b = buf[i]
            i += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    while i < n:
        key = varint()
        num, wt = key >> 3, key & 7
        if wt == 0:
            yield num, wt, varint()
        elif wt == 1:
            yield num, wt, int.from_bytes(buf[i:i + 8], "little")
            i += 8
        elif wt == 2:
            ln = varint()
            if i + ln > n:
                raise ValueError("truncated field")
            yield num, wt, buf[i:i + ln]
            i += ln
        elif wt == 5:
            yield num, wt, int.from_bytes(buf[i:i + 4], "little")
            i += 4
        else:
            raise ValueError(f"wire type {wt}")


def _pb_ints(wt, v):
    """A repeated integer field's value(s), packed or not."""
    if wt != 2:
        return [v]
    # Packed: a run of varints.
    out, i, buf = [], 0, bytes(v)
    while i < len(buf):
        shift = result = 0
        while True:
            b = buf[i]
            i += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
        out.append(result)
    return out


def _signed(v):
    return v - (1 << 64) if v >= 1 << 63 else v


def decode_pprof(data):
    """Decodes a (gzipped or raw) profile.proto into a DecodedProfile:
    every sample with its values, frames (function names, leaf first) and
    labels.  Raises ValueError on a malformed profile."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    mv = memoryview(data)
    strings, types, raw_samples, locations, functions = [], [], [], {}, {}
    period_type, period, duration = (0, 0), 0, 0
    for num, wt, v in _pb_fields(mv):
        if num == 6:
            strings.append(bytes(v).decode("utf-8", "replace"))
        elif num == 1:
            f = {k: x for k, _, x in _pb_fields(v)}
            types.append((f.get(1, 0), f.get(2, 0)))
        elif num == 2:
            raw_samples.append(v)
        elif num == 4:
            lid, lines = 0, []
            for k, w, x in _pb_fields(v):
                if k == 1:
                    lid = x
                elif k == 4:
                    lines.append({a: b for a, _, b in _pb_fields(x)}.get(1, 0))
            locations[lid] = lines
        elif num == 5:
            f = {k: x for k, _, x in _pb_fields(v)}
            functions[f.get(1, 0)] = f.get(2, 0)
        elif num == 11:
            f = {k: x for k, _, x in _pb_fields(v)}
            period_type = (f.get(1, 0), f.get(2, 0))
        elif num == 12:
            period = _signed(v)
        elif num == 10:
            duration = _signed(v)

    def s(i):
        if not 0 <= i < len(strings):
            raise ValueError(f"string index {i} out of range ({len(strings)} strings)")
        return strings[i]

    samples = []
    for raw in raw_samples:
        locs, values, labels, nums = [], [], {}, {}
        for k, w, x in _pb_fields(raw):
            if k == 1:
                locs.extend(_pb_ints(w, x))
            elif k == 2:
                values.extend(_signed(y) for y in _pb_ints(w, x))
            elif k == 3:
                f = {a: b for a, _, b in _pb_fields(x)}
                if f.get(2):
                    labels[s(f.get(1, 0))] = s(f[2])
                else:
                    nums[s(f.get(1, 0))] = _signed(f.get(3, 0))
        frames = []
        for lid in locs:
            if lid not in locations:
                raise ValueError(f"sample names location {lid}, which does not exist")
            # Lines are innermost first: the inlined callee, then its caller.
            for fid in locations[lid]:
                frames.append(s(functions[fid]) if fid in functions else f"?fn{fid}")
        samples.append(DecodedSample(values, frames, labels, nums))
    return DecodedProfile([(s(a), s(b)) for a, b in types], samples,
                          (s(period_type[0]), s(period_type[1])), period, duration)


# --------------------------------------------------------------------------
# Active profiling: tasks, polls, captures (docs/agent-protocol.md §7)
# --------------------------------------------------------------------------
#
#   encode_pprof_labels()  encode_pprof with numeric labels too.
#   encode_snapshots()     a capture's snapshots pprof, as an agent sends it.
#   task_body()            a valid POST /api/v1/tasks body, fields overridable.
#   register_task_agent()  register -> the answer (agent_id, cursor, …).
#   agent_poll()           one poll (blocking) -> (status, body).
#   Poller                 one poll in a thread (start_pollers, start_task_polls
#                          for many).
#   claim_capture()        POST /api/v1/agent/tasks/{id}/captures -> (status, body).

def encode_pprof_labels(samples, sample_types=(("samples", "count"), ("wall", "nanoseconds")),
                        period_type=("wall", "nanoseconds"), period=100_000_000, gz=True):
    """Like encode_pprof, with labels {key: str | int | (int, unit)}: a str
    is a string label, an int (or (int, unit)) a numeric one.  samples:
    [(frames root-first, values, labels)].  Returns bytes."""
    strings, index, funcs = [""], {"": 0}, {}

    def s(x):
        if x not in index:
            index[x] = len(strings)
            strings.append(x)
        return index[x]

    body = bytearray()
    for t, u in sample_types:
        body += pb_field(1, pb_field(1, s(t)) + pb_field(2, s(u)))
    for frames, values, labels in samples:
        ids = []
        for name in reversed(frames):
            funcs.setdefault(name, len(funcs) + 1)
            ids.append(funcs[name])
        msg = pb_packed(1, ids) + pb_packed(2, list(values))
        for k, v in labels.items():
            if isinstance(v, str):
                msg += pb_field(3, pb_field(1, s(k)) + pb_field(2, s(v)))
            else:
                num, unit = v if isinstance(v, tuple) else (v, None)
                lab = pb_field(1, s(k)) + pb_field(3, num)
                if unit:
                    lab += pb_field(4, s(unit))
                msg += pb_field(3, lab)
        body += pb_field(2, msg)
    body += pb_field(3, pb_field(1, 1) + pb_field(2, 0x400000) + pb_field(3, 0x500000)
                     + pb_field(5, s("/bin/prog")))
    for name, fid in funcs.items():
        body += pb_field(4, pb_field(1, fid) + pb_field(2, 1) + pb_field(3, 0x400000 + fid * 16)
                         + pb_field(4, pb_field(1, fid)))
    for name, fid in funcs.items():
        body += pb_field(5, pb_field(1, fid) + pb_field(2, s(name)) + pb_field(3, s(name)))
    pt = pb_field(1, s(period_type[0])) + pb_field(2, s(period_type[1]))
    tail = pb_field(9, time.time_ns()) + pb_field(11, pt) + pb_field(12, period)
    data = bytes(body) + b"".join(pb_field(6, x) for x in strings) + tail
    return gzip.compress(data, mtime=0) if gz else data


def encode_snapshots(snapshots, frequency_ms=100):
    """A capture's snapshots pprof: one sample per snapshot, in order.
    snapshots: [dict(frames=[root..leaf], offset_ms=, state=, syscall=None,
    thread="worker", thread_id=4242)]."""
    samples = []
    for i, sn in enumerate(snapshots, 1):
        labels = {"snapshot": i,
                  "offset": (int(round(sn["offset_ms"] * 1e6)), "nanoseconds"),
                  "state": sn.get("state", "running"),
                  "thread": sn.get("thread", "worker"),
                  "thread_id": sn.get("thread_id", 4242)}
        if sn.get("syscall"):
            labels["syscall"] = sn["syscall"]
        samples.append((sn["frames"], [1, frequency_ms * 1_000_000], labels))
    return encode_pprof_labels(samples)


def task_body(app="shop", interface="GET /slow", **fields):
    """A valid POST /api/v1/tasks body; fields override or add (a value of
    None removes the field)."""
    b = {"app": app, "interface": interface, "duration_min": 5, "threshold_ms": 200,
         "frequency_ms": 100, "max_samples": 10}
    b.update(fields)
    return {k: v for k, v in b.items() if v is not None}


def register_task_agent(s, app, instance="host-1", pid=1000):
    """POST /api/v1/agent/register -> {"agent_id", "cursor",
    "settings_version", …}: what a poll needs (tests that change neither
    Profile Now nor settings can poll with them throughout)."""
    body = {"app": app, "instance": instance, "pid": pid, "agent_version": "0.4.0"}
    return s.ok("POST", "/api/v1/agent/register", body, token=s.agent_token(), expect=201)


def agent_poll(s, reg, tasks_version=0, timeout_s=1):
    """One poll of the agent of reg (register_task_agent's answer), with
    its cursor and settings version -> (status, body)."""
    st, b, _ = s.request("GET", f"/api/v1/agent/poll?agent_id={reg['agent_id']}"
                         f"&cursor={reg['cursor']}&settings_version={reg['settings_version']}"
                         f"&tasks_version={tasks_version}&timeout_s={timeout_s}",
                         token=s.agent_token(), timeout=timeout_s + 30)
    return st, b


class Poller(threading.Thread):
    """One long-poll of an agent in a thread (tasks_version None: not in
    the query).  .sent once the request is written; .result(timeout) ->
    (status, body); .elapsed: from sending to the answer."""

    def __init__(self, s, agent_id, cursor, settings_version, timeout_s, tasks_version=None):
        super().__init__(daemon=True)
        self.s, self.agent_id = s, agent_id
        self.path = (f"/api/v1/agent/poll?agent_id={agent_id}&cursor={cursor}"
                     f"&settings_version={settings_version}"
                     + (f"&tasks_version={tasks_version}" if tasks_version is not None else "")
                     + f"&timeout_s={timeout_s}")
        self.sent, self.done = threading.Event(), threading.Event()
        self.status = self.body = self.error = None
        self.t_sent = self.t_done = None

    def run(self):
        conn = self.s.connection(timeout=90)
        try:
            conn.request("GET", self.path,
                         headers={"Authorization": f"Bearer {self.s.agent_token()}"})
            self.t_sent = time.monotonic()
            self.sent.set()
            r = conn.getresponse()
            self.status, self.body = r.status, json.loads(r.read())
        except Exception as e:  # reported by result(), not lost in the thread
            self.error = e
            self.sent.set()
        finally:
            self.t_done = time.monotonic()
            conn.close()
            self.done.set()

    @property
    def elapsed(self):
        return self.t_done - self.t_sent

    def result(self, timeout):
        if not self.done.wait(timeout):
            pytest.fail(f"poll of agent {self.agent_id} not answered within {timeout}s")
        if self.error:
            raise self.error
        return self.status, self.body


def start_pollers(polls):
    """Starts each Poller of polls and waits until its request is sent ->
    polls."""
    for p in polls:
        p.start()
    for p in polls:
        assert p.sent.wait(10), "poll request could not be sent"
    return polls


def start_task_polls(s, regs, tasks_version, timeout_s=30):
    """A started Poller per agent (regs: register_task_agent answers),
    each with its request sent."""
    return start_pollers([Poller(s, r["agent_id"], r["cursor"], r["settings_version"], timeout_s,
                                 tasks_version) for r in regs])


def claim_capture(s, task_id, agent_id, trace_id="t-1", interface="GET /slow", **fields):
    """POST /api/v1/agent/tasks/{task_id}/captures -> (status, body)."""
    body = {"agent_id": agent_id, "trace_id": trace_id, "interface": interface,
            "start_ms": int(time.time() * 1000) - 1500, "response_code": 200,
            "peer": "10.0.0.7:51234", "total_ms": 1500, "snapshots": 13}
    body.update(fields)
    body = {k: v for k, v in body.items() if v is not None}
    st, b, _ = s.request("POST", f"/api/v1/agent/tasks/{task_id}/captures", body,
                         token=s.agent_token())
    return st, b
