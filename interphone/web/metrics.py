"""``GET /metrics`` (Prometheus text format) and the per-request bookkeeping behind it:
latency by route, a request id, and the log context of each request.

Figures recorded by any process live in Redis (:mod:`interphone.metrics`); the queue's
figures (waiting contacts, oldest wait, RQ workers) and the contacts and calls by outcome
(SQL) are read at scrape time. Every web process answers the same figures.

Access: with ``METRICS_TOKEN`` set, a request must carry ``Authorization: Bearer
<token>``; without it, only direct loopback requests (no ``X-Forwarded-For`` or
``Forwarded`` header: a reverse proxy on the same host adds one) are answered.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import secrets
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, g, request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from sqlalchemy import func, select

from ..digits import row_id
from ..metrics import SPECS, Recorder, Sample, le_label, recorder_for
from ..metrics import read as read_samples
from ..models import Call, Contact, Site
from ..observability import bind, unbind
from ..queue.store import NORMAL_BASE, URGENT
from ..runtime import Runtime
from ..voice import deferred as deferred_records
from .context import runtime_of

log = logging.getLogger(__name__)
bp = Blueprint("metrics", __name__)

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_SID = re.compile(r"[A-Z]{2}[0-9a-f]{32}")
_PREFIX = "interphone_"


def init_app(app: Flask, runtime: Runtime) -> None:
    app.extensions["interphone_metrics"] = recorder_for(runtime.redis)
    app.before_request(_begin)
    app.after_request(_end)
    app.teardown_request(_forget)
    app.register_blueprint(bp)


def _route() -> str:
    rule = request.url_rule
    return rule.rule if rule is not None else "unmatched"


def _begin() -> None:
    g.started = time.perf_counter()
    rid = request.headers.get("X-Request-ID", "")
    g.request_id = rid if _REQUEST_ID.fullmatch(rid) else secrets.token_hex(8)
    context: dict[str, Any] = {"request_id": g.request_id, "route": _route()}
    if request.blueprint == "voice" and request.method == "POST":
        sid = request.form.get("CallSid", "")  # parsed once: the view reads the same form
        if _SID.fullmatch(sid):
            context["call_sid"] = sid
        contact = row_id(request.args.get("c", ""))
        if contact is not None:
            context["contact_id"] = contact
    g.log_token = bind(**context)


def _end(response: Response) -> Response:
    started = g.get("started")
    recorder: Recorder = current_app.extensions["interphone_metrics"]
    route = _route()
    if started is not None:
        recorder.observe(
            "interphone_http_request_duration_seconds", time.perf_counter() - started, route
        )
    recorder.inc("interphone_http_responses", route, str(response.status_code))
    if "request_id" in g:
        response.headers["X-Request-ID"] = g.request_id
    return response


def _forget(exc: BaseException | None) -> None:
    token = g.pop("log_token", None)
    if token is not None:
        unbind(token)


def _allowed() -> bool:
    token = runtime_of(current_app).settings.metrics_token
    if token:
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
    if "X-Forwarded-For" in request.headers or "Forwarded" in request.headers:
        return False
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


@bp.get("/metrics")
def metrics() -> Response:
    if not _allowed():
        abort(403, description="metrics are served to loopback or with METRICS_TOKEN")
    rt = runtime_of(current_app)
    recorder: Recorder = current_app.extensions["interphone_metrics"]
    recorder.flush()  # this process's latest observations are in the figures
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(rt))
    return Response(generate_latest(registry), mimetype="text/plain; version=0.0.4")


class _Collector:
    """Builds the metric families at scrape time."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    def collect(self) -> Iterator[Metric]:
        yield from self._recorded()
        failed = GaugeMetricFamily(
            _PREFIX + "scrape_failed", "A part of the figures could not be read", labels=["part"]
        )
        for part, collect in (
            ("queue", self._queue),
            ("database", self._database),
            ("workers", self._workers),
        ):
            try:
                yield from collect()
                failed.add_metric([part], 0)
            except Exception as exc:  # a scrape reports what it can, never a 500
                log.warning("metrics: %s figures unavailable (%s)", part, type(exc).__name__)
                failed.add_metric([part], 1)
        yield failed

    def _recorded(self) -> Iterator[Metric]:
        try:
            samples = read_samples(self.rt.redis)
        except Exception as exc:
            log.warning("metrics: recorded figures unavailable (%s)", type(exc).__name__)
            return
        by_name: dict[str, list[Sample]] = {}
        for sample in samples:
            base = sample.name
            for suffix in ("_total", "_bucket", "_sum", "_count"):
                if base.endswith(suffix):
                    base = base[: -len(suffix)]
                    break
            by_name.setdefault(base, []).append(sample)
        for name, spec in SPECS.items():
            found = by_name.get(name, [])
            if spec.kind == "counter":
                counter = CounterMetricFamily(name, spec.help, labels=list(spec.labels))
                for s in found:
                    counter.add_metric([s.labels.get(k, "") for k in spec.labels], s.value)
                yield counter
                continue
            histogram = HistogramMetricFamily(name, spec.help, labels=list(spec.labels))
            series: dict[tuple[str, ...], dict[str, Any]] = {}
            for s in found:
                key = tuple(s.labels.get(k, "") for k in spec.labels)
                entry = series.setdefault(key, {"buckets": {}, "sum": 0.0})
                if s.name.endswith("_bucket"):
                    entry["buckets"][s.labels["le"]] = s.value
                elif s.name.endswith("_sum"):
                    entry["sum"] = s.value
            for key, entry in sorted(series.items()):
                bounds = [le_label(b) for b in (*spec.buckets, float("inf"))]
                buckets = [(le, entry["buckets"].get(le, 0.0)) for le in bounds]
                histogram.add_metric(list(key), buckets, entry["sum"])
            yield histogram

    def _queue(self) -> Iterator[Metric]:
        rt = self.rt
        now_ms = int(rt.clock.now() * 1000)
        waiting = GaugeMetricFamily(
            _PREFIX + "queue_waiting", "Contacts ready to be dispatched, by site", labels=["site"]
        )
        delayed = GaugeMetricFamily(
            _PREFIX + "queue_delayed",
            "Callbacks waiting for their retry time, by site",
            labels=["site"],
        )
        oldest = GaugeMetricFamily(
            _PREFIX + "queue_oldest_wait_seconds",
            "Wait of the longest-waiting ready contact, by site (0 when none)",
            labels=["site"],
        )
        staffed = GaugeMetricFamily(
            _PREFIX + "agents_staffed",
            "Agents signed in and not paused, by site",
            labels=["site"],
        )
        prefix = rt.store.prefix
        for site in rt.store.sites():
            key = f"{prefix}site:{site}:waiting"
            pipe = rt.redis.pipeline(transaction=False)
            pipe.zcard(key)
            pipe.zcard(f"{prefix}site:{site}:delayed")
            for cls in (URGENT, URGENT + 1):  # the oldest of each class heads its range
                low = cls * NORMAL_BASE
                pipe.zrangebyscore(key, low, low + NORMAL_BASE - 1, start=0, num=1, withscores=True)
            count, held, *heads = pipe.execute()
            arrivals = [int(score) % NORMAL_BASE for head in heads for _, score in head]
            waiting.add_metric([site], count)
            delayed.add_metric([site], held)
            oldest.add_metric([site], max(0.0, (now_ms - min(arrivals)) / 1000) if arrivals else 0)
            staffed.add_metric([site], rt.store.staffed_count(site))
        yield from (waiting, delayed, oldest, staffed)
        journal = GaugeMetricFamily(
            _PREFIX + "journal_records",
            "Call records waiting to be written to SQL, and set aside",
            labels=["list"],
        )
        journal.add_metric(["pending"], rt.journal.pending())
        journal.add_metric(["rejected"], rt.journal.rejected())
        yield journal
        deferred = GaugeMetricFamily(
            _PREFIX + "deferred_records",
            "Callback requests and hang-ups taken while the database was down: waiting to be "
            "applied, and set aside for their own data",
            labels=["list"],
        )
        deferred.add_metric(["pending"], rt.redis.llen(deferred_records.KEY))
        deferred.add_metric(["rejected"], rt.redis.llen(deferred_records.REJECTED))
        yield deferred

    def _database(self) -> Iterator[Metric]:
        contacts = GaugeMetricFamily(
            _PREFIX + "contacts",
            "Contacts (live calls and callbacks) by site, kind and state (outcome once closed)",
            labels=["site", "kind", "state"],
        )
        calls = GaugeMetricFamily(
            _PREFIX + "calls",
            "Calls by direction and final Twilio status (in-progress while up)",
            labels=["direction", "status"],
        )
        with self.rt.sessions() as s:
            rows = s.execute(
                select(Site.code, Contact.kind, Contact.state, func.count())
                .join(Site, Site.id == Contact.site_id)
                .group_by(Site.code, Contact.kind, Contact.state)
            ).all()
            for site, kind, state, count in rows:
                contacts.add_metric([site, kind, state], count)
            for direction, status, count in s.execute(
                select(Call.direction, Call.status, func.count()).group_by(
                    Call.direction, Call.status
                )
            ).all():
                calls.add_metric([direction, status], count)
        yield from (contacts, calls)

    def _workers(self) -> Iterator[Metric]:
        from rq import Worker

        rq_queue = self.rt.rq_queue
        workers = GaugeMetricFamily(
            _PREFIX + "rq_workers", "RQ workers alive on the interphone queue"
        )
        workers.add_metric([], len(Worker.all(queue=rq_queue)))
        jobs = GaugeMetricFamily(_PREFIX + "rq_queued_jobs", "Jobs waiting in the RQ queue")
        jobs.add_metric([], rq_queue.count)
        yield from (workers, jobs)
