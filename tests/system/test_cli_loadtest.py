"""
test_cli_loadtest.py — `sonde loadtest URL ...`, the load generator run
locally by the CLI, against the real demo service (examples/demo_service,
no agent): its counts checked against the demo's own (GET /stats: requests
served, and what /echo received), status codes, rate mode, a target that
is down, Ctrl-C, method/headers/body reaching the server, the text summary,
and every bad argument refused (exit 2) before anything is sent.
"""

import json
import re
import signal
import socket
import time
import urllib.request

import pytest

from conftest import SAN, SONDE, base_env, free_port, wait_for


# ---- helpers ---------------------------------------------------------------

def stats(demo):
    """The demo's GET /stats (not counted in its own "served")."""
    with urllib.request.urlopen(demo.url + "/stats", timeout=10) as r:
        return json.loads(r.read())


def loadtest(run, *args, timeout=None):
    """`sonde loadtest ARGS` -> Completed (.result: the JSON with --json and
    exit 0)."""
    c = run([SONDE, "loadtest", *[str(a) for a in args]], timeout=timeout or 90)
    c.result = None
    if "--json" in args and c.returncode == 0:
        try:
            c.result = json.loads(c.stdout)
        except ValueError:
            pytest.fail(f"--json printed no JSON\n{c.describe()}")
    return c


def ok(run, *args):
    c = loadtest(run, *args)
    assert c.returncode == 0, c.describe()
    return c


def assert_matches_served(r, before, after, users):
    """The generator's count against the demo's: every response it counted
    was served; the demo may have served up to `users` more (in flight at
    the end, abandoned)."""
    served = after["served"] - before["served"]
    assert r["requests"] <= served <= r["requests"] + users, (r["requests"], served)


@pytest.fixture
def demo(hosts):
    return hosts.demo(agent=False, name="demo")


# ---- counts against the demo's own ---------------------------------------

def test_requests_counted_match_the_demos_served_count(run, demo):
    before = stats(demo)
    c = ok(run, demo.url + "/fast", "-c", 4, "-d", 2, "--json")
    r = c.result
    assert r["requests"] > 50, c.describe()
    assert_matches_served(r, before, stats(demo), 4)
    assert r["status"] == {"200": r["requests"]}, r["status"]
    assert r["errors"] == {"total": 0, "connect": 0, "timeout": 0, "reset": 0, "other": 0}
    assert r["cancelled"] is False and 1.9 <= r["elapsed_s"] < 4, r["elapsed_s"]
    assert (r["users"], r["duration_s"], r["method"]) == (4, 2, "GET")
    assert r["bytes_read"] > r["requests"] * len("fast\n"), r["bytes_read"]
    lat = r["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"], lat
    assert lat["min"] <= lat["mean"] <= lat["max"], lat
    # The per-second series: one entry per second of the test, adding up.
    secs = r["seconds"]
    assert 2 <= len(secs) <= 3, secs
    assert sum(s["requests"] for s in secs) == r["requests"], secs
    assert all(s["errors"] == 0 for s in secs), secs
    assert all(s["latency_max_ms"] <= lat["max"] for s in secs if s["requests"]), secs


def test_status_codes_are_counted_by_code(run, demo):
    before = stats(demo)
    r = ok(run, demo.url + "/no-such-page", "-c", 2, "-d", 1, "--json").result
    assert r["requests"] > 0 and r["status"] == {"404": r["requests"]}, r
    assert r["errors"]["total"] == 0, r["errors"]
    assert_matches_served(r, before, stats(demo), 2)


def test_rate_mode_sends_that_many_requests_per_second(run, demo):
    before = stats(demo)
    r = ok(run, demo.url + "/fast", "-c", 4, "-d", 2, "--rate", 50, "--json").result
    assert r["rate"] == 50, r["rate"]
    # 2 s at 50/s: 100 requests scheduled, give or take the edges.
    assert 85 <= r["requests"] <= 105, r["requests"]
    assert r["errors"]["total"] == 0, r["errors"]
    assert_matches_served(r, before, stats(demo), 4)


def test_threads_flag_and_default(run, demo):
    r = ok(run, demo.url + "/fast", "-c", 3, "-d", 1, "--threads", 2, "--json").result
    assert r["threads"] == 2 and r["requests"] > 0, r
    r = ok(run, demo.url + "/fast", "-c", 1, "-d", 1, "--json").result
    assert r["threads"] == 1, r["threads"]  # never more threads than users


def test_duration_forms(run, demo):
    assert ok(run, demo.url + "/fast", "-c", 1, "--duration", "1s", "--json").result[
        "duration_s"] == 1
    assert ok(run, demo.url + "/fast", "-c", 1, "--duration=2", "--json").result[
        "duration_s"] == 2


# ---- method, headers and body reach the server ---------------------------

def test_post_with_header_and_body_reaches_the_server(run, demo):
    before = stats(demo)
    r = ok(run, demo.url + "/echo", "-c", 2, "-d", 1, "-m", "POST", "-H", "X-Demo-Tag: lt-1",
           "--body", "hello", "--json").result
    after = stats(demo)
    assert r["requests"] > 0 and r["status"] == {"200": r["requests"]}, r
    assert (r["method"], r["body_bytes"]) == ("POST", 5), r
    echoed = after["echo"]["requests"] - before["echo"]["requests"]
    assert r["requests"] <= echoed <= r["requests"] + 2, (r["requests"], echoed)
    assert after["echo"]["body_bytes"] - before["echo"]["body_bytes"] == 5 * echoed, after
    assert (after["echo"]["method"], after["echo"]["tag"]) == ("POST", "lt-1"), after


def test_body_file_and_method_put(run, demo, tmp_path):
    body = tmp_path / "body.json"
    body.write_bytes(b'{"x": "' + b"y" * 3000 + b'"}\n')
    before = stats(demo)
    r = ok(run, demo.url + "/echo", "-c", 1, "-d", 1, "--method=put", "--body-file", body,
           "--header=X-Demo-Tag: file", "--json").result
    after = stats(demo)
    size = body.stat().st_size
    assert (r["method"], r["body_bytes"]) == ("PUT", size), r
    echoed = after["echo"]["requests"] - before["echo"]["requests"]
    assert echoed >= r["requests"] > 0, (echoed, r["requests"])
    assert after["echo"]["body_bytes"] - before["echo"]["body_bytes"] == size * echoed
    assert (after["echo"]["method"], after["echo"]["tag"]) == ("PUT", "file"), after


def test_a_body_without_method_is_a_post(run, demo):
    r = ok(run, demo.url + "/echo", "-c", 1, "-d", 1, "--body", "x=1", "--json").result
    assert r["method"] == "POST" and r["requests"] > 0, r
    assert stats(demo)["echo"]["method"] == "POST"


def test_method_not_allowed_counts_as_its_status(run, demo):
    r = ok(run, demo.url + "/fast", "-c", 1, "-d", 1, "-m", "DELETE", "--json").result
    assert r["requests"] > 0 and r["status"] == {"405": r["requests"]}, r


# ---- a target that is down; Ctrl-C ---------------------------------------

def test_target_down_counts_errors_and_runs_its_duration(run):
    port = free_port()  # nobody listens there
    t0 = time.monotonic()
    c = ok(run, f"http://127.0.0.1:{port}/", "-c", 2, "-d", 2, "--json")
    took = time.monotonic() - t0
    r = c.result
    assert r["requests"] == 0 and r["status"] == {}, r
    assert r["errors"]["connect"] > 0 and r["errors"]["total"] == r["errors"]["connect"], r
    assert r["latency_ms"] is None, r["latency_ms"]
    assert r["cancelled"] is False and r["elapsed_s"] >= 1.9 and took >= 1.9, (r, took)


def test_target_down_text_summary(run):
    port = free_port()
    c = ok(run, f"http://127.0.0.1:{port}/x", "-c", 1, "-d", 1)
    assert re.search(r"^  Latency   no responses$", c.stdout, re.M), c.stdout
    assert re.search(r"^  Requests  0 in [0-9.]+s, 0\.00/s$", c.stdout, re.M), c.stdout
    assert re.search(r"^  Status    none$", c.stdout, re.M), c.stdout
    assert re.search(r"^  Errors    [1-9]\d*: connect [1-9]\d*, timeout 0, reset 0, other 0$",
                     c.stdout, re.M), c.stdout


def start_loadtest(processes, tmp_path, *args):
    return processes.start([SONDE, "loadtest", *[str(a) for a in args]], base_env(), tmp_path)


@pytest.mark.parametrize("json_out", [False, True], ids=["text", "json"])
def test_sigint_stops_early_and_prints_what_was_measured(processes, tmp_path, demo, json_out):
    p = start_loadtest(processes, tmp_path, demo.url + "/fast", "-c", 2, "-d", 60,
                       *(["--json"] if json_out else []))
    t0 = time.monotonic()
    wait_for(lambda: stats(demo)["served"] > 20, 20 if SAN else 10, "requests at the demo")
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=15)
    took = time.monotonic() - t0
    assert p.returncode == 0, (p.returncode, out, err)
    assert took < 30, took
    assert "stopping" in err, err
    served = stats(demo)["served"]
    if json_out:
        r = json.loads(out)
        assert r["cancelled"] is True and r["elapsed_s"] < 30, r
        assert 0 < r["requests"] <= served <= r["requests"] + 2, (r["requests"], served)
    else:
        assert re.search(r"^  Cancelled after [0-9.]+s$", out, re.M), out
        m = re.search(r"^  Requests  (\d+) in ", out, re.M)
        assert m and 0 < int(m.group(1)) <= served, out


def test_sigterm_stops_early_too(processes, tmp_path, demo):
    p = start_loadtest(processes, tmp_path, demo.url + "/fast", "-c", 1, "-d", 60, "--json")
    wait_for(lambda: stats(demo)["served"] > 0, 20 if SAN else 10, "requests at the demo")
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=15)
    assert p.returncode == 0, (out, err)
    assert json.loads(out)["cancelled"] is True


# ---- the text summary ------------------------------------------------------

def test_text_summary_lines(run, demo):
    before = stats(demo)
    c = ok(run, demo.url + "/fast", "-c", 3, "-d", 1, "--threads", 2)
    lines = c.stdout.splitlines()
    port = demo.url.rsplit(":", 1)[1]
    assert lines[0] == f"Load test of {demo.url}/fast (127.0.0.1:{port})", lines
    assert lines[1] == "  3 users, 2 threads, 1s, GET, as fast as the users go", lines
    lat = r"\d+\.\d\d(us|ms|s)"
    assert re.fullmatch(rf"  Latency   mean {lat}  p50 {lat}  p90 {lat}  p99 {lat}  max {lat}",
                        lines[2]), lines
    m = re.fullmatch(r"  Requests  (\d+) in (\d+\.\d\d)s, (\d+\.\d\d)/s", lines[3])
    assert m, lines
    n, secs, rps = int(m.group(1)), float(m.group(2)), float(m.group(3))
    assert n > 0 and abs(rps - n / secs) <= 0.02 * rps + 0.01, lines[3]
    assert re.fullmatch(r"  Read      \d+(\.\d\d)?(B|KiB|MiB|GiB) \(\d+ bytes\)", lines[4]), lines
    assert lines[5] == f"  Status    200: {n}", lines
    assert lines[6] == "  Errors    0", lines
    assert len(lines) == 7, lines
    served = stats(demo)["served"] - before["served"]
    assert n <= served <= n + 3, (n, served)


def test_text_summary_with_rate_and_body(run, demo):
    c = ok(run, demo.url + "/echo", "-c", 2, "-d", 1, "--rate", 20, "--body", "abc")
    assert c.stdout.splitlines()[1] == ("  2 users, 2 threads, 1s, POST with a 3-byte body, "
                                        "20 requests/s in all"), c.stdout


def test_help(run):
    c = loadtest(run, "--help")
    assert c.returncode == 0, c.describe()
    for flag in ("--users", "--duration", "--rate", "--method", "--header", "--body",
                 "--body-file", "--timeout", "--threads", "--json"):
        assert flag in c.stdout, flag
    c = run([SONDE, "help"])
    assert c.returncode == 0 and "loadtest URL" in c.stdout, c.describe()


# ---- bad arguments: exit 2, the flag named, nothing sent ------------------

BIG = "a" * (8193 - len("X-Big: "))  # one byte over the 8192 a header may have
BAD = [
    (["-c", "0"], "--users"), (["-c", "10001"], "--users"), (["-c", "abc"], "--users"),
    (["--users=-1"], "--users"), (["--users", "1.5"], "--users"), (["-c"], "--users"),
    (["-d", "0"], "--duration"), (["-d", "3601"], "--duration"), (["-d", "2h"], "--duration"),
    (["-d", "1x"], "--duration"), (["--duration", ""], "--duration"),
    (["--duration", "-5"], "--duration"),
    (["--rate", "0"], "--rate"), (["--rate", "-1"], "--rate"), (["--rate", "1000001"], "--rate"),
    (["--rate", "nan"], "--rate"), (["--rate", "inf"], "--rate"), (["--rate", "x"], "--rate"),
    (["--rate"], "--rate"),
    (["-m", ""], "--method"), (["-m", "GE T"], "--method"), (["-m", "G3T"], "--method"),
    (["-m", "ABCDEFGHIJKLMNOP"], "--method"), (["--method"], "--method"),
    (["-H", "NoColon"], "--header"), (["-H", ": v"], "--header"),
    (["-H", "Bad Name: v"], "--header"), (["-H", "X-A: a\r\nX-B: b"], "--header"),
    (["-H", "X-A: a\nb"], "--header"), (["-H", "Host: example.com"], "--header"),
    (["-H", "content-length: 5"], "--header"), (["-H", "Connection: close"], "--header"),
    (["-H", "Transfer-Encoding: chunked"], "--header"), (["-H", "X-Big: " + BIG], "--header"),
    (["-H"], "--header"),
    (["--timeout", "0"], "--timeout"), (["--timeout", "600001"], "--timeout"),
    (["--timeout", "1s"], "--timeout"),
    (["--threads", "0"], "--threads"), (["--threads", "65"], "--threads"),
    (["--body-file", "/nonexistent/body"], "--body-file"), (["--body-file", "/"], "--body-file"),
    (["--body-file", ""], "--body-file"), (["--body"], "--body"),
    (["--body", "x", "--body-file", "/etc/hostname"], "--body-file"),
    (["--no-such-flag"], "--no-such-flag"),
]


@pytest.mark.parametrize("args,flag", BAD, ids=[" ".join(a)[:40] for a, _ in BAD])
def test_bad_argument_is_a_usage_error_and_sends_nothing(run, demo, args, flag):
    c = loadtest(run, demo.url + "/fast", *args, "-d", 1)
    assert c.returncode == 2, c.describe()
    assert flag in c.stderr or flag.lstrip("-") in c.stderr, c.describe()
    assert "usage: sonde loadtest" in c.stderr, c.describe()
    assert c.stdout == "", c.describe()
    assert stats(demo)["served"] == 0, "requests were sent despite a usage error"


def test_too_many_headers(run, demo):
    c = loadtest(run, demo.url + "/fast", "-d", 1,
                 *[x for i in range(65) for x in ("-H", f"X-H{i}: v")])
    assert c.returncode == 2 and "at most 64 headers" in c.stderr, c.describe()
    assert stats(demo)["served"] == 0
    # 64 are fine.
    r = ok(run, demo.url + "/fast", "-d", 1, "-c", 1, "--json",
           *[x for i in range(64) for x in ("-H", f"X-H{i}: v")]).result
    assert r["requests"] > 0 and r["status"] == {"200": r["requests"]}, r


def test_a_header_of_8192_bytes_is_sent(run, demo):
    h = "X-Big: " + "b" * (8192 - len("X-Big: "))
    r = ok(run, demo.url + "/fast", "-d", 1, "-c", 1, "-H", h, "--json").result
    assert r["requests"] > 0 and r["status"] == {"200": r["requests"]}, r
    assert r["bytes_written"] >= r["requests"] * 8192, r


def test_body_file_over_1_mib(run, demo, tmp_path):
    f = tmp_path / "big"
    f.write_bytes(b"x" * (1024 * 1024 + 1))
    c = loadtest(run, demo.url + "/echo", "-d", 1, "--body-file", f)
    assert c.returncode == 2 and "--body-file" in c.stderr and "1 MiB" in c.stderr, c.describe()
    assert stats(demo)["served"] == 0
    f.write_bytes(b"x" * (1024 * 1024))  # exactly 1 MiB is allowed
    r = ok(run, demo.url + "/echo", "-d", 1, "-c", 1, "--body-file", f, "--json").result
    assert r["body_bytes"] == 1024 * 1024 and r["status"] == {"200": r["requests"]}, r


@pytest.mark.parametrize("url", ["", "ftp://127.0.0.1/", "http://", "http:///path",
                                 "127.0.0.1:8080/", "http://127.0.0.1:99999/",
                                 "http://127.0.0.1:0/", "http://[::1/",
                                 "http://127.0.0.1/" + "p" * 2100])
def test_bad_url_is_a_usage_error(run, url):
    c = loadtest(run, url, "-d", 1)
    assert c.returncode == 2, c.describe()
    assert "URL" in c.stderr or "url" in c.stderr or "port" in c.stderr, c.describe()


def test_no_url_and_two_urls(run, demo):
    c = loadtest(run, "-d", 1)
    assert c.returncode == 2 and "no URL" in c.stderr, c.describe()
    c = loadtest(run, demo.url + "/fast", demo.url + "/cpu", "-d", 1)
    assert c.returncode == 2 and "one URL only" in c.stderr, c.describe()
    assert stats(demo)["served"] == 0


def test_https_is_refused_before_connecting(run):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        c = loadtest(run, f"https://127.0.0.1:{port}/", "-d", 1)
        assert c.returncode == 2 and "https" in c.stderr, c.describe()
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected


def test_unresolvable_host_is_a_failure(run):
    c = loadtest(run, "http://no-such-host.invalid/", "-d", 1)
    assert c.returncode == 1, c.describe()
    assert "no-such-host.invalid" in c.stderr, c.describe()
