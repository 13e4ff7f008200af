"""RQ jobs of the queue: dispatch on events, and the periodic sweep.

Dispatch is triggered by what changes the queue (a new contact, an agent becoming free,
an offer returned) and by a sweep every few seconds that expires offers and wrap-ups.
The sweep re-schedules itself through RQ's scheduler (``interphone worker`` runs one);
a heartbeat key lets the web process and the ``interphone worker`` process restart the
chain if it ever breaks (a worker killed in the middle of a sweep,
or the worker holding RQ's scheduler lock gone: the lock outlives it for a minute).
"""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from rq import Queue
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus

from ..db import unavailable

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger(__name__)

SWEEP_JOB_ID = "interphone-sweep"
SWEEP_HEARTBEAT = "ip:sweep:heartbeat"
_runtime: Runtime | None = None


def runtime() -> Runtime:
    """One runtime per worker process, built on first use from the environment."""
    global _runtime
    if _runtime is None:
        from ..runtime import Runtime

        _runtime = Runtime()
    return _runtime


def use_runtime(rt: Runtime | None) -> None:
    """Make jobs of this process use ``rt`` (tests, simulations, in-process workers)."""
    global _runtime
    _runtime = rt


def enqueue_dispatch(queue: Queue, site: str) -> None:
    """Deterministic ids: a burst of triggers for one site collapses into one queued job.

    If the site's job is already running, it may have passed the new contact or agent
    by, so a second id ("-again") queues exactly one follow-up run. A finished or failed
    job left under an id is replaced.
    """
    for job_id in (f"dispatch-{site}", f"dispatch-{site}-again"):
        for _ in range(2):
            try:
                queue.enqueue(
                    dispatch_site, site, job_id=job_id, unique=True, result_ttl=0, failure_ttl=600
                )
                return
            except DuplicateJobError:
                try:
                    job: Job | None = Job.fetch(job_id, connection=queue.connection)
                except NoSuchJobError:
                    job = None
                status = job.get_status(refresh=False) if job is not None else None
                if status in (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED):
                    return  # a run is already waiting: it will see this change
                if status == JobStatus.STARTED:
                    break  # try the follow-up id
                if job is not None:
                    job.delete()


def dispatch_site(site: str) -> int:
    rt = runtime()
    # what the IVR took while the database was down comes first: once it is back, a
    # live caller whose hang-up waited there was offered to an agent before the next
    # sweep applied it, and the agent was left calling nobody (the PostgreSQL restart
    # fault scenario, now and then)
    rt.apply_deferred()
    offers = rt.queue.dispatch(site)
    _dispatch_figures(rt, site, len(offers))
    return len(offers)


def _dispatch_figures(rt: Runtime, site: str, offers: int) -> None:
    """Dispatch latency for ``GET /metrics``: from the job being queued (a contact
    arrived, an agent became free) to its offers made."""
    from rq import get_current_job

    from .. import metrics

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
    """The periodic housekeeping: queue expiries and reconciliation, then the journal
    of call records (each runs even if the other fails; the next sweep is always set).
    A queue step that found the database unreachable leaves the journal alone: its
    records wait in Redis for a sweep that finds the database back."""
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
                extra = rt.housekeeping()
            finally:
                schedule_sweep(rt.rq_queue, rt.settings.queue.sweep_interval_s)
    return {**counts, "journal": counts_journal, **extra}


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
