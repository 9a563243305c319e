"""
test_settings_api.py — triggers, default sampling and Profile Now as
docs/api.md describes them, against a real sonded: defaults, partial
updates, per-app overrides, validation of every field (nothing changes on
a refusal), persistence across a restart, and what agents receive.
"""

import pytest

TRIGGER_DEFAULT = {"enabled": True, "threshold": 80, "duration_s": 120, "cooldown_s": 600}
SAMPLING_DEFAULT = {"enabled": True, "window_s": 120, "period_s": 3600}


def settings_at_register(s, app):
    body = {"app": app, "instance": "h", "pid": 1, "agent_version": "0.4.0"}
    return s.ok("POST", "/api/v1/agent/register", body, token=s.agent_token(),
                expect=201)["settings"]


def test_defaults(sonded):
    s = sonded
    assert s.ok("GET", "/api/v1/triggers") == {"app": None, "overridden": False,
                                               "cpu": TRIGGER_DEFAULT, "memory": TRIGGER_DEFAULT}
    assert s.ok("GET", "/api/v1/default-sampling") == dict(SAMPLING_DEFAULT, app=None,
                                                           overridden=False)
    assert s.ok("GET", "/api/v1/triggers?app=shop") == {
        "app": "shop", "overridden": False, "cpu": TRIGGER_DEFAULT, "memory": TRIGGER_DEFAULT}
    assert settings_at_register(s, "shop") == {
        "triggers": {"cpu": TRIGGER_DEFAULT, "memory": TRIGGER_DEFAULT},
        "default_sampling": SAMPLING_DEFAULT}


def test_partial_put_changes_only_given_fields(sonded):
    s = sonded
    b = s.ok("PUT", "/api/v1/triggers", {"cpu": {"threshold": 90}})
    assert b["cpu"] == dict(TRIGGER_DEFAULT, threshold=90)
    assert b["memory"] == TRIGGER_DEFAULT
    b = s.ok("PUT", "/api/v1/triggers", {"memory": {"enabled": False, "cooldown_s": 0}})
    assert b["cpu"] == dict(TRIGGER_DEFAULT, threshold=90), "an earlier change was lost"
    assert b["memory"] == dict(TRIGGER_DEFAULT, enabled=False, cooldown_s=0)
    assert s.ok("GET", "/api/v1/triggers") == b
    b = s.ok("PUT", "/api/v1/default-sampling", {"enabled": False})
    assert b == dict(SAMPLING_DEFAULT, enabled=False, app=None, overridden=False)
    # An empty document changes nothing.
    assert s.ok("PUT", "/api/v1/default-sampling", {}) == b


def test_app_override_and_workspace(sonded):
    s = sonded
    s.ok("PUT", "/api/v1/triggers", {"cpu": {"threshold": 70}})
    b = s.ok("PUT", "/api/v1/triggers?app=shop", {"memory": {"threshold": 50}})
    # The override starts from the app's effective settings then.
    assert b["app"] == "shop" and b["overridden"] is True
    assert b["cpu"]["threshold"] == 70 and b["memory"]["threshold"] == 50
    other = s.ok("GET", "/api/v1/triggers?app=cart")
    assert other["overridden"] is False and other["memory"]["threshold"] == 80
    assert other["cpu"]["threshold"] == 70
    assert s.ok("GET", "/api/v1/triggers")["memory"]["threshold"] == 80
    # Agents of each app receive their own effective settings.
    assert settings_at_register(s, "shop")["triggers"]["memory"]["threshold"] == 50
    assert settings_at_register(s, "cart")["triggers"]["memory"]["threshold"] == 80

    # Removing the override falls back to the workspace's.
    b = s.ok("DELETE", "/api/v1/triggers?app=shop")
    assert b["overridden"] is False and b["memory"]["threshold"] == 80
    assert b["cpu"]["threshold"] == 70
    st, e, _ = s.request("DELETE", "/api/v1/triggers?app=shop")
    assert st == 404 and "shop" in e["error"], e

    s.ok("PUT", "/api/v1/default-sampling?app=shop", {"period_s": 600})
    assert s.ok("GET", "/api/v1/default-sampling?app=shop")["period_s"] == 600
    assert s.ok("GET", "/api/v1/default-sampling?app=cart")["period_s"] == 3600
    assert s.ok("DELETE", "/api/v1/default-sampling?app=shop")["period_s"] == 3600
    assert s.request("DELETE", "/api/v1/default-sampling?app=shop")[0] == 404


def test_settings_survive_a_restart(sonded):
    s = sonded
    s.ok("PUT", "/api/v1/triggers?app=shop", {"cpu": {"enabled": False}})
    s.ok("PUT", "/api/v1/default-sampling", {"window_s": 60, "period_s": 60})
    before = (s.ok("GET", "/api/v1/triggers?app=shop"), s.ok("GET", "/api/v1/default-sampling"))
    s.restart()
    after = (s.ok("GET", "/api/v1/triggers?app=shop"), s.ok("GET", "/api/v1/default-sampling"))
    assert after == before


def test_every_change_bumps_the_version_agents_see(sonded):
    s = sonded
    body = {"app": "v", "instance": "h", "pid": 1, "agent_version": "0.4.0"}
    reg = s.ok("POST", "/api/v1/agent/register", body, token=s.agent_token(), expect=201)

    def version():
        return s.ok("POST", "/api/v1/agent/heartbeat", {"agent_id": reg["agent_id"]},
                    token=s.agent_token())["settings_version"]

    v0 = version()
    assert v0 == reg["settings_version"]
    s.ok("PUT", "/api/v1/triggers?app=v", {"cpu": {"duration_s": 10}})
    v1 = version()
    s.ok("PUT", "/api/v1/default-sampling", {"window_s": 3600, "period_s": 86400})
    v2 = version()
    s.ok("DELETE", "/api/v1/triggers?app=v")
    v3 = version()
    assert v0 < v1 < v2 < v3
    # A refused change bumps nothing.
    assert s.request("PUT", "/api/v1/triggers", {"cpu": {"threshold": 0}})[0] == 400
    assert version() == v3


TRIGGER_FIELDS = [
    ({"cpu": {"threshold": 0}}, "cpu.threshold"),
    ({"cpu": {"threshold": 101}}, "cpu.threshold"),
    ({"memory": {"threshold": "80"}}, "memory.threshold"),
    ({"memory": {"threshold": 80.5}}, "memory.threshold"),
    ({"cpu": {"enabled": "yes"}}, "cpu.enabled"),
    ({"memory": {"enabled": 1}}, "memory.enabled"),
    ({"cpu": {"duration_s": 9}}, "cpu.duration_s"),
    ({"memory": {"duration_s": 3601}}, "memory.duration_s"),
    ({"cpu": {"cooldown_s": -1}}, "cpu.cooldown_s"),
    ({"memory": {"cooldown_s": 86401}}, "memory.cooldown_s"),
    ({"cpu": {"cooldown_s": None}}, "cpu.cooldown_s"),
    ({"cpu": {"percent": 5}}, "cpu.percent"),
    ({"disk": {"threshold": 5}}, "disk"),
    ({"cpu": 80}, "cpu"),
    ({"cpu": {"threshold": 90}, "memory": {"threshold": 0}}, "memory.threshold"),
]


@pytest.mark.parametrize("body,field", TRIGGER_FIELDS, ids=lambda x: str(x)[:30])
@pytest.mark.parametrize("app", [None, "shop"])
def test_triggers_put_refuses_bad_field_and_changes_nothing(sonded_module, body, field, app):
    s = sonded_module
    path = "/api/v1/triggers" + (f"?app={app}" if app else "")
    before = s.ok("GET", path)
    st, b, _ = s.request("PUT", path, body)
    assert st == 400 and f"'{field}" in b["error"], (body, st, b)
    assert s.ok("GET", path) == before


def test_triggers_error_names_the_range(sonded_module):
    st, b, _ = sonded_module.request("PUT", "/api/v1/triggers", {"cpu": {"threshold": 0}})
    assert st == 400 and b["error"] == "field 'cpu.threshold' must be an integer in 1..100"


SAMPLING_FIELDS = [
    ({"enabled": "on"}, "enabled"),
    ({"window_s": 9}, "window_s"),
    ({"window_s": 3601}, "window_s"),
    ({"window_s": "120"}, "window_s"),
    ({"period_s": 59}, "period_s"),
    ({"period_s": 86401}, "period_s"),
    ({"period_s": 600.0}, "period_s"),
    ({"period_s": 100}, "window_s"),                   # window 120 > period 100
    ({"window_s": 600, "period_s": 300}, "window_s"),
    ({"jitter": 1}, "jitter"),
]


@pytest.mark.parametrize("body,field", SAMPLING_FIELDS, ids=lambda x: str(x)[:30])
def test_default_sampling_put_refuses_bad_field_and_changes_nothing(sonded_module, body, field):
    s = sonded_module
    before = s.ok("GET", "/api/v1/default-sampling?app=shop")
    st, b, _ = s.request("PUT", "/api/v1/default-sampling?app=shop", body)
    assert st == 400 and f"'{field}'" in b["error"], (body, st, b)
    assert s.ok("GET", "/api/v1/default-sampling?app=shop") == before


def test_window_equal_to_period_is_accepted(sonded):
    b = sonded.ok("PUT", "/api/v1/default-sampling", {"window_s": 60, "period_s": 60})
    assert (b["window_s"], b["period_s"]) == (60, 60)


@pytest.mark.parametrize("body", ['{"cpu": ', "[1]", '"x"', ""], ids=["cut", "array", "string",
                                                                     "empty"])
@pytest.mark.parametrize("path", ["/api/v1/triggers", "/api/v1/default-sampling",
                                  "/api/v1/profile-now"])
def test_settings_refuse_malformed_bodies(sonded_module, path, body):
    method = "POST" if path.endswith("profile-now") else "PUT"
    st, b, _ = sonded_module.request(method, path, body)
    assert st == 400 and "body" in b["error"], (path, body, st, b)


@pytest.mark.parametrize("path", ["/api/v1/triggers", "/api/v1/default-sampling"])
def test_app_query_too_long_is_400(sonded_module, path):
    st, b, _ = sonded_module.request("GET", f"{path}?app={'a' * 128}")
    assert st == 400 and "app" in b["error"]


# --------------------------------------------------------------------------
# Profile Now
# --------------------------------------------------------------------------

def test_profile_now_defaults_and_list(sonded):
    s = sonded
    a = s.ok("POST", "/api/v1/profile-now", {}, expect=201)
    assert (a["app"], a["duration_s"], a["agents"]) == (None, 120, 0)
    assert a["created_ms"] > 0
    agent = s.register_agent("shop")
    b = s.ok("POST", "/api/v1/profile-now", {"app": "shop", "duration_s": 3600}, expect=201)
    assert (b["app"], b["duration_s"], b["agents"]) == ("shop", 3600, 1)
    assert b["id"] > a["id"]
    c = s.ok("POST", "/api/v1/profile-now", {"app": "nobody", "duration_s": 1}, expect=201)
    assert c["agents"] == 0 and agent
    listed = s.ok("GET", "/api/v1/profile-now")["requests"]
    assert [r["id"] for r in listed] == [c["id"], b["id"], a["id"]]
    assert {k: listed[1][k] for k in ("app", "duration_s")} == {"app": "shop", "duration_s": 3600}
    assert [r["id"] for r in s.ok("GET", "/api/v1/profile-now?limit=2")["requests"]] == \
        [c["id"], b["id"]]


@pytest.mark.parametrize("body,field", [
    ({"app": ""}, "app"), ({"app": "x" * 128}, "app"), ({"app": 3}, "app"),
    ({"app": None}, "app"), ({"app": "a\tb"}, "app"),
    ({"duration_s": 0}, "duration_s"), ({"duration_s": 3601}, "duration_s"),
    ({"duration_s": "60"}, "duration_s"), ({"duration_s": 1.5}, "duration_s"),
    ({"agents": 1}, "agents")], ids=lambda x: str(x)[:30])
def test_profile_now_refuses_bad_field(sonded_module, body, field):
    s = sonded_module
    before = s.ok("GET", "/api/v1/profile-now?limit=1000")
    st, b, _ = s.request("POST", "/api/v1/profile-now", body)
    assert st == 400 and f"'{field}'" in b["error"], (body, st, b)
    assert s.ok("GET", "/api/v1/profile-now?limit=1000") == before


@pytest.mark.parametrize("limit", ["0", "1001", "x", "-1"])
def test_profile_now_list_refuses_bad_limit(sonded_module, limit):
    st, b, _ = sonded_module.request("GET", f"/api/v1/profile-now?limit={limit}")
    assert st == 400 and "limit" in b["error"]


def test_roles_on_settings(sonded):
    s = sonded
    reader, writer, agent = s.token("reader"), s.token("writer"), s.agent_token()
    for path in ("/api/v1/triggers", "/api/v1/default-sampling", "/api/v1/profile-now"):
        assert s.request("GET", path, token=reader)[0] == 200
        assert s.request("GET", path, token=agent)[0] == 403
        assert s.request("GET", path, token=None)[0] == 401
    assert s.request("PUT", "/api/v1/triggers", {}, token=reader)[0] == 403
    assert s.request("PUT", "/api/v1/triggers", {"cpu": {"enabled": False}}, token=writer)[0] == 200
    assert s.request("POST", "/api/v1/profile-now", {}, token=reader)[0] == 403
    assert s.request("POST", "/api/v1/profile-now", {}, token=writer)[0] == 201
    assert s.request("DELETE", "/api/v1/triggers?app=x", token=agent)[0] == 403
