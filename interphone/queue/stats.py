"""Figures for supervisors: the queue now, today so far, and staffing advice.

Everything is computed from the append-only event log and the contacts table (SQL)
and from the live queue (Redis); nothing here writes.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from ..models import Agent, Contact, Event, Site
from .clock import Clock, from_ms, to_ms
from .estimate import agents_needed, service_level
from .store import RedisQueue

SL_THRESHOLD_S = 20.0
SL_TARGET = 0.8
CALLBACK_OVERDUE_S = 4 * 3600.0


@dataclass
class Figures:
    waiting_by_channel: dict[str, int] = field(default_factory=dict)
    waiting_total: int = 0
    longest_wait_s: int = 0
    agents_by_state: dict[str, int] = field(default_factory=dict)
    arrivals_today: int = 0
    answered_today: int = 0
    abandoned_today: int = 0
    self_served_today: int = 0
    callbacks_due: int = 0
    callbacks_overdue: int = 0
    callbacks_unreachable: int = 0
    service_level: float | None = None
    average_handle_s: float | None = None
    staffing: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class Statistics:
    def __init__(
        self,
        store: RedisQueue,
        sessions: sessionmaker[Session],
        clock: Clock,
        *,
        default_handle_time_s: float = 300.0,
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.clock = clock
        self.default_handle_time_s = default_handle_time_s

    def figures(self, site_code: str) -> Figures:
        now_ms = to_ms(self.clock.now())
        out = Figures()
        with self.sessions() as s:
            site = s.scalar(select(Site).where(Site.code == site_code))
            if site is None:
                return out
            start = _start_of_day(from_ms(now_ms), site.timezone)
            self._queue_now(s, site, now_ms, out)
            self._agents(s, site, out)
            self._today(s, site, start, out)
        out.staffing = self.staffing(out, site.timezone, from_ms(now_ms))
        return out

    def _queue_now(self, s: Session, site: Site, now_ms: int, out: Figures) -> None:
        ready = set(self.store.waiting_ids(site.code))
        held = set(self.store.delayed_ids(site.code))
        ids = ready | held
        rows = s.execute(
            select(
                Contact.id, Contact.kind, Contact.channel, Contact.arrived_ms, Contact.not_before_ms
            ).where(Contact.id.in_(ids))
        ).all()
        channels: Counter[str] = Counter()
        oldest = now_ms
        for cid, kind, channel, arrived, not_before in rows:
            if cid in ready:
                channels[channel] += 1
                oldest = min(oldest, arrived)
            if kind == "callback" and not_before <= now_ms:
                out.callbacks_due += 1
                if now_ms - arrived > CALLBACK_OVERDUE_S * 1000:
                    out.callbacks_overdue += 1
        out.waiting_by_channel = dict(channels)
        out.waiting_total = sum(channels.values())
        out.longest_wait_s = max(0, (now_ms - oldest) // 1000)
        out.callbacks_unreachable = int(
            s.scalar(
                select(func.count())
                .select_from(Contact)
                .where(Contact.site_id == site.id, Contact.state == "unreachable")
            )
            or 0
        )

    def _agents(self, s: Session, site: Site, out: Figures) -> None:
        states: Counter[str] = Counter()
        for agent_id in s.scalars(
            select(Agent.id).where(Agent.site_id == site.id, Agent.active.is_(True))
        ):
            states[self.store.agent(agent_id).get("state", "offline")] += 1
        out.agents_by_state = dict(states)

    def _today(self, s: Session, site: Site, start: datetime, out: Figures) -> None:
        counts = dict(
            s.execute(
                select(Event.kind, func.count())
                .where(Event.site_id == site.id, Event.at >= start)
                .group_by(Event.kind)
            ).all()
        )
        out.arrivals_today = int(counts.get("contact.created", 0))
        out.answered_today = int(counts.get("offer.accepted", 0))
        out.abandoned_today = int(counts.get("contact.abandoned", 0))
        out.self_served_today = int(counts.get("ivr.status_served", 0))
        # waits of live calls answered today, from their arrival to the accepted offer
        answered = s.execute(
            select(Event.at, Contact.arrived_ms)
            .join(Contact, Contact.id == Event.contact_id)
            .where(
                Event.site_id == site.id,
                Event.at >= start,
                Event.kind == "offer.accepted",
                Contact.kind == "live",
            )
        ).all()
        if answered:
            within = sum(
                1
                for at, arrived in answered
                if to_ms(at.timestamp()) - arrived <= SL_THRESHOLD_S * 1000
            )
            out.service_level = round(within / len(answered), 3)
        handles = s.execute(
            select(Event.contact_id, Event.kind, Event.at)
            .where(
                Event.site_id == site.id,
                Event.at >= start,
                Event.kind.in_(("offer.accepted", "contact.completed", "callback.retry")),
            )
            .order_by(Event.at)
        ).all()
        began: dict[int, datetime] = {}
        durations = []
        for contact_id, kind, at in handles:
            if contact_id is None:
                continue
            if kind == "offer.accepted":
                began[contact_id] = at
            elif contact_id in began:
                durations.append((at - began.pop(contact_id)).total_seconds())
        if durations:
            out.average_handle_s = round(sum(durations) / len(durations), 1)

    def staffing(self, out: Figures, timezone: str, now: datetime) -> list[dict[str, Any]]:
        """Agents needed for each of the next hours to answer 80 % of calls within 20 s,
        from today's arrival rate so far (Erlang C)."""
        local = now.astimezone(ZoneInfo(timezone))
        hours_so_far = max(1.0, local.hour + local.minute / 60 - 8)  # the day starts ~08:00
        rate_per_h = out.arrivals_today / hours_so_far
        handle = out.average_handle_s or self.default_handle_time_s
        traffic = rate_per_h * handle / 3600
        advice = []
        for offset in range(1, 4):
            hour = (local + timedelta(hours=offset)).replace(minute=0, second=0, microsecond=0)
            needed = agents_needed(traffic, handle, SL_TARGET, SL_THRESHOLD_S) if traffic else 0
            level = service_level(needed, traffic, handle, SL_THRESHOLD_S) if needed else 1.0
            advice.append(
                {
                    "hour": hour.strftime("%H:%M"),
                    "arrivals_per_h": round(rate_per_h, 1),
                    "agents": needed,
                    "expected_service_level": round(level, 3) if not math.isnan(level) else None,
                }
            )
        return advice


@dataclass
class HourRow:
    """One hour of today, local time: what arrived, what was answered or abandoned, and
    how long the live calls answered in that hour had waited."""

    hour: int
    arrivals: int = 0
    answered: int = 0
    abandoned: int = 0
    wait_p50_s: int | None = None
    wait_p90_s: int | None = None


def _percentile(values: list[float], share: float) -> int:
    ordered = sorted(values)
    return int(round(ordered[min(len(ordered) - 1, int(share * len(ordered)))]))


def hourly(sessions: sessionmaker[Session], clock: Clock, site_code: str) -> list[HourRow]:
    """Today by hour (the site's local time), from midnight to the current hour."""
    with sessions() as s:
        site = s.scalar(select(Site).where(Site.code == site_code))
        if site is None:
            return []
        zone = ZoneInfo(site.timezone)
        now = from_ms(to_ms(clock.now()))
        start = _start_of_day(now, site.timezone)
        rows = {h: HourRow(h) for h in range(now.astimezone(zone).hour + 1)}
        events = s.execute(
            select(Event.kind, Event.at, Contact.kind, Contact.arrived_ms)
            .outerjoin(Contact, Contact.id == Event.contact_id)
            .where(
                Event.site_id == site.id,
                Event.at >= start,
                Event.kind.in_(("contact.created", "offer.accepted", "contact.abandoned")),
            )
        ).all()
    waits: dict[int, list[float]] = {}
    for kind, at, contact_kind, arrived_ms in events:
        row = rows.get(at.astimezone(zone).hour)
        if row is None:  # an event stamped after the clock's now (clock skew): skip
            continue
        if kind == "contact.created":
            row.arrivals += 1
        elif kind == "contact.abandoned":
            row.abandoned += 1
        else:
            row.answered += 1
            if contact_kind == "live" and arrived_ms is not None:
                waited = max(0.0, (to_ms(at.timestamp()) - arrived_ms) / 1000)
                waits.setdefault(row.hour, []).append(waited)
    for hour, values in waits.items():
        rows[hour].wait_p50_s = _percentile(values, 0.5)
        rows[hour].wait_p90_s = _percentile(values, 0.9)
    return list(rows.values())


def _start_of_day(now: datetime, timezone: str) -> datetime:
    zone = ZoneInfo(timezone)
    return datetime.combine(now.astimezone(zone).date(), time.min, zone)
