"""Records written behind the IVR: a webhook answers from Redis alone, SQL follows.

A caller pressing a key must not wait for the database. The records a webhook produces
(a call started or ended, a caller served by the IVR alone) are appended to a Redis list
in the same atomic write as the webhook's answer, and the sweep job (every couple of
seconds) moves them into SQL, in order, in batches. Each record carries a natural key
(the CallSid, or the event's ``ref``), so a batch applied twice changes nothing: a
worker killed between its commit and its trim loses nothing and duplicates nothing. The
list is trimmed only by the holder of the drain lock, so two workers never trim each
other's batch.

While the database does not answer (:func:`interphone.db.unavailable`), the batch stays
in place and the next sweep tries again: the IVR keeps answering and the records wait.
A record that fails for its own data (a deleted site, a missing field, a line that is
not JSON) is set aside in ``ip:journal:rejected`` with its error, so that it never
blocks the ones behind it; ``interphone journal list`` shows them, the admin's journal
page too, and ``interphone journal replay`` applies them again once the cause is fixed.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any, cast

import redis
from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session, sessionmaker

from . import metrics
from .db import transaction, unavailable
from .events import announce
from .models import Call, Event
from .observability import mask_digits
from .privacy import mask_phone

log = logging.getLogger(__name__)

KEY = "ip:journal"
LOCK = "ip:journal:lock"
REJECTED = "ip:journal:rejected"  # the records set aside, each with its error
REPLAY_LOCK = "ip:journal:replay:lock"
LOCK_S = 60
BATCH = 500
ERROR_CHARS = 200

Record = dict[str, Any]
_TYPES = ("call.start", "call.end", "event")


class Guarded(IntEnum):
    """The reply of a script that acts only while a lock is still its caller's
    (:data:`_SETTLE_IF_OWNER`, :data:`_REPLACE_HEAD_IF_OWNER`, and the deferred
    requests' in :mod:`interphone.voice.deferred`)."""

    REFUSED = 0  # the lock is another's now (or the list's head moved): nothing done
    DONE = 1


# Trim the settled head of the list and set aside its failed records, only while the
# lock is still ours (and keep the lock for the next batch): one atomic step, so a
# worker killed half-way neither loses a record nor sets one aside twice.
_SETTLE_IF_OWNER = """
if redis.call('get', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('ltrim', KEYS[1], tonumber(ARGV[2]), -1)
if #ARGV > 3 then redis.call('rpush', KEYS[3], unpack(ARGV, 4)) end
redis.call('expire', KEYS[2], tonumber(ARGV[3]))
return 1
"""
# Take a replayed entry off the head of the set-aside list (only if it is still there
# and the replay lock still ours); one that failed again goes back at the end with its
# new error (ARGV[3], empty when it was applied).
_REPLACE_HEAD_IF_OWNER = """
if redis.call('get', KEYS[2]) ~= ARGV[1] then return 0 end
if redis.call('lindex', KEYS[1], 0) ~= ARGV[2] then return 0 end
redis.call('lpop', KEYS[1])
if ARGV[3] ~= '' then redis.call('rpush', KEYS[1], ARGV[3]) end
redis.call('expire', KEYS[2], tonumber(ARGV[4]))
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


def describe(exc: BaseException) -> str:
    """A record's failure for the set-aside list: its type and the first line of its
    message, a database error without its statement and parameters, digits masked."""
    cause = exc.orig if isinstance(exc, StatementError) and exc.orig is not None else exc
    lines = str(cause).strip().splitlines()
    message = mask_digits(lines[0] if lines else "")[:ERROR_CHARS]
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


@dataclass(frozen=True)
class SetAside:
    """A record set aside: as journaled, with the error that set it aside and when."""

    raw: str
    error: str
    at_ms: int

    def encode(self) -> str:
        return json.dumps({"record": self.raw, "error": self.error, "at_ms": self.at_ms})

    @classmethod
    def decode(cls, item: bytes | str) -> SetAside:
        text = item.decode("utf-8", "replace") if isinstance(item, bytes) else item
        try:
            entry = json.loads(text)
        except ValueError:
            entry = None
        if isinstance(entry, dict) and isinstance(entry.get("record"), str):
            at_ms = entry.get("at_ms")
            return cls(
                entry["record"], str(entry.get("error", "")), at_ms if isinstance(at_ms, int) else 0
            )
        return cls(text, "", 0)  # set aside by an earlier version: the record alone

    def summary(self) -> dict[str, Any]:
        """What an admin may read: the record's kind, call and site, the caller's number
        masked, never the event's data; any other run of digits masked too."""
        try:
            record = json.loads(self.raw)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            record = {}

        def shown(name: str) -> str | None:
            value = record.get(name)
            return mask_digits(str(value))[:80] if value is not None else None

        at_ms = record.get("at_ms")
        number = record.get("from")
        return {
            "type": shown("type"),
            "call": shown("sid") or shown("ref"),
            "kind": shown("kind"),
            "site_id": record.get("site_id") if isinstance(record.get("site_id"), int) else None,
            "from": mask_phone(number) if isinstance(number, str) and number else None,
            "at": _when(at_ms).isoformat() if isinstance(at_ms, int) and at_ms > 0 else None,
            "error": self.error or None,
            "set_aside_at": _when(self.at_ms).isoformat() if self.at_ms else None,
        }


@dataclass(frozen=True)
class Replay:
    """What ``replay`` did: records applied, records set aside again (with their new
    error), records left untouched because the database did not answer."""

    applied: int
    failed: int
    waiting: int

    def as_json(self) -> dict[str, int]:
        return {"applied": self.applied, "failed": self.failed, "waiting": self.waiting}


class ReplayRunning(Exception):
    """Another replay holds the set-aside list."""


class Journal:
    def __init__(
        self,
        connection: redis.Redis,
        sessions: sessionmaker[Session],
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.redis = connection
        self.sessions = sessions
        self.now = now
        self._settle = connection.register_script(_SETTLE_IF_OWNER)
        self._replace_head = connection.register_script(_REPLACE_HEAD_IF_OWNER)
        self._release = connection.register_script(_RELEASE_IF_OWNER)

    def append(self, *records: Record) -> None:
        """Append records on their own (a webhook adds its records to its answer's write)."""
        if records:
            self.redis.rpush(KEY, *encode(records))

    def pending(self) -> int:
        return int(self.redis.llen(KEY))

    def rejected(self) -> int:
        return int(self.redis.llen(REJECTED))

    def set_aside(self, limit: int = 1000) -> list[SetAside]:
        """The records set aside, oldest first (at most ``limit``)."""
        return [SetAside.decode(item) for item in self.redis.lrange(REJECTED, 0, limit - 1)]

    def drain(self, batch: int = BATCH) -> int:
        """Move the waiting records into SQL, in order. Returns how many left the list,
        applied or set aside (0 when another worker holds the drain). While the database
        does not answer, the batch stays in place for the next sweep."""
        token = secrets.token_hex(8)
        if not self.redis.set(LOCK, token, nx=True, ex=LOCK_S):
            return 0
        done = 0
        try:
            while True:
                raw = self.redis.lrange(KEY, 0, batch - 1)
                if not raw:
                    return done
                settled, set_aside = self._apply_batch(raw)
                entries = [entry.encode() for entry in set_aside]
                kept = Guarded.DONE
                if settled:
                    kept = self._settle(
                        keys=[KEY, LOCK, REJECTED], args=[token, settled, LOCK_S, *entries]
                    )
                if kept != Guarded.DONE:
                    log.warning("journal drain lost its lock; another worker goes on")
                    return done
                self._count(set_aside)
                done += settled
                if settled < len(raw):
                    log.warning("database unavailable: %d journal records wait", self.pending())
                    return done
        finally:
            self._release(keys=[LOCK], args=[token])

    def _apply_batch(self, raw: list[Any]) -> tuple[int, list[SetAside]]:
        """Apply a batch in one transaction, else record by record. Returns how many of
        its records are settled (applied or set aside, from its head on) and those set
        aside; it stops at the first error saying that the database does not answer."""
        decoded = [_decoded(item) for item in raw]
        try:
            with transaction(self.sessions) as s:
                self._apply(s, [record for record, _ in decoded if record is not None])
        except Exception as exc:
            if unavailable(exc):
                return 0, []
            log.warning(
                "journal batch refused (%s); applying its records one by one", describe(exc)
            )
        else:
            return len(raw), [
                self._aside(item, error)
                for item, (_, error) in zip(raw, decoded, strict=True)
                if error is not None
            ]
        set_aside: list[SetAside] = []
        for n, (item, (record, error)) in enumerate(zip(raw, decoded, strict=True)):
            if record is not None:
                try:
                    with transaction(self.sessions) as s:
                        self._apply(s, [record])
                    continue
                except Exception as exc:
                    if unavailable(exc):
                        return n, set_aside
                    error = describe(exc)
            set_aside.append(self._aside(item, error or "unknown"))
        return len(raw), set_aside

    def _aside(self, item: bytes | str, error: str) -> SetAside:
        raw = item.decode("utf-8", "replace") if isinstance(item, bytes) else item
        log.error("journal record set aside: %s", error)
        return SetAside(raw, error, int(self.now() * 1000))

    def _count(self, set_aside: list[SetAside]) -> None:
        if not set_aside:
            return
        recorder = metrics.recorder_for(self.redis)
        for entry in set_aside:
            recorder.inc("interphone_journal_set_aside", entry.error.split(":", 1)[0])
        recorder.flush()  # a worker may stay quiet for long: no figure waits in its memory

    def replay(self) -> Replay:
        """Apply the records set aside again, oldest first, each in its own transaction:
        one applied leaves the list, one that fails again stays with its new error. What
        is already in SQL is not applied twice (a call by its CallSid, an event by its
        ref). Stops, leaving the rest in place, when the database does not answer."""
        token = secrets.token_hex(8)
        if not self.redis.set(REPLAY_LOCK, token, nx=True, ex=LOCK_S):
            raise ReplayRunning("another replay of the set-aside records is running")
        applied = failed = 0
        total = self.rejected()
        try:
            for _ in range(total):
                item = self.redis.lindex(REJECTED, 0)
                if item is None:
                    break
                entry = SetAside.decode(item)
                record, error = _decoded(entry.raw)
                if record is not None:
                    try:
                        with transaction(self.sessions) as s:
                            self._apply(s, [record])
                    except Exception as exc:
                        if unavailable(exc):
                            log.warning("database unavailable: the replay stops")
                            break
                        error = describe(exc)
                again = ""
                if error is not None:
                    aside = self._aside(entry.raw, error)
                    self._count([aside])
                    again = aside.encode()
                replaced = self._replace_head(
                    keys=[REJECTED, REPLAY_LOCK], args=[token, item, again, LOCK_S]
                )
                if replaced != Guarded.DONE:
                    log.warning("the set-aside list changed under the replay; it stops")
                    break
                if again:
                    failed += 1
                else:
                    applied += 1
        finally:
            self._release(keys=[REPLAY_LOCK], args=[token])
        return Replay(applied, failed, total - applied - failed)

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
                announce(s, r["site_id"], r["kind"])
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


def _decoded(item: bytes | str) -> tuple[Record | None, str | None]:
    """A journal entry read back: the record, or why it cannot be one."""
    try:
        record = json.loads(item)
    except ValueError:
        return None, "ValueError: not JSON"
    if not isinstance(record, dict) or record.get("type") not in _TYPES:
        return None, "ValueError: not a journal record (unknown type)"
    return record, None
