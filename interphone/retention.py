"""Retention: personal data is removed once it has served, anonymous figures stay.

``RETENTION_DAYS`` after a contact was closed, its phone number, file number and the
text people typed about it (the agent's note, a cancellation's reason) are cleared; the
calls of that age lose the applicant's number; the events of that age lose the reasons
typed with them; closed cases (status ``closed`` for that long) lose their phone number
and birth-date hash. What the statistics read stays: kinds, channels, languages, states,
outcome codes, arrival and closing times, attempts, the reason code, the events
themselves. Free text can hold anything (a number, a name, a situation), so none is
kept. A purged row is recognisable (no number or text left), so running the purge again
changes nothing: it is idempotent, and it works in batches so that no table is locked
for long.

Voicemails go with their contact: once it is closed (or, for a message with no contact,
once the message is that old), the audio and the transcript are cleared; the row stays
(language, channel, duration, times) for the figures.

Run by an RQ job that the periodic sweep queues at most once an hour
(:class:`Retention`, :func:`interphone.jobs.schedule_retention`), and by
``interphone retention purge [--dry-run]``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from sqlalchemy import ColumnElement, and_, case, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from . import metrics
from .db import transaction
from .models import Call, Case, Contact, Event, Voicemail
from .queue.service import CANCEL_REASONS, OUTCOMES, SYSTEM_REASONS

log = logging.getLogger(__name__)

BATCH = 500
PURGED_HASH = "purged"  # never equal to a hex digest: a purged case never matches
DUE_KEY = "ip:retention:due"
RUN_EVERY_S = 3600


@dataclass
class Report:
    cutoff: str
    dry_run: bool
    counts: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Purge:
    """One table: which rows still hold personal data past the cutoff, how to clear
    them (given the ids of one batch)."""

    table: str
    model: Any
    where: Callable[[datetime], ColumnElement[bool]]
    clear: Callable[[Session, list[int]], None]


def _setting(model: Any, values: dict[Any, Any]) -> Callable[[Session, list[int]], None]:
    def clear(s: Session, ids: list[int]) -> None:
        s.execute(
            update(model)
            .where(model.id.in_(ids))
            .values(values)
            .execution_options(synchronize_session=False)
        )

    return clear


# an outcome is a code of the agent's screen, a reason the system wrote, a cancellation's
# code, or a cancellation's reason as a person typed it (cleared)
_CODES = sorted(set(OUTCOMES) | SYSTEM_REASONS | set(CANCEL_REASONS))
_TYPED_OUTCOME = and_(Contact.outcome.is_not(None), Contact.outcome.not_in(_CODES))
_REASON = Event.data["reason"].as_string()  # in a cancellation's event
_TYPED_REASON = and_(_REASON.is_not(None), _REASON.not_in(sorted(SYSTEM_REASONS)))


def _purges() -> list[_Purge]:
    return [
        _Purge(
            "contacts",
            Contact,
            lambda cutoff: and_(
                Contact.closed_at.is_not(None),
                Contact.closed_at < cutoff,
                or_(
                    Contact.phone.is_not(None),
                    Contact.file_number.is_not(None),
                    Contact.note.is_not(None),
                    _TYPED_OUTCOME,
                ),
            ),
            _setting(
                Contact,
                {
                    Contact.phone: None,
                    Contact.file_number: None,
                    Contact.note: None,
                    Contact.outcome: case((_TYPED_OUTCOME, None), else_=Contact.outcome),
                },
            ),
        ),
        _Purge(
            "events",
            Event,
            lambda cutoff: and_(
                Event.kind == "contact.cancelled", Event.at < cutoff, _TYPED_REASON
            ),
            _clear_reasons,
        ),
        _Purge(
            "calls",
            Call,
            lambda cutoff: and_(
                func.coalesce(Call.ended_at, Call.started_at) < cutoff,
                or_(
                    and_(Call.direction == "inbound", Call.from_number.is_not(None)),
                    and_(Call.direction != "inbound", Call.to_number.is_not(None)),
                ),
            ),
            _clear_calls,
        ),
        _Purge(
            "voicemails",
            Voicemail,
            lambda cutoff: and_(
                Voicemail.created_at < cutoff,
                or_(Voicemail.audio.is_not(None), Voicemail.transcript.is_not(None)),
                or_(
                    Voicemail.contact_id.is_(None),
                    Voicemail.contact_id.in_(
                        select(Contact.id).where(
                            Contact.closed_at.is_not(None), Contact.closed_at < cutoff
                        )
                    ),
                ),
            ),
            _setting(
                Voicemail,
                {
                    Voicemail.audio: None,
                    Voicemail.audio_type: None,
                    Voicemail.transcript: None,
                    Voicemail.detail: "purged",
                },
            ),
        ),
        _Purge(
            "cases",
            Case,
            lambda cutoff: and_(
                Case.status == "closed",
                Case.status_changed_at < cutoff,
                or_(Case.phone.is_not(None), Case.birth_date_hash != PURGED_HASH),
            ),
            _setting(Case, {Case.phone: None, Case.birth_date_hash: PURGED_HASH}),
        ),
    ]


def purge(
    sessions: sessionmaker[Session],
    now: datetime,
    days: int,
    *,
    dry_run: bool = False,
    batch: int = BATCH,
) -> Report:
    """Clear the personal data older than ``days`` before ``now``; returns the counts
    (with ``dry_run``, what would be cleared)."""
    cutoff = now - timedelta(days=days)
    report = Report(cutoff=cutoff.isoformat(), dry_run=dry_run)
    for item in _purges():
        where = item.where(cutoff)
        if dry_run:
            with sessions() as s:
                count = s.scalar(select(func.count()).select_from(item.model).where(where))
            report.counts[item.table] = int(count or 0)
            continue
        total = 0
        while True:
            with transaction(sessions) as s:
                ids = list(s.scalars(select(item.model.id).where(where).limit(batch)))
                if not ids:
                    break
                item.clear(s, ids)
            total += len(ids)
        report.counts[item.table] = total
    if not dry_run and any(report.counts.values()):
        log.info("retention purge before %s: %s", report.cutoff, report.counts)
    return report


def _clear_reasons(s: Session, ids: list[int]) -> None:
    """The events keep their other data (``before_bridge``, say), not the reason."""
    rows = s.execute(select(Event.id, Event.data).where(Event.id.in_(ids))).all()
    s.execute(
        update(Event),
        [
            {"id": id_, "data": {k: v for k, v in data.items() if k != "reason"}}
            for id_, data in rows
        ],
    )


def _clear_calls(s: Session, ids: list[int]) -> None:
    for direction_is_inbound, column in ((True, Call.from_number), (False, Call.to_number)):
        direction = (
            Call.direction == "inbound" if direction_is_inbound else Call.direction != "inbound"
        )
        s.execute(
            update(Call)
            .where(Call.id.in_(ids), direction)
            .values({column: None})
            .execution_options(synchronize_session=False)
        )


# -- the service ---------------------------------------------------------------------------
class Retention:
    """The purge with the deployment's period and clock: what the hourly job runs
    (:func:`interphone.jobs.purge_retention`, queued by the sweep)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        connection: redis.Redis,
        now: Callable[[], float],
        days: int,
    ) -> None:
        self.sessions = sessions
        self.redis = connection
        self.now = now
        self.days = days

    def claim_hour(self) -> bool:
        """True at most once an hour (one Redis command): the purge is due."""
        return bool(self.redis.set(DUE_KEY, "1", nx=True, ex=RUN_EVERY_S))

    def release_hour(self) -> None:
        """The purge could not be queued: the next sweep tries again."""
        with contextlib.suppress(redis.RedisError):
            self.redis.delete(DUE_KEY)

    def purge(self) -> Report:
        """Clear what is older than the period; the counts also go to ``GET /metrics``."""
        report = purge(self.sessions, datetime.fromtimestamp(self.now(), tz=UTC), self.days)
        recorder = metrics.recorder_for(self.redis)
        for table, count in report.counts.items():
            if count:
                recorder.inc("interphone_retention_purged", table, amount=count)
        recorder.flush()
        return report
