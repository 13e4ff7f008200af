"""Voicemails on the agent screen: the transcript as text beside the contact, the audio
from our own server by the message's id, for agents and supervisors of the site only."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from playwright.sync_api import Page, expect
from sqlalchemy import select, update

from interphone import jobs
from interphone.accounts import add_user
from interphone.devtools.devphone.phone import DevPhone
from interphone.devtools.devphone.rest import keep_recording
from interphone.models import Voicemail
from interphone.queue.clock import ManualClock
from interphone.runtime import Runtime
from interphone.sites import ensure_site
from interphone.voice.speech import mulaw
from interphone.voice.voicemail import VoicemailService

from .conftest import SITE
from .fixtures.speech import support
from .test_browser_devphone import SCREENSHOTS, browser, open_page, server  # noqa: F401 (fixtures)

PASSWORD = "long enough password"
HOSTILE = '<script>window.pwned = 1</script><b>urgent</b> & "vite"'


def _token(client) -> str:
    page = client.get("/login").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def _signed_in(app: Flask, rt: Runtime, email: str, role: str = "agent", site: str = SITE):
    agent = add_user(rt.sessions, email, PASSWORD, site_code=site, role=role)
    client = app.test_client()
    client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": _token(client)})
    client.agent_id = agent.id
    return client


@pytest.fixture
def message(voice_runtime: Runtime, devphone: DevPhone, clock: ManualClock) -> Iterator[int]:
    """A message left after hours, fetched by the job (no model for French here)."""
    clock.advance(12 * 3600)
    jobs.use_runtime(voice_runtime)
    call = devphone.call("+33612345678").press("1").press("3").press("1")
    call.leave_message(support.fixture("ko_message"))
    jobs_run(voice_runtime)
    [voicemail_id] = _ids(voice_runtime)
    yield voicemail_id
    jobs.use_runtime(None)


def jobs_run(rt: Runtime) -> None:
    from interphone.worker import Worker

    Worker([rt.speech_queue], connection=rt.redis).work(burst=True)


def _ids(rt: Runtime) -> list[int]:
    with rt.sessions() as s:
        return list(s.scalars(select(Voicemail.id).order_by(Voicemail.id)))


def _transcribed(rt: Runtime, voicemail_id: int, text: str) -> None:
    """As if the model had heard ``text`` (a transcript is whatever was said)."""
    with rt.sessions.begin() as s:
        s.execute(
            update(Voicemail)
            .where(Voicemail.id == voicemail_id)
            .values(state="transcribed", transcript=text, detail=None)
        )


def _offer_to(rt: Runtime, agent_id: int) -> int:
    rt.clock.advance(3 * 24 * 3600 + 12 * 3600)  # Monday 09:00: callbacks are placed
    rt.queue.set_presence(agent_id, "available")
    [offer] = rt.queue.dispatch(SITE)
    return offer.contact_id


def test_agent_sees_the_transcript_as_text_and_a_player_with_the_offer(
    app: Flask, voice_runtime: Runtime, message: int
) -> None:
    rt = voice_runtime
    _transcribed(rt, message, HOSTILE)
    agent = _signed_in(app, rt, "agent@example.org")
    _offer_to(rt, agent.agent_id)
    panel = agent.get("/agent/panel").get_data(as_text=True)
    block = re.search(rf'<div class="voicemail" id="voicemail-{message}">.*?</div>', panel, re.S)
    assert block, panel
    assert "<script>window.pwned" not in panel and "<b>urgent" not in panel
    assert (
        "&lt;script&gt;window.pwned = 1&lt;/script&gt;&lt;b&gt;urgent&lt;/b&gt; &amp;" in block[0]
    )
    assert f'src="/agent/voicemail/{message}/audio"' in block[0]  # the id, no number
    audio = agent.get(f"/agent/voicemail/{message}/audio")
    assert audio.status_code == 200 and audio.mimetype == "audio/wav"
    assert audio.data[:4] == b"RIFF" and "no-store" in audio.headers["Cache-Control"]
    assert len(audio.data) == 44 + 2 * len(support.fixture("ko_message"))


def test_a_language_without_a_model_says_so_on_the_screen(
    app: Flask, voice_runtime: Runtime, message: int
) -> None:
    agent = _signed_in(app, voice_runtime, "agent@example.org")
    _offer_to(voice_runtime, agent.agent_id)
    panel = agent.get("/agent/panel").get_data(as_text=True)
    assert "Pas de transcription (pas de modèle pour fr)." in panel
    assert "<h3>Message vocal · " in panel


def test_audio_route_refuses_anonymous_wrong_role_and_another_site(
    app: Flask, voice_runtime: Runtime, message: int
) -> None:
    rt = voice_runtime
    url = f"/agent/voicemail/{message}/audio"
    anonymous = app.test_client().get(url)
    assert anonymous.status_code == 302 and "/login" in anonymous.location
    admin = _signed_in(app, rt, "admin@example.org", role="admin")
    assert admin.get(url).status_code == 403  # administrators manage, they do not listen
    ensure_site(rt.sessions, "sous-prefecture", "Sous-préfecture")
    elsewhere = _signed_in(app, rt, "autre@example.org", site="sous-prefecture")
    assert elsewhere.get(url).status_code == 404  # as a message that does not exist
    supervisor = _signed_in(app, rt, "chef@example.org", role="supervisor")
    assert supervisor.get(url).status_code == 200
    assert supervisor.get("/agent/voicemail/999999/audio").status_code == 404


def test_a_message_without_a_number_is_listed_until_an_agent_handles_it(
    app: Flask, voice_runtime: Runtime, devphone: DevPhone, clock: ManualClock
) -> None:
    rt = voice_runtime
    clock.advance(12 * 3600)
    jobs.use_runtime(rt)
    try:
        call = devphone.call("anonymous").press("1").press("3").press("1")
        call.leave_message(support.fixture("ko_message"))
        jobs_run(rt)
    finally:
        jobs.use_runtime(None)
    [voicemail_id] = _ids(rt)
    _transcribed(rt, voicemail_id, HOSTILE)
    agent = _signed_in(app, rt, "agent@example.org")
    panel = agent.get("/agent/panel").get_data(as_text=True)
    assert "Messages sans numéro de rappel (1)" in panel and "<script>window" not in panel
    token = _token(agent)
    done = agent.post(f"/agent/voicemail/{voicemail_id}/done", data={"csrf_token": token})
    assert done.status_code == 302
    assert "Messages sans numéro de rappel" not in agent.get("/agent/panel").get_data(as_text=True)
    assert rt.queue.count_events("voicemail.handled") == 1


def test_browser_shows_the_transcript_as_text_and_plays_our_audio(
    server: str,  # noqa: F811
    open_page: Callable[..., Page],  # noqa: F811
    voice_runtime: Runtime,
) -> None:
    rt = voice_runtime
    add_user(rt.sessions, "agent@example.org", PASSWORD, site_code=SITE, languages=["fr"])
    ticket = rt.queue.request_callback(
        SITE, phone="+33612345678", language="fr", reason="voicemail"
    )
    service: VoicemailService = rt.voicemail
    recording_sid = "RE" + "3" * 32
    saved = service.save(
        recording_sid=recording_sid,
        call_sid="CA" + "3" * 32,
        site=SITE,
        language="fr",
        channel="phone",
        duration_s=1,
        phone="+33612345678",
        arrived_ms=None,
    )
    assert saved.ticket is not None and saved.ticket.contact_id == ticket.contact_id
    keep_recording(rt.redis, recording_sid, mulaw.encode([0] * 800))
    jobs.use_runtime(rt)
    try:
        rt.voicemail.transcribe(saved.voicemail_id)
    finally:
        jobs.use_runtime(None)
    _transcribed(rt, saved.voicemail_id, HOSTILE)
    page = open_page()
    page.goto(f"{server}/login")
    page.get_by_label("Adresse électronique").fill("agent@example.org")
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    page.get_by_role("button", name="Disponible").click()
    expect(page.locator("#state")).to_have_attribute("data-state", "available")
    rt.queue.dispatch(SITE)
    transcript = page.locator(f"#voicemail-{saved.voicemail_id} .transcript")
    expect(transcript).to_have_text(HOSTILE)  # shown as text, never run
    assert page.evaluate("window.pwned") is None
    player = page.get_by_label("Écouter le message")
    src = player.get_attribute("src")
    status, kind = page.evaluate(
        "async (u) => { const r = await fetch(u);"
        " return [r.status, r.headers.get('content-type')]; }",
        src,
    )
    assert (status, kind) == (200, "audio/wav")
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "agent-voicemail.png"), full_page=True)
