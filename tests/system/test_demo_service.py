"""
test_demo_service.py — examples/demo_service on its own (no agent): the
endpoints' default answers stay what the other tests and the README rely
on, and the ?ms=N forms that active profiling's tests use: /slow?ms=N is
one poll() of N ms that reports (JSON) how long it took and whether it was
cut short, /cpu?ms=N is busy for N ms of wall time; a bad N is a 400.
/stats counts the requests answered (all but /stats) and what /echo read,
for the load generator's tests.
"""

import json
import re
import time
import urllib.error
import urllib.request

import pytest


def get(url, timeout=30, method=None, data=None, headers=None):
    """-> (status, body text, seconds taken)."""
    t0 = time.monotonic()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode(), time.monotonic() - t0
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), time.monotonic() - t0


@pytest.fixture
def demo(hosts):
    return hosts.demo(agent=False, name="demo")


def test_default_answers_are_unchanged(demo):
    assert get(demo.url + "/fast")[:2] == (200, "fast\n")
    assert get(demo.url + "/health")[:2] == (200, "ok\n")
    st, body, took = get(demo.url + "/slow")
    assert (st, body) == (200, "slow\n") and took >= 0.045, (st, body, took)
    st, body, _ = get(demo.url + "/cpu")
    assert st == 200 and re.fullmatch(r"checksum [0-9a-f]{16}\n", body), body
    assert get(demo.url + "/nope")[0] == 404


def test_slow_ms_is_one_poll_of_that_long(demo):
    st, body, took = get(demo.url + "/slow?ms=700")
    assert st == 200, body
    answer = json.loads(body)
    assert set(answer) == {"slept_ms", "interrupted"} and answer["interrupted"] is False, body
    assert 700 <= answer["slept_ms"] < 700 + 300, body
    assert took >= 0.7, took


def test_cpu_ms_is_busy_that_long(demo):
    st, body, took = get(demo.url + "/cpu?ms=400")
    assert st == 200 and re.fullmatch(r"checksum [0-9a-f]{16}\n", body), body
    assert 0.4 <= took < 0.4 + 1.0, took


def test_ms_on_other_endpoints_is_ignored(demo):
    assert get(demo.url + "/fast?ms=5000")[:2] == (200, "fast\n")


@pytest.mark.parametrize("ms", ["0", "60001", "-5", "abc", "", "1.5", "99999999999999999999"])
@pytest.mark.parametrize("path", ["/slow", "/cpu"])
def test_bad_ms_is_400(demo, path, ms):
    st, body, took = get(f"{demo.url}{path}?ms={ms}")
    assert (st, body) == (400, "bad ms: an integer from 1 to 60000\n"), (st, body)
    assert took < 5, took


def stats(demo):
    st, body, _ = get(demo.url + "/stats")
    assert st == 200, body
    return json.loads(body)


def test_stats_counts_every_answer_but_its_own(demo):
    assert stats(demo) == {"served": 0, "echo": {"requests": 0, "body_bytes": 0, "method": "",
                                                 "tag": ""}}
    get(demo.url + "/fast")
    get(demo.url + "/nope")                    # 404
    get(demo.url + "/fast", method="POST", data=b"x")  # 405
    get(demo.url + "/cpu?ms=0")                # 400
    assert stats(demo)["served"] == 4
    assert stats(demo)["served"] == 4           # /stats itself is not counted


def test_echo_reads_the_body_and_stats_count_it(demo):
    st, body, _ = get(demo.url + "/echo", method="POST", data=b"hello",
                      headers={"X-Demo-Tag": "t-1"})
    assert st == 200 and json.loads(body) == {"method": "POST", "body_bytes": 5, "tag": "t-1"}
    big = b"z" * 300000
    st, body, _ = get(demo.url + "/echo", method="PUT", data=big,
                      headers={"X-Demo-Tag": "bad tag!"})  # not [A-Za-z0-9._-]: ""
    assert st == 200 and json.loads(body) == {"method": "PUT", "body_bytes": len(big), "tag": ""}
    st, body, _ = get(demo.url + "/echo")
    assert st == 200 and json.loads(body) == {"method": "GET", "body_bytes": 0, "tag": ""}
    assert stats(demo) == {"served": 3, "echo": {"requests": 3, "body_bytes": 5 + len(big),
                                                 "method": "GET", "tag": ""}}


def test_stats_is_get_only(demo):
    assert get(demo.url + "/stats", method="POST", data=b"")[0] == 405
