"""Fewest agents per hour that meet a service-level target, found by simulation.

Hour by hour, in order: from the moment the hour starts (the line as the previous hours
left it, with the staffing already chosen for them), several staffings are tried for the
hour, each from the same snapshot of Redis, the database and the simulator (and the same
callers: common random numbers), and the fewest agents whose live calls of that hour
reach the target are kept. The search starts from the Erlang C answer for the hour and
walks down while the target is met, or up until it is. A trial only needs to run until
every call of the hour has either been answered or waited past the threshold.

The Erlang C answer is shown beside it: it knows the hour's live traffic only, not the
backlog left by the hour before, hang-ups, callbacks sharing the agents, or languages.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta

from sqlalchemy import func, select

from ..models import Contact, Event
from ..queue.clock import to_ms
from ..queue.estimate import agents_needed, service_level
from .day import conclude
from .engine import Engine, State
from .plan import MAX_AGENTS, DayPlan
from .report import Day
from .sandbox import Sandbox, Snapshot


@dataclass
class HourAdvice:
    hour: str
    arrivals_per_hour: float
    live_calls_per_hour: float
    agents: int  # simulated answer
    service_level: float | None  # simulated, with that many agents
    erlang_c_agents: int
    erlang_c_service_level: float | None  # formula, with the Erlang C staffing
    trials: int


@dataclass
class Staffing:
    target: float
    threshold_s: float
    hours: list[HourAdvice]
    day: Day  # the whole day simulated with the chosen staffing


def open_share(plan: DayPlan, hour: int) -> float:
    """Share of the hour during which the live line is open (by the minute)."""
    if plan.opening is None:
        return 1.0
    begin = plan.start_at + timedelta(hours=hour)
    minutes = max(1, round(min(1.0, plan.hours - hour) * 60))
    open_minutes = 0
    for m in range(minutes):
        now = (begin + timedelta(minutes=m)).timetz().replace(tzinfo=None)
        open_minutes += any(a <= now < b for a, b in plan.opening)
    return open_minutes / minutes


def live_rate(plan: DayPlan, hour: int) -> float:
    """Live calls per hour reaching the queue (those who wait on the line)."""
    rate = plan.rates()[hour] * (1 - plan.self_service) * (1 - plan.callback_share)
    return rate * open_share(plan, hour)


def erlang_staffing(plan: DayPlan, target: float, minimum: int) -> list[tuple[int, float | None]]:
    """Erlang C's answer per hour, for the live calls alone (handle time + wrap-up)."""
    handle = plan.agent_load_s()
    out: list[tuple[int, float | None]] = []
    for hour in range(plan.hour_count):
        traffic = live_rate(plan, hour) * handle / 3600
        if traffic <= 0:
            out.append((minimum, None))
            continue
        n = max(minimum, agents_needed(traffic, handle, target, plan.sl_threshold_s))
        out.append((n, service_level(n, traffic, handle, plan.sl_threshold_s)))
    return out


def first_guess(plan: DayPlan, hour: int, erlang_agents: int) -> int:
    """Where the search starts: Erlang C for the live calls, plus enough agents for the
    hour's callback work (which shares the same agents and keeps earlier places)."""
    rate = plan.rates()[hour] * (1 - plan.self_service)
    callbacks = rate * plan.callback_share
    callbacks += (
        rate
        * (1 - plan.callback_share)
        * (1 - open_share(plan, hour))
        * (plan.closed_callback_share)
    )
    return erlang_agents + math.ceil(callbacks * plan.agent_load_s() / 3600)


def fewest(meets: Callable[[int], bool], start: int, lowest: int, highest: int) -> int:
    """Fewest n in [lowest, highest] with ``meets(n)``, assuming more agents never hurt:
    from ``start``, gallop (steps 1, 2, 4...) towards the boundary, then bisect."""
    start = min(highest, max(lowest, start))
    if meets(start):
        good, bad, step = start, lowest - 1, 1
        while good > lowest:
            candidate = max(lowest, good - step)
            if not meets(candidate):
                bad = candidate
                break
            good, step = candidate, step * 2
    else:
        bad, step = start, 1
        while True:
            if bad >= highest:
                return highest  # the target cannot be met with the agents allowed
            candidate = min(highest, bad + step)
            if meets(candidate):
                good = candidate
                break
            bad, step = candidate, step * 2
    while good - bad > 1:
        middle = (good + bad) // 2
        if meets(middle):
            good = middle
        else:
            bad = middle
    return good


def search(
    plan: DayPlan,
    target: float,
    *,
    sandbox: Sandbox,
    min_agents: int = 1,
    max_agents: int = 60,
    progress: Callable[[str], None] | None = None,
) -> Staffing:
    if not 0 < target <= 1:
        raise ValueError("the target service level is a share between 0 and 1")
    max_agents = min(MAX_AGENTS, max_agents)
    erlang = erlang_staffing(plan, target, min_agents)
    staff = [
        min(max_agents, max(min_agents, first_guess(plan, h, n))) for h, (n, _) in enumerate(erlang)
    ]
    plan = replace(plan, agents=tuple(staff)).checked()
    engine = Engine(plan, sandbox, pool_size=max_agents)
    advice: list[HourAdvice] = []
    tail_s = plan.sl_threshold_s + 1.5 * plan.ivr_s + 1.0
    try:
        for hour in range(plan.hour_count):
            trials = _HourTrials(engine, hour, tail_s)

            def meets(agents: int, trials: _HourTrials = trials) -> bool:
                level = trials.level(agents)
                return level is None or level >= target

            n = fewest(meets, staff[hour], min_agents, max_agents)
            level = trials.level(n)
            staff[hour] = n
            trials.keep(n)
            erlang_agents, erlang_level = erlang[hour]
            advice.append(
                HourAdvice(
                    hour=plan.hour_label(hour),
                    arrivals_per_hour=round(plan.rates()[hour], 1),
                    live_calls_per_hour=round(live_rate(plan, hour), 1),
                    agents=n,
                    service_level=None if level is None else round(level, 4),
                    erlang_c_agents=erlang_agents,
                    erlang_c_service_level=(
                        None if erlang_level is None else round(erlang_level, 4)
                    ),
                    trials=len(trials.tried),
                )
            )
            if progress is not None:
                progress(
                    f"{plan.hour_label(hour)}: {n} agents (Erlang C {erlang[hour][0]}), "
                    f"{len(trials.tried)} trials"
                )
        engine.run()
        day = conclude(engine)
    finally:
        engine.close()
    return Staffing(target=target, threshold_s=plan.sl_threshold_s, hours=advice, day=day)


class _HourTrials:
    """Staffings tried for one hour, each from the moment the hour starts."""

    def __init__(self, engine: Engine, hour: int, tail_s: float) -> None:
        self.engine = engine
        self.hour = hour
        self.tail_s = tail_s
        self.start = snapshot(engine)
        self.end_s = min((hour + 1) * 3600.0, engine.plan.period_s)
        self.tried: dict[int, tuple[float | None, Moment]] = {}

    def level(self, agents: int) -> float | None:
        """The hour's service level with ``agents`` (None: no live call that hour)."""
        if agents in self.tried:
            return self.tried[agents][0]
        engine = self.engine
        restore(engine, self.start)
        engine.state.staff[self.hour] = agents
        engine.run(until_s=self.end_s)
        boundary = snapshot(engine)  # where the next hour starts, if this one is kept
        engine.run(until_s=self.end_s + self.tail_s)
        level = _hour_service_level(engine, self.hour)
        self.tried[agents] = (level, boundary)
        return level

    def keep(self, agents: int) -> None:
        """Go on from the end of the hour as staffed with ``agents``."""
        chosen = self.tried[agents][1]
        restore(self.engine, chosen)
        for _, moment in self.tried.values():
            if moment is not chosen:
                moment.close()
        chosen.close()
        self.start.close()


@dataclass
class Moment:
    """The whole simulation at one instant: Redis, the database, the simulator."""

    saved: Snapshot
    state: State
    now: float

    def close(self) -> None:
        self.saved.close()


def snapshot(engine: Engine) -> Moment:
    return Moment(
        engine.sandbox.snapshot(engine.runtime), copy.deepcopy(engine.state), engine.clock.now()
    )


def restore(engine: Engine, moment: Moment) -> None:
    engine.sandbox.restore(engine.runtime, moment.saved)
    engine.state = copy.deepcopy(moment.state)
    engine.clock.set(moment.now)


def _hour_service_level(engine: Engine, hour: int) -> float | None:
    """Share of the hour's queued live calls answered within the threshold (records)."""
    plan = engine.plan
    lo = engine.start_ms + hour * 3_600_000
    hi = engine.start_ms + (hour + 1) * 3_600_000
    with engine.runtime.sessions() as s:
        ids = select(Contact.id).where(
            Contact.kind == "live", Contact.arrived_ms >= lo, Contact.arrived_ms < hi
        )
        created = dict(
            s.execute(
                select(Event.contact_id, Event.at).where(
                    Event.kind == "contact.created", Event.contact_id.in_(ids)
                )
            ).all()
        )
        answered = dict(
            s.execute(
                select(Event.contact_id, func.min(Event.at))
                .where(Event.kind == "offer.accepted", Event.contact_id.in_(ids))
                .group_by(Event.contact_id)
            ).all()
        )
    if not created:
        return None
    limit = plan.sl_threshold_s * 1000
    within = sum(
        1
        for cid, at in answered.items()
        if cid in created and to_ms(at.timestamp()) - to_ms(created[cid].timestamp()) <= limit
    )
    return within / len(created)
