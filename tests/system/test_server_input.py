"""
test_server_input.py — sonded against bad input on every field.

Each case sends one bad request — malformed JSON, a wrong type, an
out-of-range value, an unknown field, an unknown id, a corrupt or
oversized profile upload, a body far over the limit — and checks the
documented answer (docs/api.md: status, `{"error": "..."}` naming the
field), that the server still answers /api/v1/health, and that nothing it
stores changed (sessions, tokens, agents, settings, Profile Now requests
compared before and after: "a failed request never changes stored data").
"""

import gzip
import json
import os
import select
import socket
import time
import zlib
from dataclasses import dataclass, field

import pytest

from conftest import encode_pprof, pb_field, pb_packed

MiB = 1 << 20
UNKNOWN = 999999


@dataclass
class World:
    s: object
    agent_id: int
    sids: list            # sessions with a profile
    empty_sid: int        # a session with no profile yet (upload target)
    profile: bytes
    request_id: int


@pytest.fixture(scope="module")
def world(sonded_module, recorded_profiles):
    s = sonded_module
    profiles = recorded_profiles(2)
    aid = s.register_agent("shop", instance="web-1", pid=4242)
    sids = [s.upload(aid, p) for p in profiles]
    empty = s.create_session(aid)["id"]
    req = s.ok("POST", "/api/v1/profile-now", {"app": "shop", "duration_s": 600}, expect=201)
    s.ok("PUT", "/api/v1/triggers?app=shop", {"cpu": {"threshold": 70}})
    s.token("reader", "someone")
    return World(s, aid, sids, empty, profiles[0], req["id"])


def snapshot(w):
    """Everything stored that a bad request could touch, minus what moves
    by itself (last_used_ms of the token in use, agent liveness)."""
    s = w.s
    tokens = [{k: v for k, v in t.items() if k != "last_used_ms"}
              for t in s.ok("GET", "/api/v1/tokens")["tokens"]]
    agents = [{k: v for k, v in a.items() if k not in ("last_seen_ms", "status")}
              for a in s.ok("GET", "/api/v1/agents")["agents"]]
    return {
        "sessions": s.ok("GET", "/api/v1/sessions?limit=1000"),
        "tokens": tokens,
        "agents": agents,
        "triggers": s.ok("GET", "/api/v1/triggers"),
        "triggers_shop": s.ok("GET", "/api/v1/triggers?app=shop"),
        "sampling": s.ok("GET", "/api/v1/default-sampling"),
        "profile_now": s.ok("GET", "/api/v1/profile-now?limit=100"),
        "empty_profile": s.request("GET", f"/api/v1/sessions/{w.empty_sid}/profile")[0],
    }


def assert_unchanged(w, before, what):
    assert w.s.health(), f"sonded stopped answering /api/v1/health after {what}\n" \
                         f"{w.s.describe()}"
    after = snapshot(w)
    for k in before:
        assert after[k] == before[k], f"{what} changed stored {k}:\n{before[k]}\n->\n{after[k]}"


def assert_error(status, body, want, field_name, what):
    want = (want,) if isinstance(want, int) else want
    assert status in want, f"{what} -> {status} {body!r}, wanted {want}"
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], \
        f"{what}: {status} without {{\"error\": ...}}: {body!r}"
    if field_name:
        assert field_name in body["error"], \
            f"{what}: the message should name {field_name!r}: {body['error']!r}"


# --------------------------------------------------------------------------
# The cases
# --------------------------------------------------------------------------

@dataclass
class Case:
    name: str
    method: str
    path: object                    # str, or World -> str
    body: object = None             # dict/list (JSON), bytes/str (as is), or World -> those
    want: object = 400              # status or tuple of statuses
    names: str = None               # the error message must contain this
    agent: bool = False             # send with the agent token (else admin)
    extra: dict = field(default_factory=dict)

    def resolve(self, w):
        p = self.path(w) if callable(self.path) else self.path
        b = self.body(w) if callable(self.body) else self.body
        return p, b


def reg(**over):
    body = {"app": "shop", "instance": "web-9", "pid": 4242, "agent_version": "0.4.0"}
    body.update(over)
    return {k: v for k, v in body.items() if v is not _DROP}


def sess(w, **over):
    body = {"agent_id": w.agent_id, "triggered_by": "profile-now", "profile_types": ["cpu"],
            "duration_s": 120}
    body.update(over)
    return {k: v for k, v in body.items() if v is not _DROP}


_DROP = object()

# Routes that take a JSON body: (method, path, agent?)
JSON_ROUTES = [
    ("POST", "/api/v1/profile-now", False),
    ("PUT", "/api/v1/triggers", False),
    ("PUT", "/api/v1/default-sampling", False),
    ("POST", "/api/v1/tokens", False),
    ("POST", "/api/v1/agent/register", True),
    ("POST", "/api/v1/agent/heartbeat", True),
    ("POST", "/api/v1/agent/stop", True),
    ("POST", "/api/v1/agent/sessions", True),
    ("PATCH", lambda w: f"/api/v1/agent/sessions/{w.empty_sid}", True),
]

MALFORMED = [
    ("truncated", b'{"app": "shop", "duration_s": 1'),
    ("not-json", b"hello"),
    ("array", b"[1, 2]"),
    ("string", b'"a string"'),
    ("trailing", b'{"app": "shop"} {"x": 1}'),
    ("bad-utf8", b'{"app": "\xff\xfe"}'),
    ("single-quotes", b"{'app': 'shop'}"),
    ("deep", b"[" * 100000),
    ("nul-byte", b'{"app": "sh\x00op"}'),
]


def _malformed_cases():
    out = []
    for method, path, agent in JSON_ROUTES:
        label = path if isinstance(path, str) else "/api/v1/agent/sessions/{id}"
        for name, body in MALFORMED:
            out.append(Case(f"{method} {label} {name}", method, path, body, 400, None, agent))
    return out


def _field_cases():
    c = []
    pn = "/api/v1/profile-now"
    for v in (0, 3601, -5, "120", 1.5, True, None, 2 ** 62):
        c.append(Case(f"profile-now duration_s={v!r}", "POST", pn, {"app": "shop", "duration_s": v},
                      400, "duration_s"))
    c += [
        Case("profile-now app=5", "POST", pn, {"app": 5}, 400, "app"),
        Case("profile-now app=[]", "POST", pn, {"app": ["shop"]}, 400, "app"),
        Case("profile-now unknown field", "POST", pn, {"app": "shop", "colour": "red"}, 400,
             "colour"),
    ]
    tr = "/api/v1/triggers"
    for sub, name, v in [("cpu", "threshold", 0), ("cpu", "threshold", 101),
                         ("memory", "threshold", -1), ("cpu", "threshold", "90"),
                         ("cpu", "threshold", 90.5), ("cpu", "duration_s", 9),
                         ("memory", "duration_s", 3601), ("cpu", "cooldown_s", -1),
                         ("cpu", "cooldown_s", 86401), ("cpu", "enabled", "yes"),
                         ("memory", "enabled", 1), ("cpu", "bogus", 1)]:
        c.append(Case(f"triggers {sub}.{name}={v!r}", "PUT", tr, {sub: {name: v}}, 400, name))
    c += [
        Case("triggers cpu=5", "PUT", tr, {"cpu": 5}, 400, "cpu"),
        Case("triggers unknown section", "PUT", tr, {"disk": {"threshold": 5}}, 400, "disk"),
        Case("triggers app override bad", "PUT", tr + "?app=shop", {"cpu": {"threshold": 1000}},
             400, "threshold"),
        Case("triggers valid+invalid together", "PUT", tr,
             {"cpu": {"threshold": 90}, "memory": {"threshold": 0}}, 400, "threshold"),
        Case("triggers delete never overridden", "DELETE", tr + "?app=never-set", None, 404),
    ]
    ds = "/api/v1/default-sampling"
    for name, v in [("window_s", 9), ("window_s", 3601), ("period_s", 59), ("period_s", 86401),
                    ("enabled", "true"), ("window_s", "60"), ("bogus", 1)]:
        c.append(Case(f"default-sampling {name}={v!r}", "PUT", ds, {name: v}, 400, name))
    c += [
        Case("default-sampling window > period", "PUT", ds, {"window_s": 600, "period_s": 300},
             400, "window_s"),
        Case("default-sampling delete never overridden", "DELETE", ds + "?app=never-set", None,
             404),
    ]
    tk = "/api/v1/tokens"
    c += [
        Case("tokens role=root", "POST", tk, {"role": "root"}, 400, "role"),
        Case("tokens role=5", "POST", tk, {"role": 5}, 400, "role"),
        Case("tokens role missing", "POST", tk, {"name": "x"}, 400, "role"),
        Case("tokens name empty", "POST", tk, {"role": "reader", "name": ""}, 400, "name"),
        Case("tokens name 128", "POST", tk, {"role": "reader", "name": "n" * 128}, 400, "name"),
        Case("tokens name number", "POST", tk, {"role": "reader", "name": 7}, 400, "name"),
        Case("tokens unknown field", "POST", tk, {"role": "reader", "secret": "x"}, 400, "secret"),
        Case("tokens delete unknown", "DELETE", f"{tk}/{UNKNOWN}", None, 404),
    ]
    rg = "/api/v1/agent/register"
    for name, v in [("app", ""), ("app", "a" * 128), ("app", 5), ("app", None), ("app", _DROP),
                    ("instance", ""), ("instance", "i" * 256), ("instance", _DROP),
                    ("pid", 0), ("pid", 4194305), ("pid", "1"), ("pid", -1), ("pid", _DROP),
                    ("agent_version", ""), ("agent_version", "v" * 64), ("agent_version", _DROP),
                    ("cmdline", "c" * 1024), ("cmdline", 3), ("started_ms", -1),
                    ("started_ms", "now"), ("colour", "red")]:
        c.append(Case(f"register {name}={'missing' if v is _DROP else repr(v)[:20]}", "POST", rg,
                      reg(**{name: v}), 400, name, agent=True))
    hb = "/api/v1/agent/heartbeat"
    c += [
        Case("heartbeat unknown agent", "POST", hb, {"agent_id": UNKNOWN}, 404, None, True),
        Case("heartbeat agent_id=0", "POST", hb, {"agent_id": 0}, (400, 404), None, True),
        Case("heartbeat agent_id str", "POST", hb, {"agent_id": "3"}, 400, "agent_id", True),
        Case("heartbeat agent_id missing", "POST", hb, {"cpu_pct": 1}, 400, "agent_id", True),
    ]
    for name, v in [("cpu_pct", -1), ("cpu_pct", 100001), ("mem_pct", 101), ("mem_pct", -0.5),
                    ("cpu_pct", "5"), ("bogus", 1)]:
        c.append(Case(f"heartbeat {name}={v!r}", "POST", hb,
                      lambda w, n=name, v=v: {"agent_id": w.agent_id, n: v}, 400, name, True))
    st = "/api/v1/agent/stop"
    c += [
        Case("stop unknown agent", "POST", st, {"agent_id": UNKNOWN}, 404, None, True),
        Case("stop agent_id missing", "POST", st, {}, 400, "agent_id", True),
        Case("stop unknown field", "POST", st,
             lambda w: {"agent_id": w.agent_id, "why": "x"}, 400, "why", True),
    ]
    po = "/api/v1/agent/poll"
    c += [
        Case("poll unknown agent", "GET", f"{po}?agent_id={UNKNOWN}&cursor=0&timeout_s=1", None,
             404, None, True),
        Case("poll timeout_s=0", "GET",
             lambda w: f"{po}?agent_id={w.agent_id}&cursor=0&timeout_s=0", None, 400,
             "timeout_s", True),
        Case("poll timeout_s=61", "GET",
             lambda w: f"{po}?agent_id={w.agent_id}&cursor=0&timeout_s=61", None, 400,
             "timeout_s", True),
        Case("poll agent_id missing", "GET", f"{po}?cursor=0&timeout_s=1", None, 400, "agent_id",
             True),
        Case("poll agent_id=abc", "GET", f"{po}?agent_id=abc&timeout_s=1", None, 400, "agent_id",
             True),
    ]
    ss = "/api/v1/agent/sessions"
    for name, v in [("triggered_by", "nope"), ("triggered_by", 1), ("triggered_by", _DROP),
                    ("profile_types", []), ("profile_types", ["cpu"] * 5),
                    ("profile_types", ["heap"]), ("profile_types", "cpu"),
                    ("profile_types", [1]), ("duration_s", 0), ("duration_s", 86401),
                    ("duration_s", "120"), ("request_id", "5"), ("colour", "red")]:
        c.append(Case(f"sessions {name}={'missing' if v is _DROP else repr(v)[:20]}", "POST", ss,
                      lambda w, n=name, v=v: sess(w, **{n: v}), 400, name, True))
    c += [
        Case("sessions unknown agent", "POST", ss, lambda w: sess(w, agent_id=UNKNOWN), 404, None,
             True),
    ]
    for name, v in [("state", "done"), ("state", 1), ("samples", -1), ("traces", -1),
                    ("samples", "10"), ("duration_s", 0), ("cpu_pct", "x"), ("colour", "red")]:
        c.append(Case(f"patch {name}={v!r}", "PATCH",
                      lambda w: f"/api/v1/agent/sessions/{w.empty_sid}", {name: v}, 400, name,
                      True))
    c += [
        Case("patch unknown session", "PATCH", f"/api/v1/agent/sessions/{UNKNOWN}",
             {"samples": 1}, 404, None, True),
        Case("upload unknown session", "PUT", f"/api/v1/agent/sessions/{UNKNOWN}/profile",
             lambda w: w.profile, 404, None, True),
    ]
    return c


def _query_cases():
    c = []
    for q, name in [("limit=0", "limit"), ("limit=1001", "limit"), ("limit=abc", "limit"),
                    ("limit=", "limit"), ("offset=-1", "offset"), ("from=yesterday", "from"),
                    ("to=1.5", "to"), ("triggered_by=bogus", "triggered_by"),
                    ("limit=99999999999999999999999", "limit")]:
        c.append(Case(f"sessions ?{q}", "GET", f"/api/v1/sessions?{q}", None, 400, name))
    c += [
        Case("agents ?status=bogus", "GET", "/api/v1/agents?status=bogus", None, 400, "status"),
        Case("agent unknown", "GET", f"/api/v1/agents/{UNKNOWN}", None, 404),
        Case("session unknown", "GET", f"/api/v1/sessions/{UNKNOWN}", None, 404),
        Case("session id 0", "GET", "/api/v1/sessions/0", None, 404),
        Case("session id -1", "GET", "/api/v1/sessions/-1", None, 404),
        Case("session id abc", "GET", "/api/v1/sessions/abc", None, 404),
        Case("session id 1x", "GET", "/api/v1/sessions/1x", None, 404),
        Case("session id overflow", "GET", "/api/v1/sessions/99999999999999999999999", None, 404),
        Case("profile unknown", "GET", f"/api/v1/sessions/{UNKNOWN}/profile", None, 404),
        Case("profile not uploaded yet", "GET",
             lambda w: f"/api/v1/sessions/{w.empty_sid}/profile", None, 404),
        Case("flamegraph unknown", "GET", f"/api/v1/sessions/{UNKNOWN}/flamegraph", None, 404),
        Case("top unknown", "GET", f"/api/v1/sessions/{UNKNOWN}/top", None, 404),
        Case("collapsed unknown", "GET", f"/api/v1/sessions/{UNKNOWN}/collapsed", None, 404),
        Case("top limit=0", "GET", lambda w: f"/api/v1/sessions/{w.sids[0]}/top?limit=0", None,
             400, "limit"),
        Case("top limit=10001", "GET", lambda w: f"/api/v1/sessions/{w.sids[0]}/top?limit=10001",
             None, 400, "limit"),
        Case("flamegraph unknown type", "GET",
             lambda w: f"/api/v1/sessions/{w.sids[0]}/flamegraph?type=heap", None, (400, 404),
             "type"),
        Case("flamegraph label without colon", "GET",
             lambda w: f"/api/v1/sessions/{w.sids[0]}/flamegraph?label=thread", None, 400,
             "label"),
        Case("views no selection", "GET", "/api/v1/views/flamegraph", None, 400, "app"),
        Case("views session=abc", "GET", "/api/v1/views/flamegraph?session=abc", None, 400,
             "session"),
        Case("views unknown session", "GET", f"/api/v1/views/flamegraph?session={UNKNOWN}", None,
             404),
        Case("views from=abc", "GET", "/api/v1/views/top?app=shop&from=abc", None, 400, "from"),
        Case("views top limit=0", "GET", "/api/v1/views/top?app=shop&limit=0", None, 400, "limit"),
        Case("views triggered_by bogus", "GET",
             "/api/v1/views/collapsed?app=shop&triggered_by=bogus", None, 400, "triggered_by"),
        Case("diff empty base", "GET",
             lambda w: f"/api/v1/views/diff?base.app=nosuchapp&cmp.session={w.sids[0]}", None, 404),
        Case("diff unknown session", "GET",
             lambda w: f"/api/v1/views/diff?base.session={UNKNOWN}&cmp.session={w.sids[0]}",
             None, 404),
        Case("diff without cmp", "GET", lambda w: f"/api/v1/views/diff?base.session={w.sids[0]}",
             None, 400, "cmp"),
        Case("unknown route", "GET", "/api/v1/nope", None, 404),
        Case("unknown version", "GET", "/api/v2/sessions", None, 404),
        Case("method not allowed", "DELETE", "/api/v1/sessions", None, 405),
        Case("method not allowed on id", "POST", lambda w: f"/api/v1/sessions/{w.sids[0]}", {},
             405),
        Case("health PUT", "PUT", "/api/v1/health", {}, 405),
    ]
    return c


# --------------------------------------------------------------------------
# Broken profiles (hand-encoded, see conftest.encode_pprof)
# --------------------------------------------------------------------------

STACKS = [(["main", "a", "b"], [3, 3000000]), (["main", "c"], [1, 1000000])]


def _dangling_location():
    return encode_pprof(STACKS, location_override=lambda i, ids: ids + [4242] if i == 1 else ids)


def _one_value_for_two_types():
    return encode_pprof([(["main", "a"], [3])])


def _raw(body):
    return gzip.compress(body, mtime=0)


def _with_extra(location, function=b""):
    """STACKS plus location 88 (as given), used by one more sample, and an
    optional extra function: protobuf lets repeated fields come in any
    order, so appending them is enough."""
    plain = encode_pprof(STACKS, gz=False)
    sample = pb_field(2, pb_packed(1, [88]) + pb_packed(2, [1, 1]))
    extra = pb_field(4, location) + sample
    if function:
        extra += pb_field(5, function)
    return _raw(plain + extra)


def _string_index_out_of_range():
    # Function 77's name is string 999 of a table of about ten.
    return _with_extra(pb_field(1, 88) + pb_field(2, 1) + pb_field(4, pb_field(1, 77)),
                       pb_field(1, 77) + pb_field(2, 999))


def _location_to_missing_function():
    return _with_extra(pb_field(1, 88) + pb_field(2, 1) + pb_field(4, pb_field(1, 555)))


def _location_to_missing_mapping():
    return _with_extra(pb_field(1, 88) + pb_field(2, 77) + pb_field(3, 0x1234))


def _truncated_gzip(w):
    return w.profile[: len(w.profile) // 2]


def _bad_crc(w):
    b = bytearray(w.profile)
    b[-6] ^= 0xFF           # CRC32 of the trailer
    return bytes(b)


def _gzip_bomb():
    # 80 MiB of zeros, past the 64 MiB decompressed limit, ~80 KB on the wire.
    co = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"\0" * (8 * MiB)
    return b"".join([co.compress(zeros) for _ in range(10)] + [co.flush()])


_BOMB = []


def _bomb(w):
    if not _BOMB:
        _BOMB.append(_gzip_bomb())
    return _BOMB[0]


def _upload_cases():
    up = lambda w: f"/api/v1/agent/sessions/{w.empty_sid}/profile"  # noqa: E731
    return [
        Case("upload empty body", "PUT", up, b"", 400, None, True),
        Case("upload truncated gzip", "PUT", up, _truncated_gzip, 400, None, True),
        Case("upload gzip bad crc", "PUT", up, _bad_crc, 400, None, True),
        Case("upload not gzip", "PUT", up, b"this is not a profile" * 10, 400, None, True),
        Case("upload gzip of garbage", "PUT", up, _raw(os.urandom(4096)), 400, None, True),
        Case("upload dangling location id", "PUT", up, _dangling_location(), 400, None, True),
        Case("upload string index out of range", "PUT", up, _string_index_out_of_range(), 400,
             None, True),
        Case("upload location with missing function", "PUT", up,
             _location_to_missing_function(), 400, None, True),
        Case("upload location with missing mapping", "PUT", up, _location_to_missing_mapping(),
             400, None, True),
        Case("upload one value for two sample types", "PUT", up, _one_value_for_two_types(), 400,
             None, True),
        Case("upload gzip bomb", "PUT", up, _bomb, 413, None, True),
        Case("upload by a non-agent", "PUT", up, lambda w: w.profile, 403, None, False),
        Case("json body over 1 MiB", "POST", "/api/v1/tokens",
             b'{"role": "reader", "name": "' + b"n" * (2 * MiB) + b'"}', 413),
    ]


CASES = _malformed_cases() + _field_cases() + _query_cases() + _upload_cases()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_input_is_refused_and_changes_nothing(world, case):
    s = world.s
    before = snapshot(world)
    path, body = case.resolve(world)
    token = s.agent_token() if case.agent else s.admin_token
    headers = {"Content-Type": "application/json"} if isinstance(body, bytes) \
        and not path.endswith("/profile") else None
    status, answer, _ = s.request(case.method, path, body, token=token, headers=headers,
                                  timeout=60)
    assert_error(status, answer, case.want, case.names, f"{case.method} {path} ({case.name})")
    assert_unchanged(world, before, case.name)


def test_the_upload_target_still_takes_one_good_profile(world):
    """After every refused upload, the session takes a valid one once."""
    s = world.s
    path = f"/api/v1/agent/sessions/{world.empty_sid}/profile"
    status, body, _ = s.request("PUT", path, world.profile, token=s.agent_token())
    assert status == 201, body
    assert s.ok("GET", f"/api/v1/sessions/{world.empty_sid}/profile") == world.profile
    status, body, _ = s.request("PUT", path, world.profile, token=s.agent_token())
    assert_error(status, body, 409, None, "second upload")


# --------------------------------------------------------------------------
# Bodies far over the limit, streamed
# --------------------------------------------------------------------------

def stream_request(s, method, path, total, chunked, token, ctype, timeout=60):
    """Sends a request whose body is `total` bytes of zeros (declared by
    Content-Length, or chunked), reading whatever the server says while
    sending.  Returns (status or None, body bytes, bytes sent, how it ended)."""
    sock = socket.create_connection((s.host, s.port), timeout=timeout)
    head = (f"{method} {path} HTTP/1.1\r\nHost: {s.host}:{s.port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: {ctype}\r\n")
    head += "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {total}\r\n"
    sock.sendall((head + "\r\n").encode())
    piece = b"\0" * (256 * 1024)
    if chunked:
        piece = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    pending, sent, reply, ended = b"", 0, b"", "sent all"
    deadline = time.monotonic() + timeout
    sock.setblocking(False)
    try:
        while sent < total and time.monotonic() < deadline:
            if not pending:
                pending = piece
            r, wr, _ = select.select([sock], [sock], [], 1.0)
            if r:
                data = sock.recv(65536)
                if not data:
                    ended = "closed while sending"
                    break
                reply += data
                if _complete(reply):
                    ended = "answered while sending"
                    break
            if wr:
                n = sock.send(pending)
                pending = pending[n:]
                sent += n
        if ended == "sent all" and chunked:
            sock.setblocking(True)
            sock.sendall(b"0\r\n\r\n")
        sock.setblocking(True)
        sock.settimeout(max(1.0, deadline - time.monotonic()))
        while not _complete(reply):
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    except (ConnectionResetError, BrokenPipeError) as e:
        ended = f"connection reset ({e.__class__.__name__})"
    except socket.timeout:
        ended = "timed out"
    finally:
        sock.close()
    status, body = _parse(reply)
    return status, body, sent, ended


def _complete(reply):
    if b"\r\n\r\n" not in reply:
        return False
    head, body = reply.split(b"\r\n\r\n", 1)
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            return len(body) >= int(v.strip())
    return False


def _parse(reply):
    if not reply.startswith(b"HTTP/1."):
        return None, b""
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("route", ["upload", "json"])
def test_hundred_mib_body_is_413(world, route, chunked):
    s = world.s
    before = snapshot(world)
    if route == "upload":
        sid = s.create_session(world.agent_id)["id"]
        before = snapshot(world)
        path, token, ctype = (f"/api/v1/agent/sessions/{sid}/profile", s.agent_token(),
                              "application/octet-stream")
    else:
        path, token, ctype = "/api/v1/profile-now", s.admin_token, "application/json"
    status, body, sent, ended = stream_request(s, "PUT" if route == "upload" else "POST", path,
                                               100 * MiB, chunked, token, ctype)
    what = f"100 MiB {'chunked ' if chunked else ''}body to {path} ({ended}, {sent} bytes sent)"
    if status is not None:
        assert status == 413, f"{what} -> {status} {body[:200]!r}"
        assert json.loads(body).get("error"), f"{what}: no error message: {body[:200]!r}"
    else:
        assert ended != "sent all", f"{what}: the server took it all and said nothing"
    if not chunked:
        # The limit is known from Content-Length: no need to read 100 MiB.
        assert status == 413 or sent < 100 * MiB, what
    assert_unchanged(world, before, what)
