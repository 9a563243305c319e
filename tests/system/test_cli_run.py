"""
test_cli_run.py — `sonde run`: the program runs in place with the agent
preloaded and the server settings in its environment; bad arguments are
usage errors before anything runs.  Also the demo service `sonde run`
is shown with (examples/demo_service.c): its endpoints, with and without
the agent, and its clean exit on SIGTERM.
"""

import http.client
import os
import select
import signal
import time

import pytest

from conftest import BUILD, LIBSONDE, SONDE, base_env, wait_for

DEMO = BUILD / "examples" / "demo_service"
SERVER = "http://127.0.0.1:1"   # nothing listens there: the agent only retries


def env_of(stdout):
    """`env` output -> dict."""
    return dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)


def agent_first(preload):
    """The first LD_PRELOAD entry that is not a sanitizer runtime (a SAN
    run keeps libasan in front)."""
    entries = [e for e in preload.replace(" ", ":").split(":") if e]
    rest = [e for e in entries if not os.path.basename(e).startswith(("libasan.", "libubsan."))]
    return rest[0] if rest else None


def sonde_run(run, args, prog, env=None, agent=True):
    """`sonde run ARGS -- PROG...` in base_env(env) (with the sanitizer
    runtime preloaded on a SAN run when the agent will load)."""
    return run([SONDE, "run", *args, "--", *prog], raw_env=base_env(env, agent=agent))


# ---- the environment reaches the program ---------------------------------

def test_run_passes_server_app_and_preload_to_program(run):
    r = sonde_run(run, ["--server", SERVER, "--app", "x"], ["/usr/bin/env"])
    assert r.returncode == 0, r.describe()
    env = env_of(r.stdout)
    assert env.get("SONDE_SERVER") == SERVER, r.describe()
    assert env.get("SONDE_APP") == "x", r.describe()
    assert agent_first(env.get("LD_PRELOAD", "")) == str(LIBSONDE.resolve()), r.describe()


def test_run_defaults_app_to_program_name_and_server_token_to_environment(run):
    r = sonde_run(run, [], ["/usr/bin/env"],
                  env={"SONDE_SERVER": SERVER, "SONDE_AGENT_TOKEN": "sonde_agent",
                       "SONDE_TOKEN": "sonde_admin"})
    env = env_of(r.stdout)
    assert r.returncode == 0, r.describe()
    assert env.get("SONDE_APP") == "env", r.describe()
    assert env.get("SONDE_SERVER") == SERVER, r.describe()
    # SONDE_AGENT_TOKEN wins over SONDE_TOKEN (often a person's token).
    assert env.get("SONDE_TOKEN") == "sonde_agent", r.describe()


def test_run_flags_become_agent_settings(run, tmp_path):
    log = tmp_path / "agent.log"
    r = sonde_run(run, ["--server", SERVER, "--app", "shop", "--instance", "web-2", "--token",
                        "sonde_t", "--frequency", "250", "--types", "cpu,wall", "--log",
                        "agent.log"], ["/usr/bin/env"],
                  env={"SONDE_OUTPUT": str(tmp_path / "local.pb.gz")})
    env = env_of(r.stdout)
    assert r.returncode == 0, r.describe()
    want = {"SONDE_APP": "shop", "SONDE_INSTANCE": "web-2", "SONDE_TOKEN": "sonde_t",
            "SONDE_FREQUENCY": "250", "SONDE_TYPES": "cpu,wall", "SONDE_LOG": str(log)}
    assert {k: env.get(k) for k in want} == want, r.describe()
    # Connected, not recording locally: an inherited SONDE_OUTPUT is dropped.
    assert "SONDE_OUTPUT" not in env, r.describe()


def test_run_keeps_existing_preloads_after_the_agent(run, tmp_path):
    other = tmp_path / "libother.so"
    r = sonde_run(run, ["--server", SERVER], ["/usr/bin/env"], env={"LD_PRELOAD": ""})
    base = env_of(r.stdout)["LD_PRELOAD"]
    # A preload that does not exist only earns a warning from ld.so.
    r = sonde_run(run, ["--server", SERVER], ["/usr/bin/env"], env={"LD_PRELOAD": str(other)})
    pre = env_of(r.stdout)["LD_PRELOAD"]
    assert pre == f"{base}:{other}", r.describe()


def test_run_execs_in_place_and_exits_with_the_programs_status(run, processes):
    r = sonde_run(run, ["--server", SERVER], ["sh", "-c", "echo pid=$$; exit 7"])
    assert r.returncode == 7, r.describe()
    # No fork: the program is the process `sonde run` was.
    p = processes.start([SONDE, "run", "--server", SERVER, "--", "sh", "-c", "echo pid=$$"],
                        base_env(agent=True), None)
    out, _ = p.communicate(timeout=30)
    assert out.strip() == f"pid={p.pid}"


# ---- errors -----------------------------------------------------------------

@pytest.mark.parametrize("args, env, message", [
    ([], {}, "no server"),
    (["--server", "ftp://x"], {}, "--server"),
    ([], {"SONDE_SERVER": "localhost:7070"}, "SONDE_SERVER"),
    (["--server", SERVER, "--frequency", "0"], {}, "--frequency"),
    (["--server", SERVER, "-F", "20000"], {}, "--frequency"),
    (["--server", SERVER, "--types", "gpu"], {}, "--types"),
    (["--server", SERVER, "--app", ""], {}, "--app"),
    (["--server", SERVER, "--app", "a" * 128], {}, "--app"),
    (["--server", SERVER, "--instance", "h\x01"], {}, "--instance"),
    (["--server", SERVER, "--bogus"], {}, "unknown option '--bogus'"),
    (["--server", SERVER, "--json"], {}, "--json"),
])
def test_run_bad_arguments_are_usage_errors_before_anything_runs(run, tmp_path, args, env,
                                                                 message):
    marker = tmp_path / "ran"
    r = sonde_run(run, args, ["sh", "-c", f"touch {marker}"], env=env, agent=False)
    assert r.returncode == 2, r.describe()
    assert message in r.stderr and "usage: sonde run" in r.stderr, r.describe()
    assert not marker.exists(), "the program ran despite a usage error"


def test_run_without_program_is_a_usage_error(run):
    r = run([SONDE, "run", "--server", SERVER, "--"])
    assert r.returncode == 2, r.describe()
    assert "no program given" in r.stderr, r.describe()


def test_run_missing_program_exits_127_naming_it(run, tmp_path):
    missing = tmp_path / "no-such-program"
    r = sonde_run(run, ["--server", SERVER], [missing, "x"])
    assert r.returncode == 127, r.describe()
    assert f"cannot run {missing}" in r.stderr, r.describe()


def test_run_unwritable_log_fails_before_the_program_runs(run, tmp_path):
    marker = tmp_path / "ran"
    r = sonde_run(run, ["--server", SERVER, "--log", "/nonexistent/dir/agent.log"],
                  ["sh", "-c", f"touch {marker}"])
    assert r.returncode == 1, r.describe()
    assert "/nonexistent/dir/agent.log" in r.stderr, r.describe()
    assert not marker.exists()


# ---- the demo service ---------------------------------------------------------

class Demo:
    """A started demo_service (directly or under `sonde run`): .url, .get(),
    .stop() -> exit status."""

    def __init__(self, processes, argv, env, timeout=20):
        if not DEMO.exists():
            pytest.fail(f"{DEMO} is missing: build it with `make BUILDDIR=... all`")
        self.proc = processes.start(argv, env, None)
        line, deadline = "", time.monotonic() + timeout
        while "demo listening on " not in line:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                pytest.fail(f"demo_service did not start: {self.proc.stderr.read()[-2000:]}"
                            if self.proc.poll() is not None else "demo_service did not start")
            if select.select([self.proc.stdout], [], [], left)[0]:
                line = self.proc.stdout.readline()
        self.url = line.split("demo listening on ", 1)[1].strip()
        self.port = int(self.url.rsplit(":", 1)[1])

    def get(self, path, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    def stop(self, timeout=30):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=timeout)
        return self.proc.returncode


def check_endpoints(demo):
    assert demo.get("/fast") == (200, "fast\n")
    assert demo.get("/health") == (200, "ok\n")
    st, body = demo.get("/cpu", {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-"
                                                 "00f067aa0ba902b7-01"})
    assert st == 200 and body.startswith("checksum "), body
    t0 = time.monotonic()
    assert demo.get("/slow", {"X-Trace-Id": "abc"}) == (200, "slow\n")
    assert time.monotonic() - t0 >= 0.045
    assert demo.get("/nope")[0] == 404


def test_demo_service_runs_without_the_agent(processes):
    # The span API is called through weak references: no libsonde, no spans.
    demo = Demo(processes, [DEMO, "--port", "0"], base_env())
    check_endpoints(demo)
    assert demo.stop() == 0


def test_demo_service_under_sonde_run_answers_and_exits_cleanly(processes, tmp_path):
    # Its agent cannot reach a server: the host runs as ever, and leaves on
    # SIGTERM with status 0 (the agent's destructor runs).
    demo = Demo(processes, [SONDE, "run", "--server", SERVER, "--app", "demo", "--log",
                            tmp_path / "agent.log", "--", DEMO, "--port", "0"],
                base_env(agent=True))
    check_endpoints(demo)
    assert demo.stop() == 0, demo.proc.stderr.read()[-2000:]


def test_demo_service_under_sonde_run_registers_with_sonded(processes, sonded, tmp_path):
    token = sonded.agent_token()
    log = tmp_path / "agent.log"
    demo = Demo(processes, [SONDE, "run", "--server", sonded.url, "--app", "demo-reg",
                            "--token", token, "--log", log, "--", DEMO, "--port", "0"],
                base_env({"SONDE_REGISTER_DELAY_MS": "0"}, agent=True))

    def registered():
        agents = sonded.ok("GET", "/api/v1/agents?app=demo-reg")["agents"]
        return [a for a in agents if a["pid"] == demo.proc.pid and a["status"] == "running"]

    wait_for(registered, timeout=15, what=f"the demo's agent in GET /api/v1/agents (its log: {log})")
    assert demo.stop() == 0
