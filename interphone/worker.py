"""The ``worker`` process: an RQ worker (with its scheduler) on the configured Redis.

``interphone worker`` is what the Procfile runs. It differs from a bare ``rq worker
--url`` in four ways: the Redis connection comes from :func:`runtime.connect_redis`
(so ``REDIS_SENTINELS`` works and the worker follows a fail-over), RQ's maintenance
(abandoned jobs of a dead worker, taking over the scheduler lock of a dead worker) runs
every ``maintenance_s`` instead of every ten minutes, a keeper thread restarts the
queue sweep's chain when it breaks (a worker killed in the middle of a sweep), and jobs
queued by an earlier release under a former name still run (:class:`Job`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
import rq.job
from rq import Queue, SimpleWorker

from . import jobs
from .config import Settings
from .runtime import RQ_QUEUE, connect_redis

log = logging.getLogger(__name__)

PUBSUB_WAIT_S = 0.5  # longest wait of the command listener, hence of a worker's stop


class Job(rq.job.Job):
    """RQ's job, which also runs a job stored under a former name of its function
    (:data:`interphone.jobs.LEGACY_NAMES`): an SMS queued before an upgrade is sent."""

    @property
    def func(self) -> Callable[..., Any] | None:
        legacy = jobs.LEGACY_NAMES.get(self.func_name or "") if self.instance is None else None
        return legacy if legacy is not None else super().func


class Worker(SimpleWorker):
    """RQ's in-process worker, which stops within :data:`PUBSUB_WAIT_S`: RQ's thread
    listening for commands (``rq`` ``send_shutdown_command``...) waits up to 60 s for a
    message, and stopping the worker waits for that thread, so a worker told to stop, or a
    burst run that is over, could hang for a minute."""

    def subscribe(self) -> None:
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment]
            sleep_time=PUBSUB_WAIT_S, daemon=True, exception_handler=self._pubsub_exception_handler
        )


def keep_sweep_alive(settings: Settings, stop: threading.Event) -> None:
    """Every sweep interval: restart the sweep chain if its heartbeat expired."""
    interval = settings.queue.sweep_interval_s
    queue = Queue(RQ_QUEUE, connection=connect_redis(settings))
    while not stop.wait(interval):
        try:
            if jobs.ensure_sweep(queue, interval):
                log.warning("the sweep chain was broken: restarted")
        except Exception:  # Redis away for a moment: try again next time
            log.warning("could not check the sweep chain", exc_info=True)


def run(
    settings: Settings,
    *,
    burst: bool = False,
    maintenance_s: int = 30,
    logging_level: str = "WARNING",
    queues: tuple[str, ...] = (RQ_QUEUE,),
) -> bool:
    stop = threading.Event()
    keeper = threading.Thread(
        target=keep_sweep_alive, args=(settings, stop), name="sweep-keeper", daemon=True
    )
    if not burst and RQ_QUEUE in queues:  # the sweep runs on the main queue
        keeper.start()
    started = time.monotonic()
    try:
        while True:
            connection = connect_redis(settings)
            worker = Worker(
                [Queue(name, connection=connection, job_class=Job) for name in queues],
                connection=connection,
                job_class=Job,
                maintenance_interval=maintenance_s,
                # a job whose worker died is retried (or failed) once its heartbeat
                # expires: for this in-process worker, the job's timeout plus 60 s
                # (short for SMS jobs: jobqueue.SMS_JOB_TIMEOUT_S)
                job_monitoring_interval=5,
            )
            try:
                return bool(
                    worker.work(burst=burst, with_scheduler=True, logging_level=logging_level)
                )
            except redis.ConnectionError:
                # RQ gives up when Redis goes away while it records a job's end: a new
                # worker takes over once Redis answers (the job is retried as abandoned)
                if burst:
                    raise
                log.warning("worker lost Redis; starting a new one", exc_info=True)
                stop.wait(2.0)
            finally:
                connection.close()
    finally:
        stop.set()
        log.info("worker stopped after %.0f s", time.monotonic() - started)
