"""The load test's figures: webhook latency by kind, the feed's delays, the host's speed."""

from __future__ import annotations

import threading
import time
from typing import Any

from ..harness import percentile
from .callers import KINDS, LoadResult


def _percentile(ordered: list[float], share: float) -> float:
    return round(percentile(ordered, share), 2)


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
