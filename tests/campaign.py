"""End-to-end call scenarios on a :class:`~tests.topology.Topology`, and the audit after.

Callers ring the line through the dev phone (signed webhooks over HTTP to the two web
processes); the agents' side is played here: the test process accepts each offer as the
agent screen's "Accepter" button does (``BridgeService.accept``, whose RQ job the
workers run), answers the legs the app places (the dev phone's REST side), and records
the outcome once both parties are in the conference. After the scenario,
:meth:`Campaign.audit` checks every contact against what every caller was told.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from interphone.devtools.devphone.phone import DevPhone, SimCall
from interphone.devtools.devphone.rest import placed_calls, sent_messages
from interphone.models import Agent, Contact, Event
from interphone.queue.exceptions import QueueError
from interphone.voice.bridge import conference_name
from interphone.voice.deferred import KEY as DEFERRED

from .topology import SITE, Topology, wait_until

RECORDED = "Your callback request is recorded"
DUPLICATE = "You already have a callback request"
DEFERRED_TEXT = "We will call you back as soon as possible"
QUEUED = "in line"
CLOSED = ("completed", "abandoned", "cancelled", "unreachable")


def caller_phone(n: int) -> str:
    return f"+3361{n:07d}"


@dataclass
class Caller:
    phone: str
    kind: str  # "callback" or "live"
    call: SimCall
    told: str = ""  # "recorded", "deferred", "queued"
    leg: SimCall | None = None  # the applicant's leg of a callback


@dataclass
class Counts:
    created: int = 0
    completed: int = 0
    abandoned: int = 0
    waiting: int = 0
    lost: int = 0
    duplicated: int = 0
    stuck: int = 0
    agents_inconsistent: int = 0
    sms_missing: int = 0
    problems: list[str] = field(default_factory=list)

    def line(self, name: str) -> str:
        return (
            f"faults[{name}]: created={self.created} completed={self.completed} "
            f"abandoned={self.abandoned} waiting={self.waiting} lost={self.lost} "
            f"duplicated={self.duplicated} stuck={self.stuck} "
            f"agents_inconsistent={self.agents_inconsistent} sms_missing={self.sms_missing}"
        )


class Campaign:
    def __init__(self, topology: Topology, phone: DevPhone | None = None) -> None:
        assert topology.runtime is not None
        self.topology = topology
        self.rt = topology.runtime
        self.phone = phone or topology.devphone()
        self.callers: list[Caller] = []
        self.agent_legs: dict[int, SimCall] = {}
        self.errors: Counter[str] = Counter()
        self._next = 0

    # -- callers -----------------------------------------------------------------------
    def _number(self) -> str:
        self._next += 1
        return caller_phone(self._next)

    def ring_callback(self) -> Caller:
        """English, "be called back", this number, no file number, reason 3: hangs up."""
        number = self._number()
        call = self.phone.call(number, "+33473000000")
        call.press("2").press("2").press("1").press("#").press("3")
        caller = Caller(number, "callback", call)
        said = call.transcript()
        if RECORDED in said:
            caller.told = "recorded"
        elif DEFERRED_TEXT in said:
            caller.told = "deferred"
        assert call.status == "completed", f"callback call not ended: {call.status}"
        assert caller.told, f"the IVR did not take the callback request: {said[-300:]!r}"
        self.callers.append(caller)
        return caller

    def ring_live(self) -> Caller:
        """English, "speak to an agent": on hold in the live queue."""
        number = self._number()
        call = self.phone.call(number, "+33473000000")
        call.press("2").press("3")
        caller = Caller(number, "live", call)
        said = call.transcript()
        if call.waiting_for == "/voice/queue" and QUEUED in said:
            caller.told = "queued"
        elif DEFERRED_TEXT in said:
            # the database was down: the IVR offered a callback instead of the queue
            call.press("1").press("#").press("3")
            caller.kind, caller.told = "callback", "deferred"
            assert call.status == "completed" and call.transcript().count(DEFERRED_TEXT) == 2
        assert caller.told, f"the IVR did not queue the caller: {said[-300:]!r}"
        self.callers.append(caller)
        return caller

    def ring_status_lookup(self) -> Caller:
        """English, "status of my application", a file number and a birth date. With
        the database down the IVR offers a callback instead: taken."""
        number = self._number()
        call = self.phone.call(number, "+33473000000")
        call.press("2").press("1").press("123456#").press("01011990")
        assert DEFERRED_TEXT in call.transcript(), call.transcript()[-300:]
        call.press("1").press("3")  # its file number is not asked again: the reason
        caller = Caller(number, "callback", call, told="deferred")
        assert call.status == "completed" and call.transcript().count(DEFERRED_TEXT) == 2
        self.callers.append(caller)
        return caller

    # -- the agents' side ----------------------------------------------------------------
    def step(self) -> None:
        """One round of what the agents and the phones do; errors are counted and the
        round is tried again (a fault may be in progress)."""
        try:
            self._step()
        except Exception as exc:  # noqa: BLE001 - a server is down: try again next round
            self.errors[type(exc).__name__] += 1

    def _step(self) -> None:
        store, dev = self.rt.store, self.phone
        for agent in self.topology.agents:
            state = store.agent(agent.id)
            if state.get("state") == "offered" and state.get("offer"):
                # the offer may have expired meanwhile: it comes back
                with contextlib.suppress(QueueError):
                    self.rt.bridge.accept(agent.id, int(state["offer"]))
            assert agent.phone
            if dev.ringing(agent.phone):
                self.agent_legs[agent.id] = dev.answer(agent.phone)
        for caller in self.callers:
            if caller.kind == "callback" and caller.leg is None and dev.ringing(caller.phone):
                caller.leg = dev.answer(caller.phone)
            if caller.call.status == "in-progress":
                caller.call.poll()
        for agent in self.topology.agents:
            state = store.agent(agent.id)
            if state.get("state") != "on_call" or not state.get("call"):
                continue
            contact_id = int(state["call"])
            if len(dev.in_conference(conference_name(contact_id))) >= 2:
                self.rt.queue.finish(agent.id, contact_id, "resolved")
                self._hang_up(agent.id, contact_id)

    def _hang_up(self, agent_id: int, contact_id: int) -> None:
        room = conference_name(contact_id)
        members = self.phone.in_conference(room)
        leg = self.agent_legs.get(agent_id)
        if leg is not None and leg.sid in members:
            leg.hang_up()
        for caller in self.callers:
            for call in (caller.call, caller.leg):
                if call is not None and call.sid in members and call.status == "in-progress":
                    call.hang_up()

    def settled(self) -> bool:
        """Every caller's contact exists and is closed; nothing deferred waits; every
        agent is free again."""
        if self.rt.redis.llen(DEFERRED):
            return False
        with self.rt.sessions() as s:
            contacts = s.scalars(select(Contact)).all()
        phones = {c.phone for c in contacts}
        if any(caller.phone not in phones for caller in self.callers):
            return False
        if any(c.state not in CLOSED for c in contacts):
            return False
        texted = {m.get("To", "") for m in sent_messages(self.rt.redis)}
        if any(c.kind == "callback" and c.phone not in texted for c in self.callers):
            return False  # a confirmation SMS still on its way (RQ retries it)
        return all(
            self.rt.store.agent(a.id).get("state") == "available" for a in self.topology.agents
        )

    def serve(self, timeout_s: float = 120.0) -> None:
        self.serve_until(self.settled, "every contact served", timeout_s)

    def serve_until(
        self, condition: Callable[[], Any], what: str, timeout_s: float = 120.0
    ) -> None:
        """Play the agents and the phones until ``condition`` holds."""

        def round_done() -> bool:
            self.step()
            return bool(condition())

        try:
            wait_until(round_done, timeout_s, what, interval_s=0.1)
        except AssertionError:
            print(self.topology.logs())
            print("campaign errors:", dict(self.errors))
            print(self.describe())
            raise

    def describe(self) -> str:
        from rq import Queue
        from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

        queue = Queue("interphone", connection=self.rt.redis)
        texted = {m.get("To", "") for m in sent_messages(self.rt.redis)}
        waiting_sms = [c.phone[-4:] for c in self.callers if c.kind == "callback"]
        print("callbacks without SMS:", [p for p in waiting_sms if "+3361000" + p not in texted])
        for registry in (FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry):
            print(registry.__name__, registry(queue=queue).get_job_ids())
        print("queued:", queue.job_ids)
        with self.rt.sessions() as s:
            rows = s.scalars(select(Contact).order_by(Contact.id)).all()
            return (
                "\n".join(
                    f"contact {c.id} {c.kind} {c.state} agent={c.agent_id} attempts={c.attempts}"
                    for c in rows
                )
                + "\n"
                + "\n".join(
                    f"agent {a.id}: {self.rt.store.agent(a.id)}" for a in self.topology.agents
                )
            )

    # -- the audit -----------------------------------------------------------------------
    def audit(self) -> Counts:
        counts = Counts()
        rt = self.rt
        with rt.sessions() as s:
            contacts = s.scalars(select(Contact).order_by(Contact.id)).all()
            accepted = Counter(
                s.scalars(select(Event.contact_id).where(Event.kind == "offer.accepted")).all()
            )
            agents = s.scalars(select(Agent)).all()
        counts.created = len(contacts)
        by_state = Counter(c.state for c in contacts)
        counts.completed = by_state["completed"]
        counts.abandoned = by_state["abandoned"]
        counts.waiting = by_state["waiting"]
        counts.stuck = by_state["offered"] + by_state["on_call"]
        per_phone = Counter(c.phone for c in contacts)
        for caller in self.callers:
            if per_phone[caller.phone] == 0:
                counts.lost += 1
                counts.problems.append(f"caller {caller.kind} told {caller.told!r}: no contact")
        delayed = set(rt.store.delayed_ids(SITE))
        for c in contacts:
            in_redis = rt.store.position(c.id) is not None or c.id in delayed
            if c.state == "waiting" and not in_redis:
                counts.lost += 1
                counts.problems.append(f"contact {c.id} waiting in SQL, not in Redis")
        counts.duplicated += sum(n - 1 for n in per_phone.values() if n > 1)
        counts.duplicated += sum(n - 1 for n in accepted.values() if n > 1)
        legs: Counter[tuple[str, str]] = Counter()
        for placed in placed_calls(rt.redis):
            match = re.search(r"/voice/(agent|applicant)/join\?c=(\d+)", placed.get("Url", ""))
            if match:
                legs[(match.group(2), match.group(1))] += 1
        for (contact_id, leg), n in legs.items():
            if n > 1:
                counts.duplicated += n - 1
                counts.problems.append(f"contact {contact_id}: {n} {leg} legs placed")
        sms = Counter(m.get("To", "") for m in sent_messages(rt.redis))
        for caller in self.callers:
            if caller.kind == "callback" and sms[caller.phone] != 1:
                if sms[caller.phone] > 1:
                    counts.duplicated += sms[caller.phone] - 1
                else:
                    counts.sms_missing += 1
                    counts.problems.append(f"no SMS for the callback of caller {caller.phone[-4:]}")
        for agent in agents:
            live = rt.store.agent(agent.id)
            if live.get("state") not in ("available", "wrap_up") or live.get("call"):
                counts.agents_inconsistent += 1
                counts.problems.append(f"agent {agent.id}: {live}")
            if live.get("offer"):
                counts.agents_inconsistent += 1
        return counts


def webhook_failures(topology: Topology) -> dict[str, Any]:
    """Answers the dev phone got, by HTTP status (0: no answer at all)."""
    return json.loads(json.dumps(topology.webhooks.statuses))
