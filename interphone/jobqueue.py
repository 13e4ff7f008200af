"""Putting the job hub's work on RQ: each job's id, retries and time-outs.

The functions themselves live in :mod:`interphone.jobs`, which builds on the runtime; the
runtime's services queue them through a :class:`JobQueue` it injects. Jobs are named here
by their dotted path (RQ's enqueue by name, what RQ stores in Redis either way), so neither
this module nor the runtime imports the hub; ``tests/test_jobs.py`` checks that every name
is a function of the hub. Arguments carry ids, never phone numbers (RQ logs them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import redis
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus

HUB = "interphone.jobs"
DISPATCH = f"{HUB}.dispatch_site"
SEND_SMS = f"{HUB}.send_contact_sms"
TRANSCRIBE = f"{HUB}.transcribe_voicemail"
BRIDGE_JOBS = {name: f"{HUB}.{name}" for name in ("connect", "call_applicant")}

VOICEMAIL_RETRY_S = (10, 60, 300, 900, 3600)  # a recording not fetched: tried again
SMS_RETRY_S = [2, 5, 10, 30, 60, 120, 300, 600]  # then the job stays failed, visible
SMS_JOB_TIMEOUT_S = 30  # two requests to Twilio at most (see SmsService.send_to_contact)


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
                    DISPATCH, site, job_id=job_id, unique=True, result_ttl=0, failure_ttl=600
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


class JobQueue:
    """The jobs the services queue: a site's dispatch, a contact's SMS, a bridge's legs,
    a voicemail's transcription (on a queue of its own, ``speech_queue``)."""

    def __init__(self, queue: Queue, speech_queue: Queue) -> None:
        self.queue = queue
        self.speech_queue = speech_queue

    def dispatch(self, site: str) -> None:
        """Ask a worker to dispatch ``site`` (events trigger dispatch, not a polling loop)."""
        enqueue_dispatch(self.queue, site)

    def notify(self, contact_id: int, key: str) -> None:
        """Send an SMS to a contact (one job per contact and message)."""
        # already sent or on its way means never twice; Twilio unreachable for a while:
        # the same job tries again (RQ's scheduler)
        with contextlib.suppress(DuplicateJobError):
            self.queue.enqueue(
                SEND_SMS,
                contact_id,
                key,
                job_id=f"sms-{contact_id}-{key}",
                unique=True,
                # a worker killed while sending: the job is retried once its heartbeat
                # expires, that is this time-out plus 60 s
                job_timeout=SMS_JOB_TIMEOUT_S,
                result_ttl=3600,
                failure_ttl=86400,
                retry=Retry(max=8, interval=SMS_RETRY_S),
            )

    def bridge(self, name: str, job_id: str, contact_id: int) -> None:
        """Run a bridge job (``connect``, ``call_applicant``) once per id."""
        with contextlib.suppress(DuplicateJobError):
            self.queue.enqueue(
                BRIDGE_JOBS[name],
                contact_id,
                job_id=job_id,
                unique=True,
                result_ttl=3600,
                failure_ttl=86400,
            )

    def transcribe(self, voicemail_id: int, job_id: str) -> None:
        """Queue a voicemail's transcription once per id, retried when it fails."""
        with contextlib.suppress(DuplicateJobError):
            self.speech_queue.enqueue(
                TRANSCRIBE,
                voicemail_id,
                job_id=job_id,
                unique=True,
                retry=Retry(max=len(VOICEMAIL_RETRY_S), interval=list(VOICEMAIL_RETRY_S)),
                job_timeout=600,
                result_ttl=86400,
                failure_ttl=7 * 86400,
            )


class InlineJobQueue(JobQueue):
    """For tests: SMS and bridge jobs run at once in this process (a bridge job once per
    id, as RQ would); dispatches and transcriptions still go to RQ."""

    def __init__(
        self,
        queue: Queue,
        speech_queue: Queue,
        *,
        connection: redis.Redis,
        send_sms: Callable[[int, str], object],
        run_bridge: Callable[[str, int], object],
    ) -> None:
        super().__init__(queue, speech_queue)
        self._redis = connection
        self._send_sms = send_sms
        self._run_bridge = run_bridge

    def notify(self, contact_id: int, key: str) -> None:
        self._send_sms(contact_id, key)

    def bridge(self, name: str, job_id: str, contact_id: int) -> None:
        if self._redis.set(f"ip:inline-job:{job_id}", "1", nx=True, ex=3600):
            self._run_bridge(name, contact_id)
