"""Records written behind the IVR: a webhook answers from Redis alone, SQL follows.

A caller pressing a key must not wait for the database. The records a webhook produces
(a call started or ended, a caller served by the IVR alone) are appended to a Redis list
in the same atomic write as the webhook's answer, and the sweep job (every couple of
seconds) moves them into SQL, in order, in batches. Each record carries a natural key
(the CallSid, or the event's ``ref``), so a batch applied twice changes nothing: a
worker killed between its commit and its trim loses nothing and duplicates nothing. The
list is trimmed only by the holder of the drain lock, so two workers never trim each
other's batch. A record the database refuses (a deleted site, say) is set aside in
``ip:journal:rejected`` with a log line instead of blocking the ones behind it.

This also keeps the IVR answering while the database is slow or down: the records wait.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, cast

import redis
from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from .db import transaction
from .models import Call, Event
from .queue.notifier import Notifier

log = logging.getLogger(__name__)

KEY = "ip:journal"
LOCK = "ip:journal:lock"
REJECTED = "ip:journal:rejected"
LOCK_S = 60
BATCH = 500

Record = dict[str, Any]

# Trim the applied batch only while the lock is still ours (and keep it for the next one).
_TRIM_IF_OWNER = """
if redis.call('get', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('ltrim', KEYS[1], tonumber(ARGV[2]), -1)
redis.call('expire', KEYS[2], tonumber(ARGV[3]))
return 1
"""
_RELEASE_IF_OWNER = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def call_started(
    sid: str,
    *,
    site_id: int,
    channel: str,
    from_number: str | None,
    to_number: str | None,
    at_ms: int,
    direction: str = "inbound",
) -> Record:
    return {
        "type": "call.start",
        "sid": sid,
        "site_id": site_id,
        "direction": direction,
        "channel": channel,
        "from": from_number,
        "to": to_number,
        "at_ms": at_ms,
    }


def call_ended(sid: str, *, status: str, at_ms: int, duration_s: int | None) -> Record:
    return {
        "type": "call.end",
        "sid": sid,
        "status": status,
        "at_ms": at_ms,
        "duration_s": duration_s,
    }


def event(ref: str, kind: str, *, site_id: int | None, at_ms: int, data: dict[str, Any]) -> Record:
    """An event that happens at most once per ``ref`` (e.g. per call and step)."""
    return {
        "type": "event",
        "ref": ref[:80],
        "kind": kind,
        "site_id": site_id,
        "at_ms": at_ms,
        "data": data,
    }


def encode(records: Iterable[Record]) -> list[str]:
    return [json.dumps(record, separators=(",", ":")) for record in records]


def _when(at_ms: int) -> datetime:
    return datetime.fromtimestamp(at_ms / 1000, tz=UTC)


class Journal:
    def __init__(self, connection: redis.Redis, sessions: sessionmaker[Session]) -> None:
        self.redis = connection
        self.sessions = sessions
        self._trim = connection.register_script(_TRIM_IF_OWNER)
        self._release = connection.register_script(_RELEASE_IF_OWNER)

    def append(self, *records: Record) -> None:
        """Append records on their own (a webhook adds its records to its answer's write)."""
        if records:
            self.redis.rpush(KEY, *encode(records))

    def pending(self) -> int:
        return int(self.redis.llen(KEY))

    def rejected(self) -> int:
        return int(self.redis.llen(REJECTED))

    def drain(self, batch: int = BATCH) -> int:
        """Move the waiting records into SQL. Returns how many were applied (0 when
        another worker holds the drain)."""
        token = secrets.token_hex(8)
        if not self.redis.set(LOCK, token, nx=True, ex=LOCK_S):
            return 0
        applied = 0
        try:
            while True:
                raw = self.redis.lrange(KEY, 0, batch - 1)
                if not raw:
                    return applied
                self._apply_batch(raw)
                if not self._trim(keys=[KEY, LOCK], args=[token, len(raw), LOCK_S]):
                    log.warning("journal drain lost its lock; another worker goes on")
                    return applied
                applied += len(raw)
        finally:
            self._release(keys=[LOCK], args=[token])

    def _apply_batch(self, raw: list[Any]) -> None:
        records = [_decode(item) for item in raw]
        unreadable = [item for item, record in zip(raw, records, strict=True) if record is None]
        if unreadable:
            self.redis.rpush(REJECTED, *unreadable)
        try:
            with transaction(self.sessions) as s:
                self._apply(s, [r for r in records if r is not None])
            return
        except SQLAlchemyError:
            log.warning("journal batch refused; applying its %d records one by one", len(raw))
        for item, record in zip(raw, records, strict=True):
            if record is None:
                continue
            try:
                with transaction(self.sessions) as s:
                    self._apply(s, [record])
            except SQLAlchemyError as exc:
                log.error("journal record %s set aside: %s", record.get("type"), type(exc).__name__)
                self.redis.rpush(REJECTED, item)

    def _apply(self, s: Session, records: list[Record]) -> None:
        """One batch in three statements at most: the new calls (a call ended further in
        the batch is inserted ended), the ends of the other calls, the new events. The
        first final status of a call wins, as does the first event of a ref. Ends are
        written after the batch's new calls: an end journaled before its call's start
        (webhooks out of order) still ends it."""
        sids = {r["sid"] for r in records if r["type"] == "call.start"}
        known_sids = set(s.scalars(select(Call.sid).where(Call.sid.in_(sids)))) if sids else set()
        refs = {r["ref"] for r in records if r["type"] == "event"}
        known_refs = set(s.scalars(select(Event.ref).where(Event.ref.in_(refs)))) if refs else set()
        calls: dict[str, dict[str, Any]] = {}  # sid → the row of a call new in this batch
        ends: list[dict[str, Any]] = []  # of calls already in the database
        events: list[dict[str, Any]] = []
        for r in records:
            if r["type"] == "call.start" and r["sid"] not in known_sids:
                known_sids.add(r["sid"])
                calls[r["sid"]] = {
                    "sid": r["sid"],
                    "site_id": r["site_id"],
                    "direction": r["direction"],
                    "channel": r["channel"],
                    "from_number": r["from"],
                    "to_number": r["to"],
                    "status": "in-progress",
                    "started_at": _when(r["at_ms"]),
                    "ended_at": None,
                    "duration_s": None,
                }
            elif r["type"] == "call.end":
                ended = {
                    "status": r["status"],
                    "ended_at": _when(r["at_ms"]),
                    "duration_s": r["duration_s"],
                }
                new = calls.get(r["sid"])
                if new is None:
                    ends.append({"end_sid": r["sid"], **ended})
                elif new["ended_at"] is None:
                    new.update(ended)
            elif r["type"] == "event" and r["ref"] not in known_refs:
                known_refs.add(r["ref"])
                events.append(
                    {
                        "ref": r["ref"],
                        "at": _when(r["at_ms"]),
                        "kind": r["kind"],
                        "site_id": r["site_id"],
                        "data": r["data"],
                    }
                )
                Notifier.remember(s, r["site_id"], r["kind"])
        db = s.connection()
        if calls:
            db.execute(insert(_CALLS), list(calls.values()))
        if ends:
            db.execute(_END_CALL, ends)
        if events:
            db.execute(insert(_EVENTS), events)


# Core statements, executed for many rows at once
_CALLS, _EVENTS = cast(Table, Call.__table__), cast(Table, Event.__table__)
_END_CALL = (  # a call ended: its first final status wins
    update(_CALLS)
    .where(_CALLS.c.sid == bindparam("end_sid"), _CALLS.c.ended_at.is_(None))
    .values(
        status=bindparam("status"),
        ended_at=bindparam("ended_at"),
        duration_s=bindparam("duration_s"),
    )
)


def _decode(item: Any) -> Record | None:
    try:
        record = json.loads(item)
    except ValueError:
        log.error("journal entry is not JSON; set aside")
        return None
    if not isinstance(record, dict) or record.get("type") not in (
        "call.start",
        "call.end",
        "event",
    ):
        log.error("journal entry of unknown type; set aside")
        return None
    return record
