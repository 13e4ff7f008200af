"""``interphone bench ivr``: IVR webhook latency under load, beside the framework's floor.

Starts gunicorn on a free local port (same Redis and database as configured), then sends
signed Twilio webhooks at a fixed rate (open loop: requests are due at fixed times, so a
slow server cannot slow the load down) for whole status-lookup calls, and in the same
run the same rate of ``GET /ping``, a route that does nothing.
"""

from __future__ import annotations

import http.client
import secrets
import statistics
import threading
import time
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

from interphone.cases import CaseRecord, ImportReport, import_records
from interphone.runtime import Runtime
from interphone.sites import ensure_site

from ..harness import gunicorn, percentile

BENCH_FILE, BENCH_BORN = "6399000001", date(1980, 6, 15)


Request = tuple[str, str, str, dict[str, str]]  # method, path, body, headers


class Load:
    """Requests due at fixed times (open loop), sent by whichever client thread is free.

    A slow server cannot slow the load down: a request starts at its due time unless every
    client thread is busy, which is counted (``late_starts``, more than 50 ms after due).
    Requests are built (and signed) beforehand, so the client does the same little work
    for every route, and few client threads are used: the measuring instrument must not
    fight the server for the CPU.
    """

    def __init__(self, port: int, clients: int) -> None:
        self.port, self.clients = port, clients
        self._lock = threading.Lock()
        # kept from one run to the next: the warm-up opens them, so that the measured
        # run's first requests do not pay for opening a connection
        self._connections = [
            http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(clients)
        ]

    def close(self) -> None:
        for connection in self._connections:
            connection.close()

    def run(self, schedule: list[tuple[float, str, Request]]) -> dict[str, dict[str, Any]]:
        """Send ``(due seconds, label, request)``; figures per label."""
        latencies: dict[str, list[tuple[str, float]]] = {}
        errors: dict[str, int] = {}
        late: dict[str, int] = {}
        counter = iter(schedule)
        start = time.perf_counter() + 0.2

        def worker(connection: http.client.HTTPConnection) -> None:
            while True:
                with self._lock:
                    item = next(counter, None)
                if item is None:
                    break
                offset, label, (method, path, body, headers) = item
                due = start + offset
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                t0 = time.perf_counter()
                try:
                    connection.request(method, path, body=body, headers=headers)
                    response = connection.getresponse()
                    response.read()
                    ok = response.status < 400
                    if response.getheader("Connection", "").lower() == "close":
                        connection.close()
                except (OSError, http.client.HTTPException):
                    ok = False
                    connection.close()
                elapsed = (time.perf_counter() - t0) * 1000
                with self._lock:
                    latencies.setdefault(label, []).append((path.split("?")[0], elapsed))
                    errors[label] = errors.get(label, 0) + (0 if ok else 1)
                    late[label] = late.get(label, 0) + (1 if t0 - due > 0.05 else 0)

        pool = [threading.Thread(target=worker, args=(c,)) for c in self._connections]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        return {
            label: _figures(samples, errors[label], late[label])
            for label, samples in latencies.items()
        }


def _figures(samples: list[tuple[str, float]], errors: int, late: int) -> dict[str, Any]:
    ordered = sorted(ms for _, ms in samples)
    routes: dict[str, list[float]] = {}
    for route, ms in samples:
        routes.setdefault(route, []).append(ms)
    out: dict[str, Any] = {
        "requests": len(ordered),
        "errors": errors,
        "late_starts": late,
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": _percentile_ms(ordered, 0.99),
    }
    if len(routes) > 1:
        out["by_route"] = {
            route: {
                "p50_ms": _percentile_ms(sorted(v), 0.5),
                "p99_ms": _percentile_ms(sorted(v), 0.99),
            }
            for route, v in sorted(routes.items())
        }
    return out


def interleave(
    loads: dict[str, list[Request]], rate: float, block_s: float = 1.0
) -> list[tuple[float, str, Request]]:
    """The loads take turns, ``block_s`` seconds each at ``rate``: compared routes meet
    the same machine (a noisy neighbour hits both, not just the one measured second)."""
    per_block = max(1, int(rate * block_s))
    longest = max(len(requests) for requests in loads.values())
    schedule: list[tuple[float, str, Request]] = []
    t = 0.0
    for first in range(0, longest, per_block):
        for label, requests in loads.items():
            block = requests[first : first + per_block]
            schedule.extend((t + j / rate, label, request) for j, request in enumerate(block))
            t += block_s
    return schedule


def _percentile_ms(ordered: list[float], share: float) -> float:
    return round(percentile(ordered, share), 2)


def _ivr_requests(rt: Runtime, rate: float, seconds: float) -> list[Request]:
    """Each simulated call: incoming, English, status, file number, birth date, goodbye.

    As on a real line, calls overlap and each caller presses a key about once a second:
    a new call starts every ``6 / rate`` seconds and its step ``j`` is due ``j`` seconds
    after its start; the requests are sent in that order, at the fixed rate, so every
    second mixes all the steps.
    """
    validator = RequestValidator(rt.settings.twilio_auth_token or "")
    base = rt.settings.public_base_url
    steps = [
        ("/voice/incoming", ""),
        ("/voice/step/language?n=1", "2"),
        ("/voice/step/main?n=2", "1"),
        ("/voice/step/status_file?n=3", BENCH_FILE),
        ("/voice/step/status_birth?n=4", BENCH_BORN.strftime("%d%m%Y")),
        ("/voice/step/status_after?n=5", "0"),
    ]
    n_calls = max(1, int(rate * seconds) // len(steps))
    gap = len(steps) / rate
    order = sorted(
        (call * gap + step, call, step) for call in range(n_calls) for step in range(len(steps))
    )
    sids = ["CA" + secrets.token_hex(16) for _ in range(n_calls)]

    def make(call: int, step: int) -> Request:
        sid = sids[call]
        path, digits = steps[step]
        form = {
            "CallSid": sid,
            "From": f"+336{call % 10**8:08d}",
            "To": "+33473000000",
            "CallStatus": "in-progress",
            "AccountSid": rt.settings.twilio_account_sid or "",
        }
        if digits:
            form["Digits"] = digits
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": validator.compute_signature(base + path, form),
        }
        return "POST", path, urlencode(form), headers

    return [make(call, step) for _, call, step in order]


def run(
    rt: Runtime,
    *,
    rate: float,
    seconds: float,
    workers: int,
    server_threads: int,
    clients: int,
) -> dict[str, Any]:
    """The IVR's load and the floor's, taking turns second by second on one server
    configured as the Procfile's ``web`` process (gunicorn gthread)."""
    from interphone import db

    db.upgrade(rt.database_url)
    ensure_site(
        rt.sessions, rt.settings.default_site, phone_numbers=["+33473000000"], always_open=True
    )
    import_records(
        rt.sessions,
        [CaseRecord(BENCH_FILE, BENCH_BORN, "under_review", datetime(2026, 1, 1, tzinfo=UTC))],
        rt.settings.birthdate_key,
        ImportReport(),
    )
    total = int(rate * seconds)
    with gunicorn(rt, workers, server_threads) as port:
        load = Load(port, clients)
        warm_up = interleave({"warm-up": _ivr_requests(rt, rate, 2)}, rate)
        measured = interleave(
            {"ivr": _ivr_requests(rt, rate, seconds), "floor": [("GET", "/ping", "", {})] * total},
            rate,
        )
        try:  # back to back: gunicorn closes a connection left idle for 2 s
            load.run(warm_up)
            figures = load.run(measured)
        finally:
            load.close()
    ivr, floor = figures["ivr"], figures["floor"]
    return {
        "rate_per_s": rate,
        "seconds": seconds,
        "gunicorn": {"workers": workers, "threads": server_threads},
        "client_threads": clients,
        "ivr": ivr,
        "floor": floor,
        "p99_ratio": round(ivr["p99_ms"] / floor["p99_ms"], 2) if floor["p99_ms"] else None,
    }
