"""Property-based test: agents, their legs and Twilio's webhooks in any order.

A small model of Twilio plays the calls: it rings the legs the app places, answers
them, hangs them up (the agent, or the app asking), moves callers into the conference
when the app redirects them, ends the conference when the agent leaves it (the agent's
``endConferenceOnExit``), and posts what Twilio posts: each leg's final status, the
conference's participant-join/leave and conference-end, the caller's final status.
Those webhooks wait in a pool and are delivered in any order, some of them again
later (duplicated, late). The app is driven at the service level (the bridge and the
queue, real Redis and SQL).

After every step: an agent never holds two live legs, and is never offered a contact
(nor free for one) while a leg of theirs is live. Once every webhook is in and every
request of the app applied (``settle``, at the end of each run): an agent the app says
is on a call has a live leg, a caller is never left in a conference whose agent has
gone, and no contact ends without an outcome or an abandon (a contact still open is
owed an outcome by its agent).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import delete, select

from interphone.accounts import add_user
from interphone.devtools.devphone import rest
from interphone.models import ACTIVE_CONTACT_STATES, Agent, Contact, Event
from interphone.queue.clock import ManualClock
from interphone.queue.exceptions import QueueError
from interphone.queue.store import member
from interphone.runtime import Runtime

from .conftest import SITE

AGENTS = 2
LIVE = ("ringing", "answered", "in_conf")  # an agent leg's states before it ends


@dataclass
class Leg:
    """An agent's leg as Twilio knows it."""

    sid: str
    agent_id: int
    contact_id: int
    state: str = "ringing"  # ringing -> answered (the whisper) -> in_conf; -> ended
    answered: bool = False


@dataclass
class Caller:
    sid: str
    state: str = "holding"  # holding -> in_conf -> gone
    seen_updates: int = 0


@dataclass
class Twilio:
    legs: dict[str, Leg] = field(default_factory=dict)
    callers: dict[int, Caller] = field(default_factory=dict)
    pending: list[tuple[str, int, str, int]] = field(default_factory=list)
    delivered: list[tuple[str, int, str, int]] = field(default_factory=list)


def _sid() -> str:
    return "CA" + secrets.token_hex(16)


def test_agents_legs_and_webhooks_in_any_order_keep_one_truth(
    voice_runtime: Runtime, clock: ManualClock
) -> None:
    rt = voice_runtime
    agent_ids = [
        add_user(
            rt.sessions,
            f"agent{i}@example.org",
            "a-long-password",
            site_code=SITE,
            languages=["fr"],
            phone=f"+3369999999{i}",
        ).id
        for i in range(AGENTS)
    ]

    class Legs(RuleBasedStateMachine):
        @initialize()
        def fresh(self) -> None:
            for key in rt.redis.scan_iter("ip:*"):
                rt.redis.delete(key)
            with rt.sessions.begin() as s:
                s.execute(delete(Event))
                s.execute(delete(Contact))
            for aid in agent_ids:
                rt.queue.set_presence(aid, "available")
            self.tw = Twilio()
            self.caller_waits()

        # -- the app's side, through the queue and the bridge -----------------------------
        @rule()
        def caller_waits(self) -> None:
            sid = _sid()
            ticket = rt.queue.enqueue_live(SITE, language="fr", call_sid=sid)
            self.tw.callers[ticket.contact_id] = Caller(sid)

        @rule(i=st.integers(0, AGENTS - 1), state=st.sampled_from(["available", "offline"]))
        def agent_presence(self, i: int, state: str) -> None:
            with contextlib.suppress(QueueError):  # on a call, or an outcome due
                rt.queue.set_presence(agent_ids[i], state)

        @rule(seconds=st.sampled_from([0, 1, 10, 40, 400]), take=st.booleans())
        def time_passes_the_sweep_runs_agents_answer(self, seconds: int, take: bool) -> None:
            """Offers expire, wrap-ups end, waiting callers are offered; the agents
            offered accept (``take``) or leave the offer to run out."""
            clock.advance(seconds)
            rt.queue.sweep()
            for aid in agent_ids:
                agent = rt.store.agent(aid)
                if take and agent.get("state") == "offered":
                    self._accept(aid, int(agent["offer"]))

        def _accept(self, aid: int, cid: int) -> None:
            rt.bridge.accept(aid, cid)  # the connect job runs inline: the leg is placed
            for call in rest.placed_calls(rt.redis):
                if call["sid"] not in self.tw.legs and f"c={cid}&leg=agent" in call.get(
                    "StatusCallback", ""
                ):
                    self.tw.legs[call["sid"]] = Leg(call["sid"], aid, cid)

        def _owing(self) -> list[int]:
            return [a for a in agent_ids if rt.store.agent(a).get("call")]

        @precondition(lambda self: self._owing())
        @rule(data=st.data(), outcome=st.sampled_from(["resolved", "information_given"]))
        def agent_gives_outcome(self, data: st.DataObject, outcome: str) -> None:
            aid = data.draw(st.sampled_from(self._owing()))
            rt.queue.finish(aid, int(rt.store.agent(aid)["call"]), outcome)

        # -- Twilio's side ------------------------------------------------------------------
        def _legs_in(self, *states: str) -> list[str]:
            # in the order they were placed (CallSids are random: never sorted on)
            return [s for s, leg in self.tw.legs.items() if leg.state in states]

        def _post(self, kind: str, cid: int, sid: str = "", aid: int = 0) -> None:
            self.tw.pending.append((kind, cid, sid, aid))

        @precondition(lambda self: self._legs_in("ringing"))
        @rule(data=st.data())
        def agent_answers(self, data: st.DataObject) -> None:
            leg = self.tw.legs[data.draw(st.sampled_from(self._legs_in("ringing")))]
            answer = rt.bridge.agent_joined(leg.contact_id, leg.sid)  # Twilio fetches TwiML
            leg.state, leg.answered = "answered", True
            if answer.hang_up:  # "the caller hung up", then <Hangup>
                self._leg_ends(leg, "completed")

        @precondition(lambda self: self._legs_in("answered"))
        @rule(data=st.data())
        def agent_enters_the_conference(self, data: st.DataObject) -> None:
            """The whisper is over (an agent may also hang up during it)."""
            leg = self.tw.legs[data.draw(st.sampled_from(self._legs_in("answered")))]
            leg.state = "in_conf"
            self._post("participant-join", leg.contact_id, leg.sid)

        @precondition(lambda self: self._legs_in(*LIVE))
        @rule(data=st.data())
        def agent_hangs_up(self, data: st.DataObject) -> None:
            leg = self.tw.legs[data.draw(st.sampled_from(self._legs_in(*LIVE)))]
            self._leg_ends(leg, "no-answer" if leg.state == "ringing" else "completed")

        def _leg_ends(self, leg: Leg, status: str) -> None:
            rest.mark_ended(rt.redis, leg.sid)
            was_in = leg.state == "in_conf"
            leg.state = "ended"
            self._post("status", leg.contact_id, leg.sid, leg.agent_id)
            if was_in:
                self._post("participant-leave", leg.contact_id, leg.sid)
                # endConferenceOnExit: the conference ends; the caller's <Dial> ends too,
                # they hear the goodbye that follows it and hang up
                self._post("conference-end", leg.contact_id)
                caller = self.tw.callers[leg.contact_id]
                if caller.state == "in_conf":
                    self._caller_gone(leg.contact_id)

        def _caller_gone(self, cid: int) -> None:
            caller = self.tw.callers[cid]
            caller.state = "gone"
            rest.mark_ended(rt.redis, caller.sid)
            self._post("caller-status", cid, caller.sid)

        def _present(self) -> list[int]:
            return sorted(c for c, x in self.tw.callers.items() if x.state != "gone")

        @precondition(lambda self: self._present())
        @rule(data=st.data())
        def caller_hangs_up(self, data: st.DataObject) -> None:
            self._caller_gone(data.draw(st.sampled_from(self._present())))

        @rule()
        def twilio_applies_the_apps_requests(self) -> None:
            """Hang-ups the app asked for, redirects into the conference, goodbyes."""
            for leg in self.tw.legs.values():
                if leg.state in LIVE and rest.hung_up_by_app(rt.redis, leg.sid):
                    self._leg_ends(leg, "canceled" if leg.state == "ringing" else "completed")
            for cid, caller in self.tw.callers.items():
                updates = [json.loads(u) for u in rt.redis.lrange(rest.UPDATES + caller.sid, 0, -1)]
                for update in updates[caller.seen_updates :]:
                    if caller.state == "gone":
                        break
                    if update.get("Url"):  # redirected into the conference
                        if rt.bridge.caller_joined(cid).hang_up:  # the goodbye instead
                            self._caller_gone(cid)
                            break
                        caller.state = "in_conf"
                        self._post("participant-join", cid, caller.sid)
                    elif update.get("Twiml") or update.get("Status"):  # goodbye, hang-up
                        self._caller_gone(cid)
                caller.seen_updates = len(updates)

        @precondition(lambda self: self.tw.pending)
        @rule(data=st.data(), again=st.booleans())
        def deliver_a_webhook(self, data: st.DataObject, again: bool) -> None:
            hook = self.tw.pending.pop(data.draw(st.integers(0, len(self.tw.pending) - 1)))
            self._deliver(hook)
            if again:  # Twilio will post it again, some time later
                self.tw.delivered.append(hook)

        @precondition(lambda self: self.tw.delivered)
        @rule(data=st.data())
        def deliver_one_again(self, data: st.DataObject) -> None:
            self._deliver(data.draw(st.sampled_from(self.tw.delivered)))

        def _deliver(self, hook: tuple[str, int, str, int]) -> None:
            kind, cid, sid, aid = hook
            if kind == "status":
                rt.bridge.leg_ended(cid, "agent", "completed", sid, aid)
            elif kind == "caller-status":
                with contextlib.suppress(QueueError):  # as HangUps.call_ended does
                    rt.hang_ups.live_caller_gone(cid)
            else:
                rt.bridge.conference_event(cid, kind, sid)

        def teardown(self) -> None:
            if hasattr(self, "tw"):
                self.settle()

        def settle(self) -> None:
            """Everything delivered, every request applied: the end state is sound."""
            for _ in range(10):
                self.twilio_applies_the_apps_requests()
                if not self.tw.pending:
                    break
                while self.tw.pending:
                    self._deliver(self.tw.pending.pop(0))
            assert not self.tw.pending
            live = {leg.agent_id for leg in self.tw.legs.values() if leg.state in LIVE}
            with rt.sessions() as s:
                rows = {c.id: c for c in s.scalars(select(Contact))}
            for aid in agent_ids:
                agent = rt.store.agent(aid)
                if agent.get("state") == "on_call":
                    assert aid in live, f"agent {aid} on a call with no live leg"
                if agent.get("state") == "wrap_up" and agent.get("call"):
                    assert agent.get("reason") == "outcome_due"
            for leg in self.tw.legs.values():
                caller = self.tw.callers[leg.contact_id]
                if leg.state == "ended" and leg.answered:
                    assert caller.state != "in_conf", "a caller left in the agent's conference"
            for cid, row in rows.items():
                if row.state in ACTIVE_CONTACT_STATES:
                    if row.state == "on_call":  # its agent owes it an outcome
                        agent = rt.store.agent(row.agent_id or 0)
                        assert agent.get("call") == member(cid), f"contact {cid} is owed nothing"
                    continue
                assert row.state in ("completed", "abandoned"), (cid, row.state)
                assert row.state == "abandoned" or row.outcome, f"{cid} closed without outcome"

        # -- invariants -----------------------------------------------------------------------
        @invariant()
        def never_two_live_legs_nor_an_offer_while_one_is_live(self) -> None:
            if not hasattr(self, "tw"):
                return
            free = set(rt.store.available_agents(SITE))
            for aid in agent_ids:
                legs = [
                    leg
                    for leg in self.tw.legs.values()
                    if leg.agent_id == aid and leg.state in LIVE
                ]
                assert len(legs) <= 1, f"agent {aid} holds two live legs"
                if legs:
                    state = rt.store.agent(aid).get("state")
                    assert state not in ("offered", "available"), (aid, state)
                    assert aid not in free

        @invariant()
        def sql_follows_redis(self) -> None:
            if not hasattr(self, "tw"):
                return
            with rt.sessions() as s:
                for c in s.scalars(select(Contact)):
                    live = rt.store.contact(c.id)
                    if c.state in ACTIVE_CONTACT_STATES:
                        assert live.get("state") == c.state, (c.id, live, c.state)
                    else:
                        assert live == {}
                for a in s.scalars(select(Agent)):
                    assert a.presence in (None, "offline", "available", "paused")

    run_state_machine_as_test(
        Legs,
        settings=settings(
            max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "60")) // 2 or 1,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
