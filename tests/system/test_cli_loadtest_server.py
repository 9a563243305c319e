"""
test_cli_loadtest_server.py — `sonde loadtest URL --server S`: the test run
by a real sonded (its load-test resource) against the real demo service,
with the CLI waiting for the end and printing the summary a local run
prints: counts against the demo's own, --json (the test as sonded gives
it), --profile-app (sessions triggered by load-test with the demo's
CPU-heavy function), Ctrl-C cancelling the test on the server, a target
outside the allow list, wrong tokens, a server that is away, and the flags
that only make sense one way refused before anything is sent.
"""

import json
import re
import signal
import subprocess
import time
import urllib.request

import pytest

from conftest import (SAN, SONDE, base_env, flame_names, free_port, list_agents,
                      session_flamegraph, wait_for)

SLOW = 2.5 if SAN else 1.0


def stats(demo):
    with urllib.request.urlopen(demo.url + "/stats", timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture
def server(sonded_factory):
    return sonded_factory(args=["--heartbeat-s", "2"])


@pytest.fixture
def demo(hosts):
    return hosts.demo(agent=False, name="demo")


def loadtest(run, s, *args, token=None, timeout=None):
    """`sonde loadtest ARGS --server S --token T` -> Completed (.result:
    the JSON with --json and exit 0)."""
    argv = [SONDE, "loadtest", *[str(a) for a in args]]
    if s is not None:
        argv += ["--server", s.url, "--token", token or s.token("writer")]
    c = run(argv, timeout=timeout or 120)
    c.result = None
    if "--json" in args and c.returncode == 0:
        c.result = json.loads(c.stdout)
    return c


def server_tests(s):
    return s.ok("GET", "/api/v1/loadtests")["loadtests"]


def test_server_run_prints_summary_and_matches_demo(run, server, demo):
    before = stats(demo)
    c = loadtest(run, server, demo.url + "/fast", "-c", 3, "-d", 2)
    after = stats(demo)
    assert c.returncode == 0, c.describe()
    lines = c.stdout.splitlines()
    assert re.fullmatch(rf"Load test of {re.escape(demo.url)}/fast \(by sonded at "
                        rf"{re.escape(server.url)}, test (\d+)\)", lines[0]), lines
    assert lines[1] == "  3 users, 2s, GET, as fast as the users go", lines
    assert "  queued" in lines
    m = re.search(r"^  Requests  (\d+) in [0-9.]+s, [0-9.]+/s$", c.stdout, re.M)
    assert m, c.stdout
    n = int(m.group(1))
    assert n > 0
    assert re.search(rf"^  Status    200: {n}$", c.stdout, re.M), c.stdout
    assert re.search(r"^  Errors    0$", c.stdout, re.M), c.stdout
    served = after["served"] - before["served"]
    assert n <= served <= n + 3, (n, served)
    # The test is sonded's: stored, completed, with the same count.
    (t,) = server_tests(server)
    assert t["state"] == "completed" and t["requests"] == n


def test_server_json_is_the_stored_test(run, server, demo):
    c = loadtest(run, server, demo.url + "/echo", "-c", 1, "-d", 1, "-m", "put",
                 "-H", "X-Demo-Tag:  srv-1", "--body", "héllo", "--rate", 50, "--json")
    assert c.returncode == 0, c.describe()
    t = c.result
    assert t["state"] == "completed", t
    assert t["method"] == "PUT" and t["users"] == 1 and t["duration_s"] == 1
    assert t["rate"] == 50 and t["body_bytes"] == len("héllo".encode())
    assert t["headers"] == {"X-Demo-Tag": "srv-1"}
    assert t["result"]["requests"] > 0 and len(t["result"]["seconds"]) >= 1
    got = server.ok("GET", f"/api/v1/loadtests/{t['id']}")
    assert got["result"]["requests"] == t["result"]["requests"]
    echo = stats(demo)["echo"]
    assert (echo["method"], echo["tag"]) == ("PUT", "srv-1"), echo
    assert echo["body_bytes"] == len("héllo".encode()) * echo["requests"], echo


def test_profile_app_links_load_test_sessions(run, server, hosts):
    d = hosts.demo(server, app="demo")
    wait_for(lambda: [a for a in list_agents(server, app="demo") if a["status"] == "running"],
             15 * SLOW, "the demo's agent to run")
    c = loadtest(run, server, d.url + "/cpu?ms=2", "-c", 2, "-d", 3, "--profile-app", "demo",
                 timeout=180)
    assert c.returncode == 0, c.describe()
    assert re.search(r"^  Profiling 1 session \(load-test\): \d+ demo/host-1 \w+$", c.stdout,
                     re.M), c.stdout
    (t,) = server_tests(server)
    full = server.ok("GET", f"/api/v1/loadtests/{t['id']}")
    (sess,) = full["sessions"]
    assert sess["triggered_by"] == "load-test" and sess["request_id"] == full["profile_now_id"]

    def uploaded():
        s = server.ok("GET", f"/api/v1/sessions/{sess['id']}")
        return s if s["state"] == "completed" else None

    wait_for(uploaded, 30 * SLOW, "the load-test session to be uploaded")
    tree = session_flamegraph(server, sess["id"])
    assert "demo_checksum_work" in flame_names(tree.get("tree", tree)), tree


def test_ctrl_c_cancels_on_the_server(server, demo, tmp_path):
    argv = [SONDE, "loadtest", demo.url + "/fast", "-c", "2", "-d", "60",
            "--server", server.url, "--token", server.token("writer")]
    p = subprocess.Popen(argv, env=base_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        wait_for(lambda: [t for t in server_tests(server) if t["state"] == "in progress"],
                 20 * SLOW, "the test to be in progress")
        wait_for(lambda: server_tests(server)[0]["requests"] > 0, 10 * SLOW, "some progress")
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, (out, err)
    assert "cancelling test" in err, err
    assert re.search(r"^  Cancelled after [0-9.]+s$", out, re.M), out
    (t,) = server_tests(server)
    assert t["state"] == "cancelled" and t["requests"] > 0, t


def test_target_outside_allow_list_is_refused(run, server):
    c = loadtest(run, server, "http://10.255.255.1/x", "-d", 1)
    assert c.returncode == 1, c.describe()
    assert "not allowed" in c.stderr and "HTTP 403" in c.stderr, c.stderr
    assert server_tests(server) == []


def test_tokens(run, server, demo):
    c = loadtest(run, server, demo.url + "/fast", "-d", 1, token=server.token("reader"))
    assert c.returncode == 1 and "HTTP 403" in c.stderr, c.describe()
    c = loadtest(run, server, demo.url + "/fast", "-d", 1, token="sonde_" + "0" * 64)
    assert c.returncode == 1 and "HTTP 401" in c.stderr, c.describe()
    assert server_tests(server) == []


def test_server_away(run, demo):
    c = run([SONDE, "loadtest", demo.url + "/fast", "-d", 1, "--server",
             f"http://127.0.0.1:{free_port()}", "--token", "sonde_" + "1" * 64], timeout=60)
    assert c.returncode == 1 and "cannot reach sonded" in c.stderr, c.describe()


def test_bad_requests_answered_by_sonded_exit_2(run, server):
    c = loadtest(run, server, "http://127.0.0.1:1/x", "-d", 1, "--timeout", 600000,
                 "-c", 10000, "--rate", 1000000, "--profile-app", "bad app\tname")
    assert c.returncode == 2, c.describe()
    assert "HTTP 400" in c.stderr and "profile_app" in c.stderr, c.stderr
    assert server_tests(server) == []


@pytest.mark.parametrize("args, message", [
    (["--profile-app", "demo"], "--profile-app needs --server"),
    (["--server", "http://127.0.0.1:1", "--threads", "2"], "--threads is for a local run"),
    (["--server", "ftp://x"], "--server needs a URL"),
    (["--server"], "--server needs a URL"),
    (["--profile-app"], "--profile-app needs an app name"),
    (["--profile-app", ""], "--profile-app needs an app name"),
])
def test_flags_refused_before_sending(run, args, message):
    c = run([SONDE, "loadtest", "http://127.0.0.1:1/", *args], timeout=30)
    assert c.returncode == 2, c.describe()
    assert message in c.stderr, c.stderr


def test_binary_body_refused_for_server(run, tmp_path):
    f = tmp_path / "body.bin"
    f.write_bytes(b"\xff\xfe\x00\x01")
    c = run([SONDE, "loadtest", "http://127.0.0.1:1/", "--body-file", str(f), "--server",
             "http://127.0.0.1:1", "--token", "sonde_" + "1" * 64], timeout=30)
    assert c.returncode == 2 and "UTF-8" in c.stderr, c.describe()


def test_duplicate_header_refused_for_server(run):
    c = run([SONDE, "loadtest", "http://127.0.0.1:1/", "-H", "A: 1", "-H", "a: 2", "--server",
             "http://127.0.0.1:1", "--token", "sonde_" + "1" * 64], timeout=30)
    assert c.returncode == 2 and "twice" in c.stderr, c.describe()
