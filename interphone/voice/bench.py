"""``interphone bench ivr``: IVR webhook latency under load, beside the framework's floor.

Starts gunicorn on a free local port (same Redis and database as configured), then sends
signed Twilio webhooks at a fixed rate (open loop: requests are due at fixed times, so a
slow server cannot slow the load down) for whole status-lookup calls, and in the same
run the same rate of ``GET /ping``, a route that does nothing.
"""

from __future__ import annotations

import http.client
import os
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

from ..cases import CaseRecord, ImportReport, import_records
from ..runtime import Runtime
from ..sites import ensure_site

BENCH_FILE, BENCH_BORN = "6399000001", date(1980, 6, 15)
STEPS_PER_CALL = 6


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def gunicorn(rt: Runtime, workers: int, threads: int = 1) -> Iterator[int]:
    port = _free_port()
    env = dict(os.environ)
    env.update(
        REDIS_URL=rt.redis_url,
        DATABASE_URL=rt.database_url,
        SECRET_KEY=rt.settings.secret_key,
        PUBLIC_BASE_URL=rt.settings.public_base_url,
        INTERPHONE_ENV="test",  # no sweep scheduling from the benchmark's server
    )
    bindir = Path(sys.executable).parent
    proc = subprocess.Popen(
        [
            str(bindir / "gunicorn"),
            "-w",
            str(workers),
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "--worker-class",
            "gthread" if threads > 1 else "sync",
            "--threads",
            str(threads),
            "--graceful-timeout",
            "2",
            "interphone.web:create_app()",
        ],
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class Load:
    """Requests due at a fixed rate, sent by a pool of threads."""

    def __init__(self, port: int, rate: float, seconds: float, threads: int) -> None:
        self.port, self.rate, self.seconds, self.threads = port, rate, seconds, threads
        self.latencies: list[float] = []
        self.errors = 0
        self.late = 0
        self._lock = threading.Lock()

    def run(self, make_request: Any, per_call: int = 1) -> dict[str, Any]:
        """Send requests due at ``rate`` per second. The ``per_call`` requests of one call
        go one after the other on one thread, as Twilio sends a call's webhooks."""
        total = int(self.rate * self.seconds)
        counter = iter(range(0, total, per_call))
        start = time.perf_counter() + 0.2

        def worker() -> None:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            while True:
                with self._lock:
                    first = next(counter, None)
                if first is None:
                    break
                for index in range(first, min(first + per_call, total)):
                    due = start + index / self.rate
                    pause = due - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)
                    method, path, body, headers = make_request(index)
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
                        self.latencies.append(elapsed)
                        self.errors += 0 if ok else 1
                        self.late += 1 if t0 - due > 0.05 else 0

        pool = [threading.Thread(target=worker) for _ in range(self.threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        wall = time.perf_counter() - start
        ordered = sorted(self.latencies)
        return {
            "requests": len(ordered),
            "errors": self.errors,
            "late_starts": self.late,
            "throughput_per_s": round(len(ordered) / wall, 1),
            "p50_ms": round(statistics.median(ordered), 2),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2),
        }


def _ivr_requests(rt: Runtime) -> Any:
    """Each simulated call: incoming, English, status, file number, birth date, goodbye."""
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
    sids: dict[int, str] = {}

    def make(index: int) -> tuple[str, str, str, dict[str, str]]:
        call, step = divmod(index, len(steps))
        sid = sids.setdefault(call, "CA" + secrets.token_hex(16))
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

    return make


def run(rt: Runtime, *, rate: float, seconds: float, workers: int, threads: int) -> dict[str, Any]:
    from .. import db

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
    with gunicorn(rt, workers) as port:
        Load(port, rate, 1, threads).run(_ivr_requests(rt), STEPS_PER_CALL)  # warm-up
        ivr = Load(port, rate, seconds, threads).run(_ivr_requests(rt), STEPS_PER_CALL)
        floor = Load(port, rate, seconds, threads).run(lambda i: ("GET", "/ping", "", {}))
    return {
        "rate_per_s": rate,
        "seconds": seconds,
        "gunicorn_workers": workers,
        "ivr": ivr,
        "floor": floor,
        "p99_ratio": round(ivr["p99_ms"] / floor["p99_ms"], 2) if floor["p99_ms"] else None,
    }
