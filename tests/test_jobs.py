"""The job hub: every job the services queue is a function of ``interphone.jobs``, and jobs
queued by an earlier release under a former name still run after an upgrade."""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import pytest
from rq import Queue
from rq.registry import ScheduledJobRegistry
from rq.utils import import_attribute

from interphone import jobqueue, jobs, worker
from interphone.runtime import Runtime
from interphone.voice.messaging import SENT_PREFIX
from interphone.worker import Worker

from .conftest import SITE


def test_every_job_the_services_queue_is_a_function_of_the_hub() -> None:
    names = [jobqueue.DISPATCH, jobqueue.SEND_SMS, jobqueue.TRANSCRIBE]
    names += jobqueue.BRIDGE_JOBS.values()
    for name in names:
        function = import_attribute(name)
        assert inspect.isfunction(function) and function.__module__ == "interphone.jobs", name


def test_every_former_job_name_leads_to_a_function_of_the_hub() -> None:
    for former, function in jobs.LEGACY_NAMES.items():
        assert function.__module__ == "interphone.jobs", former
        assert getattr(jobs, function.__name__) is function
        assert former.rsplit(".", 1)[-1] in (function.__name__, "run_job"), former


def test_the_hub_exports_every_function_it_defines() -> None:
    defined = {
        name
        for name, value in vars(jobs).items()
        if inspect.isfunction(value) and value.__module__ == jobs.__name__ and name[0] != "_"
    }
    assert defined == set(jobs.__all__) - {"LEGACY_NAMES", "SWEEP_HEARTBEAT", "SWEEP_JOB_ID"}


@pytest.fixture
def worker_runtime(voice_runtime: Runtime) -> Iterator[Runtime]:
    jobs.use_runtime(voice_runtime)
    yield voice_runtime
    jobs.use_runtime(None)


def _work(rt: Runtime) -> None:
    """What ``interphone worker`` runs, in burst: its queue and job classes."""
    queue = Queue(rt.rq_queue.name, connection=rt.redis, job_class=worker.Job)
    Worker([queue], connection=rt.redis, job_class=worker.Job).work(burst=True)


def test_an_sms_job_queued_under_its_former_name_is_sent_after_the_upgrade(
    worker_runtime: Runtime,
) -> None:
    rt = worker_runtime
    contact_id = rt.queue.request_callback(SITE, phone="+33612345678", language="fr").contact_id
    mark = f"{SENT_PREFIX}{contact_id}:sms_callback"
    rt.redis.delete(mark)  # the job below is what sends it
    job = rt.rq_queue.enqueue("interphone.voice.jobs.send_contact_sms", contact_id, "sms_callback")
    _work(rt)
    assert job.get_status(refresh=True) == "finished"
    assert rt.redis.get(mark).startswith(b"SM")


def test_a_sweep_scheduled_under_its_former_name_runs_and_schedules_the_next(
    worker_runtime: Runtime,
) -> None:
    rt = worker_runtime
    job = rt.rq_queue.enqueue("interphone.queue.jobs.sweep")
    _work(rt)
    assert job.get_status(refresh=True) == "finished"
    scheduled = ScheduledJobRegistry(queue=rt.rq_queue).get_job_ids()
    assert any(job_id.startswith(jobs.SWEEP_JOB_ID) for job_id in scheduled)


def test_rq_alone_does_not_know_the_former_names(worker_runtime: Runtime) -> None:
    """Why the worker needs its job class: RQ's own fails the former name."""
    rt = worker_runtime
    job = rt.rq_queue.enqueue("interphone.queue.jobs.dispatch_site", SITE)
    Worker([rt.rq_queue], connection=rt.redis).work(burst=True)
    assert job.get_status(refresh=True) == "failed"
    job = rt.rq_queue.enqueue("interphone.queue.jobs.dispatch_site", SITE)
    _work(rt)
    assert job.get_status(refresh=True) == "finished"


def test_the_sweep_reports_each_of_its_steps(worker_runtime: Runtime) -> None:
    counts = jobs.sweep()
    assert {"journal", "deferred_applied", "legs_replaced", "retention_queued"} <= set(counts)
    assert counts["retention_queued"] == 1


def test_the_retention_purge_is_due_once_an_hour(runtime: Runtime) -> None:
    assert runtime.retention.claim_hour() is True
    assert runtime.retention.claim_hour() is False
    runtime.retention.release_hour()  # could not be queued: the next sweep tries again
    assert runtime.retention.claim_hour() is True


def test_a_worker_stops_without_waiting_a_minute_for_its_command_listener(
    runtime: Runtime,
) -> None:
    """RQ's listener for worker commands waits up to 60 s for a message, and stopping
    waits for it, so a burst run or a worker told to stop could hang a minute. Ours
    waits :data:`~interphone.worker.PUBSUB_WAIT_S` at most."""
    rq_worker = worker.Worker([runtime.rq_queue], connection=runtime.redis)
    rq_worker.subscribe()
    listener = rq_worker.pubsub_thread
    try:
        assert listener is not None and listener.is_alive()
        assert listener.sleep_time <= worker.PUBSUB_WAIT_S <= 1
    finally:
        rq_worker.unsubscribe()
    assert not listener.is_alive()
