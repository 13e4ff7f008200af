"""Durable records (SQLAlchemy 2.0 typed models). The schema is owned by Alembic."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

CASE_STATUSES = (
    "filed",
    "incomplete",
    "under_review",
    "api_issued",
    "favourable",
    "card_in_production",
    "card_ready",
    "refused",
    "closed",
)
CONTACT_KINDS = ("live", "callback")
CONTACT_STATES = (
    "waiting",
    "offered",
    "on_call",
    "completed",
    "abandoned",
    "cancelled",
    "unreachable",
)
ACTIVE_CONTACT_STATES = ("waiting", "offered", "on_call")
ROLES = ("agent", "supervisor", "admin")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[str]: JSON}


class Site(Base):
    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Paris")
    phone_numbers: Mapped[list[str]] = mapped_column(default=list)
    intercom_identities: Mapped[list[str]] = mapped_column(default=list)
    languages: Mapped[list[str]] = mapped_column(default=lambda: ["fr", "en", "ar", "es"])
    # {"mon": [["09:00", "12:00"], ["13:30", "16:30"]], ...}; missing day = closed
    opening_hours: Mapped[dict[str, Any]] = mapped_column(default=dict)
    callback_hours: Mapped[dict[str, Any]] = mapped_column(default=dict)
    holiday_region: Mapped[str] = mapped_column(String(16), default="FR")
    extra_closures: Mapped[list[str]] = mapped_column(default=list)  # ISO dates


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(primary_key=True)
    file_number: Mapped[str] = mapped_column(String(32), unique=True)
    birth_date_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    status_changed_at: Mapped[datetime]
    api_valid_until: Mapped[date | None] = mapped_column(Date)
    phone: Mapped[str | None] = mapped_column(String(20))
    language: Mapped[str | None] = mapped_column(String(8))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Agent(Base):
    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), default="agent")
    languages: Mapped[list[str]] = mapped_column(default=lambda: ["fr"])
    phone: Mapped[str | None] = mapped_column(String(20))
    client_identity: Mapped[str | None] = mapped_column(String(64))
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # presence as last set by the agent or a supervisor, for ``queue rebuild``
    presence: Mapped[str] = mapped_column(String(16), default="offline")
    presence_reason: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, default=0)
    # carried in the session cookie: raised on sign-out, password reset and deactivation
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Contact(Base):
    """A live call waiting in line or a callback request: one place in the queue."""

    __tablename__ = "contacts"
    __table_args__ = (
        Index("ix_contacts_site_state", "site_id", "state"),
        # QueueService.reconcile, every sweep: accepted in SQL, never seen by Redis (a
        # handful at most), found without reading the whole table as it grows
        Index(
            "ix_contacts_unqueued",
            "id",
            postgresql_where=text("state = 'waiting' AND version = 0"),
            sqlite_where=text("state = 'waiting' AND version = 0"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(12), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16), default="phone")
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    phone: Mapped[str | None] = mapped_column(String(20))
    language: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str | None] = mapped_column(String(200))
    file_number: Mapped[str | None] = mapped_column(String(32))
    # the birth date matched in this call: only a proven file sets priority or duplicates
    file_verified: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    priority_class: Mapped[int] = mapped_column(Integer, default=1)
    arrived_ms: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16), default="waiting")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    # an agent's outcome code, or the reason a supervisor typed for a cancellation
    outcome: Mapped[str | None] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)
    call_sid: Mapped[str | None] = mapped_column(String(64))
    # Set while the callback is active, NULL afterwards: the unique index is the
    # one-active-request-per-number rule, enforced by the database under races.
    active_phone: Mapped[str | None] = mapped_column(String(20), unique=True)
    active_file: Mapped[str | None] = mapped_column(String(32), unique=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None]


class Call(Base):
    __tablename__ = "calls"

    id: Mapped[int] = mapped_column(primary_key=True)
    sid: Mapped[str] = mapped_column(String(64), unique=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"))
    direction: Mapped[str] = mapped_column(String(16))  # inbound / outbound
    channel: Mapped[str] = mapped_column(String(16), default="phone")  # phone/intercom/browser
    from_number: Mapped[str | None] = mapped_column(String(64))
    to_number: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), default="ringing")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    duration_s: Mapped[int | None] = mapped_column(Integer)


class Event(Base):
    """Append-only log of every state change: the source of statistics and audit."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_site_at", "site_id", "at"),
        # an agent's events newest first: the agent log's last move (queue/agentlog.py)
        Index("ix_events_agent_id_id", "agent_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(40))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"), index=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    actor: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # set on events recorded through the journal: at most one event per ref
    ref: Mapped[str | None] = mapped_column(String(80), unique=True)


VOICEMAIL_STATES = ("pending", "transcribed", "no_model", "failed")


class Voicemail(Base):
    """A message left after hours (``<Record>``): kept from the first webhook that names
    its RecordingSid, linked to the callback contact it created (none for a withheld
    number or the door), then fetched and transcribed by an RQ job. The audio is kept
    here, never fetched by a browser from Twilio."""

    __tablename__ = "voicemails"

    id: Mapped[int] = mapped_column(primary_key=True)
    recording_sid: Mapped[str] = mapped_column(String(64), unique=True)
    call_sid: Mapped[str] = mapped_column(String(64), index=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"), index=True)
    language: Mapped[str] = mapped_column(String(8))
    channel: Mapped[str] = mapped_column(String(16), default="phone")
    duration_s: Mapped[int | None] = mapped_column(Integer)
    # pending (audio or transcript to come), transcribed, no_model, failed
    state: Mapped[str] = mapped_column(String(16), default="pending")
    transcript: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str | None] = mapped_column(String(200))  # why there is no transcript
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    audio_type: Mapped[str | None] = mapped_column(String(32))
    audio: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    transcribed_at: Mapped[datetime | None]
    # a message with no contact (withheld number, the door): marked done by an agent
    handled_at: Mapped[datetime | None]
    handled_by: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))


class PromptOverride(Base):
    """A site's own text for one prompt of one language, said instead of the catalogue's
    (:mod:`interphone.prompt_overrides`); removed by a reset to the default."""

    __tablename__ = "prompt_overrides"
    __table_args__ = (
        UniqueConstraint("site_id", "language", "key", name="uq_prompt_overrides_site_prompt"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    language: Mapped[str] = mapped_column(String(8))
    key: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    changed_by: Mapped[str] = mapped_column(String(254))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class PromptChange(Base):
    """One change of a site's prompt, kept for ever: who, when, the text before and
    after (None: the catalogue's default)."""

    __tablename__ = "prompt_changes"
    __table_args__ = (Index("ix_prompt_changes_site_at", "site_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    language: Mapped[str] = mapped_column(String(8))
    key: Mapped[str] = mapped_column(String(64))
    previous: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(254))
    at: Mapped[datetime] = mapped_column(default=utcnow)
