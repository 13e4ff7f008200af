"""``interphone bench feed``: how fast a new contact reaches open agent screens.

Starts gunicorn (threaded workers, as in the Procfile), opens N agent screens' live feeds
(``/agent/feed``, Server-Sent Events), then creates contacts one by one and measures, for
every screen, the time from the enqueue call to the event's arrival, and the time to
fetch the re-rendered panel that the screen shows next.
"""

from __future__ import annotations

import http.client
import json
import re
import statistics
import threading
import time
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select

from ..accounts import add_user
from ..models import Agent
from ..runtime import Runtime
from ..sites import ensure_site
from ..voice.bench import gunicorn

EMAIL, PASSWORD = "bench-agent@interphone.local", "bench-password-2026"


def _sign_in(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/login")
    response = conn.getresponse()
    page = response.read().decode()
    cookie = response.getheader("Set-Cookie", "").split(";", 1)[0]
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token, "no CSRF token on /login"
    body = urlencode({"email": EMAIL, "password": PASSWORD, "csrf_token": token.group(1)})
    conn.request(
        "POST",
        "/login",
        body=body,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie},
    )
    response = conn.getresponse()
    response.read()
    conn.close()
    if response.status != 302:
        raise RuntimeError(f"bench agent could not sign in ({response.status})")
    return response.getheader("Set-Cookie", "").split(";", 1)[0]


class Screen(threading.Thread):
    def __init__(
        self, port: int, cookie: str, seen: dict[int, list[float]], lock: threading.Lock
    ) -> None:
        super().__init__(daemon=True)
        self.port, self.cookie, self.seen, self.lock = port, cookie, seen, lock
        self.ready = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            self._read(conn)
        except (OSError, http.client.HTTPException):
            return  # the server went away at the end of the run
        finally:
            conn.close()

    def _read(self, conn: http.client.HTTPConnection) -> None:
        conn.request("GET", "/agent/feed", headers={"Cookie": self.cookie})
        response = conn.getresponse()
        name = ""
        while True:
            line = response.readline()
            if not line:
                return
            text = line.decode().rstrip("\n")
            if text.startswith("event: "):
                name = text[7:]
                if name == "hello":
                    self.ready.set()
            elif text.startswith("data: ") and name == "change":
                event = json.loads(text[6:])
                if event.get("kind") == "contact.created":
                    with self.lock:
                        self.seen.setdefault(event["contact_id"], []).append(time.perf_counter())


def run(rt: Runtime, *, screens: int, samples: int, workers: int, threads: int) -> dict[str, Any]:
    from .. import db

    db.upgrade(rt.database_url)
    site = ensure_site(rt.sessions, rt.settings.default_site, always_open=True)
    with rt.sessions() as s:
        if s.scalar(select(Agent.id).where(Agent.email == EMAIL)) is None:
            add_user(rt.sessions, EMAIL, PASSWORD, site_code=site.code)
    seen: dict[int, list[float]] = {}
    lock = threading.Lock()
    with gunicorn(rt, workers, threads) as port:
        cookie = _sign_in(port)
        pool = [Screen(port, cookie, seen, lock) for _ in range(screens)]
        for screen in pool:
            screen.start()
        for screen in pool:
            if not screen.ready.wait(timeout=30):
                raise RuntimeError("an agent screen did not connect")
        event_ms: list[float] = []
        panel_ms: list[float] = []
        missed = 0
        panel = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(samples):
            t0 = time.perf_counter()
            contact = rt.queue.enqueue_live(site.code, language="fr").contact_id
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                with lock:
                    if len(seen.get(contact, [])) >= screens:
                        break
                time.sleep(0.001)
            with lock:
                arrivals = seen.get(contact, [])
            missed += screens - len(arrivals)
            event_ms += [(t - t0) * 1000 for t in arrivals]
            p0 = time.perf_counter()
            panel.request("GET", "/agent/panel", headers={"Cookie": cookie})
            panel.getresponse().read()
            panel_ms.append((time.perf_counter() - p0) * 1000)
            rt.queue.abandon(contact)
            time.sleep(0.02)
        panel.close()
    for screen in pool:
        screen.join(timeout=10)
    ordered = sorted(event_ms)
    visible = sorted(e + statistics.median(panel_ms) for e in event_ms)
    return {
        "screens": screens,
        "samples": samples,
        "events_delivered": len(event_ms),
        "events_missed": missed,
        "event_p50_ms": round(statistics.median(ordered), 2),
        "event_p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))], 2),
        "panel_p50_ms": round(statistics.median(panel_ms), 2),
        "panel_p99_ms": round(sorted(panel_ms)[int(0.99 * (len(panel_ms) - 1))], 2),
        "visible_p99_ms": round(visible[int(0.99 * (len(visible) - 1))], 2),
    }
