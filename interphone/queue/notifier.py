"""The one place where recorded events become live messages (for the agent screens).

Every event :func:`interphone.events.record` adds for a screen is published, once its
transaction has committed, on the Redis channel of its site. Each message carries a
per-site sequence number so that a screen that missed messages (a dropped connection)
knows it must resynchronize.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import cached_property
from typing import Any

import redis
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

PENDING = "interphone.notify"


def channel(site_id: int) -> str:
    return f"ip:feed:site:{site_id}"


class Notifier:
    def __init__(self, connect: Callable[[], redis.Redis]) -> None:
        """``connect`` gives the Redis client on the first publication: a process whose
        transactions record nothing for a screen never connects for them."""
        self._connect = connect

    @cached_property
    def redis(self) -> redis.Redis:
        return self._connect()

    def attach(self, sessions: sessionmaker[Session]) -> None:
        """Publish what a session recorded, after (and only if) it commits."""
        event.listen(sessions, "after_commit", self._after_commit)
        event.listen(sessions, "after_rollback", self._after_rollback)

    @staticmethod
    def remember(session: Session, site_id: int | None, kind: str, **ids: Any) -> None:
        if site_id is not None:
            session.info.setdefault(PENDING, []).append((site_id, kind, ids))

    def _after_commit(self, session: Session) -> None:
        pending = session.info.pop(PENDING, [])
        for site_id, kind, ids in pending:
            self.publish(site_id, kind, **ids)

    @staticmethod
    def _after_rollback(session: Session) -> None:
        session.info.pop(PENDING, None)

    def publish(self, site_id: int, kind: str, **ids: Any) -> None:
        try:
            seq = int(self.redis.incr(f"{channel(site_id)}:seq"))
            message = {"seq": seq, "kind": kind, **{k: v for k, v in ids.items() if v}}
            self.redis.publish(channel(site_id), json.dumps(message))
        except redis.RedisError:  # screens resynchronize on their next message
            log.warning("could not publish %s for site %s", kind, site_id)

    def sequence(self, site_id: int) -> int:
        return int(self.redis.get(f"{channel(site_id)}:seq") or 0)
