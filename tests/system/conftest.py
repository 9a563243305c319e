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
