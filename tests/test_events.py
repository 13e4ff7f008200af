"""One way to record an event (:mod:`interphone.events`): the row in the caller's
transaction, and the site's feed told after the commit for the kinds a screen shows."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select

from interphone import events
from interphone.accounts import AgentInput, create_agent, deactivate_agent, reset_password
from interphone.db import transaction
from interphone.models import Event, Site
from interphone.queue.notifier import channel
from interphone.runtime import Runtime
from interphone.sites import ensure_site

from .conftest import SITE

PACKAGE = Path(__file__).resolve().parent.parent / "interphone"


@pytest.fixture
def site(runtime: Runtime) -> Site:
    return ensure_site(runtime.sessions, SITE, "Préfecture de test")


@pytest.fixture
def feed(runtime: Runtime, site: Site) -> Iterator[Any]:
    """The site's feed channel, as a screen's process reads it."""
    listener = runtime.redis.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(channel(site.id))
    listener.get_message(timeout=1.0)  # the subscription's confirmation
    yield listener
    listener.close()


def _heard(feed: redis.client.PubSub, wait_s: float = 1.0) -> list[str]:
    kinds = []
    while (message := feed.get_message(timeout=wait_s)) is not None:
        kinds.append(json.loads(message["data"])["kind"])
        wait_s = 0.2
    return kinds


def _recorded(rt: Runtime, kind: str) -> list[Event]:
    with rt.sessions() as s:
        return list(s.scalars(select(Event).where(Event.kind == kind)))


def test_given_an_agent_account_created_then_the_supervisor_screens_hear_it_after_commit(
    runtime: Runtime, site: Site, feed: redis.client.PubSub
) -> None:
    data = AgentInput(name="Ada", email="ada@example.org", site_code=SITE, languages="fr")
    agent = create_agent(runtime.sessions, data, "a-long-password", actor="admin@example.org")
    assert _heard(feed) == ["admin.agent_created"]
    (row,) = _recorded(runtime, "admin.agent_created")
    assert (row.site_id, row.agent_id, row.actor) == (site.id, agent.id, "admin@example.org")
    assert row.data == {"role": "agent", "languages": ["fr"]}

    deactivate_agent(runtime.sessions, runtime.queue, agent.id, actor="admin@example.org")
    assert "admin.agent_deactivated" in _heard(feed)


def test_given_a_rolled_back_transaction_then_no_row_and_nothing_published(
    runtime: Runtime, site: Site, feed: redis.client.PubSub
) -> None:
    with pytest.raises(RuntimeError), transaction(runtime.sessions) as s:
        events.record(s, "admin.agent_deactivated", site_id=site.id, actor="admin")
        s.flush()  # the row was written, then undone
        raise RuntimeError("the change failed after its event")
    assert _heard(feed, wait_s=0.3) == []
    assert _recorded(runtime, "admin.agent_deactivated") == []


def test_given_a_kind_no_screen_shows_then_it_is_recorded_and_not_published(
    runtime: Runtime, site: Site, feed: redis.client.PubSub
) -> None:
    data = AgentInput(name="Bob", email="bob@example.org", site_code=SITE)
    agent = create_agent(runtime.sessions, data, "a-long-password", actor="admin")
    assert _heard(feed) == ["admin.agent_created"]
    reset_password(runtime.sessions, agent.id, "another-long-password", actor="admin")
    assert _heard(feed, wait_s=0.3) == []
    assert len(_recorded(runtime, "admin.password_reset")) == 1


def test_an_event_is_published_only_once_its_transaction_commits(
    runtime: Runtime, site: Site, feed: redis.client.PubSub
) -> None:
    with transaction(runtime.sessions) as s:
        events.record(s, "admin.site_updated", site_id=site.id, data={"changed": ["name"]})
        assert _heard(feed, wait_s=0.3) == []
    assert _heard(feed) == ["admin.site_updated"]


def test_the_actor_is_cut_to_the_column_width() -> None:
    class Collect:
        def __init__(self) -> None:
            self.rows: list[Event] = []
            self.info: dict[str, Any] = {}

        def add(self, row: Event) -> None:
            self.rows.append(row)

    s = Collect()
    events.record(s, "user.signed_in", actor="x" * 100)  # type: ignore[arg-type]
    assert s.rows[0].actor == "x" * events.ACTOR_MAX


def test_no_module_but_the_events_module_builds_an_event_row() -> None:
    """Every event goes through :func:`interphone.events.record` (the journal's batches
    insert rows of the table and announce them with :func:`interphone.events.announce`)."""
    builders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "events.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Event":
                builders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert builders == []
