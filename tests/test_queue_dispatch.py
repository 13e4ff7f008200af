"""Dispatch: longest-idle agent, languages, offers that expire, races between workers."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter

import pytest
import redis
from sqlalchemy import select

from interphone.models import Agent, Contact
from interphone.queue.clock import ManualClock, SystemClock
from interphone.queue.exceptions import Conflict, InvalidInput, UnknownAgent
from interphone.queue.service import QueueService
from interphone.queue.store import RedisQueue

from .conftest import SITE, phone


def test_head_contact_goes_to_the_longest_idle_agent(
    queue: QueueService, clock: ManualClock, make_agent
) -> None:
    first = make_agent(["fr"])
    clock.advance(5)
    make_agent(["fr"])
    contact = queue.enqueue_live(SITE, language="fr").contact_id
    [offer] = queue.dispatch(SITE)
    assert (offer.contact_id, offer.agent_id) == (contact, first.id)
    assert queue.ticket(contact).state == "offered"


def test_agent_speaking_the_callers_language_is_preferred_over_a_longer_idle_one(
    queue: QueueService, clock: ManualClock, make_agent
) -> None:
    make_agent(["fr"])
    clock.advance(5)
    arabic = make_agent(["fr", "ar"])
    contact = queue.enqueue_live(SITE, language="ar").contact_id
    [offer] = queue.dispatch(SITE)
    assert (offer.contact_id, offer.agent_id) == (contact, arabic.id)


def test_language_preference_is_relaxed_after_the_configured_wait(
    queue: QueueService, clock: ManualClock, make_agent
) -> None:
    french = make_agent(["fr"])
    contact = queue.enqueue_live(SITE, language="ps").contact_id  # nobody speaks Pashto
    assert queue.dispatch(SITE) == []
    clock.advance(queue.settings.language_relax_s)
    [offer] = queue.dispatch(SITE)
    assert (offer.contact_id, offer.agent_id) == (contact, french.id)


def test_free_agent_serves_the_first_contact_in_its_language_meanwhile(
    queue: QueueService, clock: ManualClock, make_agent
) -> None:
    arabic = queue.enqueue_live(SITE, language="ar").contact_id
    french = queue.enqueue_live(SITE, language="fr").contact_id
    agent = make_agent(["fr"])
    [offer] = queue.dispatch(SITE)
    assert (offer.contact_id, offer.agent_id) == (french, agent.id)
    assert queue.ticket(arabic).position == 1


def test_given_no_agent_available_then_contacts_wait(queue: QueueService, make_agent) -> None:
    make_agent(["fr"], available=False)
    queue.enqueue_live(SITE, language="fr")
    assert queue.dispatch(SITE) == []


def test_offer_timing_out_returns_the_contact_to_its_original_place(
    queue: QueueService, clock: ManualClock, make_agent
) -> None:
    ids = []
    for _ in range(3):
        ids.append(queue.enqueue_live(SITE, language="fr").contact_id)
        clock.advance(1)
    agent = make_agent(["fr"])
    [offer] = queue.dispatch(SITE)
    assert offer.contact_id == ids[0]
    assert [r.id for r in queue.list_waiting(SITE)] == ids[1:]
    clock.advance(queue.settings.offer_timeout_s + 0.001)
    counts = queue.store.sweep(queue.settings.missed_offers_pause)
    assert [r.contact_id for r in counts] == [ids[0]]
    assert [r.id for r in queue.list_waiting(SITE)] == ids
    assert queue.store.agent(agent.id)["state"] == "available"


def test_two_missed_offers_in_a_row_pause_the_agent(
    queue: QueueService, clock: ManualClock, make_agent, runtime
) -> None:
    queue.enqueue_live(SITE, language="fr")
    agent = make_agent(["fr"])
    assert len(queue.dispatch(SITE)) == 1
    clock.advance(queue.settings.offer_timeout_s + 1)
    queue.sweep()  # first miss: the only agent is offered the contact again
    assert queue.store.agent(agent.id)["state"] == "offered"
    clock.advance(queue.settings.offer_timeout_s + 1)
    queue.sweep()
    state = queue.store.agent(agent.id)
    assert state["state"] == "paused" and state["reason"] == "missed_offers"
    with runtime.sessions() as s:
        assert s.get(Agent, agent.id).presence == "paused"
    assert queue.dispatch(SITE) == []  # a paused agent gets no offer


def test_accepting_in_time_resets_the_missed_offer_count(
    queue: QueueService, clock: ManualClock, make_agent
) -> None:
    agent = make_agent(["fr"])
    queue.enqueue_live(SITE, language="fr")
    queue.dispatch(SITE)
    clock.advance(queue.settings.offer_timeout_s + 1)
    queue.sweep()  # missed once, offered again by the sweep's dispatch
    contact = queue.store.agent(agent.id)["offer"]
    queue.accept(agent.id, int(contact))
    queue.finish(agent.id, int(contact), "resolved")
    assert queue.store.agent(agent.id)["missed"] == "0"


def test_wait_estimate_reads_the_staffed_agents_and_the_calls_completed_since(
    queue: QueueService, clock: ManualClock, make_agent
) -> None:
    agent = make_agent(["fr"])
    contact = queue.enqueue_live(SITE, language="fr").contact_id
    queue.dispatch(SITE)
    queue.accept(agent.id, contact)
    since = queue.store.now_ms()
    clock.advance(1)
    queue.finish(agent.id, contact, "resolved")
    assert queue.store.staffing(SITE, since) == (1, 1)
    assert queue.store.staffing(SITE, queue.store.now_ms() + 1) == (1, 0)


def test_a_caller_on_hold_gets_place_and_wait_estimate_in_one_round_trip(
    queue: QueueService, clock: ManualClock, make_agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every caller on hold asks where they stand every minute: the position script also
    returns the estimate's two figures, so the separate staffing read is never made."""
    agent = make_agent(["fr"])
    first = queue.enqueue_live(SITE, language="fr").contact_id
    queue.dispatch(SITE)
    queue.accept(agent.id, first)
    clock.advance(60)
    queue.finish(agent.id, first, "resolved")  # one call completed in the window
    # the agent, in wrap-up, is staffed but not free: the next callers wait
    waiting = [queue.enqueue_live(SITE, language="fr").contact_id for _ in range(2)]
    since = queue.store.now_ms() - 1_800_000
    expected = queue.store.staffing(SITE, since)
    assert expected == (1, 1)
    pos = queue.store.position(waiting[1], since)
    assert pos is not None and (pos.position, pos.staffing) == (2, expected)
    unasked = queue.store.position(waiting[1])
    assert unasked is not None and unasked.staffing is None  # not asked: not read
    estimate = queue.estimate_wait(SITE, 2)

    def no_second_trip(*_args: object) -> tuple[int, int]:
        raise AssertionError("staffing read apart from the position")

    monkeypatch.setattr(queue.store, "staffing", no_second_trip)
    place = queue.place(waiting[1])
    assert (place.position, place.wait_s) == (2, estimate)
    assert estimate is not None


def test_accepting_an_expired_offer_is_refused(
    queue: QueueService, clock: ManualClock, make_agent
) -> None:
    agent = make_agent(["fr"])
    contact = queue.enqueue_live(SITE, language="fr").contact_id
    queue.dispatch(SITE)
    clock.advance(queue.settings.offer_timeout_s + 1)
    queue.store.sweep(5)
    with pytest.raises(Conflict, match="no longer open"):
        queue.accept(agent.id, contact)


def test_declined_offer_goes_to_the_next_agent(
    queue: QueueService, clock: ManualClock, make_agent
) -> None:
    first = make_agent(["fr"])
    clock.advance(1)
    second = make_agent(["fr"])
    contact = queue.enqueue_live(SITE, language="fr").contact_id
    queue.dispatch(SITE)
    queue.decline(first.id, contact)
    [offer] = queue.dispatch(SITE)
    assert offer.agent_id == second.id


def test_full_call_takes_agent_through_on_call_and_timed_wrap_up(
    queue: QueueService, clock: ManualClock, make_agent, runtime
) -> None:
    agent = make_agent(["fr"])
    contact = queue.enqueue_live(SITE, language="fr", phone=phone(3)).contact_id
    queue.dispatch(SITE)
    queue.accept(agent.id, contact)
    assert queue.store.agent(agent.id)["state"] == "on_call"
    assert queue.finish(agent.id, contact, "resolved", note="permis prêt") == "completed"
    assert queue.store.agent(agent.id)["state"] == "wrap_up"
    clock.advance(queue.settings.wrap_up_s)
    queue.sweep()
    assert queue.store.agent(agent.id)["state"] == "available"
    with runtime.sessions() as s:
        row = s.get(Contact, contact)
        assert (row.state, row.outcome, row.note) == ("completed", "resolved", "permis prêt")


def test_agent_cannot_go_offline_in_the_middle_of_a_call(queue: QueueService, make_agent) -> None:
    agent = make_agent(["fr"])
    contact = queue.enqueue_live(SITE, language="fr").contact_id
    queue.dispatch(SITE)
    queue.accept(agent.id, contact)
    with pytest.raises(Conflict):
        queue.set_presence(agent.id, "offline")


def test_pausing_with_an_offer_in_hand_returns_the_contact_to_its_place(
    queue: QueueService, make_agent
) -> None:
    agent = make_agent(["fr"])
    contact = queue.enqueue_live(SITE, language="fr").contact_id
    queue.dispatch(SITE)
    queue.set_presence(agent.id, "paused", "lunch")
    assert queue.ticket(contact).position == 1
    assert queue.store.agent(agent.id)["reason"] == "lunch"


def test_unknown_agent_and_unknown_presence_get_clear_errors(
    queue: QueueService, make_agent
) -> None:
    with pytest.raises(UnknownAgent):
        queue.set_presence(999_999, "available")
    agent = make_agent(["fr"], available=False)
    with pytest.raises(InvalidInput, match="presence"):
        queue.set_presence(agent.id, "on_holiday")


def test_unknown_outcome_code_is_rejected_before_anything_changes(
    queue: QueueService, make_agent
) -> None:
    agent = make_agent(["fr"])
    contact = queue.enqueue_live(SITE, language="fr").contact_id
    queue.dispatch(SITE)
    queue.accept(agent.id, contact)
    with pytest.raises(InvalidInput, match="outcome"):
        queue.finish(agent.id, contact, "gone fishing")
    assert queue.store.agent(agent.id)["state"] == "on_call"


def test_caller_hanging_up_during_an_offer_frees_the_agent(
    queue: QueueService, make_agent, runtime
) -> None:
    agent = make_agent(["fr"])
    contact = queue.enqueue_live(SITE, language="fr").contact_id
    queue.dispatch(SITE)
    assert queue.abandon(contact) is True
    assert queue.abandon(contact) is False  # a repeated hang-up webhook changes nothing
    assert queue.store.agent(agent.id)["state"] == "available"
    with runtime.sessions() as s:
        assert s.get(Contact, contact).state == "abandoned"
    assert queue.count_events("contact.abandoned") == 1


def test_caller_hanging_up_on_an_accepted_call_is_refused_by_abandon_and_taken_before_bridge(
    queue: QueueService, make_agent, runtime
) -> None:
    """A plain abandon never ends a call in progress (the agent gives its outcome); the
    bridge's abandon before the caller was put through does, and frees the agent."""
    agent = make_agent(["fr"])
    contact = queue.enqueue_live(SITE, language="fr").contact_id
    queue.dispatch(SITE)
    queue.accept(agent.id, contact)
    with pytest.raises(Conflict):
        queue.abandon(contact)
    assert queue.store.agent(agent.id)["state"] == "on_call"
    assert queue.abandon_before_bridge(contact) is True
    assert queue.abandon_before_bridge(contact) is False  # repeated: nothing done twice
    assert queue.store.agent(agent.id)["state"] == "available"
    assert queue.store.available_agents(SITE) == [agent.id]
    with runtime.sessions() as s:
        assert s.get(Contact, contact).state == "abandoned"
    assert queue.count_events("contact.abandoned") == 1


def test_abandon_before_bridge_leaves_alone_an_agent_already_on_another_call(
    queue: QueueService, make_agent
) -> None:
    """The agent's hash names the call they are on: freeing them for a contact they no
    longer hold would cut a conversation (guards against a stale contact record)."""
    agent = make_agent(["fr"])
    contact = queue.enqueue_live(SITE, language="fr").contact_id
    queue.dispatch(SITE)
    queue.accept(agent.id, contact)
    queue.store.redis.hset(f"{queue.store.prefix}agent:{agent.id}", "call", "999")
    assert queue.abandon_before_bridge(contact) is True
    assert queue.store.agent(agent.id)["state"] == "on_call"


# -- races -------------------------------------------------------------------------------


def _race(store_factory, site: str, rounds: int, barrier) -> list[tuple[int, int]]:
    store = store_factory()
    barrier.wait()
    got = []
    for _ in range(rounds):
        result = store.dispatch(site, offer_timeout_s=60, language_relax_s=0, promote_after_s=10**6)
        if result.offer:
            got.append((result.offer.contact_id, result.offer.agent_id))
    return got


def _seed_race(store: RedisQueue, contacts: int, agents: int) -> None:
    now = store.now_ms()
    for cid in range(1, contacts + 1):
        store.enqueue(
            cid,
            site=SITE,
            kind="live",
            language=("fr", "ar")[cid % 2],
            priority_class=1,
            arrived_ms=now - cid,
        )
    for aid in range(1, agents + 1):
        store.set_presence(
            aid, site=SITE, languages=["fr"] if aid % 3 else ["ar"], state="available"
        )


def _check_race(offers: list[tuple[int, int]], store: RedisQueue, agents: int) -> None:
    contacts = Counter(c for c, _ in offers)
    agent_ids = Counter(a for _, a in offers)
    assert max(contacts.values()) == 1, "a contact was offered twice"
    assert max(agent_ids.values()) == 1, "an agent got two offers"
    assert len(offers) == agents  # every free agent got exactly one offer
    for cid, aid in offers:
        assert store.agent(aid)["offer"] == f"{cid:012d}"


def test_two_dispatcher_threads_racing_never_double_offer(redis_client: redis.Redis) -> None:
    store = RedisQueue(redis_client, SystemClock())
    _seed_race(store, contacts=300, agents=120)
    barrier = threading.Barrier(4)
    results: list[list[tuple[int, int]]] = []
    lock = threading.Lock()

    def run() -> None:
        client = redis.Redis(connection_pool=redis_client.connection_pool)
        got = _race(lambda: RedisQueue(client, SystemClock()), SITE, 80, barrier)
        with lock:
            results.append(got)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _check_race([o for r in results for o in r], store, agents=120)


def _process_worker(url: str, rounds: int, barrier, out) -> None:
    got = _race(lambda: RedisQueue(redis.Redis.from_url(url), SystemClock()), SITE, rounds, barrier)
    out.put(got)


def test_two_dispatcher_processes_racing_never_double_offer(
    redis_client: redis.Redis, redis_url: str
) -> None:
    store = RedisQueue(redis_client, SystemClock())
    _seed_race(store, contacts=300, agents=120)
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(target=_process_worker, args=(redis_url, 100, barrier, out)) for _ in range(2)
    ]
    for p in procs:
        p.start()
    offers = [o for _ in procs for o in out.get(timeout=60)]
    for p in procs:
        p.join(timeout=30)
    assert all(p.exitcode == 0 for p in procs)
    _check_race(offers, store, agents=120)


def test_service_records_each_offer_once_in_sql(queue: QueueService, make_agent, runtime) -> None:
    for n in range(5):
        queue.enqueue_live(SITE, language="fr", phone=phone(n))
    agents = [make_agent(["fr"]) for _ in range(3)]
    offers = queue.dispatch(SITE)
    assert len(offers) == 3
    with runtime.sessions() as s:
        offered = s.scalars(select(Contact).where(Contact.state == "offered")).all()
    assert sorted(c.agent_id for c in offered) == sorted(a.id for a in agents)
    assert queue.count_events("offer.made") == 3


def test_each_site_has_its_own_line_and_its_own_agents(
    queue: QueueService, make_agent, runtime
) -> None:
    from interphone.sites import ensure_site

    ensure_site(runtime.sessions, "riom", "Sous-préfecture de Riom")
    riom_contact = queue.enqueue_live("riom", language="fr").contact_id
    here_contact = queue.enqueue_live(SITE, language="fr").contact_id
    here_agent = make_agent(["fr"])
    assert [(o.contact_id, o.agent_id) for o in queue.dispatch(SITE)] == [
        (here_contact, here_agent.id)
    ]
    assert queue.dispatch("riom") == []  # the préfecture's agent is not Riom's
    riom_agent = make_agent(["fr"], site="riom")
    assert [(o.contact_id, o.agent_id) for o in queue.dispatch("riom")] == [
        (riom_contact, riom_agent.id)
    ]
    assert queue.ticket(riom_contact).state == "offered"


# -- a supervisor's reassignment ---------------------------------------------------------
def test_reassigned_contact_is_offered_to_the_chosen_agent_not_the_longest_idle(
    queue: QueueService, clock: ManualClock, make_agent
) -> None:
    make_agent(["fr"])  # longest idle
    clock.advance(5)
    chosen = make_agent(["ar"])
    first = queue.enqueue_live(SITE, language="fr").contact_id
    second = queue.enqueue_live(SITE, language="fr").contact_id
    offer = queue.reassign(second, chosen.id, actor="supervisor:1")
    assert (offer.contact_id, offer.agent_id) == (second, chosen.id)
    assert queue.ticket(second).state == "offered"
    assert queue.store.agent(chosen.id)["offer"] == f"{second:012d}"
    [normal] = queue.dispatch(SITE)  # the line goes on as usual for the others
    assert normal.contact_id == first and normal.agent_id != chosen.id
    with queue.sessions() as s:
        row = s.get(Contact, second)
        assert row is not None and (row.state, row.agent_id) == ("offered", chosen.id)


def test_declined_reassignment_puts_the_contact_back_at_its_place(
    queue: QueueService, make_agent
) -> None:
    chosen = make_agent(["fr"], available=False)
    ids = [queue.enqueue_live(SITE, language="fr").contact_id for _ in range(3)]
    queue.set_presence(chosen.id, "available")
    queue.reassign(ids[1], chosen.id)
    queue.decline(chosen.id, ids[1])
    assert queue.store.waiting_ids(SITE) == ids


@pytest.mark.parametrize("why", ["agent_busy", "agent_paused", "not_waiting", "other_site"])
def test_reassignment_that_does_not_fit_is_refused_and_changes_nothing(
    queue: QueueService, make_agent, why: str
) -> None:
    from interphone.sites import ensure_site

    chosen = make_agent(["fr"])
    contact = queue.enqueue_live(SITE, language="fr").contact_id
    if why == "agent_busy":
        other = queue.enqueue_live(SITE, language="fr").contact_id
        queue.reassign(other, chosen.id)
    elif why == "agent_paused":
        queue.set_presence(chosen.id, "paused", "pause")
    elif why == "not_waiting":
        queue.cancel(contact, "doublon")
    else:
        ensure_site(queue.sessions, "autre", "Sous-préfecture")
        chosen = make_agent(["fr"], site="autre")
    before = queue.store.waiting_ids(SITE)
    with pytest.raises(Conflict):
        queue.reassign(contact, chosen.id)
    assert queue.store.waiting_ids(SITE) == before
