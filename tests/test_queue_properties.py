"""Property-based test: random interleavings of everything that can happen to the queue.

After every step: no contact lost, none offered to two agents, no agent with two offers,
SQL agrees with Redis, the line is in (class, arrival) order, each offer went to a
contact that no earlier waiting contact could have taken from that agent, and the agent
log has every move of every agent.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter

import pytest
import redis
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

from interphone.models import Contact, Event
from interphone.queue import agentlog
from interphone.queue.clock import ManualClock
from interphone.queue.exceptions import Conflict
from interphone.queue.service import OUTCOMES, QueueService
from interphone.queue.store import member

from .conftest import SITE, phone

LANGS = ["fr", "ar", "en", "ps"]
AGENT_LANGS = [["fr"], ["fr", "ar"], ["en"]]
TERMINAL = {"completed", "abandoned", "cancelled", "unreachable"}


def test_random_interleavings_keep_the_queue_invariants(
    queue: QueueService, clock: ManualClock, make_agent, redis_client: redis.Redis
) -> None:
    agent_ids = [make_agent(langs, available=False).id for langs in AGENT_LANGS]

    class QueueMachine(RuleBasedStateMachine):
        @initialize()
        def fresh(self) -> None:
            redis_client.flushdb()
            with queue.sessions.begin() as s:
                s.execute(delete(Event))
                s.execute(delete(Contact))
            for aid in agent_ids:
                queue.set_presence(aid, "offline")
            self.created: set[int] = set()

        # -- arrivals and departures -------------------------------------------------
        @rule(lang=st.sampled_from(LANGS))
        def caller_waits(self, lang: str) -> None:
            self.created.add(queue.enqueue_live(SITE, language=lang).contact_id)

        @rule(lang=st.sampled_from(LANGS), who=st.integers(0, 5))
        def caller_asks_for_callback(self, lang: str, who: int) -> None:
            ticket = queue.request_callback(SITE, phone=phone(who), language=lang)
            if ticket.created:
                self.created.add(ticket.contact_id)
            else:
                assert ticket.contact_id in self.created

        @precondition(lambda self: self.created)
        @rule(data=st.data())
        def caller_hangs_up_or_cancels(self, data: st.DataObject) -> None:
            cid = data.draw(st.sampled_from(sorted(self.created)))
            # on a call, hanging up ends the call through the agent instead (Conflict)
            with contextlib.suppress(Conflict):
                queue.abandon(cid)

        @precondition(lambda self: self.created)
        @rule(data=st.data())
        def live_caller_presses_star(self, data: st.DataObject) -> None:
            cid = data.draw(st.sampled_from(sorted(self.created)))
            with contextlib.suppress(Conflict):
                queue.convert_to_callback(cid, phone=phone(40 + cid % 30))

        # -- agents ------------------------------------------------------------------
        @rule(i=st.integers(0, 2), state=st.sampled_from(["available", "paused", "offline"]))
        def agent_presence(self, i: int, state: str) -> None:
            try:
                queue.set_presence(agent_ids[i], state, "break" if state == "paused" else "")
            except Conflict:
                assert queue.store.agent(agent_ids[i])["state"] == "on_call"

        def _agents_in(self, state: str) -> list[int]:
            return [a for a in agent_ids if queue.store.agent(a).get("state") == state]

        @precondition(lambda self: self._agents_in("offered"))
        @rule(data=st.data(), take=st.booleans())
        def agent_answers_offer(self, data: st.DataObject, take: bool) -> None:
            aid = data.draw(st.sampled_from(self._agents_in("offered")))
            offer = int(queue.store.agent(aid)["offer"])
            if take:
                queue.accept(aid, offer)
            else:
                queue.decline(aid, offer)

        @precondition(lambda self: self._agents_in("on_call"))
        @rule(data=st.data(), outcome=st.sampled_from(sorted(OUTCOMES)))
        def agent_ends_call(self, data: st.DataObject, outcome: str) -> None:
            aid = data.draw(st.sampled_from(self._agents_in("on_call")))
            talking = [
                cid
                for cid in self.created
                if queue.store.contact(cid).get("agent") == str(aid)
                and queue.store.contact(cid).get("state") == "on_call"
            ]
            assert talking == [int(queue.store.agent(aid)["call"])]
            queue.finish(aid, talking[0], outcome)

        # -- time and machinery ------------------------------------------------------
        @rule(seconds=st.sampled_from([1, 5, 25, 130, 700, 2000]))
        def time_passes(self, seconds: int) -> None:
            clock.advance(seconds)

        @rule()
        def expire_offers_and_wrap_ups(self) -> None:
            queue.expire()

        @rule()
        def dispatch_once(self) -> None:
            idle = {
                int(a): s
                for a, s in queue.store.redis.zrange(
                    f"ip:site:{SITE}:avail", 0, -1, withscores=True
                )
            }
            result = queue.store.dispatch(
                SITE,
                offer_timeout_s=queue.settings.offer_timeout_s,
                language_relax_s=queue.settings.language_relax_s,
                promote_after_s=queue.settings.promote_after_s,
            )
            offer = result.offer
            if offer is None:
                return
            now = queue.store.now_ms()
            relax = queue.settings.language_relax_s * 1000
            chosen = queue.store.contact(offer.contact_id)
            langs = dict(zip(agent_ids, AGENT_LANGS, strict=True))

            def servable(c: dict[str, str], aid: int) -> bool:
                return (
                    c["lang"] in langs[aid] or c["lang"] == "" or now - int(c["arrived"]) >= relax
                )

            # every contact still ahead of the chosen one could not be served by this agent
            chosen_key = (float(chosen["score"]), offer.contact_id)
            for cid in queue.store.waiting_ids(SITE):
                c = queue.store.contact(cid)
                if (float(c["score"]), cid) > chosen_key:
                    break
                assert not servable(c, offer.agent_id), "an earlier contact was skipped"
            # the agent is the longest idle among those who speak the language, or of all
            speakers = [a for a in idle if chosen["lang"] in langs[a]]
            pool = speakers or list(idle)
            assert idle[offer.agent_id] == min(idle[a] for a in pool)
            # keep the service's SQL record and log in step, as QueueService.dispatch does
            from interphone.db import transaction

            with transaction(queue.sessions) as s:
                queue._set_contact(
                    s,
                    offer.contact_id,
                    offer.contact_version,
                    state="offered",
                    agent_id=offer.agent_id,
                )
                queue._event_raw(
                    s,
                    "offer.made",
                    contact_id=offer.contact_id,
                    agent_id=offer.agent_id,
                    data={"state": "offered", "from": "available"},
                )

        @rule()
        def service_dispatch(self) -> None:
            queue.dispatch(SITE)

        # -- invariants --------------------------------------------------------------
        @invariant()
        def nothing_lost_nothing_doubled(self) -> None:
            with queue.sessions() as s:
                rows = {c.id: c for c in s.scalars(select(Contact))}
            assert set(rows) == self.created
            waiting = queue.store.waiting_ids(SITE)
            delayed = queue.store.delayed_ids(SITE)
            assert not set(waiting) & set(delayed)
            holders: Counter[str] = Counter()
            for cid, row in rows.items():
                live = queue.store.contact(cid)
                if row.state in TERMINAL:
                    assert live == {}, f"closed contact {cid} still in Redis"
                    continue
                assert live, f"contact {cid} lost from Redis"
                assert live["state"] == row.state, (cid, live["state"], row.state)
                if live["state"] == "waiting":
                    assert (cid in waiting) != (cid in delayed), f"{cid} not in line once"
                else:
                    assert cid not in waiting and cid not in delayed
                    holders[live["agent"]] += 1
                    assert int(live["agent"]) == row.agent_id
                    agent = queue.store.agent(int(live["agent"]))
                    assert agent["state"] == live["state"]
                    if live["state"] == "offered":
                        assert agent["offer"] == member(cid)
            assert all(n == 1 for n in holders.values()), "an agent holds two contacts"
            for aid in agent_ids:
                agent = queue.store.agent(aid)
                if agent.get("state") in ("offered", "on_call"):
                    assert holders[str(aid)] == 1, f"agent {aid} has no contact"

        @invariant()
        def the_agent_log_follows_every_agent(self) -> None:
            """Each agent's last move in the log is its state in Redis, and each move
            leaves the state the one before took: no move is missing from the log."""
            with queue.sessions() as s:
                last = agentlog.last_moves(s, agent_ids)
                moves = s.execute(
                    select(Event.agent_id, Event.data)
                    .where(Event.agent_id.in_(agent_ids), Event.kind.in_(agentlog.KINDS))
                    .order_by(Event.id)
                ).all()
            for aid in agent_ids:
                assert last[aid].state == queue.store.agent(aid).get("state"), aid
            taken: dict[int, str] = {}
            for aid, data in moves:
                if "state" in data:
                    if aid in taken:
                        assert data.get("from") == taken[aid], (aid, data, taken[aid])
                    taken[aid] = data["state"]

        @invariant()
        def line_in_class_then_arrival_order(self) -> None:
            keys = []
            for cid in queue.store.waiting_ids(SITE):
                c = queue.store.contact(cid)
                keys.append((int(c["cls"]), int(c["arrived"]), cid))
            assert keys == sorted(keys)

    run_state_machine_as_test(
        QueueMachine,
        settings=settings(
            max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "60")),
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


@pytest.mark.parametrize("outcome", sorted(OUTCOMES))
def test_every_outcome_code_closes_or_retries(
    queue: QueueService, make_agent, outcome: str
) -> None:
    agent = make_agent(["fr"])
    cid = queue.request_callback(SITE, phone=phone(1), language="fr").contact_id
    [offer] = queue.dispatch(SITE)
    queue.accept(agent.id, offer.contact_id)
    state = queue.finish(agent.id, cid, outcome)
    assert state == ("waiting" if OUTCOMES[outcome] else "completed")
