"""
test_loadtests_api.py — load tests as a resource of sonded (docs/api.md,
"Load tests"; issue 7), against a real sonded and the real demo service:
tests queued one at a time and run to completion with results that match
the demo's own count of requests served; method, headers and body as
sent; cancel while queued and while running; profile during test (the
sessions of the demo's agent linked to the test, showing the endpoint's
stacks); the allow list (refused targets with 403 and nothing stored,
targets allowed by a CIDR block or a host name); every bad parameter; the
roles; the queue bound (429); a target that is down; a server stopped
during a test; and a bad --loadtest-allow at start.

Tests run 1-3 s each; sonded runs with its defaults (one test at a time,
loopback only) unless a test says otherwise.
"""

import json
import socket
import time
import urllib.parse
import urllib.request

import pytest

from conftest import (SAN, SONDED, flame_names, free_port, list_agents, session_flamegraph,
                      set_profiling, wait_for)

SLOW = 2.5 if SAN else 1.0
LOADTESTS = "/api/v1/loadtests"
ALL_OFF = dict(cpu=False, memory=False, sampling=False)
ENDED = ("completed", "failed", "cancelled")


@pytest.fixture
def server(sonded_factory):
    return sonded_factory()


@pytest.fixture
def demo(hosts):
    """The demo service, without the agent."""
    return hosts.demo(agent=False)


def create(s, body, token=None, expect=201):
    kw = {"token": token} if token else {}
    return s.ok("POST", LOADTESTS, body, expect=expect, **kw)


def get(s, tid):
    return s.ok("GET", f"{LOADTESTS}/{tid}", expect=200)


def listing(s, query=""):
    return s.ok("GET", f"{LOADTESTS}{query}", expect=200)


def wait_state(s, tid, states, timeout):
    states = (states,) if isinstance(states, str) else states
    return wait_for(lambda: (lambda t: t if t["state"] in states else None)(get(s, tid)),
                    timeout, lambda: f"load test {tid} to be {' or '.join(states)} "
                    f"(now {get(s, tid)['state']})")


def served(demo):
    """The demo's /stats: requests answered so far, and the /echo counts."""
    with urllib.request.urlopen(demo.url + "/stats", timeout=10) as r:
        return json.loads(r.read())


def assert_error(st, body, status, text):
    assert st == status, f"wanted {status}, got {st} {body!r}"
    assert isinstance(body, dict) and text in body.get("error", ""), \
        f"error {body!r} lacks {text!r}"


# --------------------------------------------------------------------------
# States, results
# --------------------------------------------------------------------------

def test_tests_run_one_at_a_time_queued_then_in_progress_then_completed(server, demo):
    s = server
    a = create(s, {"url": demo.url + "/fast", "users": 2, "duration_s": 2})
    b = create(s, {"url": demo.url + "/fast", "users": 1, "duration_s": 1})
    assert a["state"] == "queued" and b["state"] == "queued", (a, b)
    assert a["result"] is None and a["started_ms"] is None and a["ended_ms"] is None, a
    assert a["method"] == "GET" and a["rate"] is None and a["timeout_ms"] == 10000, a
    assert a["profile_app"] is None and a["profile_now_id"] is None and a["error"] is None, a
    assert a["headers"] == {} and a["body_bytes"] == 0 and a["sessions"] == [], a
    assert a["creator"]["name"] and a["creator"]["token_id"], a

    wait_state(s, a["id"], "in progress", 5 * SLOW)
    # With --loadtest-parallel 1 (the default) the second one waits.
    assert get(s, b["id"])["state"] == "queued"
    running = wait_for(lambda: (lambda t: t if t["requests"] > 0 or t["state"] != "in progress"
                                else None)(get(s, a["id"])), 5 * SLOW,
                       "progress of the running test")
    if running["state"] == "in progress":
        # Progress: the counts and the results so far, without the series.
        r = running["result"]
        assert r is not None and r["requests"] == running["requests"], running
        assert "seconds" not in r and running["ended_ms"] is None, running
        assert get(s, b["id"])["state"] == "queued"

    a = wait_state(s, a["id"], ENDED, 10 * SLOW)
    b = wait_state(s, b["id"], ENDED, 10 * SLOW)
    assert a["state"] == "completed" and b["state"] == "completed", (a, b)
    assert b["started_ms"] >= a["ended_ms"], (a, b)
    assert a["ended_ms"] - a["started_ms"] >= 2000, a
    assert a["requests"] > 0 and a["errors"] == 0, a

    # Newest first, with the results summary (no per-second series).
    lst = listing(s)
    assert [t["id"] for t in lst["loadtests"]] == [b["id"], a["id"]], lst
    assert lst["total"] == 2 and lst["limit"] == 50 and lst["offset"] == 0, lst
    item = lst["loadtests"][1]
    assert item["result"]["requests"] == a["requests"] and "seconds" not in item["result"], item
    assert "sessions" not in item, item
    assert listing(s, "?state=completed")["total"] == 2
    assert listing(s, "?state=in%20progress")["total"] == 0
    assert listing(s, "?state=queued")["loadtests"] == []
    page = listing(s, "?limit=1&offset=1")
    assert [t["id"] for t in page["loadtests"]] == [a["id"]] and page["total"] == 2, page
    for q, text in (("?state=running", "query parameter 'state' must be one of"),
                    ("?state=in-progress", "query parameter 'state'"),
                    ("?limit=0", "query parameter 'limit'"),
                    ("?limit=1001", "query parameter 'limit'"),
                    ("?offset=-1", "query parameter 'offset'")):
        st, body, _ = s.request("GET", LOADTESTS + q)
        assert_error(st, body, 400, text)
    s.stop()   # a clean exit: a sanitizer build checks sonded for leaks


def test_completed_results_match_what_the_demo_served(server, demo):
    s = server
    users, duration = 4, 2
    before = served(demo)["served"]
    t = create(s, {"url": demo.url + "/fast", "users": users, "duration_s": duration})
    t = wait_state(s, t["id"], ENDED, (duration + 10) * SLOW)
    after = served(demo)["served"]
    assert t["state"] == "completed", t
    r = t["result"]
    # Requests in flight at the end are served but not counted.
    assert 0 <= (after - before) - t["requests"] <= users, (before, after, t)
    assert r["requests"] == t["requests"] > 0, r
    assert r["status"] == {"200": t["requests"]}, r
    assert r["errors"]["total"] == 0 == t["errors"], r
    lat = r["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"], lat
    assert abs(len(r["seconds"]) - duration) <= 1, r["seconds"]
    assert sum(x["requests"] for x in r["seconds"]) == t["requests"], r["seconds"]
    assert duration - 0.5 <= r["elapsed_s"] <= duration + 2 * SLOW, r


def test_method_headers_and_body_are_sent_as_given(server, demo):
    s = server
    t = create(s, {"url": demo.url + "/echo", "method": "PUT", "users": 1, "duration_s": 1,
                   "headers": {"X-Demo-Tag": "lt-1", "Accept": "application/json"},
                   "body": "héllo", "timeout_ms": 5000, "rate": 50})
    assert t["headers"] == {"X-Demo-Tag": "lt-1", "Accept": "application/json"}, t
    assert t["body_bytes"] == 6 and "body" not in t, t
    assert t["method"] == "PUT" and t["rate"] == 50 and t["timeout_ms"] == 5000, t
    t = wait_state(s, t["id"], ENDED, 10 * SLOW)
    assert t["state"] == "completed" and t["requests"] > 0, t
    # About 50 requests in 1 s at a fixed rate.
    assert 25 <= t["requests"] <= 60, t
    echo = served(demo)["echo"]
    assert echo["method"] == "PUT" and echo["tag"] == "lt-1", echo
    assert echo["body_bytes"] >= 6 * t["requests"] and echo["body_bytes"] % 6 == 0, (echo, t)
    assert get(s, t["id"])["headers"] == {"X-Demo-Tag": "lt-1", "Accept": "application/json"}


def test_target_down_completes_with_connect_errors(server):
    s = server
    port = free_port()
    t = create(s, {"url": f"http://127.0.0.1:{port}/", "users": 2, "duration_s": 1})
    t = wait_state(s, t["id"], ENDED, 10 * SLOW)
    assert t["state"] == "completed" and t["error"] is None, t
    assert t["requests"] == 0 and t["errors"] > 0, t
    assert t["result"]["errors"]["connect"] == t["errors"], t["result"]
    assert t["result"]["latency_ms"] is None, t["result"]


# --------------------------------------------------------------------------
# Cancel
# --------------------------------------------------------------------------

def test_cancel_queued_and_in_progress(server, demo):
    s = server
    a = create(s, {"url": demo.url + "/fast", "users": 2, "duration_s": 60})
    b = create(s, {"url": demo.url + "/fast", "users": 2, "duration_s": 60})
    wait_state(s, a["id"], "in progress", 5 * SLOW)

    # Queued: cancelled at once, never runs.
    c = s.ok("POST", f"{LOADTESTS}/{b['id']}/cancel", expect=200)
    assert c["state"] == "cancelled" and c["started_ms"] is None and c["ended_ms"], c
    assert c["result"] is None and c["requests"] == 0, c
    st, body, _ = s.request("POST", f"{LOADTESTS}/{b['id']}/cancel")
    assert_error(st, body, 409, f"load test {b['id']} has already ended (cancelled)")

    # In progress: ends cancelled, with what it did so far, quickly.
    wait_for(lambda: get(s, a["id"])["requests"] > 0, 5 * SLOW, "progress of the running test")
    t0 = time.monotonic()
    c = s.ok("POST", f"{LOADTESTS}/{a['id']}/cancel", {}, expect=200)
    took = time.monotonic() - t0
    assert took < 3 * SLOW, f"cancel took {took:.2f} s"
    assert c["state"] == "cancelled" and c["cancel_requested"] is True, c
    assert c["ended_ms"] - c["started_ms"] < 30000, c
    assert c["requests"] > 0 and c["result"]["requests"] == c["requests"], c
    assert len(c["result"]["seconds"]) >= 1, c["result"]
    assert c["error"] is None, c
    st, body, _ = s.request("POST", f"{LOADTESTS}/{a['id']}/cancel")
    assert_error(st, body, 409, "has already ended (cancelled)")
    st, body, _ = s.request("POST", f"{LOADTESTS}/{a['id']}/cancel", {"now": True})
    assert_error(st, body, 400, "unknown field 'now'")
    # The runner is free again: a new test runs.
    d = create(s, {"url": demo.url + "/fast", "users": 1, "duration_s": 1})
    assert wait_state(s, d["id"], ENDED, 10 * SLOW)["state"] == "completed"
    s.stop()


# --------------------------------------------------------------------------
# Profile during test
# --------------------------------------------------------------------------

def test_profile_during_test_links_the_apps_sessions(sonded_factory, hosts):
    s = sonded_factory(args=["--heartbeat-s", "2"])
    set_profiling(s, **ALL_OFF)
    d = hosts.demo(s, app="demo", instance="demo-1")
    wait_for(lambda: any(a["pid"] == d.pid and a["status"] == "running"
                         for a in list_agents(s, app="demo")), 10 * SLOW,
             "the demo's agent to register")
    users, duration = 2, 3
    before = served(d)["served"]
    t = create(s, {"url": d.url + "/cpu?ms=2", "users": users, "duration_s": duration,
                   "profile_app": "demo"})
    assert t["profile_app"] == "demo", t
    t = wait_state(s, t["id"], ENDED, (duration + 15) * SLOW)
    after = served(d)["served"]
    assert t["state"] == "completed", t
    assert t["profile_now_id"], t
    assert 0 <= (after - before) - t["requests"] <= users, (before, after, t)
    assert t["result"]["status"] == {"200": t["requests"]}, t["result"]

    # The agent's session of that request, once uploaded.
    def sessions_done():
        xs = get(s, t["id"])["sessions"]
        return xs if xs and all(x["state"] == "completed" and x["has_profile"] for x in xs) \
            else None

    xs = wait_for(sessions_done, (duration + 20) * SLOW,
                  lambda: f"the test's sessions (now {get(s, t['id'])['sessions']})")
    assert len(xs) == 1 and xs[0]["pid"] == d.pid, xs
    x = xs[0]
    assert x["request_id"] == t["profile_now_id"] and x["app"] == "demo", x
    assert x["triggered_by"] == "load-test", x
    assert x["samples"] > 0, x
    names = flame_names(session_flamegraph(s, x["id"])["tree"])
    assert "demo_checksum_work" in names, sorted(names)[:80]
    # Listed as what it is.
    pn = s.ok("GET", "/api/v1/profile-now")["requests"]
    mine = [r for r in pn if r["id"] == t["profile_now_id"]]
    assert mine and mine[0]["app"] == "demo" and mine[0]["duration_s"] == duration, pn
    s.stop()


# --------------------------------------------------------------------------
# Safety: allow list, parameters, roles, queue bound
# --------------------------------------------------------------------------

def test_target_outside_the_allow_list_is_refused_and_not_stored(server):
    s = server
    for url, host, addr in (("http://10.255.255.1/", "10.255.255.1", "10.255.255.1:80"),
                            ("http://0.0.0.0:8080/x", "0.0.0.0", "0.0.0.0:8080")):
        st, body, _ = s.request("POST", LOADTESTS, {"url": url, "duration_s": 1})
        assert st == 403, (st, body)
        assert body["error"] == (f"target {host} ({addr}) is not allowed: sonded "
                                 f"--loadtest-allow permits 127.0.0.0/8,::1"), body
    # A name that resolves outside loopback, when this machine has one.
    try:
        name = socket.gethostname()
        addr = socket.gethostbyname(name)
    except OSError:
        addr = None
    if addr and not addr.startswith("127."):
        st, body, _ = s.request("POST", LOADTESTS, {"url": f"http://{name}:9/",
                                                    "duration_s": 1})
        assert_error(st, body, 403, f"target {name} ({addr}:9) is not allowed")
    assert listing(s)["total"] == 0


def test_allowed_by_cidr_block_or_host_name(sonded_factory, demo):
    port = urllib.parse.urlsplit(demo.url).port
    # A CIDR block: 127.0.0.1 is in 127.0.0.0/24, 127.0.1.1 is not.
    s = sonded_factory(args=["--loadtest-allow", "127.0.0.0/24"])
    t = create(s, {"url": f"http://127.0.0.1:{port}/fast", "users": 1, "duration_s": 1})
    st, body, _ = s.request("POST", LOADTESTS, {"url": f"http://127.0.1.1:{port}/fast"})
    assert_error(st, body, 403, f"target 127.0.1.1 (127.0.1.1:{port}) is not allowed: sonded "
                 "--loadtest-allow permits 127.0.0.0/24")
    assert wait_state(s, t["id"], ENDED, 10 * SLOW)["state"] == "completed"
    assert listing(s)["total"] == 1
    # A host name: by the name as written, not by its address.
    s2 = sonded_factory(args=["--loadtest-allow=localhost"])
    st, body, _ = s2.request("POST", LOADTESTS, {"url": f"http://127.0.0.1:{port}/fast"})
    assert_error(st, body, 403, "--loadtest-allow permits localhost")
    t = create(s2, {"url": f"http://LocalHost:{port}/fast", "users": 1, "duration_s": 1})
    t = wait_state(s2, t["id"], ENDED, 10 * SLOW)
    assert t["state"] == "completed" and t["requests"] > 0, t
    # An empty list allows nothing.
    s3 = sonded_factory(args=["--loadtest-allow", ""])
    st, body, _ = s3.request("POST", LOADTESTS, {"url": f"http://127.0.0.1:{port}/fast"})
    assert_error(st, body, 403, "sonded --loadtest-allow permits nothing")


BAD = [
    ("{", "body: malformed JSON"),
    ("[]", "body: expected a JSON object"),
    ({}, "field 'url' is required"),
    ({"url": "http://127.0.0.1:1/", "extra": 1}, "unknown field 'extra'"),
    ({"url": 5}, "field 'url' must be a string"),
    ({"url": None}, "field 'url' must be a string"),
    ({"url": ""}, "field 'url' must be a string"),
    ({"url": "http://127.0.0.1:1/" + "a" * 2100}, "field 'url' must be a string of 1..2048"),
    ({"url": "https://127.0.0.1/"}, "url: https is not supported"),
    ({"url": "ftp://127.0.0.1/"}, "url: scheme 'ftp' is not http"),
    ({"url": "127.0.0.1:80/x"}, "url:"),
    ({"url": "http:///x"}, "url:"),
    ({"url": "http://a b/"}, "url: space"),
    ({"url": "http://127.0.0.1:0/"}, "url: port 0"),
    ({"url": "http://no-such-host.invalid/"}, "url: cannot resolve host 'no-such-host.invalid'"),
    ({"url": "http://127.0.0.1:1/", "method": "get"}, "field 'method' must be 1..15 uppercase"),
    ({"url": "http://127.0.0.1:1/", "method": "GETGETGETGETGETG"}, "field 'method'"),
    ({"url": "http://127.0.0.1:1/", "method": 1}, "field 'method' must be a string"),
    ({"url": "http://127.0.0.1:1/", "headers": ["A: b"]}, "field 'headers' must be an object"),
    ({"url": "http://127.0.0.1:1/", "headers": {"Bad Name": "x"}},
     "field 'headers': 'Bad Name' is not a header name"),
    ({"url": "http://127.0.0.1:1/", "headers": {"": "x"}}, "is not a header name"),
    ({"url": "http://127.0.0.1:1/", "headers": {"Host": "evil"}},
     "field 'headers': Host is set by the load generator"),
    ({"url": "http://127.0.0.1:1/", "headers": {"content-length": "5"}},
     "field 'headers': Content-Length is set by the load generator"),
    ({"url": "http://127.0.0.1:1/", "headers": {"Connection": "close"}}, "Connection is set"),
    ({"url": "http://127.0.0.1:1/", "headers": {"Transfer-Encoding": "chunked"}},
     "Transfer-Encoding is set"),
    ({"url": "http://127.0.0.1:1/", "headers": {"X-A": 1}},
     "field 'headers': the value of 'X-A' must be a string"),
    ({"url": "http://127.0.0.1:1/", "headers": {"X-A": "a\r\nHost: evil"}},
     "the value of 'X-A' must be printable text"),
    ({"url": "http://127.0.0.1:1/", "headers": {"X-A": "v" * 8200}}, "longer than 8192 bytes"),
    ({"url": "http://127.0.0.1:1/", "headers": {f"X-{i}": "v" for i in range(65)}},
     "field 'headers' must have at most 64 headers"),
    ({"url": "http://127.0.0.1:1/", "body": 5}, "field 'body' must be a string"),
    ({"url": "http://127.0.0.1:1/", "body": {"a": 1}}, "field 'body' must be a string"),
    ({"url": "http://127.0.0.1:1/", "body": "x" * ((1 << 20) + 1)},
     "field 'body' must be at most 1048576 bytes"),
    ({"url": "http://127.0.0.1:1/", "users": 0}, "field 'users' must be an integer in 1..10000"),
    ({"url": "http://127.0.0.1:1/", "users": 10001}, "field 'users' must be an integer in 1..10000"),
    ({"url": "http://127.0.0.1:1/", "users": "5"}, "field 'users' must be an integer"),
    ({"url": "http://127.0.0.1:1/", "users": 1.5}, "field 'users' must be an integer"),
    ({"url": "http://127.0.0.1:1/", "users": None}, "field 'users' must be an integer"),
    ({"url": "http://127.0.0.1:1/", "duration_s": 0},
     "field 'duration_s' must be an integer in 1..3600"),
    ({"url": "http://127.0.0.1:1/", "duration_s": 3601}, "field 'duration_s' must be an integer"),
    ({"url": "http://127.0.0.1:1/", "rate": -1}, "field 'rate' must be a number of requests/s"),
    ({"url": "http://127.0.0.1:1/", "rate": 1000001}, "field 'rate' must be a number"),
    ({"url": "http://127.0.0.1:1/", "rate": "10"}, "field 'rate' must be a number"),
    ({"url": "http://127.0.0.1:1/", "timeout_ms": 0},
     "field 'timeout_ms' must be an integer in 1..600000"),
    ({"url": "http://127.0.0.1:1/", "timeout_ms": 600001}, "field 'timeout_ms'"),
    ({"url": "http://127.0.0.1:1/", "profile_app": ""}, "field 'profile_app' must be a string"),
    ({"url": "http://127.0.0.1:1/", "profile_app": "a" * 200}, "field 'profile_app'"),
    ({"url": "http://127.0.0.1:1/", "profile_app": 3}, "field 'profile_app'"),
    ({"url": "http://127.0.0.1:1/", "profile_app": "a\nb"}, "field 'profile_app' must be printable"),
]


def test_bad_parameters_are_refused_naming_the_field(server):
    s = server
    for body, text in BAD:
        st, got, _ = s.request("POST", LOADTESTS, body)
        assert st == 400 and isinstance(got, dict) and text in got.get("error", ""), \
            f"{str(body)[:120]}: wanted 400 with {text!r}, got {st} {str(got)[:300]}"
    assert listing(s)["total"] == 0
    # The bounds themselves are accepted: queued behind a running test
    # (against a port nobody listens on), then cancelled before it runs.
    first = create(s, {"url": "http://127.0.0.1:1/", "users": 1, "duration_s": 60})
    wait_state(s, first["id"], "in progress", 5 * SLOW)
    t = create(s, {"url": "http://127.0.0.1:1/", "users": 10000, "duration_s": 3600,
                   "rate": 1000000, "timeout_ms": 600000, "method": "OPTIONS",
                   "profile_app": "a" * 127, "body": "x" * (1 << 20),
                   "headers": {f"X-{i}": "v" for i in range(64)}})
    assert t["users"] == 10000 and t["rate"] == 1000000 and len(t["headers"]) == 64, t
    assert t["body_bytes"] == 1 << 20 and t["duration_s"] == 3600, t
    assert s.ok("POST", f"{LOADTESTS}/{t['id']}/cancel")["state"] == "cancelled"
    assert s.ok("POST", f"{LOADTESTS}/{first['id']}/cancel")["state"] == "cancelled"
    s.stop()


def test_roles_and_unknown_ids(server):
    s = server
    reader, writer = s.token("reader"), s.token("writer", "wendy")
    agent = s.agent_token()
    body = {"url": "http://127.0.0.1:1/", "duration_s": 1}
    st, got, _ = s.request("POST", LOADTESTS, body, token=reader)
    assert st == 403, (st, got)
    st, got, _ = s.request("POST", LOADTESTS, body, token=agent)
    assert st == 403, (st, got)
    for method, path in (("POST", LOADTESTS), ("GET", LOADTESTS), ("GET", f"{LOADTESTS}/1"),
                         ("POST", f"{LOADTESTS}/1/cancel")):
        st, got, _ = s.request(method, path, body if method == "POST" else None, token=None)
        assert st == 401, (method, path, st, got)
    assert listing(s)["total"] == 0

    t = create(s, body, token=writer)
    assert t["creator"]["name"] == "wendy", t
    st, got, _ = s.request("POST", f"{LOADTESTS}/{t['id']}/cancel", token=reader)
    assert st == 403, (st, got)
    st, got, _ = s.request("GET", f"{LOADTESTS}/{t['id']}", token=reader)
    assert st == 200 and got["id"] == t["id"], (st, got)
    st, got, _ = s.request("GET", LOADTESTS, token=reader)
    assert st == 200 and got["total"] == 1, (st, got)

    for method, path in (("GET", f"{LOADTESTS}/999"), ("POST", f"{LOADTESTS}/999/cancel")):
        st, got, _ = s.request(method, path)
        assert_error(st, got, 404, "load test 999 not found")
    st, got, _ = s.request("GET", f"{LOADTESTS}/abc")
    assert st == 404, (st, got)
    wait_state(s, t["id"], ENDED, 10 * SLOW)


def test_full_queue_is_429(sonded_factory, demo):
    s = sonded_factory(args=["--loadtest-queue", "2"])
    body = {"url": demo.url + "/fast", "users": 1, "duration_s": 60}
    a = create(s, body)
    wait_state(s, a["id"], "in progress", 5 * SLOW)
    b, c = create(s, body), create(s, body)
    st, got, _ = s.request("POST", LOADTESTS, body)
    assert_error(st, got, 429, "queue is full")
    assert listing(s)["total"] == 3
    # A cancelled one frees its place.
    s.ok("POST", f"{LOADTESTS}/{c['id']}/cancel", expect=200)
    d = create(s, body)
    for t in (a, b, d):
        s.ok("POST", f"{LOADTESTS}/{t['id']}/cancel", expect=(200, 202))
    for t in (a, b, d):
        wait_state(s, t["id"], ENDED, 10 * SLOW)
    assert listing(s, "?state=cancelled")["total"] == 4
    s.stop()


# --------------------------------------------------------------------------
# Server life
# --------------------------------------------------------------------------

def test_server_stopped_during_a_test_fails_it_and_keeps_the_queue(server, demo):
    s = server
    a = create(s, {"url": demo.url + "/fast", "users": 2, "duration_s": 60})
    b = create(s, {"url": demo.url + "/fast", "users": 1, "duration_s": 1})
    wait_state(s, a["id"], "in progress", 5 * SLOW)
    wait_for(lambda: get(s, a["id"])["requests"] > 0, 5 * SLOW, "progress of the running test")
    t0 = time.monotonic()
    s.stop()
    assert time.monotonic() - t0 < 5 * SLOW, "sonded took long to stop during a load test"
    s.restart()
    a = get(s, a["id"])
    assert a["state"] == "failed" and a["error"] == "server stopped during the test", a
    assert a["requests"] > 0 and a["result"]["requests"] == a["requests"], a
    assert a["ended_ms"] is not None, a
    # The queued one stayed queued and runs after the restart.
    b = wait_state(s, b["id"], ENDED, 10 * SLOW)
    assert b["state"] == "completed" and b["started_ms"] > a["ended_ms"], b


@pytest.mark.parametrize("args, text", [
    (["--loadtest-allow", "10.0.0.0/33"], "--loadtest-allow: entry 1 '10.0.0.0/33': prefix"),
    (["--loadtest-allow", "127.0.0.1,,::1"], "--loadtest-allow: entry 2 is empty"),
    (["--loadtest-allow", "bad_name"], "--loadtest-allow: entry 1 'bad_name'"),
    (["--loadtest-parallel", "0"], "--loadtest-parallel: an integer in 1..16"),
    (["--loadtest-parallel", "17"], "--loadtest-parallel: an integer in 1..16"),
    (["--loadtest-queue", "0"], "--loadtest-queue: an integer in 1..10000"),
    (["--loadtest-queue", "10001"], "--loadtest-queue"),
    (["--loadtest-allow"], "needs a value"),
])
def test_bad_loadtest_options_exit_2(run, tmp_path, args, text):
    c = run([SONDED, "--listen", "127.0.0.1:0", "--data", tmp_path / "d"] + args, timeout=30)
    assert c.returncode == 2, c.describe()
    assert text in c.stderr, c.describe()
    assert "listening" not in c.stdout, c.describe()


def test_help_lists_the_loadtest_options(run):
    c = run([SONDED, "--help"], check=True)
    for flag in ("--loadtest-allow LIST", "--loadtest-parallel N", "--loadtest-queue N"):
        assert flag in c.stdout, c.stdout
