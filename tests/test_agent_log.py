"""The agent log (:mod:`interphone.queue.agentlog`): every move of an agent and of a
contact with its time, the previous and the new state, exported as CSV without personal
data and within the user's sites, and the supervisor's time in state read from it."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from interphone.accounts import add_user, end_sessions
from interphone.db import transaction
from interphone.models import Agent, Event, Site
from interphone.queue import agentlog, export
from interphone.queue.clock import ManualClock
from interphone.queue.exceptions import UnknownSite
from interphone.queue.notifier import channel
from interphone.queue.service import QueueService
from interphone.runtime import Runtime
from interphone.scope import Scope
from interphone.sites import ensure_site

from .conftest import SITE

PASSWORD = "long enough password"


def _day(rt: Runtime, site: Site) -> date:
    return datetime.fromtimestamp(rt.clock.now(), ZoneInfo(site.timezone)).date()


def _site(rt: Runtime, code: str = SITE) -> Site:
    with rt.sessions() as s:
        site = s.scalar(select(Site).where(Site.code == code))
    assert site is not None
    return site


def _log(rt: Runtime, agent_id: int) -> list[tuple[str, str, str, str]]:
    site = _site(rt)
    day = _day(rt, site)
    zone = ZoneInfo(site.timezone)
    start = datetime.combine(day, datetime.min.time(), zone)
    with rt.sessions() as s:
        return [
            (e.kind, e.previous, e.state, e.reason)
            for e in agentlog.entries(s, site.id, start, start + timedelta(days=1))
            if e.agent_id == agent_id and e.state
        ]


def test_every_move_of_an_agent_is_logged_with_the_state_it_left_and_the_one_it_took(
    queue: QueueService, clock: ManualClock, make_agent, runtime: Runtime
) -> None:
    agent = make_agent(["fr"])
    contact = queue.enqueue_live(SITE, language="fr").contact_id
    queue.dispatch(SITE)
    queue.decline(agent.id, contact)
    queue.dispatch(SITE)
    clock.advance(queue.settings.offer_timeout_s + 0.001)
    queue.sweep()  # expires the offer, then offers it again
    queue.accept(agent.id, contact)
    queue.finish(agent.id, contact, "resolved")
    clock.advance(queue.settings.wrap_up_s + 0.001)
    queue.sweep()
    queue.set_presence(agent.id, "paused", "lunch")
    queue.set_presence(agent.id, "offline")
    assert _log(runtime, agent.id) == [
        ("agent.presence", "offline", "available", ""),
        ("offer.made", "available", "offered", ""),
        ("offer.declined", "offered", "available", ""),
        ("offer.made", "available", "offered", ""),
        ("offer.expired", "offered", "available", ""),
        ("offer.made", "available", "offered", ""),
        ("offer.accepted", "offered", "on_call", ""),
        ("agent.presence", "on_call", "wrap_up", ""),
        ("agent.presence", "wrap_up", "available", "wrap_up_end"),
        ("agent.presence", "available", "paused", "lunch"),
        ("agent.presence", "paused", "offline", ""),
    ]


def test_given_offers_missed_in_a_row_then_the_pause_is_one_move_from_offered(
    queue: QueueService, clock: ManualClock, make_agent, runtime: Runtime
) -> None:
    agent = make_agent(["fr"])
    queue.enqueue_live(SITE, language="fr")
    for _ in range(queue.settings.missed_offers_pause):
        queue.dispatch(SITE)
        clock.advance(queue.settings.offer_timeout_s + 0.001)
        queue.expire()
    assert _log(runtime, agent.id)[-2:] == [
        ("offer.made", "available", "offered", ""),
        ("agent.presence", "offered", "paused", "missed_offers"),
    ]


def test_given_the_same_presence_again_then_the_log_has_no_move(
    queue: QueueService, make_agent, runtime: Runtime
) -> None:
    agent = make_agent(["fr"])
    queue.set_presence(agent.id, "available")
    queue.set_presence(agent.id, "paused", "break")
    queue.set_presence(agent.id, "paused", "lunch")  # a new pause: its reason changed
    assert [(p, s, r) for _, p, s, r in _log(runtime, agent.id)] == [
        ("offline", "available", ""),
        ("available", "paused", "break"),
        ("paused", "paused", "lunch"),
    ]


def test_a_contact_that_leaves_frees_its_agent_in_the_log(
    queue: QueueService, make_agent, runtime: Runtime
) -> None:
    """Offered then cancelled: withdrawn from the agent; accepted then the caller hangs
    up before being put through: the agent is available again."""
    agent = make_agent(["fr"])
    first = queue.enqueue_live(SITE, language="fr").contact_id
    queue.dispatch(SITE)
    queue.cancel(first, "doublon")
    second = queue.enqueue_live(SITE, language="fr").contact_id
    queue.dispatch(SITE)
    queue.accept(agent.id, second)
    queue.abandon_before_bridge(second)
    assert _log(runtime, agent.id)[2:] == [
        ("offer.withdrawn", "offered", "available", ""),
        ("offer.made", "available", "offered", ""),
        ("offer.accepted", "offered", "on_call", ""),
        ("agent.presence", "on_call", "available", ""),
    ]


def test_after_a_rebuild_each_agents_last_move_is_the_state_redis_was_given(
    queue: QueueService, make_agent, runtime: Runtime, redis_client
) -> None:
    talking, offered, paused = make_agent(["fr"]), make_agent(["fr"]), make_agent(["fr"])
    queue.set_presence(paused.id, "paused", "training")
    first = queue.enqueue_live(SITE, language="fr").contact_id
    queue.enqueue_live(SITE, language="fr")
    queue.dispatch(SITE)
    queue.accept(talking.id, first)
    redis_client.flushdb()
    queue.rebuild()
    with runtime.sessions() as s:
        moves = agentlog.last_moves(s, [talking.id, offered.id, paused.id])
    assert {aid: m.state for aid, m in moves.items()} == {
        aid: queue.store.agent(aid)["state"] for aid in (talking.id, offered.id, paused.id)
    }
    assert [moves[a].state for a in (talking.id, offered.id, paused.id)] == [
        "on_call",
        "available",
        "paused",
    ]
    assert _log(runtime, paused.id)[-1] == ("agent.presence", "paused", "paused", "training")


def test_signing_out_is_in_the_log(queue: QueueService, make_agent, runtime: Runtime) -> None:
    agent = make_agent(["fr"], available=False)
    end_sessions(runtime.sessions, agent.id)
    with runtime.sessions() as s:
        kinds = s.scalars(select(Event.kind).where(Event.agent_id == agent.id)).all()
    assert "user.signed_out" in kinds and "user.signed_out" in agentlog.KINDS


def test_a_reason_typed_by_a_person_is_exported_as_other_never_as_typed() -> None:
    assert agentlog.reason("agent.presence", {"reason": "lunch"}) == "lunch"
    assert agentlog.reason("agent.presence", {"reason": "Mme Dupont 0612345678"}) == "other"
    assert agentlog.reason("contact.cancelled", {"reason": "vu au guichet"}) == "other"
    assert agentlog.reason("contact.cancelled", {"reason": "x", "code": "duplicate"}) == (
        "duplicate"
    )
    assert agentlog.reason("contact.completed", {"outcome": "no_answer"}) == "no_answer"


# -- the CSV export ----------------------------------------------------------------------
def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_the_agent_log_csv_has_one_row_per_move_in_the_sites_time_and_no_personal_data(
    queue: QueueService, make_agent, runtime: Runtime
) -> None:
    agent = make_agent(["fr"], name="Awa Diallo")
    ticket = queue.request_callback(
        SITE, phone="+33612345678", language="fr", file_number="6300000042"
    )
    queue.dispatch(SITE)
    queue.accept(agent.id, ticket.contact_id)
    queue.finish(agent.id, ticket.contact_id, "no_answer", note="née le 12/04/1990")
    other = queue.enqueue_live(SITE, language="fr", phone="+33698765432")
    queue.cancel(other.contact_id, "Mme Dupont, 06 11 22 33 44", actor="supervisor:1")
    site = _site(runtime)
    day = _day(runtime, site)
    text = export.export_csv(runtime.sessions, site, "agent_log", day, day)
    rows = _rows(text)
    assert list(rows[0]) == list(export.AGENT_LOG_COLUMNS)
    moves = [(r["event"], r["from_state"], r["to_state"]) for r in rows if r["agent_id"]]
    assert ("offer.accepted", "offered", "on_call") in moves
    accepted = next(r for r in rows if r["event"] == "offer.accepted")
    assert (accepted["site"], accepted["agent"], accepted["contact"]) == (
        SITE,
        "Awa Diallo",
        ticket.reference,
    )
    # the site's time, with its offset (Paris in winter: +01:00)
    at = datetime.fromisoformat(accepted["at"])
    assert at.utcoffset() == timedelta(hours=1)
    assert at == datetime.fromtimestamp(runtime.clock.now(), UTC)
    retried = next(r for r in rows if r["event"] == "callback.retry")
    assert retried["reason"] == "no_answer"
    cancelled = next(r for r in rows if r["event"] == "contact.cancelled")
    assert cancelled["reason"] == "other"
    for personal in ("612345678", "698765432", "6300000042", "1990", "Dupont", "22 33"):
        assert personal not in text


def test_the_agent_log_of_another_site_is_unknown_to_its_supervisor(
    queue: QueueService, runtime: Runtime
) -> None:
    mine = _site(runtime)
    theirs = ensure_site(runtime.sessions, "other", "Autre préfecture")
    day = _day(runtime, mine)
    with pytest.raises(UnknownSite):
        export.export_csv(
            runtime.sessions, theirs, "agent_log", day, day, scope=Scope.of_site(mine.id)
        )


def test_the_agent_log_of_a_site_holds_that_sites_agents_only(
    queue: QueueService, make_agent, runtime: Runtime
) -> None:
    ensure_site(runtime.sessions, "other", "Autre préfecture")
    mine = make_agent(["fr"])
    make_agent(["fr"], site="other")
    site = _site(runtime)
    day = _day(runtime, site)
    rows = _rows(export.export_csv(runtime.sessions, site, "agent_log", day, day))
    assert {r["agent_id"] for r in rows} == {str(mine.id)}
    assert {r["site"] for r in rows} == {SITE}


# -- the supervisor's agents table -------------------------------------------------------
def _token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match is not None
    return match.group(1)


def _signed_in(app, rt: Runtime, email: str, role: str = "supervisor", site: str = SITE):
    add_user(rt.sessions, email, PASSWORD, site_code=site, role=role, languages=["fr"])
    client = app.test_client()
    token = _token(client.get("/login").get_data(as_text=True))
    client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token})
    return client


def _time_in_state(client, name: str, lang: str = "fr") -> str:
    html = client.get("/supervisor/panel", headers={"Accept-Language": lang}).get_data(as_text=True)
    match = re.search(rf"<td>{name}</td>.*?<td class=\"in-state\">([^<]*)</td>", html, re.S)
    assert match is not None, html
    return match.group(1)


def test_the_agents_table_shows_the_time_since_each_agents_last_move_in_the_log(
    app, voice_runtime: Runtime, clock: ManualClock
) -> None:
    supervisor = _signed_in(app, voice_runtime, "chef@example.org")
    agent = add_user(voice_runtime.sessions, "a@example.org", PASSWORD, site_code=SITE)
    assert _time_in_state(supervisor, agent.name) == "—"  # never moved
    voice_runtime.queue.set_presence(agent.id, "available")
    clock.advance(3 * 60 + 20)
    assert _time_in_state(supervisor, agent.name) == "3 min"
    voice_runtime.queue.set_presence(agent.id, "available")  # no move: the time runs on
    clock.advance(3600)
    assert _time_in_state(supervisor, agent.name) == "1 h 03 min"
    voice_runtime.queue.set_presence(agent.id, "paused", "lunch")
    clock.advance(45)
    assert _time_in_state(supervisor, agent.name) == "45 s"
    clock.advance(2 * 86400)
    assert _time_in_state(supervisor, agent.name) == "2 j 0 h"
    assert _time_in_state(supervisor, agent.name, "en") == "2 d 0 h"


def test_the_time_in_state_comes_from_the_log_not_from_the_live_queue(
    app, voice_runtime: Runtime, clock: ManualClock
) -> None:
    """A move logged without Redis (an agent's leg bridged, say) restarts the time."""
    supervisor = _signed_in(app, voice_runtime, "chef@example.org")
    agent = add_user(voice_runtime.sessions, "a@example.org", PASSWORD, site_code=SITE)
    voice_runtime.queue.set_presence(agent.id, "available")
    clock.advance(600)
    with transaction(voice_runtime.sessions) as s:
        site_id = s.scalar(select(Agent.site_id).where(Agent.id == agent.id))
        s.add(
            Event(
                kind="offer.made",
                site_id=site_id,
                agent_id=agent.id,
                at=datetime.fromtimestamp(clock.now(), UTC),
                data={"state": "offered"},
            )
        )
    clock.advance(5)
    assert _time_in_state(supervisor, agent.name) == "5 s"


def test_a_move_reaches_the_supervisors_feed_and_the_panel_then_shows_its_time(
    app, voice_runtime: Runtime, clock: ManualClock
) -> None:
    """The table follows the live feed as the rest of the panel: a move is published on
    the site's channel, and the panel fetched on that message shows the new time."""
    supervisor = _signed_in(app, voice_runtime, "chef@example.org")
    agent = add_user(voice_runtime.sessions, "a@example.org", PASSWORD, site_code=SITE)
    voice_runtime.queue.set_presence(agent.id, "available")
    clock.advance(7200)
    site_id = _site(voice_runtime).id
    pubsub = voice_runtime.redis.pubsub()
    pubsub.subscribe(channel(site_id))
    pubsub.get_message(timeout=1.0)  # the subscription's confirmation
    voice_runtime.queue.set_presence(agent.id, "paused", "meeting")
    message = pubsub.get_message(timeout=5.0)
    pubsub.close()
    assert message is not None and b"agent.presence" in message["data"]
    assert _time_in_state(supervisor, agent.name) == "0 s"


def test_a_supervisor_downloads_their_sites_agent_log_and_another_sites_is_not_found(
    app, voice_runtime: Runtime
) -> None:
    ensure_site(voice_runtime.sessions, "other", "Autre préfecture")
    supervisor = _signed_in(app, voice_runtime, "chef@example.org")
    agent = add_user(voice_runtime.sessions, "a@example.org", PASSWORD, site_code=SITE)
    voice_runtime.queue.set_presence(agent.id, "available")
    day = _day(voice_runtime, _site(voice_runtime)).isoformat()
    query = f"from={day}&to={day}&what=agent_log"
    response = supervisor.get(f"/supervisor/export.csv?{query}")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert f"agent_log-{day}-{day}.csv" in response.headers["Content-Disposition"]
    rows = _rows(response.get_data(as_text=True))
    moves = [(r["agent_id"], r["event"], r["to_state"]) for r in rows if r["to_state"]]
    assert moves == [(str(agent.id), "agent.presence", "available")]
    assert supervisor.get(f"/supervisor/export.csv?site=other&{query}").status_code == 404
