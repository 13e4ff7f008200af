"""The job hub: every function an RQ worker runs, the runtime they run with, and the sweep.

Jobs get their services from :func:`runtime` (one per worker process, built on first use
from the environment; tests set theirs with :func:`use_runtime`). The services queue jobs
through the runtime's :class:`~interphone.jobqueue.JobQueue`, which names the functions
below; arguments carry ids, never phone numbers (RQ logs them).

Dispatch is triggered by what changes the queue (a new contact, an agent becoming free,
an offer returned) and by a sweep every few seconds that expires offers and wrap-ups.
The sweep re-schedules itself through RQ's scheduler (``interphone worker`` runs one);
a heartbeat key lets the web process and the ``interphone worker`` process restart the
chain if it ever breaks (a worker killed in the middle of a sweep, or the worker holding
RQ's scheduler lock gone: the lock outlives it for a minute).

Jobs queued by an earlier release under other names still run: :data:`LEGACY_NAMES`,
read by the worker's job class.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from rq import Queue, get_current_job
from rq.exceptions import DuplicateJobError

from . import metrics, retention
from .db import unavailable
from .runtime import Runtime

__all__ = [
    "LEGACY_NAMES",
    "SWEEP_HEARTBEAT",
    "SWEEP_JOB_ID",
    "call_applicant",
    "connect",
    "dispatch_site",
    "ensure_sweep",
    "purge_retention",
    "runtime",
    "schedule_retention",
    "schedule_sweep",
    "send_contact_sms",
    "sweep",
    "transcribe_voicemail",
    "use_runtime",
]

log = logging.getLogger(__name__)

SWEEP_JOB_ID = "interphone-sweep"
SWEEP_HEARTBEAT = "ip:sweep:heartbeat"
_runtime: Runtime | None = None


def runtime() -> Runtime:
    """One runtime per worker process, built on first use from the environment."""
    global _runtime
    if _runtime is None:
        _runtime = Runtime()
    return _runtime


def use_runtime(rt: Runtime | None) -> None:
    """Make jobs of this process use ``rt`` (tests, simulations, in-process workers)."""
    global _runtime
    _runtime = rt


# -- the queue ------------------------------------------------------------------------------
def dispatch_site(site: str) -> int:
    rt = runtime()
    # what the IVR took while the database was down comes first: a live caller whose
    # hang-up waits there must not be offered to an agent before it is applied
    _apply_deferred(rt)
    offers = rt.queue.dispatch(site)
    _dispatch_figures(rt, site, len(offers))
    return len(offers)


def _dispatch_figures(rt: Runtime, site: str, offers: int) -> None:
    """Dispatch latency for ``GET /metrics``: from the job being queued (a contact
    arrived, an agent became free) to its offers made."""
    job = get_current_job()
    recorder = metrics.recorder_for(rt.redis)
    if job is not None and job.enqueued_at is not None:
        queued = job.enqueued_at.replace(tzinfo=job.enqueued_at.tzinfo or UTC)
        latency = (datetime.now(UTC) - queued).total_seconds()
        recorder.observe("interphone_dispatch_latency_seconds", max(0.0, latency), site)
    if offers:
        recorder.inc("interphone_dispatch_offers", site, amount=offers)
    recorder.flush()  # a worker may stay quiet for long: no figure waits in its memory


def sweep() -> dict[str, Any]:
    """The periodic housekeeping, in this order: the queue's expiries and
    reconciliation; the journal of call records; the requests the IVR took while the
    database was down; bridge legs that were never placed; the retention purge (queued
    at most once an hour). Each step runs even if an earlier one fails, and the next
    sweep is always scheduled. A queue step that found the database unreachable leaves
    the journal alone: its records wait in Redis for a sweep that finds the database back."""
    rt = runtime()
    database_down = False
    try:
        counts = rt.queue.sweep()
    except Exception as exc:
        database_down = unavailable(exc)
        raise
    finally:
        try:
            if database_down:
                log.warning("database unavailable: %d journal records wait", rt.journal.pending())
            counts_journal = 0 if database_down else rt.journal.drain()
        finally:
            try:
                try:
                    deferred = _apply_deferred(rt)
                finally:
                    legs = rt.bridge.recover_legs()
                purge_queued = schedule_retention(rt)
            finally:
                schedule_sweep(rt.rq_queue, rt.settings.queue.sweep_interval_s)
    return {
        **counts,
        "journal": counts_journal,
        "deferred_applied": deferred,
        "legs_replaced": legs,
        "retention_queued": int(purge_queued),
    }


def _apply_deferred(rt: Runtime) -> int:
    """Apply what the IVR took while the database was down (callbacks, conversions,
    hang-ups), in order; nothing to do costs one LLEN."""
    return rt.deferred.apply(notify=rt.jobs.notify)


def schedule_sweep(queue: Queue, interval_s: float) -> None:
    """Schedule the next sweep. Its id names its time slot, so two chains that ever
    started side by side merge into one instead of doubling the work."""
    connection = queue.connection
    connection.set(SWEEP_HEARTBEAT, "1", px=int(max(interval_s * 5, 10) * 1000))
    slot = int(time.time() / interval_s) + 1
    with contextlib.suppress(DuplicateJobError):
        queue.enqueue_in(
            timedelta(seconds=interval_s),
            sweep,
            job_id=f"{SWEEP_JOB_ID}-{slot}",
            unique=True,
            result_ttl=0,
            failure_ttl=3600,
        )


def ensure_sweep(queue: Queue, interval_s: float) -> bool:
    """Start the sweep chain unless it is alive. Returns True if it was (re)started.

    A chain that broke runs at once (a queued job, not a scheduled one: the scheduler
    itself may be what died); the run schedules the next one as usual."""
    if queue.connection.set(SWEEP_HEARTBEAT, "1", nx=True, px=int(max(interval_s * 5, 10) * 1000)):
        slot = int(time.time() / interval_s)
        with contextlib.suppress(DuplicateJobError):
            queue.enqueue(
                sweep,
                job_id=f"{SWEEP_JOB_ID}-{slot}",
                unique=True,
                result_ttl=0,
                failure_ttl=3600,
            )
        return True
    return False


# -- retention ------------------------------------------------------------------------------
def schedule_retention(rt: Runtime) -> bool:
    """Queue the retention purge unless one was queued within the hour (called by every
    sweep: one Redis command when nothing is due). Returns True when queued."""
    try:
        if not rt.retention.claim_hour():
            return False
        slot = int(time.time() // retention.RUN_EVERY_S)
        with contextlib.suppress(DuplicateJobError):
            rt.rq_queue.enqueue(
                purge_retention,
                job_id=f"retention-{slot}",
                unique=True,
                result_ttl=86400,
                failure_ttl=86400,
            )
    except redis.RedisError:  # the next sweep tries again
        rt.retention.release_hour()
        return False
    return True


def purge_retention() -> dict[str, Any]:
    """Clear the personal data past the retention period (the worker's settings and clock)."""
    return runtime().retention.purge().as_json()


# -- the voice side -------------------------------------------------------------------------
def send_contact_sms(contact_id: int, key: str) -> str | None:
    return runtime().sms.send_to_contact(contact_id, key)


def connect(contact_id: int) -> None:
    runtime().bridge.connect(contact_id)


def call_applicant(contact_id: int) -> None:
    runtime().bridge.call_applicant(contact_id)


def transcribe_voicemail(voicemail_id: int) -> str:
    """Fetch a voicemail's audio and transcribe it (on the speech queue, retried)."""
    return runtime().voicemail.transcribe(voicemail_id)


# jobs queued before a release moved them keep running: their former name -> the function
LEGACY_NAMES: dict[str, Callable[..., Any]] = {
    "interphone.queue.jobs.dispatch_site": dispatch_site,
    "interphone.queue.jobs.sweep": sweep,
    "interphone.retention.run_job": purge_retention,
    "interphone.voice.jobs.send_contact_sms": send_contact_sms,
    "interphone.voice.jobs.connect": connect,
    "interphone.voice.jobs.call_applicant": call_applicant,
    "interphone.voice.jobs.transcribe_voicemail": transcribe_voicemail,
}
