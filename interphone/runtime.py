"""Wiring: one :class:`Runtime` per process builds connections and services from settings.

Nothing is connected at import time; the web app, the CLI and the RQ jobs each build a
runtime when they start (jobs reuse one per worker process).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING

import redis
from rq import Queue
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from . import db, embedded
from .config import ConfigError, Settings, load_settings
from .journal import Journal
from .queue.clock import Clock, SystemClock
from .queue.notifier import Notifier
from .queue.service import QueueService
from .queue.store import RedisQueue

if TYPE_CHECKING:
    from twilio.rest import Client as TwilioClient

    from .voice.bridge import BridgeService
    from .voice.hearing import Hearing
    from .voice.ivr import IvrService
    from .voice.messaging import SmsService
    from .voice.session import CallStore
    from .voice.speech.models import ModelRegistry
    from .voice.voicemail import VoicemailService

RQ_QUEUE = "interphone"
# Voicemail transcriptions take seconds of CPU and a Vosk model in memory: a queue of
# their own (the ``transcriber`` process), so they never hold up a dispatch.
RQ_SPEECH_QUEUE = "interphone-speech"
VOICEMAIL_RETRY_S = (10, 60, 300, 900, 3600)  # a recording not fetched: tried again


def resolve_redis_url(settings: Settings) -> str:
    if settings.redis_url:
        return settings.redis_url
    if settings.env == "production":
        raise ConfigError("REDIS_URL: required in production")
    return embedded.ensure_server(settings.instance_path / "redis")


class Runtime:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        clock: Clock | None = None,
        trigger: Callable[[str], None] | None = None,
        inline_jobs: bool = False,
    ) -> None:
        self.settings = settings or load_settings()
        self.clock = clock or SystemClock()
        self._trigger = trigger
        self.inline_jobs = inline_jobs  # run notifications in-process (tests)

    @cached_property
    def redis_url(self) -> str:
        return resolve_redis_url(self.settings)

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, health_check_interval=30)

    @cached_property
    def database_url(self) -> str:
        if self.settings.database_url is None and self.settings.env == "production":
            raise ConfigError("DATABASE_URL: required in production")
        return db.database_url(self.settings)

    @cached_property
    def engine(self) -> Engine:
        return db.make_engine(self.database_url)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return db.make_sessionmaker(self.engine)

    @cached_property
    def rq_queue(self) -> Queue:
        return Queue(RQ_QUEUE, connection=self.redis)

    @cached_property
    def speech_queue(self) -> Queue:
        return Queue(RQ_SPEECH_QUEUE, connection=self.redis)

    @cached_property
    def store(self) -> RedisQueue:
        return RedisQueue(self.redis, self.clock)

    @cached_property
    def notifier(self) -> Notifier:
        notifier = Notifier(self.redis)
        notifier.attach(self.sessions)  # once per session factory
        return notifier

    @cached_property
    def queue(self) -> QueueService:
        trigger = self._trigger if self._trigger is not None else self.enqueue_dispatch
        _ = self.notifier  # queue changes are published as soon as they commit
        return QueueService(
            self.store,
            self.sessions,
            self.settings.queue,
            self.clock,
            region=self.settings.default_region,
            trigger=trigger,
        )

    @cached_property
    def calls(self) -> CallStore:
        from .voice.session import CallStore

        return CallStore(self.redis)

    @cached_property
    def journal(self) -> Journal:
        _ = self.notifier  # journaled events reach the screens once applied
        return Journal(self.redis, self.sessions)

    @cached_property
    def ivr(self) -> IvrService:
        from .voice.ivr import IvrService

        return IvrService(
            self.queue,
            self.sessions,
            self.journal,
            self.redis,
            self.clock,
            voicemails=self.voicemail,
            birthdate_key=self.settings.birthdate_key,
            default_site=self.settings.default_site,
            region=self.settings.default_region,
            notify=self.notify,
            door_callback_offer_s=self.settings.door_callback_offer_s,
        )

    @cached_property
    def voicemail(self) -> VoicemailService:
        from .voice.voicemail import VoicemailService

        return VoicemailService(
            self.queue,
            self.sessions,
            self.clock,
            client=self.twilio_client,
            models=lambda: self.speech_models,
            run_job=self.run_speech_job,
        )

    @cached_property
    def speech_models(self) -> ModelRegistry:
        """Vosk models of this process (loaded on first use: the transcriber's)."""
        from .voice.speech.models import ModelRegistry

        return ModelRegistry(self.settings.vosk_models_dir)

    def run_speech_job(self, voicemail_id: int, job_id: str) -> None:
        """Queue a voicemail's transcription once per id, retried when it fails."""
        from rq import Retry
        from rq.exceptions import DuplicateJobError

        from .voice.jobs import transcribe_voicemail

        with contextlib.suppress(DuplicateJobError):
            self.speech_queue.enqueue(
                transcribe_voicemail,
                voicemail_id,
                job_id=job_id,
                unique=True,
                retry=Retry(max=len(VOICEMAIL_RETRY_S), interval=list(VOICEMAIL_RETRY_S)),
                job_timeout=600,
                result_ttl=86400,
                failure_ttl=7 * 86400,
            )

    @cached_property
    def hearing(self) -> Hearing:
        from .voice.hearing import Hearing
        from .voice.speech.results import SpeechResults

        return Hearing(
            SpeechResults(self.redis),
            models_dir=self.settings.vosk_models_dir,
            local_languages=self.settings.local_speech_languages,
        )

    @property
    def speech_stream_url(self) -> str:
        """Where Twilio streams the door's audio (the ``stream`` process)."""
        if self.settings.speech_stream_url:
            return self.settings.speech_stream_url
        base = self.settings.public_base_url
        return ("wss" + base[5:] if base.startswith("https") else "ws" + base[4:]) + "/voice/stream"

    @cached_property
    def sms(self) -> SmsService:
        from .voice.messaging import SmsService

        return SmsService(
            self.queue, self.sessions, self.twilio_client, region=self.settings.default_region
        )

    @cached_property
    def bridge(self) -> BridgeService:
        from .voice.bridge import BridgeService

        return BridgeService(
            self.queue,
            self.sessions,
            self.redis,
            self.twilio_client,
            public_base_url=self.settings.public_base_url,
            run_job=self.run_voice_job,
        )

    def run_voice_job(self, name: str, job_id: str, contact_id: int) -> None:
        """Run a job of ``interphone.voice.jobs`` once per id (RQ, or inline in tests)."""
        from rq.exceptions import DuplicateJobError

        from .voice import jobs as voice_jobs

        if self.inline_jobs:
            if self._claim(job_id):
                getattr(self.bridge, name)(contact_id)
            return
        function = getattr(voice_jobs, name)
        with contextlib.suppress(DuplicateJobError):
            self.rq_queue.enqueue(
                function, contact_id, job_id=job_id, unique=True, result_ttl=3600, failure_ttl=86400
            )

    def _claim(self, job_id: str) -> bool:
        return bool(self.redis.set(f"ip:inline-job:{job_id}", "1", nx=True, ex=3600))

    def twilio_client(self) -> TwilioClient:
        """twilio-python's client; in development its HTTP calls go to the dev phone."""
        from twilio.rest import Client

        http_client = None
        if self.settings.dev_phone:
            from .voice.devphone.rest import DevPhoneHttpClient

            http_client = DevPhoneHttpClient(self.redis)
        return Client(
            self.settings.twilio_account_sid,
            self.settings.twilio_auth_token,
            http_client=http_client,
        )

    def notify(self, contact_id: int, key: str) -> None:
        """Send an SMS to a contact, through an RQ job (one per contact and message)."""
        if self.inline_jobs:
            self.sms.send_to_contact(contact_id, key)
            return
        from rq.exceptions import DuplicateJobError

        from .voice.jobs import send_contact_sms

        # one job per contact and message: already sent or on its way means never twice
        with contextlib.suppress(DuplicateJobError):
            self.rq_queue.enqueue(
                send_contact_sms,
                contact_id,
                key,
                job_id=f"sms-{contact_id}-{key}",
                unique=True,
                result_ttl=3600,
                failure_ttl=86400,
            )

    def enqueue_dispatch(self, site: str) -> None:
        """Ask a worker to dispatch ``site`` (events trigger dispatch, not a polling loop)."""
        from .queue import jobs

        jobs.enqueue_dispatch(self.rq_queue, site)

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()
        if "redis" in self.__dict__:
            self.redis.close()
