"""Wiring: one :class:`Runtime` per process builds connections and services from settings.

Nothing is connected at import time; the web app, the CLI and the RQ jobs each build a
runtime when they start (jobs reuse one per worker process: :func:`interphone.jobs.runtime`).
The services queue their jobs through :attr:`Runtime.jobs`; this module never imports the
job hub, which builds on it.

The voice side's modules (and the web's feeds) are imported on first use: they pull in
Flask and Twilio, about 0.3 s at start-up that the CLI and most jobs do not need.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from rq import Queue
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from . import db, embedded, failpoints, metrics
from .config import ConfigError, Settings, load_settings
from .jobqueue import InlineJobQueue, JobQueue
from .journal import Journal
from .queue.clock import Clock, SystemClock
from .queue.notifier import Notifier
from .queue.service import QueueService
from .queue.store import RedisQueue
from .retention import Retention

if TYPE_CHECKING:
    from flask import Flask
    from twilio.http import HttpClient
    from twilio.rest import Client as TwilioClient

    from .voice.bridge import BridgeService
    from .voice.deferred import Deferred
    from .voice.directory import SiteDirectory
    from .voice.door import Door
    from .voice.hangup import HangUps
    from .voice.hearing import Hearing
    from .voice.ivr import IvrService
    from .voice.limits import CallerLimits
    from .voice.lookup import CaseLookup
    from .voice.messaging import SmsService
    from .voice.prompt_texts import SitePrompts
    from .voice.session import CallStore
    from .voice.speech.models import ModelRegistry
    from .voice.supervise import SupervisionService
    from .voice.voicemail import VoicemailService
    from .web.feeds import FeedHub

RQ_QUEUE = "interphone"
# Voicemail transcriptions take seconds of CPU and a Vosk model in memory: a queue of
# their own (the ``transcriber`` process), so they never hold up a dispatch.
RQ_SPEECH_QUEUE = "interphone-speech"


class TwilioStandIn(Protocol):
    """What plays Twilio where no Twilio account is configured (``settings.dev_phone``):
    the HTTP client twilio-python's REST calls go through, and the pages that go with it.

    The one hook from the product to the development tooling: only tooling entry points
    (``interphone dev serve``'s processes, the benches, the load test, the tests) give a
    runtime one; production never does, and a runtime without one talks to Twilio."""

    def http_client(self, runtime: Runtime) -> HttpClient: ...

    def init_app(self, app: Flask) -> None: ...


def resolve_redis_url(settings: Settings) -> str:
    if settings.redis_url:
        return settings.redis_url
    if settings.env == "production":
        raise ConfigError("REDIS_URL: required in production")
    return embedded.ensure_server(settings.instance_path / "redis")


class FencedSentinelConnection(redis.sentinel.SentinelManagedConnection):
    """A connection to the Sentinel primary that also leaves a *former* primary.

    After a fail-over the old primary keeps taking writes on the connections already
    open to it until the sentinels turn it into a replica (up to ten seconds later), and
    those writes are then lost. Run the primary with ``min-replicas-to-write 1``: cut off
    from its replica, it refuses writes with ``NOREPLICAS``, which this connection turns
    into a reconnection through the sentinels (a ``ConnectionError``, retried by
    redis-py), as redis-py already does for ``READONLY``."""

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except redis.ResponseError as exc:
            if self.connection_pool.is_master and str(exc).startswith("NOREPLICAS"):
                self.disconnect()  # type: ignore[no-untyped-call, unused-ignore]
                raise redis.ConnectionError("the primary lost its replicas") from exc
            raise


def connect_redis(settings: Settings, **options: Any) -> redis.Redis:
    """The one place a Redis client is made: through Sentinel when ``REDIS_SENTINELS``
    is set (the client follows the primary across fail-overs), else from the URL.

    A command that cannot reach Redis is retried for about six seconds (exponential
    back-off): a Sentinel fail-over or a quick Redis restart is ridden through instead
    of failing a webhook or killing a worker."""
    options.setdefault("retry", Retry(ExponentialBackoff(cap=1.0, base=0.05), 10))
    options.setdefault("retry_on_error", [redis.ConnectionError, redis.TimeoutError])
    if settings.redis_sentinels:
        sentinel = redis.Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            list(settings.redis_sentinels), socket_timeout=2.0, socket_connect_timeout=2.0
        )
        client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call, unused-ignore]
            settings.redis_sentinel_master,
            db=settings.redis_sentinel_db,
            health_check_interval=30,
            connection_class=FencedSentinelConnection,
            **options,
        )
        return client
    return redis.Redis.from_url(resolve_redis_url(settings), health_check_interval=30, **options)


class Runtime:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        clock: Clock | None = None,
        trigger: Callable[[str], None] | None = None,
        inline_jobs: bool = False,
        twilio_stand_in: TwilioStandIn | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.clock = clock or SystemClock()
        self._trigger = trigger
        self.inline_jobs = inline_jobs  # run SMS and bridge jobs in-process (tests)
        # used only while no Twilio account is configured (settings.dev_phone)
        self.twilio_stand_in = twilio_stand_in if self.settings.dev_phone else None
        failpoints.configure(self.settings.failpoints)

    @cached_property
    def redis_url(self) -> str:
        return resolve_redis_url(self.settings)

    @cached_property
    def redis(self) -> redis.Redis:
        return connect_redis(self.settings)

    @cached_property
    def database_url(self) -> str:
        if self.settings.database_url is None and self.settings.env == "production":
            raise ConfigError("DATABASE_URL: required in production")
        return db.database_url(self.settings)

    @cached_property
    def engine(self) -> Engine:
        return db.make_engine(self.database_url)

    @cached_property
    def read_engine(self) -> Engine:
        """For the few reads on the webhooks' path (a case's status): connections of
        its own, not tested at each use (that test is a round trip); a dead one is
        replaced and the read retried (:func:`db.read_once`)."""
        if self.database_url.startswith("sqlite"):
            return self.engine
        # autocommit from the start: no isolation level set and reset at each checkout,
        # no transaction to roll back on return: the read is its one statement
        return db.make_engine(
            self.database_url,
            pre_ping=False,
            pool_size=4,
            pool_use_lifo=True,
            isolation_level="AUTOCOMMIT",
            pool_reset_on_return=None,
        )

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        sessions = db.make_sessionmaker(self.engine)
        self.notifier.attach(sessions)  # recorded events reach the screens once committed
        return sessions

    @cached_property
    def rq_queue(self) -> Queue:
        return Queue(RQ_QUEUE, connection=self.redis)

    @cached_property
    def speech_queue(self) -> Queue:
        return Queue(RQ_SPEECH_QUEUE, connection=self.redis)

    @cached_property
    def jobs(self) -> JobQueue:
        """Where the services queue their jobs (RQ; with ``inline_jobs``, partly here)."""
        if self.inline_jobs:
            return InlineJobQueue(
                self.rq_queue,
                self.speech_queue,
                connection=self.redis,
                send_sms=lambda contact_id, key: self.sms.send_to_contact(contact_id, key),
                run_bridge=lambda name, contact_id: getattr(self.bridge, name)(contact_id),
            )
        return JobQueue(self.rq_queue, self.speech_queue)

    @cached_property
    def store(self) -> RedisQueue:
        return RedisQueue(self.redis, self.clock)

    @cached_property
    def notifier(self) -> Notifier:
        return Notifier(lambda: self.redis)

    @cached_property
    def queue(self) -> QueueService:
        trigger = self._trigger if self._trigger is not None else self.jobs.dispatch
        return QueueService(
            self.store,
            self.sessions,
            self.settings.queue,
            self.clock,
            region=self.settings.default_region,
            trigger=trigger,
            autocommit=self.read_engine,
        )

    @cached_property
    def calls(self) -> CallStore:
        from .voice.session import CallStore

        return CallStore(self.redis)

    @cached_property
    def caller_limits(self) -> CallerLimits:
        from .voice.limits import CallerLimits

        settings = self.settings
        return CallerLimits(self.redis, settings.limits, settings.secret_key, self.clock.now)

    @cached_property
    def feeds(self) -> FeedHub:
        """The screens' live feeds of this process (one Redis subscription)."""
        from .web.feeds import FeedHub

        feeds = self.settings.feeds
        return FeedHub(self.redis, per_process=feeds.per_process, per_owner=feeds.per_user)

    @cached_property
    def journal(self) -> Journal:
        return Journal(self.redis, self.sessions, now=self.clock.now)

    @cached_property
    def ivr(self) -> IvrService:
        from .voice.ivr import IvrService

        return IvrService(
            self.queue,
            self.clock,
            directory=self.directory,
            lookup=self.case_lookup,
            door=self.door,
            deferred=self.deferred,
            voicemails=self.voicemail,
            connection=self.redis,
            settings=self.settings,
            notify=self.jobs.notify,
            prompts=self.prompt_texts,
        )

    @cached_property
    def hang_ups(self) -> HangUps:
        """The end of calls (Twilio's final status, a live caller who hung up)."""
        from .voice.hangup import HangUps

        return HangUps(
            self.queue,
            self.sessions,
            self.journal,
            self.clock,
            self.deferred,
            caller_left=lambda contact_id: self.bridge.caller_hung_up(contact_id),
        )

    @cached_property
    def directory(self) -> SiteDirectory:
        """The sites as the IVR reads them (a thread of this process reads them again)."""
        from .voice.directory import SiteDirectory

        return SiteDirectory(self.sessions, self.redis, default_site=self.settings.default_site)

    @cached_property
    def prompt_texts(self) -> SitePrompts:
        """The sites' own prompt texts (a thread of this process follows their changes)."""
        from .voice.prompt_texts import SitePrompts

        return SitePrompts(self.sessions, self.redis)

    @cached_property
    def case_lookup(self) -> CaseLookup:
        from .voice.lookup import CaseLookup

        return CaseLookup(
            self.read_engine,
            self.calls,
            self.redis,
            birthdate_key=self.settings.birthdate_key,
            limits=self.caller_limits,
        )

    @cached_property
    def door(self) -> Door:
        from .voice.door import Door

        settings = self.settings
        return Door(
            self.directory,
            self.clock,
            region=settings.default_region,
            callback_offer_s=settings.door_callback_offer_s,
        )

    @cached_property
    def deferred(self) -> Deferred:
        """What the IVR accepts while the database is down; a hang-up among them is
        applied as any live caller's (:meth:`HangUps.live_caller_gone`)."""
        from .voice.deferred import Deferred

        return Deferred(
            self.redis,
            self.queue,
            hang_up=lambda contact_id: self.hang_ups.live_caller_gone(contact_id),
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
            run_job=self.jobs.transcribe,
        )

    @cached_property
    def speech_models(self) -> ModelRegistry:
        """Vosk models of this process (loaded on first use: the transcriber's)."""
        from .voice.speech.models import ModelRegistry

        return ModelRegistry(self.settings.vosk_models_dir)

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
            self.queue,
            self.sessions,
            self.twilio_client,
            self.redis,
            region=self.settings.default_region,
            prompts=self.prompt_texts,
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
            run_job=self.jobs.bridge,
            leg_timeout_s=self.settings.bridge_leg_timeout_s,
            prompts=self.prompt_texts,
        )

    @cached_property
    def supervision(self) -> SupervisionService:
        """A supervisor listening to, coaching or barging into an agent's call."""
        from .voice.supervise import SupervisionService

        return SupervisionService(
            self.sessions,
            self.store,
            self.redis,
            self.twilio_client,
            public_base_url=self.settings.public_base_url,
        )

    def twilio_client(self) -> TwilioClient:
        """twilio-python's client; without a Twilio account its HTTP calls go to the
        stand-in (the dev phone), and with neither there is nobody to call."""
        from twilio.rest import Client

        http_client = None
        if self.twilio_stand_in is not None:
            http_client = self.twilio_stand_in.http_client(self)
        elif self.settings.dev_phone:
            raise ConfigError(
                "TWILIO_ACCOUNT_SID: no Twilio account is configured and no dev phone stands"
                " in for Twilio (`interphone dev serve` runs one)"
            )
        return Client(
            self.settings.twilio_account_sid,
            self.settings.twilio_auth_token,
            http_client=http_client,
        )

    @cached_property
    def retention(self) -> Retention:
        return Retention(self.sessions, self.redis, self.clock.now, self.settings.retention_days)

    def close(self) -> None:
        if "feeds" in self.__dict__:
            self.feeds.close()
        if "directory" in self.__dict__:
            self.directory.close()
        if "prompt_texts" in self.__dict__:
            self.prompt_texts.close()
        if "read_engine" in self.__dict__:
            self.read_engine.dispose()
        if "engine" in self.__dict__:
            self.engine.dispose()
        if "redis" in self.__dict__:
            metrics.close_recorder(self.redis)
            self.redis.close()
