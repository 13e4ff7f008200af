"""Queue order: (priority class, original arrival time), promotion, positions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from interphone.models import Case, Contact, Event
from interphone.queue.clock import ManualClock, from_ms, to_ms
from interphone.queue.exceptions import InvalidInput, UnknownSite
from interphone.queue.service import QueueService

from .conftest import SITE, phone


def order(queue: QueueService) -> list[int]:
    return [row.id for row in queue.list_waiting(SITE) if row.position]


def test_given_three_callers_then_they_are_served_in_arrival_order(
    queue: QueueService, clock: ManualClock
) -> None:
    ids = []
    for n in range(3):
        ids.append(queue.enqueue_live(SITE, language="fr", phone=phone(n)).contact_id)
        clock.advance(5)
    assert order(queue) == ids
    assert [queue.ticket(i).position for i in ids] == [1, 2, 3]


def _case_with_api_expiring_in(runtime, clock: ManualClock, file_number: str, days: int) -> None:
    today = from_ms(to_ms(clock.now())).date()
    with runtime.sessions.begin() as s:
        s.add(
            Case(
                file_number=file_number,
                birth_date_hash="x",
                status="api_issued",
                status_changed_at=from_ms(to_ms(clock.now())),
                api_valid_until=today + timedelta(days=days),
            )
        )


def test_urgent_contact_goes_before_earlier_normal_ones(
    queue: QueueService, clock: ManualClock, runtime
) -> None:
    _case_with_api_expiring_in(runtime, clock, "631", days=3)
    first = queue.enqueue_live(SITE, language="fr").contact_id
    clock.advance(10)
    urgent = queue.enqueue_live(
        SITE, language="fr", file_number="631", file_verified=True
    ).contact_id
    assert order(queue) == [urgent, first]
    with runtime.sessions() as s:
        assert s.get(Contact, urgent).priority_class == 0


def test_permit_expiring_after_the_urgent_window_stays_normal(
    queue: QueueService, clock: ManualClock, runtime
) -> None:
    _case_with_api_expiring_in(runtime, clock, "632", days=40)
    first = queue.enqueue_live(SITE, language="fr").contact_id
    later = queue.enqueue_live(
        SITE, language="fr", file_number="632", file_verified=True
    ).contact_id
    assert order(queue) == [first, later]


def test_normal_contact_waiting_past_the_configured_age_is_promoted_without_starving(
    queue: QueueService, clock: ManualClock, make_agent
) -> None:
    old = queue.enqueue_live(SITE, language="fr").contact_id
    clock.advance(queue.settings.promote_after_s + 1)
    queue.set_priority(queue.enqueue_live(SITE, language="fr").contact_id, True)
    urgent_late = order(queue)[0]
    assert urgent_late != old  # before the sweep, the fresh urgent contact leads
    queue.dispatch(SITE)  # no agent: only promotion happens
    assert order(queue) == [old, urgent_late]
    assert queue.count_events("contact.promoted") == 1


def test_callback_created_from_a_call_keeps_that_calls_place(
    queue: QueueService, clock: ManualClock
) -> None:
    call_started = to_ms(clock.now())
    clock.advance(30)
    waiting = queue.enqueue_live(SITE, language="fr", phone=phone(1)).contact_id
    clock.advance(90)  # the first caller spent two minutes in the status menu
    callback = queue.request_callback(
        SITE, phone=phone(2), language="ar", arrived_ms=call_started
    ).contact_id
    assert order(queue) == [callback, waiting]


def test_live_caller_switching_to_callback_keeps_the_same_place(
    queue: QueueService, clock: ManualClock
) -> None:
    ids = []
    for n in range(3):
        ids.append(queue.enqueue_live(SITE, language="fr", phone=phone(n)).contact_id)
        clock.advance(1)
    ticket = queue.convert_to_callback(ids[1])
    assert ticket.kind == "callback" and ticket.position == 2
    assert order(queue) == ids


def test_position_and_wait_estimate_come_with_every_ticket(queue: QueueService, make_agent) -> None:
    make_agent(["fr"], available=False)
    tickets = [queue.enqueue_live(SITE, language="ar") for _ in range(4)]
    assert [t.position for t in tickets] == [1, 2, 3, 4]
    assert tickets[0].wait_s is None  # nobody staffed: no honest estimate exists
    agent = make_agent(["fr"])
    assert agent.id
    estimate = queue.ticket(tickets[3].contact_id).wait_s
    assert estimate == pytest.approx(4 * queue.settings.default_handle_time_s)
    # the estimate's two figures, read in one round trip: one agent, no call completed yet
    assert queue.store.staffing(SITE, 0) == (1, 0)


def test_given_unknown_site_then_nothing_is_written(queue: QueueService, runtime) -> None:
    with pytest.raises(UnknownSite):
        queue.enqueue_live("nowhere", language="fr")
    with runtime.sessions() as s:
        assert s.scalars(select(Contact)).all() == []
        assert s.scalars(select(Event)).all() == []


@pytest.mark.parametrize("bad", ["12", "+33 1", "not a number", "+999123456789", "0" * 40])
def test_malformed_phone_number_is_rejected_with_a_clear_error(
    queue: QueueService, runtime, bad: str
) -> None:
    with pytest.raises(InvalidInput, match="phone"):
        queue.request_callback(SITE, phone=bad, language="fr")
    with runtime.sessions() as s:
        assert s.scalars(select(Contact)).all() == []


@pytest.mark.parametrize("language", ["", "french language", "f,r", "x" * 9])
def test_malformed_language_code_is_rejected(queue: QueueService, language: str) -> None:
    with pytest.raises(InvalidInput, match="language"):
        queue.enqueue_live(SITE, language=language)


def test_national_phone_format_is_stored_as_e164(queue: QueueService, runtime) -> None:
    ticket = queue.request_callback(SITE, phone="06 12 34 56 78", language="fr")
    with runtime.sessions() as s:
        assert s.get(Contact, ticket.contact_id).phone == "+33612345678"


def test_reference_collision_draws_a_new_reference_instead_of_refusing_the_caller(
    queue: QueueService, runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six characters collide about once in 50,000 contacts; the caller must not pay."""
    first = queue.enqueue_live(SITE, language="fr")
    with runtime.sessions() as s:
        taken = s.get(Contact, first.contact_id).reference
    draws = iter([taken, taken, "ZZZZ22"])
    monkeypatch.setattr("interphone.queue.service._reference", lambda: next(draws))
    second = queue.enqueue_live(SITE, language="fr")
    assert second.created
    with runtime.sessions() as s:
        assert s.get(Contact, second.contact_id).reference == "ZZZZ22"
    assert order(queue) == [first.contact_id, second.contact_id]
