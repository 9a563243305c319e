"""
test_server_durability.py — an acknowledged upload survives a crash.

agent-protocol.md: "Only a 2xx answer means stored: it is then durable
(written in one transaction before the answer)."  Eight client threads
upload real profiles as fast as they can; the server is killed with
SIGKILL (or stopped with SIGTERM) in the middle of the stream; after a
restart on the same data dir every session whose upload was answered 2xx
gives back its profile byte for byte, and SQLite's integrity check of the
store passes.
"""

import http.client
import json
import shutil
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

from conftest import SAN

THREADS = 8


def unique(profile, n):
    """The same gzipped profile with gzip's MTIME field set to n: other
    bytes on the wire, the same content (MTIME is not covered by the CRC)."""
    b = bytearray(profile)
    assert b[:3] == b"\x1f\x8b\x08" and not b[3] & 0x02, "want a plain gzip member header"
    b[4:8] = (n & 0xFFFFFFFF).to_bytes(4, "little")
    return bytes(b)


class Uploaders:
    """THREADS clients, one agent and one keep-alive connection each,
    creating sessions and uploading profiles until told to stop or until
    the server goes away."""

    def __init__(self, s, profiles):
        self.s = s
        self.profiles = profiles
        self.token = s.agent_token()
        self.agents = [s.register_agent("durable", instance=f"t{i}", pid=100 + i)
                       for i in range(THREADS)]
        self.lock = threading.Lock()
        self.acked = {}          # session id -> the bytes acknowledged
        self.statuses = {}       # status -> count, of every answer
        self.errors = []         # how each thread ended
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(THREADS)]
        self.counter = 0

    def start(self):
        for t in self.threads:
            t.start()

    def join(self, timeout=60):
        self.stop.set()
        for t in self.threads:
            t.join(timeout)
            assert not t.is_alive(), "an upload thread hung"

    def _count(self, status):
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def _run(self, i):
        conn = http.client.HTTPConnection(self.s.host, self.s.port, timeout=30)
        hdr = {"Authorization": f"Bearer {self.token}"}
        try:
            while not self.stop.is_set():
                body = json.dumps({"agent_id": self.agents[i], "triggered_by": "load-test",
                                   "profile_types": ["cpu"], "duration_s": 1})
                conn.request("POST", "/api/v1/agent/sessions", body,
                             dict(hdr, **{"Content-Type": "application/json"}))
                r = conn.getresponse()
                answer = r.read()
                self._count(r.status)
                if r.status != 201:
                    continue
                sid = json.loads(answer)["id"]
                with self.lock:
                    self.counter += 1
                    n = self.counter
                data = unique(self.profiles[n % len(self.profiles)], n)
                conn.request("PUT", f"/api/v1/agent/sessions/{sid}/profile", data,
                             dict(hdr, **{"Content-Type": "application/octet-stream"}))
                r = conn.getresponse()
                r.read()
                self._count(r.status)
                if 200 <= r.status < 300:
                    with self.lock:
                        self.acked[sid] = data
        except (OSError, http.client.HTTPException) as e:
            with self.lock:
                self.errors.append(f"thread {i}: {e.__class__.__name__}: {e}")
        finally:
            conn.close()

    def wait_for(self, n, seconds, s):
        """Waits until at least n uploads were acknowledged and `seconds`
        have passed."""
        t0 = time.monotonic()
        deadline = t0 + (120 if SAN else 40)
        while len(self.acked) < n or time.monotonic() - t0 < seconds:
            assert time.monotonic() < deadline, \
                f"only {len(self.acked)} uploads acknowledged: {self.statuses} {self.errors}" \
                f"\n{s.describe()}"
            assert s.alive(), f"sonded died under load\n{s.describe()}"
            time.sleep(0.02)


def integrity_check(db):
    """`PRAGMA integrity_check` with Debian's sqlite3 CLI (or Python's)."""
    if shutil.which("sqlite3"):
        p = subprocess.run(["sqlite3", str(db), "PRAGMA integrity_check;"], capture_output=True,
                           text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        return p.stdout.strip()
    con = sqlite3.connect(str(db))
    try:
        return "\n".join(r[0] for r in con.execute("PRAGMA integrity_check"))
    finally:
        con.close()


def copy_store(s, dest):
    """A copy of the store's files as a crash left them (db, WAL, journal),
    so that checking them does not recover the WAL behind sonded's back."""
    dest.mkdir()
    for f in Path(s.data_dir).glob(s.db_path.name + "*"):
        shutil.copy2(f, dest / f.name)
    return dest / s.db_path.name


def assert_all_acknowledged_present(s, acked):
    missing, wrong = [], []
    for sid, data in sorted(acked.items()):
        status, body, _ = s.request("GET", f"/api/v1/sessions/{sid}/profile", raw=True)
        if status != 200:
            missing.append((sid, status))
        elif body != data:
            wrong.append(sid)
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged uploads are gone: " \
                        f"{missing[:10]}"
    assert not wrong, f"{len(wrong)} acknowledged profiles differ from what was sent: {wrong[:10]}"
    for sid in list(acked)[:50]:
        sess = s.ok("GET", f"/api/v1/sessions/{sid}")
        assert sess["has_profile"] and sess["state"] == "completed", sess
        assert sess["profile_bytes"] == len(acked[sid]), sess


def test_acknowledged_uploads_survive_kill_9(sonded, recorded_profiles, tmp_path):
    up = Uploaders(sonded, recorded_profiles(8))
    up.start()
    up.wait_for(20, 2.0, sonded)
    sonded.kill()
    up.join()
    acked = dict(up.acked)
    crashed = copy_store(sonded, tmp_path / "crashed")
    assert integrity_check(crashed) == "ok", "the store is corrupt as SIGKILL left it"
    sonded.restart()
    assert_all_acknowledged_present(sonded, acked)
    # The server still takes new work on the recovered store.
    aid = sonded.register_agent("after-crash")
    sid = sonded.upload(aid, recorded_profiles(1)[0])
    assert sonded.request("GET", f"/api/v1/sessions/{sid}/profile", raw=True)[1] == \
        recorded_profiles(1)[0]
    sonded.stop()
    assert integrity_check(sonded.db_path) == "ok"


def test_sigterm_with_uploads_in_flight_exits_cleanly(sonded, recorded_profiles):
    up = Uploaders(sonded, recorded_profiles(8))
    up.start()
    up.wait_for(20, 1.0, sonded)
    sonded.stop(timeout=60)              # asserts exit status 0, no sanitizer report
    up.join()
    acked = dict(up.acked)
    assert 500 not in up.statuses, \
        f"store failures while shutting down: {up.statuses}\n{sonded.describe()}"
    sonded.restart()
    assert_all_acknowledged_present(sonded, acked)
    sonded.stop()
    assert integrity_check(sonded.db_path) == "ok"


def test_restart_keeps_everything(sonded, recorded_profiles):
    """A clean restart: sessions, tokens and settings are all still there."""
    profiles = recorded_profiles(3)
    aid = sonded.register_agent("keep", instance="k1", pid=7)
    sids = [sonded.upload(aid, p) for p in profiles]
    reader = sonded.token("reader", "keeper")
    sonded.ok("PUT", "/api/v1/triggers?app=keep", {"cpu": {"threshold": 55}})
    before = sonded.ok("GET", "/api/v1/sessions?app=keep")
    sonded.restart()
    assert sonded.ok("GET", "/api/v1/sessions?app=keep", token=reader) == before
    for sid, p in zip(sids, profiles):
        assert sonded.request("GET", f"/api/v1/sessions/{sid}/profile", raw=True)[1] == p
    got = sonded.ok("GET", "/api/v1/triggers?app=keep")
    assert got["overridden"] and got["cpu"]["threshold"] == 55, got
    assert sonded.ok("GET", f"/api/v1/agents/{aid}")["app"] == "keep"
