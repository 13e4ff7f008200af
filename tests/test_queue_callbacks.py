"""Callbacks: one active request per number and file, retries, unreachable, cancellation."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from interphone.models import Contact
from interphone.queue.clock import ManualClock
from interphone.queue.exceptions import InvalidInput
from interphone.queue.service import QueueService

from .conftest import SITE, phone


def _call_back(queue: QueueService, agent_id: int, outcome: str) -> str:
    [offer] = queue.dispatch(SITE)
    queue.accept(agent_id, offer.contact_id)
    return queue.finish(agent_id, offer.contact_id, outcome)


def test_second_request_for_the_same_number_returns_the_first_one(
    queue: QueueService, runtime
) -> None:
    first = queue.request_callback(SITE, phone=phone(1), language="fr")
    again = queue.request_callback(SITE, phone="06 10 00 00 01", language="en")
    assert first.created and not again.created
    assert again.contact_id == first.contact_id and again.position == 1
    with runtime.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Contact)) == 1


def test_second_request_for_the_same_proven_file_from_another_number_returns_the_first(
    queue: QueueService,
) -> None:
    first = queue.request_callback(
        SITE, phone=phone(1), language="fr", file_number="63 1234", file_verified=True
    )
    again = queue.request_callback(
        SITE, phone=phone(2), language="fr", file_number="631234", file_verified=True
    )
    assert again.contact_id == first.contact_id and not again.created


def test_an_unverified_file_number_neither_squats_a_file_nor_joins_its_request(
    queue: QueueService, runtime
) -> None:
    """Anyone can type anyone's file number: typed alone, it neither squats the file
    (its owner still gets a request of their own) nor joins another's request."""
    squat = queue.request_callback(SITE, phone=phone(1), language="fr", file_number="631234")
    owner = queue.request_callback(
        SITE, phone=phone(2), language="fr", file_number="631234", file_verified=True
    )
    other = queue.request_callback(SITE, phone=phone(3), language="fr", file_number="631234")
    assert squat.created and owner.created and other.created
    assert len({squat.contact_id, owner.contact_id, other.contact_id}) == 3
    with runtime.sessions() as s:
        rows = {c.id: c for c in s.scalars(select(Contact))}
    assert [rows[t.contact_id].active_file for t in (squat, owner, other)] == [
        None,
        "631234",
        None,
    ]
    assert [rows[t.contact_id].file_verified for t in (squat, owner, other)] == [
        False,
        True,
        False,
    ]


def test_concurrent_requests_for_one_number_create_exactly_one_callback(
    queue: QueueService, runtime
) -> None:
    barrier = threading.Barrier(6)
    tickets = []

    def ask() -> None:
        barrier.wait()
        tickets.append(queue.request_callback(SITE, phone=phone(7), language="fr"))

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({t.contact_id for t in tickets}) == 1
    assert sum(t.created for t in tickets) == 1
    with runtime.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Contact)) == 1
    assert queue.store.waiting_count(SITE) == 1


def test_after_completion_the_same_number_may_ask_again(queue: QueueService, make_agent) -> None:
    agent = make_agent(["fr"])
    first = queue.request_callback(SITE, phone=phone(1), language="fr")
    assert _call_back(queue, agent.id, "resolved") == "completed"
    second = queue.request_callback(SITE, phone=phone(1), language="fr")
    assert second.created and second.contact_id != first.contact_id


def test_unanswered_callback_returns_at_its_place_not_before_the_retry_delay(
    queue: QueueService, clock: ManualClock, make_agent
) -> None:
    callback = queue.request_callback(SITE, phone=phone(1), language="fr").contact_id
    clock.advance(1)
    later = queue.enqueue_live(SITE, language="fr").contact_id
    agent = make_agent(["fr"])
    assert _call_back(queue, agent.id, "no_answer") == "waiting"
    queue.set_presence(agent.id, "available")  # skip wrap-up for the test
    waiting = queue.list_waiting(SITE)
    assert [(w.id, w.state) for w in waiting] == [(later, "waiting"), (callback, "retry_pending")]
    clock.advance(queue.settings.callback_retry_delay_s - 1)
    [offer] = queue.dispatch(SITE)
    assert offer.contact_id == later  # still held back
    queue.decline(agent.id, later)
    clock.advance(1)
    [offer] = queue.dispatch(SITE)
    assert offer.contact_id == callback  # back, ahead of the later caller


def test_callback_becomes_unreachable_after_the_last_attempt_and_is_kept(
    queue: QueueService, clock: ManualClock, make_agent, runtime
) -> None:
    agent = make_agent(["fr"])
    cid = queue.request_callback(SITE, phone=phone(1), language="fr").contact_id
    outcomes = []
    for _ in range(queue.settings.callback_max_attempts):
        outcomes.append(_call_back(queue, agent.id, "busy"))
        queue.set_presence(agent.id, "available")
        clock.advance(queue.settings.callback_retry_delay_s)
    assert outcomes == ["waiting"] * (queue.settings.callback_max_attempts - 1) + ["unreachable"]
    with runtime.sessions() as s:
        row = s.get(Contact, cid)
        assert (row.state, row.attempts, row.active_phone) == (
            "unreachable",
            queue.settings.callback_max_attempts,
            None,
        )
    assert queue.count_events("callback.unreachable") == 1
    assert queue.dispatch(SITE) == []


def test_cancellation_needs_a_reason_and_removes_the_contact_once(
    queue: QueueService, runtime
) -> None:
    cid = queue.request_callback(SITE, phone=phone(1), language="fr").contact_id
    with pytest.raises(InvalidInput):
        queue.cancel(cid, "")
    assert queue.cancel(cid, "annulé par SMS", actor="sms") is True
    assert queue.cancel(cid, "annulé par SMS", actor="sms") is False
    with runtime.sessions() as s:
        row = s.get(Contact, cid)
        assert (row.state, row.outcome) == ("cancelled", "annulé par SMS")
    assert queue.count_events("contact.cancelled") == 1
    assert queue.store.waiting_count(SITE) == 0


def test_a_release_whose_database_write_failed_after_redis_is_completed_by_its_retry_once(
    queue: QueueService, runtime, tmp_path
) -> None:
    """The database went down between Redis letting the contact go and the row being
    closed: the retry (a deferred hang-up, a repeated cancellation) finds the row open
    and closes it, says it did (the bridge then tidies the legs), and records one event."""
    from sqlalchemy.exc import OperationalError

    from interphone import db as dbmod

    cid = queue.enqueue_live(SITE, language="fr", phone=phone(1)).contact_id
    unreachable = dbmod.make_engine(f"sqlite:///{tmp_path / 'missing' / 'db.sqlite3'}")
    runtime.sessions.configure(bind=unreachable)  # the write fails; the read came first
    try:
        with pytest.raises(OperationalError):  # SQLite cannot open the missing file
            queue.abandon(cid)
    finally:
        runtime.sessions.configure(bind=runtime.engine)
        unreachable.dispose()
    assert queue.store.contact(cid) == {}  # Redis let go already
    assert queue.abandon(cid) is True
    assert queue.abandon(cid) is False
    with runtime.sessions() as s:
        assert s.get(Contact, cid).state == "abandoned"
    assert queue.count_events("contact.abandoned") == 1


def test_a_release_that_lost_the_race_keeps_the_winners_state_and_records_nothing(
    queue: QueueService, runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent cancels while the caller hangs up: both read the contact open, the
    cancellation wins in Redis and in the database; the hang-up, finding Redis empty,
    must not overwrite "cancelled" nor add an "abandoned" event."""
    cid = queue.enqueue_live(SITE, language="fr", phone=phone(1)).contact_id
    stale = queue._state_and_site(cid)  # what the hang-up read before the cancellation
    assert queue.cancel(cid, "doublon", actor="agent:1") is True
    monkeypatch.setattr(queue, "_state_and_site", lambda _cid: stale)
    assert queue.abandon(cid) is False
    with runtime.sessions() as s:
        assert s.get(Contact, cid).state == "cancelled"
    assert queue.count_events("contact.abandoned") == 0
    assert queue.count_events("contact.cancelled") == 1


def test_a_live_call_with_no_answer_outcome_is_not_retried(queue: QueueService, make_agent) -> None:
    agent = make_agent(["fr"])
    queue.enqueue_live(SITE, language="fr", phone=phone(1))
    assert _call_back(queue, agent.id, "no_answer") == "completed"


def test_callback_requested_outside_hours_waits_for_its_not_before_time(
    queue: QueueService, clock: ManualClock, make_agent
) -> None:
    make_agent(["fr"])
    opening = int((clock.now() + 3600) * 1000)
    ticket = queue.request_callback(SITE, phone=phone(1), language="fr", not_before_ms=opening)
    assert ticket.not_before_ms == opening
    assert queue.dispatch(SITE) == []
    clock.advance(3600)
    assert len(queue.dispatch(SITE)) == 1
