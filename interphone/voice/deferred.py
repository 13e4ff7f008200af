"""What the IVR accepts while the database is down, applied once it is back.

The IVR answers from Redis; only a few moves need SQL (a callback request is committed
to SQL before the caller hears it is recorded). When the database does not answer, the
IVR still takes the request: it is appended to a Redis list (``ip:deferred``, persisted
with Redis) and the caller hears "we will call you back as soon as possible". The sweep
applies the list in order once SQL answers again: the callback keeps the arrival time of
the call that asked for it, so its place in line is the one it would have had.

Applying is idempotent, so a worker killed half-way changes nothing twice: a callback
request applied twice finds the first one (one active request per number), a hang-up
applied twice finds the contact closed, and the confirmation SMS has one job id per
contact. Only the holder of the lock pops, and only once the record is applied.

While the database (or Redis) does not answer, the records wait in place; a record that
fails for its own data is set aside (``ip:deferred:rejected``, counted in the metrics),
so it never blocks the requests behind it, and :meth:`Deferred.replay` puts the set-aside
records back in line once their cause is fixed (``interphone journal replay``).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from typing import Any

import redis

from ..db import unavailable
from ..journal import Guarded
from ..queue.service import QueueService

log = logging.getLogger(__name__)

KEY = "ip:deferred"
LOCK = "ip:deferred:lock"
REJECTED = "ip:deferred:rejected"
LOCK_S = 60

# the head applied, popped, or set aside, only while the lock is still ours: a Guarded
_POP_IF_OWNER = """
if redis.call('get', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('lpop', KEYS[1])
redis.call('expire', KEYS[2], tonumber(ARGV[2]))
return 1
"""
# the head moves to the set-aside list in the same step: a worker killed in between
# neither loses it nor leaves it in both lists
_SET_ASIDE_IF_OWNER = """
if redis.call('get', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('rpush', KEYS[3], redis.call('lpop', KEYS[1]))
redis.call('expire', KEYS[2], tonumber(ARGV[2]))
return 1
"""
_RELEASE_IF_OWNER = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class Deferred:
    def __init__(
        self,
        connection: redis.Redis,
        queue: QueueService,
        *,
        hang_up: Callable[[int], object] | None = None,
    ) -> None:
        self.redis = connection
        self.queue = queue
        self.hang_up_live = hang_up if hang_up is not None else queue.abandon
        self._pop = connection.register_script(_POP_IF_OWNER)
        self._set_aside = connection.register_script(_SET_ASIDE_IF_OWNER)
        self._release = connection.register_script(_RELEASE_IF_OWNER)

    # -- taken by the IVR ---------------------------------------------------------------
    def callback(
        self,
        *,
        site: str,
        phone: str,
        language: str,
        channel: str,
        reason: str | None,
        file_number: str | None,
        arrived_ms: int,
        not_before_ms: int,
        call_sid: str,
        file_verified: bool = False,
    ) -> None:
        self._push(
            {
                "type": "callback",
                "site": site,
                "phone": phone,
                "language": language,
                "channel": channel,
                "reason": reason,
                "file_number": file_number,
                "file_verified": file_verified,
                "arrived_ms": arrived_ms,
                "not_before_ms": not_before_ms,
                "call_sid": call_sid,
            }
        )

    def convert(self, contact_id: int) -> None:
        """A live caller asked for a callback (``*``) while SQL was down."""
        self._push({"type": "convert", "contact_id": contact_id})

    def hang_up(self, contact_id: int) -> None:
        """A caller hung up while SQL was down: abandoned if still waiting live."""
        self._push({"type": "hang_up", "contact_id": contact_id})

    def _push(self, record: dict[str, Any]) -> None:
        self.redis.rpush(KEY, json.dumps(record, separators=(",", ":")))

    def pending(self) -> int:
        return int(self.redis.llen(KEY))

    def rejected(self) -> int:
        """Records set aside for their own data (see the module's docstring)."""
        return int(self.redis.llen(REJECTED))

    def replay(self) -> int:
        """Put the records set aside back in line, after those waiting: the next sweep
        applies them (one that fails again is set aside again). How many were moved."""
        moved = 0
        while self.redis.lmove(REJECTED, KEY, "LEFT", "RIGHT") is not None:
            moved += 1
        return moved

    # -- applied by the sweep -----------------------------------------------------------
    def apply(self, notify: Callable[[int, str], None] | None = None) -> int:
        """Apply the waiting records in order; stop at the first that meets a database or
        Redis that does not answer (the next sweep goes on from it); set aside a record
        that fails for its own data. Returns how many were applied."""
        if not self.redis.llen(KEY):
            return 0
        token = secrets.token_hex(8)
        if not self.redis.set(LOCK, token, nx=True, ex=LOCK_S):
            return 0
        applied = 0
        try:
            while (raw := self.redis.lindex(KEY, 0)) is not None:
                try:
                    self._apply(json.loads(raw), notify)
                except Exception as exc:
                    if unavailable(exc) or isinstance(
                        exc, redis.ConnectionError | redis.TimeoutError
                    ):
                        log.warning(
                            "database still unavailable: %d deferred records wait", self.pending()
                        )
                        return applied
                    log.error("deferred record set aside: %s", type(exc).__name__)
                    aside = self._set_aside(keys=[KEY, LOCK, REJECTED], args=[token, LOCK_S])
                    if aside != Guarded.DONE:
                        return applied
                    continue
                if self._pop(keys=[KEY, LOCK], args=[token, LOCK_S]) != Guarded.DONE:
                    return applied
                applied += 1
        finally:
            self._release(keys=[LOCK], args=[token])
        return applied

    def _apply(self, record: dict[str, Any], notify: Callable[[int, str], None] | None) -> None:
        kind = record["type"]
        if kind == "callback":
            ticket = self.queue.request_callback(
                record["site"],
                phone=record["phone"],
                language=record["language"],
                channel=record["channel"],
                reason=record["reason"],
                file_number=record["file_number"],
                # a record deferred before this field existed: its file stays unverified
                file_verified=record.get("file_verified") is True,
                arrived_ms=int(record["arrived_ms"]),
                not_before_ms=int(record["not_before_ms"]),
                call_sid=record["call_sid"],
            )
            if notify is not None:  # one SMS job per contact: never sent twice
                notify(ticket.contact_id, "sms_callback")
        elif kind == "convert":
            self.queue.convert_to_callback(int(record["contact_id"]))
        elif kind == "hang_up":
            contact_id = int(record["contact_id"])
            if self.queue.ticket(contact_id).kind == "live":
                self.hang_up_live(contact_id)
        else:
            raise ValueError(f"unknown deferred record {kind!r}")
