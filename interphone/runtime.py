"""Wiring: one :class:`Runtime` per process builds connections and services from settings.

Nothing is connected at import time; the web app, the CLI and the RQ jobs each build a
runtime when they start (jobs reuse one per worker process).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

import redis
from rq import Queue
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from . import db, embedded
from .config import ConfigError, Settings, load_settings
from .queue.clock import Clock, SystemClock
from .queue.service import QueueService
from .queue.store import RedisQueue

RQ_QUEUE = "interphone"


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
    ) -> None:
        self.settings = settings or load_settings()
        self.clock = clock or SystemClock()
        self._trigger = trigger

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
    def store(self) -> RedisQueue:
        return RedisQueue(self.redis, self.clock)

    @cached_property
    def queue(self) -> QueueService:
        trigger = self._trigger if self._trigger is not None else self.enqueue_dispatch
        return QueueService(
            self.store,
            self.sessions,
            self.settings.queue,
            self.clock,
            region=self.settings.default_region,
            trigger=trigger,
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
