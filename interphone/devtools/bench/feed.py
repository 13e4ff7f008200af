"""``interphone bench feed``: how fast a new contact reaches open agent screens.

Starts gunicorn (threaded workers, as in the Procfile), opens N agent screens' live feeds
(``/agent/feed``, Server-Sent Events; one agent each, as a person's feeds are capped),
then creates contacts one by one and measures, for every screen, the time from the
enqueue call to the event's arrival, and the time to fetch the re-rendered panel that
the screen shows next.
"""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import select

from interphone import db
from interphone.accounts import add_user
from interphone.models import Agent
from interphone.runtime import Runtime
from interphone.sites import ensure_site

from ..harness import gunicorn, percentile, sign_in

PASSWORD = "bench-password-2026"


def _email(screen: int) -> str:
    return f"bench-agent-{screen:03d}@interphone.local"


def connect_screens(
    port: int,
    cookies: list[str],
    seen: dict[int, list[float]],
    lock: threading.Lock,
    timeout_s: float,
) -> list[Screen]:
    """One :class:`Screen` per signed-in cookie, each on the feed (its ``hello`` read)."""
    screens = [Screen(port, cookie, seen, lock) for cookie in cookies]
    for screen in screens:
        screen.start()
    for screen in screens:
        if not screen.ready.wait(timeout=timeout_s):
            raise RuntimeError("an agent screen did not connect")
    return screens


class Screen(threading.Thread):
    """One agent's live feed, read from a plain socket: fifty of them beside a load test
    must cost little CPU (``http.client`` reads a chunked stream line by line in Python)."""

    def __init__(
        self, port: int, cookie: str, seen: dict[int, list[float]], lock: threading.Lock
    ) -> None:
        super().__init__(daemon=True)
        self.port, self.cookie, self.seen, self.lock = port, cookie, seen, lock
        self.ready = threading.Event()

    def run(self) -> None:
        request = (
            f"GET /agent/feed HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Cookie: {self.cookie}\r\nAccept: text/event-stream\r\n\r\n"
        )
        try:
            while True:  # as a browser: a process with its share of feeds says when to retry
                with socket.create_connection(("127.0.0.1", self.port), timeout=60) as sock:
                    sock.sendall(request.encode())
                    retry_ms = self._read(stream_lines(sock.recv))
                if retry_ms is None:
                    return
                time.sleep(retry_ms / 1000)
        except (OSError, ValueError):
            return  # the server went away at the end of the run

    def _read(self, lines: Iterator[bytes]) -> int | None:
        """Read the feed to its end; the delay it asked for before connecting again."""
        name = b""
        retry_ms = None
        for line in lines:
            if line.startswith(b"retry: "):
                retry_ms = int(line[7:])
            elif line.startswith(b"event: "):
                name = line[7:]
                if name == b"hello":
                    self.ready.set()
            elif line.startswith(b"data: ") and name == b"change":
                event = json.loads(line[6:])
                if event.get("kind") == "contact.created":
                    with self.lock:
                        self.seen.setdefault(event["contact_id"], []).append(time.perf_counter())
        return retry_ms


def stream_lines(recv: Callable[[int], bytes]) -> Iterator[bytes]:
    """The lines (without their end) of an HTTP answer's body streamed through ``recv``,
    chunked or ended by the close, as they arrive. Raises ValueError for an answer other
    than 200, ConnectionResetError for a chunked body cut short."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        buffer += _more(recv)
    head, _, buffer = buffer.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    if status_line.split(b" ", 2)[1:2] != [b"200"]:
        raise ValueError(f"the feed answered {status_line!r}")
    chunked = b"transfer-encoding: chunked" in head.lower()
    text = b""  # body bytes not yet ending a line
    while True:
        if not chunked:
            data, buffer = buffer or recv(65536), b""
            if not data:
                return  # the close ends the body
            text += data
        else:
            while b"\r\n" not in buffer:
                buffer += _more(recv)
            size_line, _, buffer = buffer.partition(b"\r\n")
            size = int(size_line.split(b";", 1)[0], 16)
            if size == 0:
                return
            while len(buffer) < size + 2:
                buffer += _more(recv)
            text, buffer = text + buffer[:size], buffer[size + 2 :]
        *complete, text = text.split(b"\n")
        for line in complete:
            yield line.rstrip(b"\r")


def _more(recv: Callable[[int], bytes]) -> bytes:
    data = recv(65536)
    if not data:
        raise ConnectionResetError("the answer was cut short")
    return data


def run(rt: Runtime, *, screens: int, samples: int, workers: int, threads: int) -> dict[str, Any]:
    db.upgrade(rt.database_url)
    site = ensure_site(rt.sessions, rt.settings.default_site, always_open=True)
    emails = [_email(i) for i in range(screens)]
    with rt.sessions() as s:
        known = set(s.scalars(select(Agent.email).where(Agent.email.in_(emails))))
    for email in emails:
        if email not in known:
            add_user(rt.sessions, email, PASSWORD, site_code=site.code)
    seen: dict[int, list[float]] = {}
    lock = threading.Lock()
    with gunicorn(rt, workers, threads) as port:
        cookies = [sign_in(port, email, PASSWORD) for email in emails]
        cookie = cookies[0]  # the panel fetched after each event: the first screen's
        pool = connect_screens(port, cookies, seen, lock, timeout_s=30)
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
        "event_p99_ms": round(percentile(ordered, 0.99), 2),
        "panel_p50_ms": round(statistics.median(panel_ms), 2),
        "panel_p99_ms": round(percentile(sorted(panel_ms), 0.99), 2),
        "visible_p99_ms": round(percentile(visible, 0.99), 2),
    }
