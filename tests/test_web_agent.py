"""The plain agent page: sign-in, presence, accepting an offer, recording the outcome."""

from __future__ import annotations

import contextlib
import re

import pytest
import redis
from sqlalchemy import select

from interphone.accounts import add_user
from interphone.devtools.devphone.phone import DevPhone
from interphone.devtools.devphone.rest import placed_calls
from interphone.models import Contact
from interphone.runtime import Runtime

from .conftest import SITE

EMAIL, PASSWORD = "agent@example.org", "long enough password"
AGENT_PHONE = "+33699999999"


def _token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


@pytest.fixture
def agent_client(app, voice_runtime: Runtime):
    agent = add_user(
        voice_runtime.sessions,
        EMAIL,
        PASSWORD,
        site_code=SITE,
        languages=["fr", "en"],
        phone=AGENT_PHONE,
    )
    client = app.test_client()
    token = _token(client.get("/login").get_data(as_text=True))
    response = client.post(
        "/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302 and response.location.endswith("/agent")
    client.agent_id = agent.id
    return client


def _post(client, path: str, **form: str):
    token = _token(client.get("/agent").get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, **form})


def test_pages_need_a_signed_in_agent(app) -> None:
    response = app.test_client().get("/agent")
    assert response.status_code == 302 and "/login" in response.location


def test_wrong_passwords_from_one_address_are_refused_then_throttled_there(
    app, voice_runtime: Runtime
) -> None:
    add_user(voice_runtime.sessions, EMAIL, PASSWORD, site_code=SITE)
    client = app.test_client()
    for _ in range(5):
        token = _token(client.get("/login").get_data(as_text=True))
        response = client.post(
            "/login", data={"email": EMAIL, "password": "nope", "csrf_token": token}
        )
        assert response.status_code == 401
    token = _token(client.get("/login").get_data(as_text=True))
    response = client.post(
        "/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": token}
    )
    # from this address, even the right password waits; the owner elsewhere does not
    assert response.status_code == 429


def test_form_without_csrf_token_is_refused(agent_client) -> None:
    response = agent_client.post("/agent/presence", data={"state": "available"})
    assert response.status_code == 400


def test_agent_accepts_a_waiting_caller_and_records_the_outcome(
    agent_client, devphone: DevPhone, voice_runtime: Runtime
) -> None:
    caller = devphone.call("+33612345678")
    caller.press("2").press("3")
    _post(agent_client, "/agent/presence", state="available")
    voice_runtime.queue.dispatch(SITE)
    page = agent_client.get("/agent").get_data(as_text=True)
    assert "Proposition" in page
    [contact_id] = re.findall(r"/agent/offer/(\d+)/accept", page)
    _post(agent_client, f"/agent/offer/{contact_id}/accept")
    assert [c["To"] for c in placed_calls(voice_runtime.redis)] == [AGENT_PHONE]
    devphone.answer(AGENT_PHONE)
    caller.poll()
    assert caller.conference == f"contact-{contact_id}"
    page = agent_client.get("/agent").get_data(as_text=True)
    assert "En communication" in page
    _post(
        agent_client,
        f"/agent/call/{contact_id}/finish",
        outcome="resolved",
        note="<b>titre prêt</b>",
    )
    with voice_runtime.sessions() as s:
        contact = s.scalar(select(Contact))
        assert (contact.state, contact.outcome, contact.note) == (
            "completed",
            "resolved",
            "<b>titre prêt</b>",
        )
    assert "<b>titre" not in agent_client.get("/agent").get_data(as_text=True)


def test_accepting_an_offer_that_expired_says_so(agent_client, voice_runtime, clock) -> None:
    voice_runtime.queue.enqueue_live(SITE, language="fr")
    _post(agent_client, "/agent/presence", state="available")
    [offer] = voice_runtime.queue.dispatch(SITE)
    clock.advance(voice_runtime.settings.queue.offer_timeout_s + 1)
    voice_runtime.queue.expire()
    response = _post(agent_client, f"/agent/offer/{offer.contact_id}/accept")
    assert response.status_code == 302
    page = agent_client.get("/agent").get_data(as_text=True)
    assert "plus ouverte" in page  # said in the interface's language


def _next_event(lines) -> tuple[str, str]:
    """Read one Server-Sent Event (name, data) from a streamed response."""
    name, data = "", ""
    for raw in lines:
        line = raw.decode() if isinstance(raw, bytes) else raw
        for part in line.splitlines():
            if part.startswith("event: "):
                name = part[7:]
            elif part.startswith("data: "):
                data = part[6:]
        if name and data:
            return name, data
    raise AssertionError("the feed ended")


def test_feed_says_hello_then_pushes_each_change_of_the_site(
    agent_client, voice_runtime: Runtime
) -> None:
    import json

    response = agent_client.get("/agent/feed", buffered=False)
    assert response.mimetype == "text/event-stream"
    lines = iter(response.response)
    assert _next_event(lines)[0] == "hello"
    contact = voice_runtime.queue.enqueue_live(SITE, language="ar")
    name, data = _next_event(lines)
    event = json.loads(data)
    assert name == "change" and event["kind"] == "contact.created"
    assert event["contact_id"] == contact.contact_id and event["seq"] >= 1
    response.close()


def test_feed_needs_a_signed_in_agent(app) -> None:
    response = app.test_client().get("/agent/feed")
    assert response.status_code == 302


def test_panel_shows_the_offer_countdown(agent_client, voice_runtime: Runtime) -> None:
    voice_runtime.queue.enqueue_live(SITE, language="fr")
    _post(agent_client, "/agent/presence", state="available")
    voice_runtime.queue.dispatch(SITE)
    panel = agent_client.get("/agent/panel").get_data(as_text=True)
    seconds = re.search(r'data-deadline="\d+"[^>]*>(\d+)<', panel)
    assert seconds and int(seconds.group(1)) == int(voice_runtime.settings.queue.offer_timeout_s)


def test_feed_benchmark_reaches_every_screen(voice_runtime: Runtime) -> None:
    """A short run of ``interphone bench feed`` on a real gunicorn."""
    from interphone.devtools.bench import feed as bench

    result = bench.run(voice_runtime, screens=3, samples=5, workers=1, threads=8)
    assert result["events_delivered"] == 15 and result["events_missed"] == 0
    assert 0 < result["event_p50_ms"] <= result["event_p99_ms"]


def test_agent_sees_the_case_the_ivr_path_and_earlier_notes_as_text_not_html(
    agent_client, devphone: DevPhone, voice_runtime: Runtime
) -> None:
    from datetime import UTC, date, datetime

    from interphone.cases import CaseRecord, ImportReport, import_records

    rt = voice_runtime
    import_records(
        rt.sessions,
        [
            CaseRecord(
                "6300000077", date(1990, 4, 12), "under_review", datetime(2026, 9, 1, tzinfo=UTC)
            )
        ],
        rt.settings.birthdate_key,
        ImportReport(),
    )
    earlier = rt.queue.request_callback(
        SITE, phone="+33612345678", language="fr", file_number="6300000077", file_verified=True
    ).contact_id
    rt.queue.set_presence(agent_client.agent_id, "available")
    rt.queue.dispatch(SITE)
    rt.queue.accept(agent_client.agent_id, earlier)
    rt.queue.finish(agent_client.agent_id, earlier, "resolved", '<script>alert("x")</script>')
    rt.clock.advance(60)  # past the wrap-up
    rt.queue.sweep()
    caller = devphone.call("+33612345678")
    caller.press("1").press("1").press("6300000099#").press("01011990")  # a mismatch
    for _ in range(5):  # silence at the file-number prompt: back to the main menu
        if caller.waiting_for == "/voice/step/main":
            break
        caller.wait()
    caller.press("3")  # then wait on the line
    rt.queue.set_presence(agent_client.agent_id, "available")
    [offer] = rt.queue.dispatch(SITE)
    rt.queue.accept(agent_client.agent_id, offer.contact_id)
    rt.queue.request_callback(
        SITE, phone="+33698765432", language="fr", file_number="6300000077", file_verified=True
    )
    page = agent_client.get("/agent/panel").get_data(as_text=True)
    path = re.search(r'<ol id="ivr-path".*?</ol>', page, re.S).group(0)
    assert (
        "numéro de dossier" in path and "dossier non reconnu" in path and "mis en attente" in path
    )
    assert "+33 •••••••78" in page and "+33612345678" not in page
    assert "en instruction" in page  # the waiting callback's case status, in words
    assert '<script>alert("x")</script>' not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page


def _pattern_subscribers(rt: Runtime) -> set[int]:
    """Ids of the connections holding a pattern subscription (new ones are ours: others
    left over from earlier tests can only go away)."""
    return {int(c["id"]) for c in rt.redis.client_list(_type="pubsub") if int(c["psub"]) > 0}


def test_the_screens_of_a_process_share_one_subscription_and_see_only_their_site(
    voice_runtime: Runtime,
) -> None:
    """One reader per process hands each change to its screens, instead of one Redis
    subscriber per screen, each thread woken to parse the same message."""
    import queue as queues

    from interphone.queue.notifier import channel
    from interphone.web.feeds import FeedHub

    hub = FeedHub(voice_runtime.redis)
    before = _pattern_subscribers(voice_runtime)
    try:
        with contextlib.ExitStack() as stack:
            mine = [stack.enter_context(hub.listen(7)) for _ in range(5)]
            other = stack.enter_context(hub.listen(8))
            assert len(_pattern_subscribers(voice_runtime) - before) == 1
            voice_runtime.redis.publish(channel(7), '{"seq": 1}')
            assert [inbox.get(timeout=5) for inbox in mine] == [('{"seq": 1}',)] * 5
            with pytest.raises(queues.Empty):
                other.get(timeout=0.2)
    finally:
        hub.close()


def test_a_lost_subscription_ends_every_stream_so_the_screens_resynchronize(
    voice_runtime: Runtime,
) -> None:
    from interphone.web.feeds import CLOSED, FeedHub

    hub = FeedHub(voice_runtime.redis)
    try:
        with hub.listen(7) as first, hub.listen(9) as second:
            # Redis drops its subscribers (the test's Redis: no other process listens)
            voice_runtime.redis.client_kill_filter(_type="pubsub")
            assert first.get(timeout=5) is CLOSED and second.get(timeout=5) is CLOSED
        with hub.listen(7) as again:  # the next screen subscribes anew
            voice_runtime.redis.publish("ip:feed:site:7", "back")
            assert again.get(timeout=5) == ("back",)
    finally:
        hub.close()


def test_closing_the_feeds_leaves_no_redis_connection_open_behind_them(
    voice_runtime: Runtime,
) -> None:
    """The reader stops on a flag and closes its own connection: a subscription closed
    from another thread makes redis-py reconnect at once in the reader, and that socket
    stays open until the garbage collector finds it in a later test (a ResourceWarning,
    so an error there)."""
    from interphone.web.feeds import FeedHub

    own = redis.Redis.from_url(voice_runtime.redis_url, client_name="feed-under-test")

    def open_connections() -> int:
        listed = voice_runtime.redis.client_list()
        return sum(1 for c in listed if c["name"] == "feed-under-test")

    hub = FeedHub(own)
    try:
        with hub.listen(7) as inbox:
            voice_runtime.redis.publish("ip:feed:site:7", "hello")
            assert inbox.get(timeout=5) == ("hello",)
            assert open_connections() == 1  # the subscription
        hub.close()
        reader = hub._reader  # stopped and joined: nothing left to reconnect behind us
        assert reader is not None and not reader.is_alive()
        assert open_connections() == 0
        with pytest.raises(redis.ConnectionError), hub.listen(7):
            pass  # a closed runtime's feeds stay closed
    finally:
        own.close()


def test_changes_waiting_for_a_screen_go_out_in_one_write_and_a_broken_feed_still_ends() -> None:
    """Each write to a screen costs a thread wake-up and a system call; under load the
    changes that arrived while a screen's thread waited are sent together. A broken
    subscription (CLOSED) behind them still ends the stream after they are sent."""
    import contextlib
    import queue as queues

    from interphone.web.agent import events_stream
    from interphone.web.feeds import CLOSED

    inbox: queues.SimpleQueue[object] = queues.SimpleQueue()
    inbox.put(('{"seq": 0}', '{"seq": 1}'))
    inbox.put(('{"seq": 2}',))
    inbox.put(CLOSED)

    class Hub:
        @contextlib.contextmanager
        def listen(self, site_id: int, owner: str | None = None):
            yield inbox

    writes = list(events_stream(Hub(), 1, 0))  # type: ignore[arg-type]
    assert writes[0].startswith("event: hello")
    assert writes[1:] == ["".join(f'event: change\ndata: {{"seq": {n}}}\n\n' for n in range(3))]


def test_changes_close_together_reach_a_screen_as_one_batch_in_order(
    voice_runtime: Runtime,
) -> None:
    """Fifty screens woken for every change cost the web processes more than the
    webhooks' own work under load: the changes that follow one within ``batch_s`` wake
    each screen once. Each site still gets only its own, in the order published."""
    from interphone.queue.notifier import channel
    from interphone.web.feeds import FeedHub

    hub = FeedHub(voice_runtime.redis, batch_s=0.5)
    try:
        with hub.listen(7) as seven, hub.listen(8) as eight:
            for n in range(3):
                voice_runtime.redis.publish(channel(7), f"seven-{n}")
            voice_runtime.redis.publish(channel(8), "eight-0")
            assert seven.get(timeout=5) == ("seven-0", "seven-1", "seven-2")
            assert eight.get(timeout=5) == ("eight-0",)
    finally:
        hub.close()
