"""
test_server_access.py — who may call what on sonded (docs/api.md, SPEC A7).

The role matrix: every route of docs/api.md and docs/agent-protocol.md,
called with a real id and a valid body, under eight credentials — none, a
malformed Authorization header, a wrong token, a revoked token, and a valid
token of each role.  The first four must be 401 everywhere (but health);
a role the route admits gets the route's success status, any other 403.
A route missing from the table (docs changed, table not) fails
test_matrix_covers_every_documented_route.

Then the life of tokens: the admin token printed at first start works and
is printed only once, a revoked token stops working on the very next
request, the last admin cannot be revoked, and no secret is ever written
to the store's files (SQLite file, WAL, journal) or to the log.
"""

import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from conftest import ROOT, Sonded, claim_capture, encode_snapshots, task_body

READ = {"reader", "writer", "admin"}
WRITE = {"writer", "admin"}
ADMIN = {"admin"}
AGENT = {"agent"}
ROLES = ["reader", "writer", "admin", "agent"]
REJECTED = ["none", "malformed", "wrong", "revoked"]


@dataclass
class World:
    """What the routes are called on: one server with real objects."""
    s: object
    tokens: dict          # credential name -> Authorization header value or None
    agent_id: int
    session_ids: list
    profiles: list
    request_id: int
    n: int = 0

    def fresh(self):
        self.n += 1
        return self.n


@dataclass
class Route:
    method: str
    doc_path: str                         # as docs/api.md writes it
    roles: set                            # roles admitted
    ok: tuple                             # statuses of a successful call
    path: Callable                        # World -> the path to call (may set up state)
    body: Callable = lambda w: None       # World -> the body

    @property
    def id(self):
        return f"{self.method} {self.doc_path}"


def _fresh_token_id(w):
    return w.s.new_token("reader", f"victim-{w.fresh()}")["id"]


def _fresh_agent_id(w):
    return w.s.register_agent("shop", instance=f"stopper-{w.fresh()}", pid=2000 + w.n)


def _fresh_session_id(w):
    return w.s.create_session(w.agent_id)["id"]


def _with_trigger_override(w):
    app = f"over-{w.fresh()}"
    w.s.ok("PUT", f"/api/v1/triggers?app={app}", {"cpu": {"threshold": 90}})
    return f"/api/v1/triggers?app={app}"


def _with_sampling_override(w):
    app = f"over-{w.fresh()}"
    w.s.ok("PUT", f"/api/v1/default-sampling?app={app}", {"enabled": False})
    return f"/api/v1/default-sampling?app={app}"


def _fresh_upload_path(w):
    return f"/api/v1/agent/sessions/{_fresh_session_id(w)}/profile"


def _fresh_task_id(w):
    return w.s.ok("POST", "/api/v1/tasks", task_body(app="shop"), expect=201)["id"]


def _fresh_capture_id(w, task_id=None):
    st, b = claim_capture(w.s, task_id or _fresh_task_id(w), w.agent_id,
                          trace_id=f"matrix-{w.fresh()}")
    assert st == 201, b
    return b["capture_id"]


def _task_id(w):
    """One task with one capture that has its snapshots (made once)."""
    if not getattr(w, "task_id", None):
        w.task_id = _fresh_task_id(w)
        w.capture_id = _fresh_capture_id(w, w.task_id)
        w.s.ok("PUT", f"/api/v1/agent/captures/{w.capture_id}/snapshots",
               encode_snapshots([{"frames": ["main", "slow"], "offset_ms": 200}]),
               token=w.s.agent_token(), expect=201)
    return w.task_id


def _capture_id(w):
    _task_id(w)
    return w.capture_id


LOADTEST_BODY = {"url": "http://127.0.0.1:1/", "users": 1, "duration_s": 1}


def _fresh_loadtest_id(w):
    return w.s.ok("POST", "/api/v1/loadtests", dict(LOADTEST_BODY, duration_s=60),
                  expect=201)["id"]


def _loadtest_id(w):
    if not getattr(w, "loadtest_id", None):
        w.loadtest_id = w.s.ok("POST", "/api/v1/loadtests", LOADTEST_BODY, expect=201)["id"]
    return w.loadtest_id


ROUTES = [
    # agents, sessions, views: reader
    Route("GET", "/api/v1/agents", READ, (200,),
          lambda w: "/api/v1/agents?app=shop&status=running"),
    Route("GET", "/api/v1/agents/{id}", READ, (200,), lambda w: f"/api/v1/agents/{w.agent_id}"),
    Route("GET", "/api/v1/sessions", READ, (200,),
          lambda w: "/api/v1/sessions?app=shop&limit=10&offset=0"),
    Route("GET", "/api/v1/sessions/{id}", READ, (200,),
          lambda w: f"/api/v1/sessions/{w.session_ids[0]}"),
    Route("GET", "/api/v1/sessions/{id}/profile", READ, (200,),
          lambda w: f"/api/v1/sessions/{w.session_ids[0]}/profile"),
    Route("GET", "/api/v1/sessions/{id}/flamegraph", READ, (200,),
          lambda w: f"/api/v1/sessions/{w.session_ids[0]}/flamegraph"),
    Route("GET", "/api/v1/sessions/{id}/top", READ, (200,),
          lambda w: f"/api/v1/sessions/{w.session_ids[0]}/top?limit=5"),
    Route("GET", "/api/v1/sessions/{id}/collapsed", READ, (200,),
          lambda w: f"/api/v1/sessions/{w.session_ids[0]}/collapsed"),
    Route("GET", "/api/v1/views/flamegraph", READ, (200,),
          lambda w: "/api/v1/views/flamegraph?app=shop"),
    Route("GET", "/api/v1/views/top", READ, (200,), lambda w: "/api/v1/views/top?app=shop&limit=5"),
    Route("GET", "/api/v1/views/collapsed", READ, (200,),
          lambda w: f"/api/v1/views/collapsed?session={w.session_ids[1]}"),
    Route("GET", "/api/v1/views/diff", READ, (200,),
          lambda w: f"/api/v1/views/diff?base.session={w.session_ids[0]}"
                    f"&cmp.session={w.session_ids[1]}"),
    # Profile Now, triggers, default sampling: reader reads, writer writes
    Route("GET", "/api/v1/profile-now", READ, (200,), lambda w: "/api/v1/profile-now?limit=5"),
    Route("POST", "/api/v1/profile-now", WRITE, (201,), lambda w: "/api/v1/profile-now",
          lambda w: {"app": "shop", "duration_s": 60}),
    Route("GET", "/api/v1/triggers", READ, (200,), lambda w: "/api/v1/triggers?app=shop"),
    Route("PUT", "/api/v1/triggers", WRITE, (200,), lambda w: "/api/v1/triggers",
          lambda w: {"cpu": {"threshold": 85}}),
    Route("DELETE", "/api/v1/triggers", WRITE, (200, 204), _with_trigger_override),
    Route("GET", "/api/v1/default-sampling", READ, (200,), lambda w: "/api/v1/default-sampling"),
    Route("PUT", "/api/v1/default-sampling", WRITE, (200,),
          lambda w: "/api/v1/default-sampling?app=shop",
          lambda w: {"enabled": True, "window_s": 60, "period_s": 600}),
    Route("DELETE", "/api/v1/default-sampling", WRITE, (200, 204), _with_sampling_override),
    # who am I: any person's token
    Route("GET", "/api/v1/whoami", READ, (200,), lambda w: "/api/v1/whoami"),
    # tokens: admin
    Route("GET", "/api/v1/tokens", ADMIN, (200,), lambda w: "/api/v1/tokens"),
    Route("POST", "/api/v1/tokens", ADMIN, (201,), lambda w: "/api/v1/tokens",
          lambda w: {"role": "reader", "name": f"made-{w.fresh()}"}),
    Route("DELETE", "/api/v1/tokens/{id}", ADMIN, (200,),
          lambda w: f"/api/v1/tokens/{_fresh_token_id(w)}"),
    # the agent protocol: agent only
    Route("POST", "/api/v1/agent/register", AGENT, (201,), lambda w: "/api/v1/agent/register",
          lambda w: {"app": "shop", "instance": f"reg-{w.fresh()}", "pid": 4242,
                     "agent_version": "0.4.0", "cmdline": "./shop --port 1",
                     "started_ms": 1795000000000}),
    Route("POST", "/api/v1/agent/heartbeat", AGENT, (200,), lambda w: "/api/v1/agent/heartbeat",
          lambda w: {"agent_id": w.agent_id, "cpu_pct": 12.5, "mem_pct": 3.1}),
    # cursor 0 and an old settings_version: there is news, so no long wait.
    Route("GET", "/api/v1/agent/poll", AGENT, (200,),
          lambda w: f"/api/v1/agent/poll?agent_id={w.agent_id}&cursor=0"
                    f"&settings_version=0&timeout_s=1"),
    Route("POST", "/api/v1/agent/stop", AGENT, (200,), lambda w: "/api/v1/agent/stop",
          lambda w: {"agent_id": _fresh_agent_id(w)}),
    Route("POST", "/api/v1/agent/sessions", AGENT, (201,), lambda w: "/api/v1/agent/sessions",
          lambda w: {"agent_id": w.agent_id, "triggered_by": "profile-now",
                     "request_id": w.request_id, "profile_types": ["cpu"],
                     "start_ms": 1795000001000, "duration_s": 120}),
    Route("PATCH", "/api/v1/agent/sessions/{id}", AGENT, (200,),
          lambda w: f"/api/v1/agent/sessions/{_fresh_session_id(w)}",
          lambda w: {"state": "completed", "samples": 10, "traces": 0, "cpu_pct": 5}),
    Route("PUT", "/api/v1/agent/sessions/{id}/profile", AGENT, (201,), _fresh_upload_path,
          lambda w: w.profiles[0]),
    # active profiling: reader reads, writer creates and cancels, agents report
    Route("GET", "/api/v1/tasks", READ, (200,), lambda w: "/api/v1/tasks?app=shop&limit=5"),
    Route("POST", "/api/v1/tasks", WRITE, (201,), lambda w: "/api/v1/tasks",
          lambda w: task_body(app="shop")),
    Route("GET", "/api/v1/tasks/{id}", READ, (200,), lambda w: f"/api/v1/tasks/{_task_id(w)}"),
    Route("POST", "/api/v1/tasks/{id}/cancel", WRITE, (200,),
          lambda w: f"/api/v1/tasks/{_fresh_task_id(w)}/cancel"),
    Route("GET", "/api/v1/tasks/{id}/logs", READ, (200,),
          lambda w: f"/api/v1/tasks/{_task_id(w)}/logs"),
    Route("GET", "/api/v1/tasks/{id}/captures", READ, (200,),
          lambda w: f"/api/v1/tasks/{_task_id(w)}/captures?sort=total_ms&order=desc"),
    Route("GET", "/api/v1/captures/{id}", READ, (200,),
          lambda w: f"/api/v1/captures/{_capture_id(w)}"),
    Route("GET", "/api/v1/captures/{id}/flame", READ, (200,),
          lambda w: f"/api/v1/captures/{_capture_id(w)}/flame"),
    Route("GET", "/api/v1/captures/{id}/profile", READ, (200,),
          lambda w: f"/api/v1/captures/{_capture_id(w)}/profile"),
    Route("GET", "/api/v1/traces/{trace_id}", READ, (200,), lambda w: "/api/v1/traces/matrix-1"),
    Route("POST", "/api/v1/agent/tasks/{id}/events", AGENT, (200,),
          lambda w: f"/api/v1/agent/tasks/{_task_id(w)}/events",
          lambda w: {"agent_id": w.agent_id, "event": "started", "message": "watching"}),
    Route("POST", "/api/v1/agent/tasks/{id}/captures", AGENT, (201,),
          lambda w: f"/api/v1/agent/tasks/{_fresh_task_id(w)}/captures",
          lambda w: {"agent_id": w.agent_id, "trace_id": f"claim-{w.fresh()}",
                     "interface": "GET /slow", "start_ms": 1795000001000, "total_ms": 1500}),
    Route("PUT", "/api/v1/agent/captures/{id}/snapshots", AGENT, (201,),
          lambda w: f"/api/v1/agent/captures/{_fresh_capture_id(w)}/snapshots",
          lambda w: encode_snapshots([{"frames": ["main", "slow"], "offset_ms": 200}])),
    # load tests: reader reads, writer creates and cancels
    Route("GET", "/api/v1/loadtests", READ, (200,), lambda w: "/api/v1/loadtests?limit=5"),
    Route("POST", "/api/v1/loadtests", WRITE, (201,), lambda w: "/api/v1/loadtests",
          lambda w: LOADTEST_BODY),
    Route("GET", "/api/v1/loadtests/{id}", READ, (200,),
          lambda w: f"/api/v1/loadtests/{_loadtest_id(w)}"),
    Route("POST", "/api/v1/loadtests/{id}/cancel", WRITE, (200, 202),
          lambda w: f"/api/v1/loadtests/{_fresh_loadtest_id(w)}/cancel"),
]


@pytest.fixture(scope="module")
def world(sonded_module, recorded_profiles):
    s = sonded_module
    profiles = recorded_profiles(2)
    agent_id = s.register_agent("shop", instance="web-1", pid=4242)
    sids = [s.upload(agent_id, p) for p in profiles]
    req = s.ok("POST", "/api/v1/profile-now", {"app": "shop", "duration_s": 3600}, expect=201)
    revoked_admin = s.new_token("admin", "revoked-admin")
    revoked_agent = s.new_token("agent", "revoked-agent")
    for t in (revoked_admin, revoked_agent):
        s.ok("DELETE", f"/api/v1/tokens/{t['id']}", expect=200)
    bearer = {r: "Bearer " + s.token(r, f"matrix-{r}") for r in ("reader", "writer", "admin")}
    bearer["agent"] = "Bearer " + s.agent_token()
    tokens = dict(bearer)
    tokens["none"] = None
    tokens["malformed"] = "Basic dXNlcjpwYXNzd29yZA=="
    tokens["wrong"] = "Bearer sonde_" + secrets.token_hex(32)
    tokens["revoked_admin"] = "Bearer " + revoked_admin["token"]
    tokens["revoked_agent"] = "Bearer " + revoked_agent["token"]
    return World(s, tokens, agent_id, sids, profiles, req["id"])


def stored(w):
    """What a refused request must leave as it was (minus what moves by
    itself: the admin token's last_used_ms, agents' liveness)."""
    s = w.s
    tokens = [{k: v for k, v in t.items() if k != "last_used_ms"}
              for t in s.ok("GET", "/api/v1/tokens")["tokens"]]
    agents = [{k: v for k, v in a.items() if k not in ("last_seen_ms", "status")}
              for a in s.ok("GET", "/api/v1/agents")["agents"]]
    return {"tokens": tokens, "agents": agents,
            "sessions": s.ok("GET", "/api/v1/sessions?limit=1000"),
            "tasks": s.ok("GET", "/api/v1/tasks?limit=1000"),
            # (their states move by themselves: the ids only)
            "loadtests": [t["id"] for t in
                          s.ok("GET", "/api/v1/loadtests?limit=1000")["loadtests"]],
            "profile_now": s.ok("GET", "/api/v1/profile-now?limit=1000"),
            **{p: s.ok("GET", p) for p in ("/api/v1/triggers", "/api/v1/default-sampling",
                                           "/api/v1/triggers?app=shop",
                                           "/api/v1/default-sampling?app=shop")}}


def call(w, route, credential, refused):
    """Calls route with the credential's Authorization header (or none).
    refused: the call must not go through; for a route that writes, check
    that nothing stored changed."""
    if credential == "revoked":
        credential = "revoked_agent" if route.roles == AGENT else "revoked_admin"
    header = w.tokens[credential]
    path = route.path(w)
    body = route.body(w)
    headers = {"Authorization": header} if header is not None else None
    check = refused and route.method != "GET"
    before = stored(w) if check else None
    answer = w.s.request(route.method, path, body, token=None, headers=headers, timeout=30)
    if check:
        after = stored(w)
        for k in before:
            assert after[k] == before[k], \
                f"refused {route.method} {path} ({credential}, {answer[0]}) changed {k}"
    return answer, path


def assert_error_body(status, body, what):
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], \
        f"{what}: a {status} must carry {{\"error\": \"message\"}}, got {body!r}"


@pytest.mark.parametrize("credential", REJECTED)
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.id)
def test_route_refuses_missing_or_bad_token_with_401(world, route, credential):
    (status, body, _), path = call(world, route, credential, refused=True)
    assert status == 401, f"{route.method} {path} with {credential} token -> {status} {body!r}"
    assert_error_body(status, body, f"{route.method} {path}")


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.id)
def test_route_admits_exactly_its_roles(world, route, role):
    (status, body, _), path = call(world, route, role, refused=role not in route.roles)
    if role in route.roles:
        assert status not in (401, 403) and status in route.ok, \
            f"{route.method} {path} as {role} (allowed) -> {status} {body!r}, wanted {route.ok}"
    else:
        assert status == 403, f"{route.method} {path} as {role} (not allowed) -> {status} {body!r}"
        assert_error_body(status, body, f"{route.method} {path}")


@pytest.mark.parametrize("credential", [None, "Bearer sonde_" + "0" * 64, "Basic Zm9vOmJhcg=="])
def test_health_needs_no_token(world, credential):
    headers = {"Authorization": credential} if credential else None
    status, body, _ = world.s.request("GET", "/api/v1/health", token=None, headers=headers)
    assert status == 200 and body.get("status") == "ok", body
    assert body.get("store") == "sqlite" and body.get("version"), body


_DOC_ROUTE = re.compile(r"`((?:GET|POST|PUT|DELETE|PATCH)(?:\|(?:GET|POST|PUT|DELETE|PATCH))*)"
                        r" (/api/v1/[^`\s?\[]*)")


def documented_routes():
    """(method, path) of every route the two docs name, {id} for ids."""
    found = set()
    for doc in ("docs/api.md", "docs/agent-protocol.md"):
        text = (ROOT / doc).read_text()
        for methods, path in _DOC_ROUTE.findall(text):
            path = re.sub(r"/\d+(?=/|$)", "/{id}", path)
            for m in methods.split("|"):
                found.add((m, path))
    return found


def test_matrix_covers_every_documented_route():
    table = {(r.method, r.doc_path) for r in ROUTES} | {("GET", "/api/v1/health")}
    missing = documented_routes() - table
    assert not missing, f"routes in the docs but not in the role matrix: {sorted(missing)}"


@pytest.mark.parametrize("header", [
    "Basic dXNlcjpwYXNz",
    "Bearer",
    "Bearer ",
    "Bearer sonde_",
    "Bearer sonde_xyz",
    "Bearer sonde_" + "g" * 64,
    "Bearer sonde_" + "0" * 63,
    "Bearer sonde_" + "0" * 65,
    "Bearer " + "0" * 70,
    "Bearer " + "A" * 5000,
    "sonde_" + "0" * 64,
])
def test_malformed_authorization_is_401(world, header):
    status, body, _ = world.s.request("GET", "/api/v1/sessions", token=None,
                                      headers={"Authorization": header})
    assert status == 401, f"Authorization: {header[:40]!r} -> {status} {body!r}"
    assert_error_body(status, body, "GET /api/v1/sessions")


def test_token_with_extra_text_is_not_the_token(world):
    good = world.tokens["admin"]
    for header in (good + "x", good[:-1], good + " extra", good.replace("sonde_", "SONDE_")):
        status, _, _ = world.s.request("GET", "/api/v1/tokens", token=None,
                                       headers={"Authorization": header})
        assert status == 401, f"{header[:20]}… -> {status}"


# --------------------------------------------------------------------------
# The life of tokens
# --------------------------------------------------------------------------

def test_first_start_admin_token_works_and_is_printed_once(sonded):
    status, body, _ = sonded.request("GET", "/api/v1/tokens")
    assert status == 200, body
    admins = [t for t in body["tokens"] if t["role"] == "admin"]
    assert [t["name"] for t in admins] == ["admin"], body
    assert all("token" not in t for t in body["tokens"]), "the list must not show secrets"
    sonded.restart()
    assert "admin token:" not in "".join(sonded.stdout_lines), \
        "the admin token is printed only at the first start"
    status, body, _ = sonded.request("GET", "/api/v1/tokens")
    assert status == 200 and len([t for t in body["tokens"] if t["role"] == "admin"]) == 1, body


def test_admin_token_from_environment(sonded_factory):
    secret = "sonde_" + secrets.token_hex(32)
    s = sonded_factory(admin_token=secret)
    assert s.request("GET", "/api/v1/tokens", token=secret)[0] == 200
    assert secret not in "".join(s.stdout_lines) + s.log
    s.restart()
    assert s.request("GET", "/api/v1/tokens", token=secret)[0] == 200


@pytest.mark.parametrize("bad", ["sonde_short", "sonde_" + "z" * 64, "x" * 70])
def test_malformed_admin_token_in_environment_is_refused(tmp_path, bad):
    """A bad SONDE_ADMIN_TOKEN must not become a credential: sonded either
    refuses to start or does not accept it."""
    s = Sonded(tmp_path / "bad-env", admin_token=bad)
    try:
        try:
            s.start()
        except pytest.fail.Exception:
            assert not s.alive()
            return
        assert s.request("GET", "/api/v1/tokens", token=bad)[0] == 401
    finally:
        s.cleanup()
    s.check_log()


@pytest.mark.parametrize("role", ["reader", "writer", "admin", "agent"])
def test_revoked_token_stops_working_at_once(sonded, role):
    info = sonded.new_token(role, f"short-lived-{role}")
    path = "/api/v1/agent/register" if role == "agent" else "/api/v1/sessions"
    body = ({"app": "a", "instance": "i", "pid": 1, "agent_version": "0.4.0"}
            if role == "agent" else None)
    method = "POST" if role == "agent" else "GET"
    assert sonded.request(method, path, body, token=info["token"])[0] in (200, 201)
    status, answer, _ = sonded.request("DELETE", f"/api/v1/tokens/{info['id']}")
    assert status == 200 and answer == {"id": info["id"], "revoked": True}, answer
    status, answer, _ = sonded.request(method, path, body, token=info["token"])
    assert status == 401, f"revoked {role} token still works: {status} {answer!r}"
    listed = {t["id"]: t for t in sonded.ok("GET", "/api/v1/tokens")["tokens"]}
    assert listed[info["id"]]["revoked_ms"], listed[info["id"]]
    # Revoking again: unknown or already revoked is 404.
    assert sonded.request("DELETE", f"/api/v1/tokens/{info['id']}")[0] == 404


def test_revoked_token_stays_revoked_after_restart(sonded):
    info = sonded.new_token("writer", "w")
    sonded.ok("DELETE", f"/api/v1/tokens/{info['id']}")
    sonded.restart()
    assert sonded.request("GET", "/api/v1/sessions", token=info["token"])[0] == 401


def test_last_admin_token_cannot_be_revoked(sonded):
    me = [t for t in sonded.ok("GET", "/api/v1/tokens")["tokens"] if t["role"] == "admin"]
    assert len(me) == 1
    status, body, _ = sonded.request("DELETE", f"/api/v1/tokens/{me[0]['id']}")
    assert status == 409, body
    assert_error_body(status, body, "DELETE last admin")
    assert sonded.request("GET", "/api/v1/tokens")[0] == 200
    # With a second admin the first may go, and then the second is the last.
    second = sonded.new_token("admin", "second")
    assert sonded.request("DELETE", f"/api/v1/tokens/{me[0]['id']}")[0] == 200
    assert sonded.request("GET", "/api/v1/tokens")[0] == 401
    status, _, _ = sonded.request("DELETE", f"/api/v1/tokens/{second['id']}",
                                  token=second["token"])
    assert status == 409


def test_token_answer_has_the_documented_shape(sonded):
    info = sonded.new_token("reader", "ci")
    assert re.fullmatch(r"sonde_[0-9a-f]{64}", info["token"]), info
    assert info["role"] == "reader" and info["name"] == "ci" and info["id"] >= 1, info
    assert isinstance(info["created_ms"], int) and info["created_ms"] > 1.6e12, info
    other = sonded.new_token("reader", "ci")
    assert other["token"] != info["token"] and other["id"] != info["id"]


def _store_files(s):
    return sorted(p for p in Path(s.data_dir).rglob("*") if p.is_file())


def _secret_forms(secret):
    hexpart = secret[len("sonde_"):]
    return [secret.encode(), hexpart.encode(), hexpart.upper().encode(), bytes.fromhex(hexpart)]


def _assert_no_secret(files, secrets_, when):
    for f in files:
        data = f.read_bytes()
        for sec in secrets_:
            for form in _secret_forms(sec):
                assert form not in data, f"{when}: a token secret is stored in clear in {f}"


def test_tokens_are_stored_hashed(sonded):
    made = [sonded.token(r, f"hashed-{r}") for r in ROLES]
    made.append(sonded.admin_token)
    # Use each one, so nothing can be excused as "not yet written".
    for t in made[:3] + made[4:]:
        assert sonded.request("GET", "/api/v1/sessions", token=t)[0] == 200
    sonded.register_agent("hash-app", token=made[3])
    files = _store_files(sonded)
    assert sonded.db_path in files, f"no {sonded.db_path}: {files}"
    # While running: the WAL (or journal) holds the newest pages.
    _assert_no_secret(files, made, "running")
    sonded.stop()
    _assert_no_secret(_store_files(sonded), made, "after stop")
    # sonded's log names tokens by id, never by secret (the admin token
    # is printed on stdout once, by design).
    for t in made:
        assert t not in sonded.all_logs, "a token secret is in sonded's log"
