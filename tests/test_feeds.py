"""The line before the screens: live feeds are capped per person and per web process, so
that screens never take the threads that answer Twilio."""

from __future__ import annotations

import contextlib
import http.client
import queue
import re
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator

from interphone import metrics
from interphone.accounts import add_user
from interphone.config import ConfigError, FeedLimits, load_settings
from interphone.queue.notifier import channel
from interphone.runtime import Runtime
from interphone.web.agent import events_stream
from interphone.web.feeds import FeedHub

from .conftest import SITE


def _stream(hub: FeedHub, owner: str) -> Iterator[str]:
    """An open feed of the test site's screen, as ``/agent/feed`` streams it for ``owner``."""
    return events_stream(hub, 1, 0, owner)


def test_a_sessions_fifth_feed_closes_its_oldest(voice_runtime: Runtime) -> None:
    hub = voice_runtime.feeds
    feeds = [_stream(hub, "agent:7") for _ in range(5)]
    try:
        for feed in feeds:
            assert next(feed).startswith("event: hello")
        # the fifth replaced the first, at once: told so, and its stream (its thread) ends
        assert next(feeds[0]) == 'event: replaced\ndata: {"message": ""}\n\n'
        assert next(feeds[0], None) is None
        assert hub.open_streams() == 4
        assert _capped(voice_runtime, "person") == 1  # in the metrics
        voice_runtime.redis.publish(channel(1), '{"seq": 1}')
        assert all(next(feed).startswith("event: change") for feed in feeds[1:])
    finally:
        for feed in feeds:
            feed.close()  # type: ignore[attr-defined]
    assert hub.open_streams() == 0


def _capped(rt: Runtime, cap: str) -> float:
    """The metrics' count of feeds ended by ``cap``."""
    metrics.recorder_for(rt.redis).flush()
    samples = metrics.read(rt.redis)
    name = "interphone_live_feeds_capped_total"
    return sum(s.value for s in samples if s.name == name and s.labels == {"cap": cap})


def test_a_replaced_screen_is_told_why_in_its_language(app, voice_runtime: Runtime) -> None:
    """Through the route, as a browser's five tabs (each streamed in its own thread, as
    a server's threads do): the first tab hears that a newer one took over."""
    from interphone.devtools.bench.feed import PASSWORD

    add_user(voice_runtime.sessions, "agent@example.org", PASSWORD, site_code=SITE)
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = {"email": "agent@example.org", "password": PASSWORD, "csrf_token": token}
    client.post("/login", data=form, headers={"Accept-Language": "en"})
    cookie = client.get_cookie("session")
    assert cookie is not None
    writes: list[queue.SimpleQueue[str]] = [queue.SimpleQueue() for _ in range(5)]

    def tab(n: int) -> None:
        browser = app.test_client()
        browser.set_cookie("session", cookie.value)
        response = browser.get("/agent/feed", buffered=False, headers={"Accept-Language": "en"})
        for chunk in response.response:
            writes[n].put(chunk.decode())
        writes[n].put("")  # the stream ended

    tabs = []
    for n in range(5):
        tabs.append(threading.Thread(target=tab, args=(n,), daemon=True))
        tabs[-1].start()
        assert writes[n].get(timeout=10).startswith("event: hello")
    event = writes[0].get(timeout=10)
    assert event.startswith("event: replaced") and "a more recent tab" in event, event
    assert writes[0].get(timeout=10) == ""
    voice_runtime.feeds.close()  # the other four end with the runtime's feeds
    for thread in tabs:
        thread.join(timeout=10)
        assert not thread.is_alive()


def test_another_persons_feeds_are_not_theirs_to_replace(voice_runtime: Runtime) -> None:
    hub = voice_runtime.feeds
    feeds = [_stream(hub, "agent:7")] + [_stream(hub, "agent:8") for _ in range(4)]
    try:
        for feed in feeds:
            assert next(feed).startswith("event: hello")
        voice_runtime.redis.publish(channel(1), '{"seq": 1}')
        assert next(feeds[0]).startswith("event: change")  # still open
    finally:
        for feed in feeds:
            feed.close()  # type: ignore[attr-defined]


def test_a_full_process_tells_a_new_feed_to_try_again_later(voice_runtime: Runtime) -> None:
    hub = FeedHub(voice_runtime.redis, per_process=2, per_owner=4)
    first, second = _stream(hub, "agent:7"), _stream(hub, "agent:8")
    try:
        assert next(first).startswith("event: hello")
        assert next(second).startswith("event: hello")
        third = _stream(hub, "agent:9")
        refused = next(third)
        assert re.fullmatch(r"retry: \d+\nevent: busy\ndata: \{\}\n\n", refused), refused
        retry_ms = int(refused.split()[1])
        assert 5_000 <= retry_ms <= 15_000 and next(third, None) is None
        assert _capped(voice_runtime, "process") == 1
        first.close()  # type: ignore[attr-defined]  # a place is free again
        again = _stream(hub, "agent:9")
        assert next(again).startswith("event: hello")
        again.close()  # type: ignore[attr-defined]
    finally:
        first.close()  # type: ignore[attr-defined]
        second.close()  # type: ignore[attr-defined]
        hub.close()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"WEB_THREADS": "8", "FEEDS_PER_PROCESS": "5"}, "FEEDS_PER_PROCESS: 5 is more than half"),
        ({"FEEDS_PER_PROCESS": "-1"}, "FEEDS_PER_PROCESS: '-1' must be >= 0"),
        ({"FEEDS_PER_USER": "many"}, "FEEDS_PER_USER: 'many' is not a whole number"),
        ({"WEB_THREADS": "0"}, "WEB_THREADS: '0' must be >= 1"),
    ],
)
def test_feeds_may_take_at_most_half_of_the_web_threads(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(environ)


def test_feed_limits_follow_the_web_threads() -> None:
    assert load_settings({}).feeds == FeedLimits(web_threads=32, per_process=16, per_user=4)
    assert load_settings({"WEB_THREADS": "8"}).feeds.per_process == 4
    assert load_settings({"WEB_THREADS": "1"}).feeds.per_process == 0  # a sync worker


def test_feeds_never_take_the_threads_that_answer_twilio(voice_runtime: Runtime) -> None:
    """gunicorn as the Procfile runs it (gthread), with 10 threads: three agents open four
    feeds each and a fourth opens twelve, then Twilio posts 4 signed calls. Before the
    caps, the first ten feeds held every thread for good and the calls timed out; now a
    process streams 5 feeds at most (half its threads) and a person 4."""
    from interphone.devtools.bench.feed import PASSWORD
    from interphone.devtools.harness import gunicorn, sign_in

    rt = voice_runtime
    emails = [f"screen-{n}@example.org" for n in range(4)]
    for email in emails:
        add_user(rt.sessions, email, PASSWORD, site_code=SITE)
    with gunicorn(rt, workers=1, threads=10) as port:
        cookies = [sign_in(port, email, PASSWORD) for email in emails]
        feeds: list[socket.socket] = []
        try:
            for cookie in cookies[:3] * 4 + cookies[3:] * 12:
                feed = socket.create_connection(("127.0.0.1", port), timeout=10)
                feed.sendall(
                    f"GET /agent/feed HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                    f"Cookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n".encode()
                )
                feeds.append(feed)
            answered = [_incoming(rt, port, n) for n in range(4)]
            held = _held(feeds)
        finally:
            for feed in feeds:
                feed.close()
    print(f"24 feeds: {held}; signed /voice/incoming:", [f"{ms:.0f} ms" for _, ms in answered])
    assert [status for status, _ in answered] == [200] * 4
    assert held["open"] <= 5


def _held(feeds: list[socket.socket]) -> dict[str, int]:
    """How the feeds were answered: still open (their thread held), told to come back
    later (``busy``), replaced by a newer one of their person (``replaced``)."""
    counts = {"open": 0, "busy": 0, "replaced": 0}
    deadline = time.monotonic() + 10
    for feed in feeds:
        seen = b""
        feed.settimeout(max(0.05, deadline - time.monotonic()))
        while b"event: " not in seen:
            try:
                data = feed.recv(65536)
            except TimeoutError:
                break
            if not data:
                break
            seen += data
        feed.settimeout(0.2)  # what came after the first event
        with contextlib.suppress(TimeoutError):
            seen += feed.recv(65536)
        kind = next((k for k in ("busy", "replaced") if f"event: {k}".encode() in seen), "open")
        counts[kind] += 1
    return counts


def _incoming(rt: Runtime, port: int, n: int) -> tuple[int, float]:
    """A signed ``/voice/incoming`` as Twilio posts it: (status, milliseconds), or a
    timeout after 10 s (status 0)."""
    path = "/voice/incoming"
    form = {
        "CallSid": f"CA{n:032x}",
        "From": f"+3361200{n:04d}",
        "To": "+33473000000",
        "CallStatus": "ringing",
        "AccountSid": rt.settings.twilio_account_sid or "",
    }
    signature = RequestValidator(rt.settings.twilio_auth_token or "").compute_signature(
        rt.settings.public_base_url + path, form
    )
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": signature,
    }
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    start = time.perf_counter()
    try:
        connection.request("POST", path, body=urlencode(form), headers=headers)
        response = connection.getresponse()
        body = response.read()
        status = response.status if b"<Response>" in body else -response.status
    except TimeoutError:
        status = 0
    finally:
        connection.close()
    return status, (time.perf_counter() - start) * 1000
