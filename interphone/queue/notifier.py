"""The one place where queue changes become live events (for the agent screens).

Every event the :class:`~interphone.queue.service.QueueService` appends to the SQL log is
published, once its transaction has committed, on the Redis channel of its site. Each
message carries a per-site sequence number so that a screen that missed messages (a
dropped connection) knows it must resynchronize.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

PENDING = "interphone.notify"


def channel(site_id: int) -> str:
    return f"ip:feed:site:{site_id}"


class Notifier:
    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection

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
