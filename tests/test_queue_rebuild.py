"""Durability: SQL holds every accepted contact; ``queue rebuild`` restores Redis from it."""

from __future__ import annotations

import json

import pytest
import redis
from click.testing import CliRunner
from sqlalchemy import select

from interphone.cli import main
from interphone.models import Contact
from interphone.queue.clock import ManualClock
from interphone.queue.service import QueueService
from interphone.queue.store import RedisQueue
from interphone.runtime import Runtime

from .conftest import SITE, phone


def _wipe(client: redis.Redis) -> None:
    """FLUSHALL on the private test server; FLUSHDB when the tests borrow a shared one."""
    if "path" in client.connection_pool.connection_kwargs:
        client.flushall()
    else:
        client.flushdb()


def _busy_queue(queue: QueueService, clock: ManualClock, make_agent) -> dict[str, int]:
    ids = {}
    for n in range(6):
        ids[f"live{n}"] = queue.enqueue_live(
            SITE, language=("fr", "ar")[n % 2], phone=phone(n)
        ).contact_id
        clock.advance(7)
    ids["callback"] = queue.request_callback(SITE, phone=phone(50), language="es").contact_id
    queue.set_priority(ids["live4"], True)
    talking = make_agent(["fr"])
    [offer] = queue.dispatch(SITE)
    queue.accept(talking.id, offer.contact_id)
    ids["on_call"] = offer.contact_id
    offered_to = make_agent(["ar"])
    [offer] = queue.dispatch(SITE)
    ids["offered"] = offer.contact_id
    ids["offered_to"] = offered_to.id
    ids["talking"] = talking.id
    return ids


def test_after_flushall_and_rebuild_the_order_is_identical(
    queue: QueueService, clock: ManualClock, make_agent, redis_client: redis.Redis
) -> None:
    ids = _busy_queue(queue, clock, make_agent)
    before = [(w.id, w.kind, w.priority) for w in queue.list_waiting(SITE)]
    _wipe(redis_client)
    assert queue.list_waiting(SITE) == []
    counts = queue.rebuild()
    assert counts["on_call"] == 1
    after = [(w.id, w.kind, w.priority) for w in queue.list_waiting(SITE)]
    # the offered contact is back in line at its own place (by class, then arrival);
    # every other contact keeps its relative order
    assert [row for row in after if row[0] != ids["offered"]] == before
    with queue.sessions() as s:
        rows = s.scalars(select(Contact).where(Contact.state == "waiting")).all()
    by_rule = sorted(rows, key=lambda c: (c.priority_class, c.arrived_ms, c.id))
    assert [row[0] for row in after] == [c.id for c in by_rule]
    assert ids["offered"] in [row[0] for row in after]
    assert queue.store.agent(ids["talking"])["state"] == "on_call"
    assert queue.store.contact(ids["on_call"])["state"] == "on_call"
    # the call in progress can still be finished after the rebuild
    assert queue.finish(ids["talking"], ids["on_call"], "resolved") == "completed"


def test_rebuild_keeps_retry_delays_and_attempts(
    queue: QueueService, clock: ManualClock, make_agent, redis_client: redis.Redis
) -> None:
    agent = make_agent(["fr"])
    cid = queue.request_callback(SITE, phone=phone(1), language="fr").contact_id
    [offer] = queue.dispatch(SITE)
    queue.accept(agent.id, offer.contact_id)
    queue.finish(agent.id, cid, "no_answer")
    _wipe(redis_client)
    queue.rebuild()
    assert [w.state for w in queue.list_waiting(SITE)] == ["retry_pending"]
    assert queue.store.contact(cid)["attempts"] == "1"
    clock.advance(queue.settings.callback_retry_delay_s)
    queue.set_presence(agent.id, "available")
    assert [o.contact_id for o in queue.dispatch(SITE)] == [cid]


def test_contact_accepted_while_redis_is_down_is_durable_and_restored(
    queue: QueueService, runtime: Runtime, redis_client: redis.Redis
) -> None:
    """SQL is written first: if Redis fails after the commit, rebuild brings it back."""
    first = queue.enqueue_live(SITE, language="fr").contact_id
    with runtime.sessions.begin() as s:  # as if the process died between SQL and Redis
        s.add(
            Contact(
                reference="LOST01",
                kind="callback",
                site_id=s.scalar(select(Contact.site_id).where(Contact.id == first)),
                phone=phone(9),
                language="fr",
                arrived_ms=1,
                state="waiting",
                active_phone=phone(9),
            )
        )
    queue.rebuild()
    assert len(queue.list_waiting(SITE)) == 2
    assert queue.list_waiting(SITE)[0].phone.endswith("09")


def test_queue_rebuild_and_list_commands(
    queue: QueueService,
    clock: ManualClock,
    make_agent,
    redis_client: redis.Redis,
    settings,
    monkeypatch,
) -> None:
    for n in range(3):
        queue.enqueue_live(SITE, language="fr", phone=phone(n))
        clock.advance(1)
    before = [w.id for w in queue.list_waiting(SITE)]
    _wipe(redis_client)
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("INTERPHONE_ENV", "test")
    runner = CliRunner()
    result = runner.invoke(main, ["queue", "rebuild"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["contacts"] == 3
    result = runner.invoke(main, ["queue", "list", "--site", SITE, "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["id"] for r in rows] == before
    assert [r["position"] for r in rows] == [1, 2, 3]
    assert set(rows[0]) >= {"id", "kind", "state", "position", "arrived_at", "language", "phone"}
    assert "+3361" not in result.output  # numbers are masked
    result = runner.invoke(main, ["queue", "list", "--site", "nowhere", "--json"])
    assert result.exit_code == 1 and "unknown site" in result.output


def test_contact_committed_while_redis_fails_is_put_back_in_line_by_the_sweep(
    queue: QueueService, runtime: Runtime, clock: ManualClock
) -> None:
    """A real Redis outage for the intake: SQL keeps the request, the sweep restores it."""
    dead = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    broken = QueueService(
        RedisQueue(dead, clock), runtime.sessions, queue.settings, clock, trigger=None
    )
    try:
        with pytest.raises(redis.ConnectionError):
            broken.request_callback(SITE, phone=phone(5), language="fr")
    finally:
        dead.close()
    with runtime.sessions() as s:
        [row] = s.scalars(select(Contact)).all()
    assert row.state == "waiting" and queue.store.contact(row.id) == {}
    assert queue.sweep()["restored"] == 0  # too recent: its enqueue may be in flight
    clock.advance(11)
    assert queue.sweep()["restored"] == 1
    assert [w.id for w in queue.list_waiting(SITE)] == [row.id]
    assert queue.sweep()["restored"] == 0  # and only once
    assert queue.count_events("contact.restored") == 1
