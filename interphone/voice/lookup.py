"""A case's status for the IVR: the case of a file number, given only if the birth date
typed matches, read ahead while the caller types that date.

The one SQL read on the webhooks' path. :meth:`CaseLookup.prefetch` reads the case once
the answer asking for the birth date has left (the web layer calls it after the
response) and keeps it in the call's state (:data:`PREFETCHED`, the row's codec
:func:`encode_row` / :func:`prefetched_row`): the status turn then checks the eight
digits without waiting on the database, and reads the case itself only when the row is
not there or is another number's. Every comparison spends one of the file number's
tries first (:meth:`CaseLookup.take_try`), whoever types it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import redis
from sqlalchemy import Engine, bindparam, select

from .. import db, metrics
from ..digits import ascii_digits
from ..models import Case
from ..privacy import check_birth_date
from .reply import trace
from .session import CallState, CallStore

if TYPE_CHECKING:
    from .limits import CallerLimits

log = logging.getLogger(__name__)

PREFETCHED = "case"  # CallState.extra: the case read ahead (CaseLookup.prefetch)
PROVEN = "proven"  # CallState.extra: the file number whose birth date matched in the call

CASE_BY_FILE = select(
    Case.birth_date_hash, Case.status, Case.status_changed_at, Case.api_valid_until
).where(Case.file_number == bindparam("file_number"))


@dataclass(frozen=True)
class CaseStatus:
    status: str
    status_changed_at: datetime
    api_valid_until: date | None


class CaseLookup:
    """``reads``: the engine of the webhooks' reads; ``limits``: the per-file tries and
    the door's per-call lookups (none: unlimited)."""

    def __init__(
        self,
        reads: Engine,
        calls: CallStore,
        connection: redis.Redis,
        *,
        birthdate_key: str,
        limits: CallerLimits | None = None,
    ) -> None:
        self.reads = reads
        self.calls = calls
        self.redis = connection
        self.birthdate_key = birthdate_key
        self.limits = limits

    def prefetch(self, sid: str, file_number: str) -> None:
        """Read the case of ``file_number`` into the call's state, once the answer asking
        for the birth date is sent: the caller types eight digits meanwhile. Best effort:
        the status turn reads it itself when the row is not there."""
        try:
            row = db.read_once(self.reads, CASE_BY_FILE, {"file_number": file_number})
            self.calls.remember(sid, PREFETCHED, encode_row(file_number, row))
        except Exception as exc:  # after the response: nobody to tell but the log
            log.info("call %s: case not read ahead (%s)", sid, type(exc).__name__)

    def match(
        self, state: CallState, file_number: str, digits: str, where: str, taken: list[str]
    ) -> CaseStatus | None:
        """The case, only if the birth date matches: a miss says nothing of which failed.
        A match proves the file for the rest of the call (:data:`PROVEN`) and gives back
        the file's try ``taken`` before comparing (:meth:`take_try`); a miss keeps it,
        whoever typed the number and whether or not the file exists. ``where``: the step,
        for the metrics."""
        prefetched = prefetched_row(state.extra.pop(PREFETCHED, ""), file_number)
        born = parse_ddmmyyyy(digits)
        if born is None or not file_number:
            self._count("interphone_birth_date_mismatches", where)
            return None
        if prefetched is not None:
            row = prefetched[0]  # read as the caller typed the birth date (prefetch)
        else:
            # one read on the webhook's path: a plain connection of the reads' engine, no
            # transaction and a statement built once (an ORM session, a fresh statement
            # or a pre-pinged connection each add to the read's cost)
            try:
                row = db.read_once(self.reads, CASE_BY_FILE, {"file_number": file_number})
            except Exception:  # nothing was compared: the try is not spent
                self.give_back(taken)
                raise
        if row is None or not check_birth_date(self.birthdate_key, file_number, born, row[0]):
            self._count("interphone_birth_date_mismatches", where)
            return None
        self.give_back(taken)
        state.extra[PROVEN] = file_number
        return CaseStatus(row[1], row[2], row[3])

    def take_try(self, state: CallState, file_number: str) -> list[str] | None:
        """Take one of the file number's birth-date tries before comparing, whoever types
        it (:meth:`CallerLimits.file_take`, atomic: calls guessing at once cannot pass
        the allowance). None when it has none left: only an agent gives its status, in
        the same words whatever the file, existing or not; its case read ahead is then
        dropped unused."""
        if self.limits is None or not file_number:
            return []
        taken = self.limits.file_take(file_number)
        if taken is not None:
            return taken
        state.extra.pop(PREFETCHED, None)
        trace(state, "file_limit")
        self._count("interphone_rate_limited", "file_failures")
        return None

    def give_back(self, taken: list[str]) -> None:
        if self.limits is not None:
            self.limits.file_give_back(taken)

    def allowed_at_door(self, state: CallState) -> bool:
        """At the door, a lookup counted on its own (the phone's is counted with its
        turn): a device, counted per call (a guesser has to stand at the door)."""
        if self.limits is None:
            return True
        return self.limits.allow_per_call("caller_lookups", state.sid)

    def _count(self, name: str, *labels: str) -> None:
        metrics.recorder_for(self.redis).inc(name, *labels)


def encode_row(file_number: str, row: tuple[Any, ...] | None) -> str:
    """``[file number]`` (no such case), or ``[file number, birth date hash, status,
    status changed at, API valid until]``; the hash is what the database holds."""
    if row is None:
        return json.dumps([file_number])
    hashed, status, changed, api = row
    assert isinstance(changed, datetime)
    api_text = api.isoformat() if isinstance(api, date) else ""
    return json.dumps([file_number, hashed, status, changed.isoformat(), api_text])


def prefetched_row(raw: str, file_number: str) -> tuple[tuple[Any, ...] | None] | None:
    """The row read ahead for ``file_number`` (wrapped: ``(None,)`` is "no such case"),
    or None when there is none for that number (read the database then)."""
    try:
        words = json.loads(raw) if raw else None
    except ValueError:
        return None
    if not isinstance(words, list) or not words or words[0] != file_number:
        return None
    if len(words) == 1:
        return (None,)
    _, hashed, status, changed, api = words
    api_date = date.fromisoformat(api) if api else None
    return ((hashed, status, datetime.fromisoformat(changed), api_date),)


def parse_ddmmyyyy(digits: str) -> date | None:
    """A birth date typed or said as eight digits, day first; None if it is none."""
    if len(digits) != 8 or not ascii_digits(digits):
        return None
    try:
        return date(int(digits[4:]), int(digits[2:4]), int(digits[:2]))
    except ValueError:
        return None
