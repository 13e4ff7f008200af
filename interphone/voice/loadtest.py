"""``interphone bench load``: simulated callers and agent screens against the real stack.

A bounded load generator of the project's own, on loopback only. Simulated callers ring
the phone line as Twilio would (signed webhooks, the parameters Twilio sends) and go
through the IVR by following the TwiML they get back: each answer's ``<Gather action>``
is where the caller's next key press goes, so the sequence numbers, the hold loop and
the hang-ups are the server's own. The mix is a Monday morning's: status lookups with a
file number and a birth date of demo cases (some mistyped, on unknown file numbers, since
failed birth dates are limited per file), callback requests, callers
waiting in the live queue (the hold loop polled, some pressing ``*`` to be called back),
callers who leave at the menu, and Twilio's final status callback for every call.

Calls start at fixed times (open loop across calls: a slow server cannot slow their
arrival down), and a caller presses a key about once a second after each answer. The
first ``warmup`` seconds are not measured; requests due in the ``seconds`` after are.

Meanwhile ``screens`` agent screens (distinct signed-in agents, in a child process so
that the measuring clients do not share one interpreter lock with them) hold the live
feed (``/agent/feed``, Server-Sent Events) open. The feed latency is, for every contact
a measured webhook created and every screen, the time from the moment the caller's key
press was sent to the moment that screen received the ``contact.created`` event.

The server is the Procfile's: its ``web`` line (gunicorn gthread, its workers and
threads) and its ``worker`` line (an RQ worker with the scheduler, which runs the sweep
that moves the IVR's journal into SQL), on the configured Redis and database.
"""

from __future__ import annotations

import heapq
import http.client
import multiprocessing
import os
import queue
import random
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from twilio.request_validator import RequestValidator

from ..accounts import add_user
from ..cases import ImportReport, demo_records, import_records
from ..models import Agent, Contact
from ..runtime import Runtime
from ..sites import ensure_site

SITE = "charge"  # the load test's own site (its queue, its screens' feed)
LINE = "+33473009999"  # the number it answers
AGENT_PASSWORD = "load-test-password-2026"
THINK_S = 1.0  # a caller presses a key about once a second
LATE_S = 0.05  # a request sent this much after its due time counts as late
TIMEOUT_S = 10.0
IDLE_S = 1.0  # a connection idle this long is not reused (gunicorn keeps idle ones 2 s)

#: share of calls of each kind (see :func:`_script`)
MIX: dict[str, float] = {
    "status": 0.34,  # a status lookup, the right birth date
    "status_mistyped": 0.08,  # a status lookup with a wrong birth date, then gives up
    "callback": 0.20,  # a callback request
    "live": 0.25,  # waits in the live queue, hangs up while waiting
    "live_to_callback": 0.08,  # waits, then presses * to be called back instead
    "menu_only": 0.05,  # picks a language, asks for the menu again, hangs up
}
HOLD_POLLS = (2, 6)  # how many times a waiting caller's hold loop comes back

KINDS = ("incoming", "menu", "status_lookup", "callback", "hold", "status_callback")


def route_kind(path: str) -> str:
    """The kind of webhook a path is, for the figures."""
    bare = path.split("?", 1)[0]
    if bare == "/voice/incoming":
        return "incoming"
    if bare == "/voice/queue":
        return "hold"
    if bare == "/voice/status":
        return "status_callback"
    step = bare.removeprefix("/voice/step/")
    if step.startswith("status_file") or step.startswith("status_birth"):
        return "status_lookup"
    if step.startswith("callback"):
        return "callback"
    return "menu"


@dataclass(frozen=True)
class Press:
    """What a caller does at one step: the step the answer must lead to, the keys."""

    step: str  # "/voice/step/<name>" or "/voice/queue": the expected Gather action path
    digits: str
    creates_contact: bool = False  # this key press puts the caller in the queue


@dataclass
class Caller:
    sid: str
    number: str
    kind: str
    presses: list[Press]
    ends_with_hangup: bool  # the server hangs up after the last press (else the caller does)
    next_url: str = "/voice/incoming"
    done: int = 0  # presses made
    started: float = 0.0


def _script(kind: str, rng: random.Random, case: tuple[str, date]) -> tuple[list[Press], bool]:
    language = Press("/voice/step/language", "2")  # English, the second of the site's
    file_number, born = case
    if kind in ("status", "status_mistyped"):
        digits = born.strftime("%d%m%Y")
        if kind == "status_mistyped":
            # a file number of its own: failed birth dates are counted per file number
            # (RATE_LIMIT_FILE_FAILURES), and a run's mistakes on its forty cases would
            # leave their status to an agent for the rest of the run
            file_number = f"99{rng.randrange(10**8):08d}"
            digits = f"{(born.day % 28) + 1:02d}{born.month:02d}{born.year}"
        presses = [
            language,
            Press("/voice/step/main", "1"),
            Press("/voice/step/status_file", file_number),
            Press("/voice/step/status_birth", digits),
        ]
        if kind == "status":
            return [*presses, Press("/voice/step/status_after", "0")], True
        return presses, False  # back at the file number question: the caller leaves
    if kind == "callback":
        return [
            language,
            Press("/voice/step/main", "2"),
            Press("/voice/step/callback", "1"),  # yes, call me back on this number
            Press("/voice/step/callback_file", ""),  # no file number: just '#'
            Press("/voice/step/callback_reason", str(rng.randint(1, 3)), creates_contact=True),
        ], True
    if kind in ("live", "live_to_callback"):
        presses = [language, Press("/voice/step/main", "3", creates_contact=True)]
        presses += [Press("/voice/queue", "") for _ in range(rng.randint(*HOLD_POLLS))]
        if kind == "live_to_callback":
            return [*presses, Press("/voice/queue", "*")], True
        return presses, False
    return [language, Press("/voice/step/main", "9")], False  # menu_only


# -- the callers' side ---------------------------------------------------------------------
class WireError(Exception):
    """An answer the callers' client cannot read (or none)."""


class Wire:
    """One keep-alive HTTP/1.1 connection for the callers: the request written in one
    ``send``, the answer read by its length (or its chunks). ``http.client`` parses headers
    with the ``email`` package, and the load generator shares the machine with the
    server it measures: each of its CPU microseconds is one the server does not get."""

    def __init__(self, port: int, timeout_s: float = TIMEOUT_S) -> None:
        self.port, self.timeout_s = port, timeout_s
        self._sock: socket.socket | None = None
        self._buffer = b""

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock, self._buffer = None, b""

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """The status and body of the answer. Raises OSError or :class:`WireError`, the
        connection closed, when the exchange fails."""
        if self._sock is None:
            self._sock = socket.create_connection(("127.0.0.1", self.port), self.timeout_s)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        request = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n{head}"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1") + body
        try:
            self._sock.sendall(request)
            return self._answer()
        except (OSError, WireError):
            self.close()
            raise

    def _answer(self) -> tuple[int, bytes]:
        end = self._fill(lambda data: data.find(b"\r\n\r\n"))
        head, self._buffer = self._buffer[:end], self._buffer[end + 4 :]
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise WireError(f"not an HTTP status line: {lines[0][:40]!r}")
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        status = int(parts[1])
        if status in (204, 304) or status < 200:  # no body, whatever the headers say
            body = b""
        elif "chunked" in fields.get("transfer-encoding", "").lower():
            body = self._chunks()
        elif "content-length" in fields:
            body = self._take(int(fields["content-length"]))
        else:  # HTTP/1.0 style: the body ends with the connection
            body = self._buffer + self._drain()
            self.close()
            return status, body
        if fields.get("connection", "").lower() == "close":
            self.close()
        return status, body

    def _take(self, size: int) -> bytes:
        self._fill(lambda data: size if len(data) >= size else -1)
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    def _chunks(self) -> bytes:
        parts: list[bytes] = []
        while True:
            end = self._fill(lambda data: data.find(b"\r\n"))
            line, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
            try:
                size = int(line.split(b";", 1)[0], 16)
            except ValueError:
                raise WireError("a malformed chunk size") from None
            if size == 0:
                end = self._fill(lambda data: data.find(b"\r\n"))  # no trailers are sent
                self._buffer = self._buffer[end + 2 :]
                return b"".join(parts)
            parts.append(self._take(size))
            self._take(2)  # the chunk's CRLF

    def _drain(self) -> bytes:
        assert self._sock is not None
        chunks = []
        while chunk := self._sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)

    def _fill(self, ready: Callable[[bytes], int]) -> int:
        """Read until ``ready`` finds what it wants in the buffer (an index ≥ 0)."""
        while (found := ready(self._buffer)) < 0:
            assert self._sock is not None
            chunk = self._sock.recv(65536)
            if not chunk:
                raise WireError("the server closed the connection")
            self._buffer += chunk
        return found


@dataclass
class Sample:
    due: float  # seconds from the start of the run
    kind: str
    ms: float
    error: str | None  # None, "transport", "http_4xx", "http_5xx", "unexpected_twiml"


@dataclass
class LoadResult:
    samples: list[Sample] = field(default_factory=list)
    late: list[float] = field(default_factory=list)  # due times of late requests
    cut: int = 0  # requests not sent: due after the end of the run
    calls_started: int = 0
    contacts: dict[str, float] = field(default_factory=dict)  # call sid → key press sent at
    start: float = 0.0  # perf_counter() at the run's time 0
    unexpected: list[str] = field(default_factory=list)  # a few answers the script did not expect


class Callers:
    """Sends the callers' webhooks: due times in a heap, a few client threads.

    Requests are signed as Twilio signs them (``X-Twilio-Signature`` over the public
    URL and the form); each thread keeps one connection open (keep-alive), as Twilio's
    edge does.
    """

    def __init__(
        self,
        port: int,
        *,
        public_base_url: str,
        auth_token: str,
        account_sid: str,
        clients: int = 16,
        think_s: float = THINK_S,
    ) -> None:
        self.port, self.clients, self.think_s = port, clients, think_s
        self.base = public_base_url.rstrip("/")
        self.validator = RequestValidator(auth_token)
        self.account_sid = account_sid
        self._heap: list[tuple[float, int, Caller]] = []  # (due, order, caller)
        self._cond = threading.Condition()
        self._count = 0
        self._busy = 0  # requests being sent: their callers come back to the heap
        self._end = 0.0

    def run(
        self,
        callers: list[tuple[float, Caller]],
        *,
        end_s: float,
    ) -> LoadResult:
        """Ring every caller at its start time (seconds from now); nothing is sent after
        ``end_s``. Returns every request's figures.

        One dispatcher thread sleeps until the next request is due and hands it to a free
        client thread (one wakes per request: no herd of threads polling the clock)."""
        start = time.perf_counter() + 0.2
        result = LoadResult(calls_started=len(callers), start=start)
        self._end = start + end_s
        with self._cond:
            for offset, caller in callers:
                self._push(start + offset, caller)
        lock = threading.Lock()
        ready: queue.SimpleQueue[tuple[float, Caller] | None] = queue.SimpleQueue()

        def work() -> None:
            connection = Wire(self.port)
            last_used = time.perf_counter()
            try:
                while (item := ready.get()) is not None:
                    due, caller = item
                    if due >= self._end:  # the run is over: this caller is cut off
                        with lock:
                            result.cut += 1
                        self._done(None, 0.0)
                        continue
                    if time.perf_counter() - last_used > IDLE_S:
                        connection.close()  # the server may be closing it: start afresh
                    connection = self._send(connection, due, start, caller, result, lock)
                    last_used = time.perf_counter()
            finally:
                connection.close()

        pool = [threading.Thread(target=work, daemon=True) for _ in range(self.clients)]
        for thread in pool:
            thread.start()
        while (item := self._next()) is not None:
            ready.put(item)
        for _ in pool:
            ready.put(None)
        for thread in pool:
            thread.join()
        return result

    def _push(self, due: float, caller: Caller) -> None:
        self._count += 1
        heapq.heappush(self._heap, (due, self._count, caller))
        self._cond.notify()

    def _next(self) -> tuple[float, Caller] | None:
        """The dispatcher's next request, at its due time (at once past the end of the
        run, to be cut off); None once no caller is left."""
        with self._cond:
            while True:
                if not self._heap:
                    if self._busy == 0:
                        return None
                    self._cond.wait()
                    continue
                due = self._heap[0][0]
                pause = due - time.perf_counter()
                if pause <= 0 or due >= self._end:
                    due, _, caller = heapq.heappop(self._heap)
                    self._busy += 1
                    return due, caller
                self._cond.wait(pause)

    def _done(self, caller: Caller | None, due: float) -> None:
        """A request answered: its caller's next one goes back in line."""
        with self._cond:
            self._busy -= 1
            if caller is not None:
                self._push(due, caller)
            else:
                self._cond.notify()

    def _send(
        self,
        connection: Wire,
        due: float,
        start: float,
        caller: Caller,
        result: LoadResult,
        lock: threading.Lock,
    ) -> Wire:
        path = caller.next_url
        form = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": caller.sid,
            "From": caller.number,
            "To": LINE,
            "Direction": "inbound",
        }
        ending = path == "/voice/status"
        press = None if ending or caller.done == 0 else caller.presses[caller.done - 1]
        if ending:
            form.update(
                CallStatus="completed",
                CallDuration=str(max(1, round(time.perf_counter() - caller.started))),
            )
        else:
            form["CallStatus"] = "in-progress" if caller.done else "ringing"
            if press is not None:
                form["Digits"] = press.digits
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": self.validator.compute_signature(self.base + path, form),
        }
        t0 = time.perf_counter()
        if caller.done == 0 and not ending:
            caller.started = t0
        status, body, error = 0, b"", None
        try:
            status, body = connection.post(path, urlencode(form).encode(), headers)
        except (OSError, WireError):
            error = "transport"
        elapsed_ms = (time.perf_counter() - t0) * 1000
        if error is None and status >= 500:
            error = "http_5xx"
        elif error is None and status >= 400:
            error = "http_4xx"
        follow: Caller | None = None
        if not ending:
            if error is None:
                error = self._advance(caller, body)
                if error is not None and len(result.unexpected) < 5:
                    with lock:
                        result.unexpected.append(_outline(path, caller, body))
            if error is not None:
                caller.next_url = "/voice/status"  # the caller gives up: the call ends
            follow = caller
        with lock:
            result.samples.append(Sample(due - start, route_kind(path), elapsed_ms, error))
            if t0 - due > LATE_S:
                result.late.append(due - start)
            if press is not None and press.creates_contact and error is None:
                result.contacts[caller.sid] = t0
        self._done(follow, max(due + self.think_s, time.perf_counter() + 0.001))
        return connection

    @staticmethod
    def _advance(caller: Caller, body: bytes) -> str | None:
        """Read the answer: where the caller's next key press goes, or the hang-up.
        Returns an error name when the answer is not what the script expects."""
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            return "unexpected_twiml"
        gather = root.find("Gather")
        action = gather.get("action") if gather is not None else None
        hung_up = root.find("Hangup") is not None
        if caller.done == len(caller.presses):  # the script's last press was answered
            if caller.ends_with_hangup and not hung_up:
                return "unexpected_twiml"
            caller.next_url = "/voice/status"
            return None
        expected = caller.presses[caller.done].step
        if action is None or action.split("?", 1)[0] != expected:
            return "unexpected_twiml"
        caller.next_url = action
        caller.done += 1
        return None


def _outline(path: str, caller: Caller, body: bytes) -> str:
    """An unexpected answer, for the report: the step, what was expected, the TwiML's
    verbs and action paths (no spoken text: it can name a case's status)."""
    expected = caller.presses[caller.done].step if caller.done < len(caller.presses) else "hangup"
    try:
        verbs = [
            f"{el.tag}:{el.get('action', '').split('?', 1)[0]}" for el in ET.fromstring(body).iter()
        ]
    except ET.ParseError:
        verbs = [f"unparsable ({len(body)} bytes)"]
    return f"{path.split('?', 1)[0]} expected {expected}, got {' '.join(verbs)}"


def plan_calls(
    rate: float,
    seconds: float,
    cases: list[tuple[str, date]],
    *,
    seed: int | None = None,
    mix: dict[str, float] | None = None,
) -> list[tuple[float, Caller]]:
    """Callers ringing at fixed times over ``seconds``, as many as make ``rate``
    webhook requests per second once the first calls are under way."""
    rng = random.Random(seed)
    shares = mix or MIX
    kinds = list(shares)
    weights = [shares[k] for k in kinds]
    scripted = [
        (kind, *_script(kind, rng, rng.choice(cases)))
        for kind in rng.choices(kinds, weights, k=max(1, int(rate * seconds)))
    ]
    # requests per call: incoming + one per press + the status callback
    per_call = sum(len(presses) + 2 for _, presses, _ in scripted) / len(scripted)
    gap = per_call / rate
    base = rng.randrange(10**7)
    callers = []
    for i, (kind, presses, hangs_up) in enumerate(scripted):
        at = i * gap
        if at >= seconds:
            break
        # 06 1x xx xx xx: all assigned mobile numbers. Some other 06 ranges are not
        # (06 39, 06 90-94...), and the IVR takes such a caller for a withheld number: a
        # run whose random base fell there failed hundreds of callbacks.
        number = f"+3361{(base + i) % 10**7:07d}"
        sid = "CA" + secrets.token_hex(16)
        callers.append((at, Caller(sid, number, kind, presses, hangs_up)))
    return callers


# -- figures ---------------------------------------------------------------------------------
def _percentile(ordered: list[float], share: float) -> float:
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 2)


def _latency(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    if not ordered:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "p50_ms": _percentile(ordered, 0.50),
        "p95_ms": _percentile(ordered, 0.95),
        "p99_ms": _percentile(ordered, 0.99),
        "max_ms": round(ordered[-1], 2),
    }


def figures(result: LoadResult, *, start_s: float, seconds: float) -> dict[str, Any]:
    """Throughput, latency and errors of the requests due in the measured window."""
    window = [s for s in result.samples if start_s <= s.due < start_s + seconds]
    by_kind: dict[str, Any] = {}
    for kind in KINDS:
        mine = [s for s in window if s.kind == kind]
        if mine:
            by_kind[kind] = {
                "requests": len(mine),
                "errors": sum(1 for s in mine if s.error),
                **_latency([s.ms for s in mine]),
            }
    errors: dict[str, int] = {}
    for s in window:
        if s.error:
            errors[s.error] = errors.get(s.error, 0) + 1
    return {
        "requests": len(window),
        "throughput_per_s": round(len(window) / seconds, 1),
        "errors": sum(errors.values()),
        "errors_by_type": errors,
        "late_starts": sum(1 for due in result.late if start_s <= due < start_s + seconds),
        **_latency([s.ms for s in window]),
        "by_kind": by_kind,
    }


# -- the agent screens, in a child process -----------------------------------------------------
def _sign_in(port: int, email: str, password: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/login")
        response = conn.getresponse()
        page = response.read().decode()
        cookie = response.getheader("Set-Cookie", "").split(";", 1)[0]
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        if token is None:
            raise RuntimeError("no CSRF token on /login")
        body = urlencode({"email": email, "password": password, "csrf_token": token.group(1)})
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}
        conn.request("POST", "/login", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    if response.status != 302:
        raise RuntimeError(f"load-test agent {email} could not sign in ({response.status})")
    return response.getheader("Set-Cookie", "").split(";", 1)[0]


def _screens_main(port: int, emails: list[str], pipe: Connection) -> None:
    """Child process: sign the agents in, hold their feeds open, note when each
    ``contact.created`` event arrives (``time.perf_counter``: CLOCK_MONOTONIC, the same
    clock in every process), and send the arrivals back when told to stop."""
    from ..web.bench import Screen

    seen: dict[int, list[float]] = {}
    lock = threading.Lock()
    try:
        cookies = [_sign_in(port, email, AGENT_PASSWORD) for email in emails]
        screens = [Screen(port, cookie, seen, lock) for cookie in cookies]
        for screen in screens:
            screen.start()
        for screen in screens:
            if not screen.ready.wait(timeout=60):
                raise RuntimeError("an agent screen did not connect")
    except Exception as exc:  # told to the parent, which stops the run
        pipe.send(("failed", repr(exc)))
        return
    pipe.send(("ready", len(screens)))
    pipe.recv()  # stop
    with lock:
        pipe.send(("seen", {k: list(v) for k, v in seen.items()}))


@contextmanager
def agent_screens(port: int, emails: list[str]) -> Iterator[Callable[[], dict[int, list[float]]]]:
    """Open the screens; yields a function that returns what they received so far."""
    if not emails:
        yield dict
        return
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_screens_main, args=(port, emails, child), daemon=True)
    process.start()
    try:
        if not parent.poll(120):
            raise RuntimeError("the agent screens did not open in time")
        status, detail = parent.recv()
        if status != "ready":
            raise RuntimeError(f"agent screens: {detail}")

        def collect() -> dict[int, list[float]]:
            parent.send("stop")
            _, seen = parent.recv()
            return dict(seen)

        yield collect
    finally:
        process.terminate()
        process.join(timeout=10)


# -- how fast the host itself ran ------------------------------------------------------------
PROBE_EVERY_S = 0.5
_PROBE_LOOP = 20_000  # about a millisecond of CPU


def _probe_work() -> float:
    """The CPU time (s) a fixed piece of pure-Python work takes: the same on a quiet
    host, more when a virtual machine's neighbours or the host's other load slow the
    CPU down (time spent waiting for the CPU is not counted: that is load, not speed)."""
    started, total = time.thread_time(), 0
    for i in range(_PROBE_LOOP):
        total += i * i % 7
    return time.thread_time() - started


class HostProbe:
    """Times :func:`_probe_work` every ``every_s`` during a run, in a thread of its own,
    so that a slow run can be told apart from a slow host."""

    def __init__(self, every_s: float = PROBE_EVERY_S) -> None:
        self.every_s = every_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HostProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.samples.append(_probe_work())


def host_figures(samples: list[float]) -> dict[str, Any]:
    """The probe's CPU time per piece of work (µs): its quickest, median, 90th centile
    and slowest, and the share of probes at least 25 % slower than the quickest."""
    if not samples:
        return {"probes": 0}
    ordered = sorted(t * 1e6 for t in samples)
    fastest = ordered[0]
    return {
        "probes": len(ordered),
        "work_us_min": round(fastest),
        "work_us_p50": round(_percentile(ordered, 0.50)),
        "work_us_p90": round(_percentile(ordered, 0.90)),
        "work_us_max": round(ordered[-1]),
        "slow_share": round(sum(1 for t in ordered if t >= 1.25 * fastest) / len(ordered), 3),
    }


def feed_figures(
    seen: dict[int, list[float]], sent_at: dict[int, float], screens: int
) -> dict[str, Any]:
    """Latency from the key press that created a contact to each screen's event."""
    delays = [
        (arrival - sent) * 1000
        for contact_id, sent in sent_at.items()
        for arrival in seen.get(contact_id, [])
    ]
    delivered = len(delays)
    ordered = sorted(delays)
    return {
        "screens": screens,
        "contacts": len(sent_at),
        "events_delivered": delivered,
        "events_missed": len(sent_at) * screens - delivered,
        "p50_ms": _percentile(ordered, 0.5) if ordered else None,
        "p99_ms": _percentile(ordered, 0.99) if ordered else None,
        "max_ms": round(ordered[-1], 2) if ordered else None,
    }


# -- the Procfile's processes ------------------------------------------------------------------
_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def procfile_command(name: str, env: dict[str, str], procfile: Path | None = None) -> list[str]:
    """The Procfile's ``name`` line as a command, ``${VAR:-default}`` taken from ``env``;
    its program from this interpreter's environment (the venv)."""
    path = procfile or Path(__file__).resolve().parents[2] / "Procfile"
    for line in path.read_text().splitlines():
        label, _, command = line.partition(":")
        if label.strip() == name:
            expanded = _VAR.sub(lambda m: env.get(m.group(1)) or m.group(2) or "", command)
            words = shlex.split(expanded)
            words[0] = str(Path(sys.executable).parent / words[0])
            return words
    raise RuntimeError(f"no {name!r} process in {path}")


def _option(words: list[str], name: str) -> str:
    return words[words.index(name) + 1] if name in words else ""


def process_cpu_s(roots: list[int]) -> dict[int, float]:
    """CPU seconds (user + system) used so far by each of these processes and their
    children (gunicorn's workers), from ``/proc``; empty where there is no ``/proc``."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}  # pid → (parent pid, cpu seconds)
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        stats[int(entry.parent.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    totals = {}
    for root in roots:
        family, todo = {root}, [root]
        while todo:
            parent = todo.pop()
            children = [pid for pid, (ppid, _) in stats.items() if ppid == parent]
            family.update(children)
            todo.extend(children)
        totals[root] = sum(stats[pid][1] for pid in family if pid in stats)
    return totals


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def procfile_stack(
    rt: Runtime,
    env_extra: dict[str, str],
    *,
    processes: tuple[str, ...] = ("web", "worker"),
    environ: Mapping[str, str] | None = None,
) -> Iterator[tuple[int, list[str], Callable[[], dict[str, float]]]]:
    """The Procfile's ``web`` and ``worker`` (or only those of ``processes``) on the
    configured Redis and database, in ``environ`` (default: this process's) plus
    ``env_extra``; their logs go to ``loadtest.log`` in the instance folder (the access
    log is written, as in production, and not kept). Also yields a function giving the
    CPU seconds the web (master and workers) and the worker have used so far."""
    port = int(env_extra.get("PORT") or _free_port())
    env = dict(os.environ if environ is None else environ)
    env.update(
        REDIS_URL=rt.redis_url,
        DATABASE_URL=rt.database_url,
        SECRET_KEY=rt.settings.secret_key,
        PUBLIC_BASE_URL=rt.settings.public_base_url,
        BIRTHDATE_HASH_KEY=rt.settings.birthdate_key,
        HOST="127.0.0.1",
        PORT=str(port),
    )
    env.update(env_extra)
    if processes[:1] != ("web",):
        raise ValueError("the web process comes first: its port is the one waited for")
    web = procfile_command("web", env)
    rt.settings.instance_path.mkdir(parents=True, exist_ok=True)
    log = (rt.settings.instance_path / "loadtest.log").open("ab")
    quiet = subprocess.DEVNULL
    # each in a process group of its own: a gunicorn master killed alone would leave its
    # worker serving until the end of its graceful timeout
    procs = {
        name: subprocess.Popen(
            procfile_command(name, env),
            env=env,
            stdout=quiet,
            stderr=log,
            start_new_session=True,
        )
        for name in processes
    }
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline or procs["web"].poll() is not None:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.1)

        def cpu() -> dict[str, float]:
            used = process_cpu_s([proc.pid for proc in procs.values()])
            return {name: used.get(proc.pid, 0.0) for name, proc in procs.items()}

        yield port, web, cpu
    finally:
        for proc in procs.values():
            proc.terminate()
        # the web's feed threads notice closed screens only when they next write
        for name, proc in procs.items():
            grace = 5 if name == "web" else 30
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()


# -- the whole run ---------------------------------------------------------------------------
def prepare(rt: Runtime, screens: int, cases: int = 40) -> tuple[list[tuple[str, date]], list[str]]:
    """The load test's site, demo cases and agents (idempotent)."""
    from .. import db

    db.upgrade(rt.database_url)
    site = ensure_site(rt.sessions, SITE, "Charge", phone_numbers=[LINE], always_open=True)
    # statuses that changed lately: the retention job purges older cases' birth dates
    recent = datetime.now(UTC) - timedelta(days=1)
    records = [
        replace(record, status_changed_at=recent - timedelta(days=i % 30))
        for i, record in enumerate(demo_records(cases, seed=20260))
    ]
    import_records(rt.sessions, records, rt.settings.birthdate_key, ImportReport())
    emails = [f"load-agent-{i:03d}@interphone.local" for i in range(screens)]
    with rt.sessions() as s:
        known = set(s.scalars(select(Agent.email).where(Agent.email.in_(emails))))
    for email in emails:
        if email not in known:
            add_user(rt.sessions, email, AGENT_PASSWORD, site_code=site.code)
    return [(r.file_number, r.birth_date) for r in records], emails


def _contacts_of(rt: Runtime, sids: list[str]) -> dict[str, tuple[int, str]]:
    """The contacts these calls created: call sid → (contact id, state)."""
    found: dict[str, tuple[int, str]] = {}
    with rt.sessions() as s:
        for first in range(0, len(sids), 500):
            query = select(Contact.call_sid, Contact.id, Contact.state).where(
                Contact.call_sid.in_(sids[first : first + 500])
            )
            found.update({str(sid): (int(cid), str(state)) for sid, cid, state in s.execute(query)})
    return found


def _tidy(rt: Runtime, contact_ids: list[int]) -> int:
    """Cancel what the run left waiting (callbacks nobody will make, callers cut off at
    the end), so that runs do not pile up in the load test's queue."""
    return sum(rt.queue.cancel(cid, "load test over", actor="bench") for cid in contact_ids)


def run(
    rt: Runtime,
    *,
    rate: float,
    seconds: float,
    warmup: float,
    screens: int,
    clients: int,
    seed: int | None = None,
) -> dict[str, Any]:
    from .. import db

    cases, emails = prepare(rt, screens)
    # a server without autovacuum (this project's machines) is first tidied as autovacuum
    # keeps a production one: dead rows of earlier runs, statistics of grown tables
    upkeep = db.vacuum_if_unattended(rt.database_url)
    callers = plan_calls(rate, warmup + seconds, cases, seed=seed)
    stack = procfile_stack(rt, {})  # WEB_CONCURRENCY, WEB_THREADS: as for the Procfile
    with stack as (port, web, server_cpu), agent_screens(port, emails) as collect:
        load = Callers(
            port,
            public_base_url=rt.settings.public_base_url,
            auth_token=rt.settings.twilio_auth_token or "",
            account_sid=rt.settings.twilio_account_sid or "",
            clients=clients,
        )
        started, cpu, server_before = time.perf_counter(), time.process_time(), server_cpu()
        with HostProbe() as probe:
            result = load.run(callers, end_s=warmup + seconds)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        server_used = {k: v - server_before.get(k, 0.0) for k, v in server_cpu().items()}
        time.sleep(1.0)  # the last events reach the screens
        seen = collect()
    in_window = {
        sid: sent
        for sid, sent in result.contacts.items()
        if warmup <= sent - result.start < warmup + seconds
    }
    contacts = _contacts_of(rt, [caller.sid for _, caller in callers])
    sent_at = {contacts[sid][0]: sent for sid, sent in in_window.items() if sid in contacts}
    tidied = _tidy(rt, [cid for cid, state in contacts.values() if state == "waiting"])
    out = {
        "rate_per_s": rate,
        "seconds": seconds,
        "warmup_s": warmup,
        "wall_s": round(wall, 1),
        "server": {
            "procfile_web": " ".join(Path(web[0]).name if i == 0 else w for i, w in enumerate(web)),
            "workers": int(_option(web, "--workers") or 1),
            "threads": int(_option(web, "--threads") or 1),
            "rq_worker": True,
            # CPU the processes used during the run (the web also serves the feeds)
            "cpu_percent": {k: round(100 * v / wall, 1) for k, v in server_used.items()},
            "web_cpu_us_per_request": round(1e6 * server_used["web"] / max(1, len(result.samples))),
            "database": rt.database_url.split(":", 1)[0],
            "database_upkeep": upkeep,
        },
        "client_threads": clients,
        "client_cpu_percent": round(100 * cpu / wall, 1),  # the callers' side (not the screens)
        "calls": result.calls_started,
        "mix": MIX,
        "webhooks": figures(result, start_s=warmup, seconds=seconds),
        "unexpected_answers": result.unexpected,
        "feed": feed_figures(seen, sent_at, screens),
        # the host's own speed during the run: a VM slowed by its neighbours shows here
        "host": host_figures(probe.samples),
        "contacts_left_waiting_cancelled": tidied,
    }
    return out
