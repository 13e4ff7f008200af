"""The discrete-event simulation: a day of callers pushed through the real queue.

Everything that decides who is served, when and by whom is production code: the
:class:`~interphone.queue.service.QueueService` of a :class:`~interphone.runtime.Runtime`
with its Lua scripts and SQL records, on a private Redis server and database (see
:mod:`.sandbox`), with a :class:`~interphone.queue.clock.ManualClock` that the simulator
moves from one event to the next. The simulator only plays the people:

- callers arrive, spend some time in the IVR, then either hang up satisfied (self-service),
  wait on the line (``enqueue_live``) or ask for a callback (``request_callback``), as the
  IVR does, including its opening- and callback-hours decisions;
- a caller on hold hangs up when their patience runs out (``abandon``);
- agents sign in and out by the hour (``set_presence``), accept offers (``accept``) after
  an optional delay, talk, and end the call with an outcome (``finish``); a callback the
  applicant does not pick up ends as ``no_answer``, and the queue's retry rule applies;
- what production runs as jobs runs at the same virtual moments: a dispatch of the site
  after every change that asks for one (the ``trigger`` that enqueues an RQ job in
  production), and the periodic sweep (expire offers, end wrap-ups, reconcile, dispatch
  every site) on the grid of ``SWEEP_INTERVAL_S``.

Sweep ticks at which nothing can have become due are skipped: a tick is run at the first
grid time at or after each moment something becomes due (an offer deadline, a wrap-up
end, a callback's not-before time, a contact reaching the language-relax or promotion
age). Every other tick would find nothing to do. ``exhaustive_sweeps=True`` runs every
tick instead, and a test checks that both give the same day.
"""

from __future__ import annotations

import heapq
import math
import time as wallclock
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import insert, select, update

from ..hours import Schedule
from ..models import Agent, Case, Site
from ..queue.clock import ManualClock, from_ms, to_ms
from ..queue.exceptions import Conflict
from ..queue.service import Ticket
from ..queue.store import Offer
from ..runtime import Runtime
from ..sites import ensure_site
from .arrivals import Arrival, generate
from .plan import DayPlan, hours_mapping
from .sandbox import Sandbox

SITE = "simulation"

# event kinds, in the order they are handled when they fall on the same instant
STAFF, ARRIVE, JOIN, ACCEPT, FINISH, ABANDON, DUE, TICK, SAMPLE, STOP = range(10)


@dataclass
class Person:
    """The simulator's view of one contact: only what a person needs to act."""

    arrival: int
    contact_id: int
    kind: str
    state: str  # waiting | offered | on_call | delayed | closed
    attempts: int = 0


@dataclass
class Desk:
    """One agent as the simulator plays them."""

    agent_id: int
    index: int
    on_duty: bool = False
    leaving: bool = False  # shift over, signs out after the current call
    contact_id: int | None = None  # on a call with


@dataclass
class Sample:
    at_s: float
    waiting: int  # ready in line (Redis)
    held: int  # callbacks held back by a retry delay or callback hours (Redis)
    on_call: int
    on_duty: int


@dataclass
class State:
    """All that changes during a run (deep-copied for the staffing search)."""

    heap: list[tuple[float, int, int, tuple[Any, ...]]] = field(default_factory=list)
    seq: int = 0
    people: dict[int, Person] = field(default_factory=dict)  # by contact id
    fate: dict[int, str] = field(default_factory=dict)  # arrival index -> self_served|closed
    contact_of: dict[int, int] = field(default_factory=dict)  # arrival index -> contact id
    not_before: dict[int, int] = field(default_factory=dict)  # callbacks placed after hours
    desks: dict[int, Desk] = field(default_factory=dict)  # by agent id
    in_ivr: int = 0  # callers in the menus, about to join
    ticks: set[int] = field(default_factory=set)  # scheduled tick times, ms after start
    samples: list[Sample] = field(default_factory=list)
    staff: list[int] = field(default_factory=list)
    active: int = 0
    stopped: bool = False
    notes: list[str] = field(default_factory=list)  # the unexpected, for the report


class Engine:
    """Build with a plan and an open sandbox, then :meth:`run`. One engine, one day."""

    def __init__(
        self,
        plan: DayPlan,
        sandbox: Sandbox,
        *,
        exhaustive_sweeps: bool = False,
        arrivals: list[Arrival] | None = None,
        pool_size: int | None = None,
    ) -> None:
        self.plan = plan.checked()
        self.pool_size = max(plan.pool_size(), pool_size or 0)
        self.sandbox = sandbox
        self.exhaustive = exhaustive_sweeps
        self.arrivals = generate(self.plan) if arrivals is None else arrivals
        self.start_ms = to_ms(self.plan.start_epoch)
        self.clock = ManualClock(self.start_ms / 1000)
        self._pending: set[str] = set()
        self.runtime: Runtime = sandbox.runtime(
            self.clock, self.plan.queue_settings(), self._trigger, site=SITE
        )
        self.queue = self.runtime.queue
        settings = self.plan.queue_settings()
        self.interval_ms = max(1, int(round(settings.sweep_interval_s * 1000)))
        self.relax_ms = int(settings.language_relax_s * 1000)
        self.promote_ms = int(settings.promote_after_s * 1000)
        self.retry_ms = int(settings.callback_retry_delay_s * 1000)
        self.wrap_ms = int(settings.wrap_up_s * 1000)
        self.end_s = self.plan.period_s + self.plan.drain_s
        self.state = State(staff=self.plan.agents_by_hour())
        self.wall_s = 0.0
        self._opening: Schedule | None = None
        self._callback_hours: Schedule | None = None
        self._everyone_speaks: set[str] = set()
        sandbox.reset(self.runtime)
        self._set_up()

    # -- setting up the site, the agents and the cases ----------------------------------
    def _set_up(self) -> None:
        plan = self.plan
        ensure_site(self.runtime.sessions, SITE, "Simulation", always_open=True)
        with self.runtime.sessions.begin() as s:
            s.execute(
                update(Site)
                .where(Site.code == SITE)
                .values(
                    timezone=plan.timezone,
                    opening_hours=hours_mapping(plan.opening),
                    callback_hours=hours_mapping(plan.callback_hours),
                    languages=sorted({code for code, _ in plan.languages}),
                )
            )
            site_id = s.scalar(select(Site.id).where(Site.code == SITE))
            # agents are made directly: they never sign in, and hashing a password per
            # agent (argon2) would cost more than the whole day of some small plans
            s.execute(
                insert(Agent),
                [
                    {
                        "name": f"Agent {i + 1}",
                        "email": f"agent{i + 1}@simulation.invalid",
                        "password_hash": "!",
                        "role": "agent",
                        "languages": list(plan.languages_of_agent(i)),
                        "site_id": site_id,
                    }
                    for i in range(self.pool_size)
                ],
            )
            # urgent callers have a file whose permit expires soon: the queue finds it
            urgent = [a for a in self.arrivals if a.urgent and not a.self_served]
            if urgent:
                expires = plan.day + timedelta(days=5)
                s.execute(
                    insert(Case),
                    [
                        {
                            "file_number": _file_number(a.index),
                            "birth_date_hash": "-",
                            "status": "under_review",
                            "status_changed_at": plan.start_at,
                            "api_valid_until": expires,
                        }
                        for a in urgent
                    ],
                )
            ids = list(s.scalars(select(Agent.id).order_by(Agent.id)))
            site = s.scalar(select(Site).where(Site.code == SITE))
            assert site is not None
            if plan.opening is not None:
                self._opening = _schedule(site, site.opening_hours)
            if plan.callback_hours is not None:
                self._callback_hours = _schedule(site, site.callback_hours)
        self.state.desks = {aid: Desk(agent_id=aid, index=i) for i, aid in enumerate(ids)}
        self._everyone_speaks = set.intersection(
            *(set(plan.languages_of_agent(i)) for i in range(self.pool_size))
        )
        heap: list[tuple[float, int, int, tuple[Any, ...]]] = []
        for a in self.arrivals:
            heap.append((a.at, ARRIVE, self._next_seq(), (a.index,)))
        for hour in range(plan.hour_count):
            heap.append((hour * 3600.0, STAFF, self._next_seq(), (hour,)))
        t = 0.0
        while t <= self.end_s:
            heap.append((t, SAMPLE, self._next_seq(), ()))
            t += plan.sample_s
        heap.append((self.end_s, STOP, self._next_seq(), ()))
        if self.exhaustive:
            heap.append((0.0, TICK, self._next_seq(), ()))
            self.state.ticks.add(0)
        heapq.heapify(heap)
        self.state.heap = heap

    # -- the loop -------------------------------------------------------------------------
    def run(self, until_s: float | None = None) -> None:
        """Handle events in time order (those before ``until_s`` only, if given)."""
        started = wallclock.perf_counter()
        st = self.state
        handlers: dict[int, Callable[..., None]] = {
            STAFF: self._staff,
            ARRIVE: self._arrive,
            JOIN: self._join,
            ACCEPT: self._accept,
            FINISH: self._finish,
            ABANDON: self._abandon,
            DUE: self._due,
            TICK: self._tick,
            SAMPLE: self._sample,
            STOP: self._stop,
        }
        try:
            while st.heap and not st.stopped:
                at, kind, _, args = st.heap[0]
                if until_s is not None and at >= until_s:
                    break
                heapq.heappop(st.heap)
                at_ms = self.start_ms + int(round(at * 1000))
                if at_ms < self.now_ms:
                    raise RuntimeError(f"simulator bug: an event at {at} s is in the past")
                self.clock.set(at_ms / 1000)
                handlers[kind](*args)
                self._dispatch_pending()
                if at >= self.plan.period_s and st.active == 0 and st.in_ivr == 0:
                    self._sample()
                    st.stopped = True  # the period is over and nobody is left in line
        finally:
            self.wall_s += wallclock.perf_counter() - started

    @property
    def now_s(self) -> float:
        return to_ms(self.clock.now()) / 1000 - self.start_ms / 1000

    @property
    def now_ms(self) -> int:
        return to_ms(self.clock.now())

    def _push(self, at_s: float, kind: int, *args: Any) -> None:
        heapq.heappush(self.state.heap, (at_s, kind, self._next_seq(), args))

    def _next_seq(self) -> int:
        self.state.seq += 1
        return self.state.seq

    def _trigger(self, site: str) -> None:
        """Production enqueues an RQ dispatch job here; it runs as soon as this change is
        handled, at the same virtual instant."""
        self._pending.add(site)

    def _dispatch_pending(self) -> None:
        while self._pending:
            site = self._pending.pop()
            self._offers(self.queue.dispatch(site))

    def _tick_due(self, due_ms: int) -> None:
        """Make sure the sweep runs at the first tick of the grid at or after ``due_ms``."""
        if self.exhaustive:
            return
        offset = max(0, max(due_ms, self.now_ms) - self.start_ms)
        tick = -(-offset // self.interval_ms) * self.interval_ms
        if tick not in self.state.ticks:
            self.state.ticks.add(tick)
            self._push(tick / 1000, TICK)

    # -- callers ----------------------------------------------------------------------------
    def _arrive(self, index: int) -> None:
        a = self.arrivals[index]
        if a.self_served:
            self.state.fate[index] = "self_served"
            return
        self.state.in_ivr += 1
        self._push(a.at + a.ivr_s, JOIN, index)

    def _join(self, index: int) -> None:
        a = self.arrivals[index]
        self.state.in_ivr -= 1
        now = from_ms(self.now_ms)
        kind = "callback" if a.wants_callback else "live"
        if kind == "live" and self._opening is not None and not self._opening.is_open(now):
            # the IVR says the line is closed and offers a callback instead
            if not a.closed_callback:
                self.state.fate[index] = "closed"
                return
            kind = "callback"
        arrived_ms = self.start_ms + int(round(a.at * 1000))
        file_number = _file_number(index) if a.urgent else None
        not_before = 0
        if kind == "callback" and self._callback_hours is not None:
            # as the IVR: a request made outside callback hours waits for the next period
            opening = self._callback_hours.next_opening(now)
            not_before = to_ms(opening.timestamp()) if opening and opening > now else 0
        try:
            if kind == "live":
                ticket: Ticket = self.queue.enqueue_live(
                    SITE,
                    language=a.language,
                    phone=_phone(index) if a.channel == "phone" else None,
                    channel=a.channel,
                    file_number=file_number,
                    file_verified=True,  # a simulated urgent caller has proven their file
                    call_sid=f"SIM{index}",
                    arrived_ms=arrived_ms,
                )
            else:
                ticket = self.queue.request_callback(
                    SITE,
                    phone=_phone(index),
                    language=a.language,
                    channel=a.channel,
                    file_number=file_number,
                    file_verified=True,  # a simulated urgent caller has proven their file
                    arrived_ms=arrived_ms,
                    not_before_ms=not_before,
                    call_sid=f"SIM{index}",
                )
        except Conflict as exc:
            # production's IVR tells this caller of a technical error: count it, go on
            self.state.notes.append(f"arrival {index}: the queue refused the request ({exc})")
            self.state.fate[index] = "refused"
            return
        if not ticket.created:  # cannot happen with one number per caller; say so if it does
            self.state.notes.append(f"arrival {index}: request answered by an earlier one")
            self.state.fate[index] = "duplicate_request"
            return
        cid = ticket.contact_id
        delayed = not_before > self.now_ms
        self.state.people[cid] = Person(index, cid, kind, "delayed" if delayed else "waiting")
        self.state.contact_of[index] = cid
        self.state.active += 1
        if delayed:
            self.state.not_before[cid] = not_before
            self._tick_due(not_before)
        if kind == "live" and not math.isinf(a.patience_s):
            self._push(self.now_s + a.patience_s, ABANDON, cid)
        # the queue's age rules: after language_relax any agent may take the contact,
        # after promote_after it joins the urgent class; a sweep tick follows each
        if a.language not in self._everyone_speaks:
            self._push_due(arrived_ms + self.relax_ms, cid)
        if not a.urgent:
            self._push_due(arrived_ms + self.promote_ms + 1, cid)

    def _push_due(self, due_ms: int, cid: int) -> None:
        self._push(max(self.now_s, (due_ms - self.start_ms) / 1000), DUE, cid, due_ms)

    def _due(self, cid: int, due_ms: int) -> None:
        person = self.state.people.get(cid)
        if person is not None and person.state in ("waiting", "offered", "delayed"):
            self._tick_due(due_ms)

    def _abandon(self, cid: int) -> None:
        person = self.state.people[cid]
        if person.state not in ("waiting", "offered"):
            return  # answered already: the patience timer no longer matters
        try:
            self.queue.abandon(cid)
        except Conflict as exc:
            self.state.notes.append(f"contact {cid}: abandon refused ({exc.message})")
            return
        person.state = "closed"
        self.state.active -= 1

    # -- agents -----------------------------------------------------------------------------
    def _staff(self, hour: int) -> None:
        wanted = self.state.staff[hour] if hour < len(self.state.staff) else 0
        for desk in self.state.desks.values():
            if desk.index < wanted:
                if desk.leaving:
                    desk.leaving = False
                elif not desk.on_duty:
                    self._presence(desk, "available")
            elif desk.on_duty and not desk.leaving:
                if desk.contact_id is not None:
                    desk.leaving = True
                else:  # an offer in hand goes back to its place in line
                    self._presence(desk, "offline")

    def _presence(self, desk: Desk, state: str) -> None:
        try:
            self.queue.set_presence(desk.agent_id, state, actor="simulation")
        except Conflict as exc:
            self.state.notes.append(f"agent {desk.agent_id}: {state} refused ({exc.message})")
            return
        desk.on_duty = state == "available"
        desk.leaving = False

    def _offers(self, offers: list[Offer]) -> None:
        for offer in offers:
            person = self.state.people.get(offer.contact_id)
            if person is None:
                self.state.notes.append(f"offer of unknown contact {offer.contact_id}")
                continue
            person.state = "offered"
            self._push(
                self.now_s + self.plan.accept_delay_s, ACCEPT, offer.agent_id, person.contact_id
            )

    def _accept(self, agent_id: int, cid: int) -> None:
        person = self.state.people[cid]
        try:
            self.queue.accept(agent_id, cid)
        except Conflict:
            # the offer is gone: the caller hung up, or it expired or was withdrawn and
            # the contact went back to its place
            if person.state == "offered":
                person.state = "waiting"
            return
        person.state = "on_call"
        desk = self._desk(agent_id)
        desk.contact_id = cid
        a = self.arrivals[person.arrival]
        attempt = min(person.attempts, len(a.handle_s) - 1)
        if person.kind == "live" or a.answers[attempt]:
            self._push(self.now_s + a.handle_s[attempt], FINISH, agent_id, cid, "resolved")
        else:  # the agent lets it ring, nobody picks up
            self._push(self.now_s + self.plan.ring_s, FINISH, agent_id, cid, "no_answer")

    def _finish(self, agent_id: int, cid: int, outcome: str) -> None:
        person = self.state.people[cid]
        now_ms = self.now_ms
        desk = self._desk(agent_id)
        desk.contact_id = None
        try:
            state = self.queue.finish(agent_id, cid, outcome)
        except Conflict as exc:  # the queue disagrees with what the agent lived: report it
            self.state.notes.append(f"contact {cid}: finish refused ({exc.message})")
            return
        if state == "waiting":  # back in line at its place, after the retry delay
            person.state = "delayed"
            person.attempts += 1
            self._tick_due(now_ms + self.retry_ms)
        else:
            person.state = "closed"
            self.state.active -= 1
        if desk.leaving:
            self._presence(desk, "offline")
        elif self.wrap_ms > 0:
            self._tick_due(now_ms + self.wrap_ms)

    def _desk(self, agent_id: int) -> Desk:
        return self.state.desks[agent_id]

    # -- production's periodic job ------------------------------------------------------
    def _tick(self) -> None:
        """``QueueService.sweep``, step by step so that its offers reach the agents."""
        self.queue.expire()
        self.queue.reconcile()
        for site in self.queue.store.sites():
            self._offers(self.queue.dispatch(site))
        if self.exhaustive:
            tick = int(round(self.now_s * 1000)) + self.interval_ms
            self.state.ticks.add(tick)
            self._push(tick / 1000, TICK)

    def _sample(self) -> None:
        store = self.queue.store
        self.state.samples.append(
            Sample(
                at_s=self.now_s,
                waiting=store.waiting_count(SITE),
                held=len(store.delayed_ids(SITE)),
                on_call=sum(1 for d in self.state.desks.values() if d.contact_id is not None),
                on_duty=sum(1 for d in self.state.desks.values() if d.on_duty),
            )
        )

    def _stop(self) -> None:
        self.state.stopped = True

    def close(self) -> None:
        self.runtime.close()


def _schedule(site: Site, hours: dict[str, Any]) -> Schedule:
    """The site's hours as the IVR reads them (same holidays and time zone)."""
    return Schedule.build(
        hours or {},
        timezone=site.timezone,
        region=site.holiday_region,
        closures=site.extra_closures or [],
    )


def _phone(index: int) -> str:
    """One distinct, valid French mobile number per caller."""
    return f"+336{10_000_000 + index:08d}"


def _file_number(index: int) -> str:
    return f"SIM{index:08d}"
