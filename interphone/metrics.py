"""Prometheus figures of the whole deployment, kept in Redis.

Why Redis and not prometheus_client's multiprocess mode: the web runs as several
gunicorn processes, possibly on several machines, and dispatch latency is measured in
the RQ workers and the recognizer's speed in the speech server. Each process adds its
observations to one Redis hash (``ip:metrics``), so any web process answers
``GET /metrics`` with the same deployment-wide figures, counters survive restarts, and
no directory of per-process files has to be cleaned up.

Observations are buffered in the process and written in one pipelined ``HINCRBYFLOAT``
batch by a background thread every ``flush_every_s`` (and at each scrape): a request
pays a dict update, never a round trip. A process killed between two flushes loses at most that
second of observations. Metrics never fail the work they measure: Redis errors are
logged and the buffer dropped.

Histograms are stored cumulatively (one field per ``le`` bucket), as Prometheus
exposes them. No Flask here: workers and the speech server record too.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import redis

log = logging.getLogger(__name__)

KEY = "ip:metrics"
SEP = "\x1f"


@dataclass(frozen=True)
class Spec:
    name: str
    help: str
    kind: str  # "counter" or "histogram"
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RTF_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)

SPECS = {
    spec.name: spec
    for spec in (
        Spec(
            "interphone_http_request_duration_seconds",
            "Time to answer a request, by route (Twilio webhooks: /voice/..., /sms/...)",
            "histogram",
            ("route",),
            LATENCY_BUCKETS,
        ),
        Spec(
            "interphone_http_responses",
            "Responses by route and status code",
            "counter",
            ("route", "code"),
        ),
        Spec(
            "interphone_dispatch_latency_seconds",
            "From a dispatch being asked (job queued) to its offers made, by site",
            "histogram",
            ("site",),
            LATENCY_BUCKETS,
        ),
        Spec("interphone_dispatch_offers", "Offers made to agents, by site", "counter", ("site",)),
        Spec(
            "interphone_speech_audio_seconds",
            "Audio heard by the speech recognizer (seconds)",
            "counter",
        ),
        Spec(
            "interphone_speech_cpu_seconds",
            "CPU spent on speech streams (seconds); real-time factor = cpu / audio",
            "counter",
        ),
        Spec(
            "interphone_speech_real_time_factor",
            "CPU time over audio time of each speech stream",
            "histogram",
            (),
            RTF_BUCKETS,
        ),
        Spec(
            "interphone_rate_limited",
            "Requests refused or answered politely by a rate limit, by limit (caller_*: one "
            "number; withheld_*: the withheld callers' shared allowance; file_failures: a "
            "file number's failed birth dates)",
            "counter",
            ("limit",),
        ),
        Spec(
            "interphone_journal_set_aside",
            "Call records set aside for their own data (they wait for `interphone journal "
            "replay`), by error type",
            "counter",
            ("error",),
        ),
        Spec(
            "interphone_birth_date_mismatches",
            "Birth dates that did not match the file number typed (or no such file), by "
            "where they were typed (status, door, callback)",
            "counter",
            ("step",),
        ),
        Spec(
            "interphone_file_numbers",
            "File numbers given with a request for an agent, by proof (verified: the birth "
            "date matched in the call; unverified: shown to the agent as not verified)",
            "counter",
            ("proof",),
        ),
        Spec(
            "interphone_live_feeds_capped",
            "Screens' live feeds ended by a cap, by cap (process: FEEDS_PER_PROCESS open, "
            "told to retry later; person: replaced by the same person's newer screen)",
            "counter",
            ("cap",),
        ),
        Spec(
            "interphone_retention_purged",
            "Records whose personal data the retention job removed, by table",
            "counter",
            ("table",),
        ),
    )
}


def _labels(spec: Spec, values: Iterable[str]) -> str:
    values = tuple(values)
    if len(values) != len(spec.labels):
        raise ValueError(f"{spec.name} takes labels {spec.labels}")
    return ",".join(
        f"{k}={str(v).replace(',', '_').replace('=', '_')}"
        for k, v in zip(spec.labels, values, strict=True)
    )


def le_label(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


@functools.lru_cache(maxsize=4096)
def _histogram_fields(
    name: str, labels: tuple[str, ...]
) -> tuple[tuple[tuple[float, str], ...], str, str]:
    """A histogram's field names for one set of labels, made once (every request
    observes its duration): its buckets with their bounds, its sum, its count."""
    spec = SPECS[name]
    base = _labels(spec, labels)
    buckets = tuple(
        (bound, f"{name}_bucket{SEP}{base}{SEP}{le_label(bound)}")
        for bound in (*spec.buckets, float("inf"))
    )
    return buckets, f"{name}_sum{SEP}{base}", f"{name}_count{SEP}{base}"


class Recorder:
    """Buffer observations in the process, flush them to Redis in batches."""

    def __init__(
        self,
        connection: redis.Redis,
        *,
        flush_every_s: float = 1.0,
    ) -> None:
        self.redis = connection
        self.flush_every_s = flush_every_s
        self._pending: dict[str, float] = {}
        self._lock = threading.Lock()
        self._flusher_pid: int | None = None  # a process idle after a burst still reports
        self._flusher: threading.Thread | None = None
        self._closing = threading.Event()

    def _ensure_flusher(self) -> None:
        """One background flush per process (started lazily: a forked gunicorn worker
        gets its own), so figures never wait in a process that receives no more work."""
        pid = os.getpid()
        if self._flusher_pid == pid:
            return
        self._flusher_pid = pid
        self._flusher = threading.Thread(target=self._flush_loop, name="metrics-flush", daemon=True)
        self._flusher.start()

    def _flush_loop(self) -> None:
        while not self._closing.wait(self.flush_every_s):
            if self._pending:
                try:
                    self.flush()
                except Exception:  # the flusher outlives any one failure
                    log.exception("metrics flush failed; the figures of this second dropped")

    def close(self) -> None:
        """Stop the flusher and write what is pending, before the Redis client closes: a
        flush racing the client's close failed inside redis-py (not a RedisError) and
        killed the thread, and a flusher left running reconnected a closed client."""
        self._closing.set()
        flusher = self._flusher
        if flusher is not None and flusher is not threading.current_thread():
            flusher.join(timeout=5)
        self.flush()

    def inc(self, name: str, *labels: str, amount: float = 1.0) -> None:
        spec = SPECS[name]
        self._add(f"{name}_total{SEP}{_labels(spec, labels)}", amount)
        self.maybe_flush()

    def observe(self, name: str, value: float, *labels: str) -> None:
        buckets, total, count = _histogram_fields(name, labels)
        with self._lock:
            pending = self._pending  # under the lock: flush() swaps it for a new one
            for bound, field in buckets:
                if value <= bound:
                    pending[field] = pending.get(field, 0.0) + 1
            pending[total] = pending.get(total, 0.0) + value
            pending[count] = pending.get(count, 0.0) + 1
        self.maybe_flush()

    def _add(self, field: str, amount: float) -> None:
        with self._lock:
            self._pending[field] = self._pending.get(field, 0.0) + amount

    def maybe_flush(self) -> None:
        """The buffer is written by the process's flusher thread, never by the caller: a
        request must not pay for the round trip carrying every figure of the process,
        which would land on some webhook about once a second (its tail latency)."""
        self._ensure_flusher()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            pipe = self.redis.pipeline(transaction=False)
            for field, amount in pending.items():
                pipe.hincrbyfloat(KEY, field, amount)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("metrics not recorded (%s): %d figures dropped", exc, len(pending))


@dataclass(frozen=True)
class Sample:
    name: str  # full sample name: …_total, …_bucket, …_sum, …_count
    labels: dict[str, str]
    value: float


def read(connection: redis.Redis) -> list[Sample]:
    """Every recorded sample, decoded from the Redis hash."""
    samples = []
    for raw_field, raw_value in connection.hgetall(KEY).items():
        field = raw_field.decode() if isinstance(raw_field, bytes) else str(raw_field)
        parts = field.split(SEP)
        labels = dict(pair.split("=", 1) for pair in parts[1].split(",") if pair) if parts else {}
        if len(parts) == 3:
            labels["le"] = parts[2]
        samples.append(Sample(parts[0], labels, float(raw_value)))
    return samples


_recorders: dict[int, Recorder] = {}
_recorders_lock = threading.Lock()


def recorder_for(connection: redis.Redis) -> Recorder:
    """One recorder per Redis client (per process and runtime)."""
    with _recorders_lock:
        rec = _recorders.get(id(connection))
        if rec is None or rec.redis is not connection:
            rec = _recorders[id(connection)] = Recorder(connection)
        return rec


def close_recorder(connection: redis.Redis) -> None:
    """Flush and stop the recorder of ``connection``, if it has one (its runtime closes)."""
    with _recorders_lock:
        rec = _recorders.get(id(connection))
        if rec is None or rec.redis is not connection:
            return
        del _recorders[id(connection)]
    rec.close()
