"""
test_server_retention.py — sonded deletes sessions (and their profiles)
older than --retention-days in the background, at start and then hourly,
and keeps everything younger.
"""

import time

from conftest import wait_for

DAY_MS = 86400 * 1000


def test_retention_deletes_old_sessions_and_keeps_recent(sonded_factory, recorded_profiles):
    prof = recorded_profiles(1)[0]
    s = sonded_factory()
    aid = s.register_agent("ret")
    now = int(time.time() * 1000)
    old = s.upload(aid, prof, start_ms=now - 3 * DAY_MS)
    young = s.upload(aid, prof, start_ms=now - DAY_MS // 2)
    assert {x["id"] for x in s.ok("GET", "/api/v1/sessions?app=ret")["sessions"]} == {old, young}

    s.args = ["--retention-days", "2"]
    s.restart()

    def remaining():
        return {x["id"] for x in s.ok("GET", "/api/v1/sessions?app=ret")["sessions"]}

    wait_for(lambda: remaining() == {young}, timeout=20, what="the old session to be purged")
    st, body, _ = s.request("GET", f"/api/v1/sessions/{old}/profile")
    assert st == 404, body
    st, body, _ = s.request("GET", f"/api/v1/sessions/{young}/profile")
    assert st == 200 and body == bytes(prof)
