"""The simulated callers: their calls planned at fixed times (a Monday morning's mix),
and the client threads that send their webhooks as Twilio would, following the TwiML."""

from __future__ import annotations

import heapq
import queue
import random
import secrets
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import date
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

from .client import KeepAliveClient, UnreadableAnswer

SITE = "charge"  # the load test's own site (its queue, its screens' feed)
LINE = "+33473009999"  # the number it answers
THINK_S = 1.0  # a caller presses a key about once a second
LATE_S = 0.05  # a request sent this much after its due time counts as late
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
            connection = KeepAliveClient(self.port)
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
        connection: KeepAliveClient,
        due: float,
        start: float,
        caller: Caller,
        result: LoadResult,
        lock: threading.Lock,
    ) -> KeepAliveClient:
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
        except (OSError, UnreadableAnswer):
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
        # (06 39, 06 90-94...), and the IVR takes such a caller for a withheld number,
        # whose callback request it refuses.
        number = f"+3361{(base + i) % 10**7:07d}"
        sid = "CA" + secrets.token_hex(16)
        callers.append((at, Caller(sid, number, kind, presses, hangs_up)))
    return callers
