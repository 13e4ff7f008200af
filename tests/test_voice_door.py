"""The door intercom: one button, a microphone, served by voice alone.

The flow is driven through the dev phone against the real app, Redis and database. For a
language with a local model (French here: a model folder exists) the TwiML streams the
audio to the speech server (``<Connect><Stream>``); the dev phone's typed text stands in
for the recognizer (real audio through the real server is tested in test_speech_*). For a
language without a model (English here) Twilio's ``<Gather input="speech">`` is used.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from interphone.cases import CaseRecord, ImportReport, import_records
from interphone.devtools.devphone.phone import DevPhone, SimCall
from interphone.devtools.devphone.rest import sent_messages
from interphone.models import Contact, Site
from interphone.queue.clock import ManualClock
from interphone.runtime import Runtime
from interphone.voice.hearing import Hearing
from interphone.voice.speech.results import SpeechResults

from .conftest import SITE

DOOR = "sip:porte@prefecture.sip.twilio.com"
KIOSK = "client:borne-1"
FILE, BORN = "6300000042", date(1990, 4, 12)


@pytest.fixture
def door(voice_runtime: Runtime, tmp_path: Path) -> Runtime:
    rt = voice_runtime
    with rt.sessions.begin() as s:
        site = s.scalar(select(Site).where(Site.code == SITE))
        assert site is not None
        site.intercom_identities = ["porte@prefecture.sip.twilio.com", KIOSK]
    (tmp_path / "models" / "fr").mkdir(parents=True)  # French is heard locally
    rt.__dict__["hearing"] = Hearing(
        SpeechResults(rt.redis), models_dir=tmp_path / "models", local_languages=None
    )
    import_records(
        rt.sessions,
        [CaseRecord(FILE, BORN, "under_review", datetime(2026, 9, 1, tzinfo=UTC))],
        rt.settings.birthdate_key,
        ImportReport(),
    )
    return rt


def _last_twiml(call: SimCall) -> ET.Element:
    return ET.fromstring(call.documents[-1])


def _french(devphone: DevPhone, caller: str = DOOR) -> SimCall:
    call = devphone.call(caller)
    assert "interphone du service des étrangers" in call.transcript()
    call.speak("français")
    assert call.waiting_for == "/voice/step/door_main"
    return call


def test_intercom_streams_french_to_the_local_speech_server(door, devphone: DevPhone) -> None:
    call = devphone.call(DOOR)
    stream = _last_twiml(call).find("Connect/Stream")
    assert stream is not None and stream.get("url", "").endswith("/voice/stream")
    params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert params["grammar"] == "language" and params["lang"] == "fr"
    assert params["key"].startswith("door_language-")
    assert "For English, say: English." in call.transcript()


def test_status_by_voice_reads_back_then_answers(door, devphone: DevPhone) -> None:
    call = _french(devphone)
    call.speak("dossier")
    call.speak("six trois zéro zéro zéro zéro zéro zéro quatre deux")
    assert "J'ai compris : 6 3 0 0 0 0 0 0 4 2. Est-ce exact ?" in call.last_said()
    call.speak("oui")
    call.speak("un deux zéro quatre un neuf neuf zéro")
    assert "12 avril 1990" in call.last_said()
    call.speak("oui")
    assert "en cours d'instruction depuis le 1 septembre 2026" in call.transcript()
    assert call.waiting_for == "/voice/step/door_after"


def test_a_file_without_birth_date_guesses_left_is_given_to_an_agent_at_the_door(
    door, devphone: DevPhone, voice_runtime: Runtime
) -> None:
    """Failed birth dates are counted per file number, from the phone as at the door:
    once a file has had them, even the right date gets an agent, not the status."""
    for _ in range(5):
        assert voice_runtime.caller_limits.file_take(FILE) is not None
    call = _french(devphone)
    call.speak("dossier")
    call.speak("six trois zéro zéro zéro zéro zéro zéro quatre deux").speak("oui")
    call.speak("un deux zéro quatre un neuf neuf zéro").speak("oui")
    said = call.transcript()
    assert "seul un agent peut vous donner l'état de la demande aujourd'hui" in said
    assert "en cours d'instruction" not in said
    [contact] = _contacts(voice_runtime)
    assert (contact.kind, contact.channel, contact.file_verified) == ("live", "intercom", False)


def test_a_file_proven_at_the_door_goes_with_the_caller_to_the_agent(
    door, devphone: DevPhone, voice_runtime: Runtime
) -> None:
    call = _french(devphone)
    call.speak("dossier")
    call.speak("six trois zéro zéro zéro zéro zéro zéro quatre deux").speak("oui")
    call.speak("un deux zéro quatre un neuf neuf zéro").speak("oui")
    assert call.waiting_for == "/voice/step/door_after"
    call.speak("agent")
    [contact] = _contacts(voice_runtime)
    assert (contact.kind, contact.file_number, contact.file_verified) == ("live", FILE, True)


def test_misheard_number_is_asked_again_after_no(door, devphone: DevPhone) -> None:
    call = _french(devphone)
    call.speak("dossier").speak("six trois")
    call.speak("non")
    assert call.waiting_for == "/voice/step/door_file"


def test_nothing_understood_twice_leads_to_the_live_queue_not_a_dead_end(
    door, devphone: DevPhone, voice_runtime: Runtime
) -> None:
    call = _french(devphone)
    call.speak("bonjour madame").speak("euh")
    assert "Je n'ai pas compris." in call.transcript()
    assert "numéro 1 dans la file" in call.transcript()
    [contact] = _contacts(voice_runtime)
    assert (contact.kind, contact.channel, contact.phone) == ("live", "intercom", None)
    stream = _last_twiml(call).find("Connect/Stream")  # waiting is listened to
    assert stream is not None
    assert {p.get("name"): p.get("value") for p in stream.findall("Parameter")}["grammar"] == "menu"


def test_waiting_at_the_door_becomes_a_callback_that_keeps_the_place(
    door, devphone: DevPhone, voice_runtime: Runtime, clock: ManualClock
) -> None:
    first = _french(devphone)
    first.speak("agent")
    clock.advance(30)
    second = _french(devphone, KIOSK)  # the browser kiosk is a door too
    second.speak("agent")
    clock.advance(400)
    second.end_stream()  # silence: the next announcement offers a callback
    assert "Dites : rappel, pour laisser votre numéro" in second.last_said()
    second.speak("rappel")
    second.speak("zéro six un deux trois quatre cinq six sept huit")
    assert "0 6 1 2 3 4 5 6 7 8" in second.last_said()
    second.speak("oui")
    assert second.status == "completed" and "numéro 2 dans la file" in second.transcript()
    first_contact, callback = _contacts(voice_runtime)
    assert (callback.kind, callback.phone, callback.channel) == (
        "callback",
        "+33612345678",
        "intercom",
    )
    assert callback.arrived_ms > first_contact.arrived_ms  # same place as before
    assert voice_runtime.queue.ticket(callback.id).position == 2
    assert any(m["To"] == "+33612345678" for m in sent_messages(voice_runtime.redis))


def test_given_a_cancelled_request_at_the_door_then_the_person_hears_why_then_goodbye(
    door, devphone: DevPhone, voice_runtime: Runtime
) -> None:
    """The door has no number to call back: no offer, the reason in the service's words."""
    call = _french(devphone)
    call.speak("agent")
    [contact] = _contacts(voice_runtime)
    assert voice_runtime.queue.cancel(contact.id, "vu au guichet", actor="supervisor:1")
    call.end_stream()  # the next turn of the hold loop
    assert "Votre demande a été clôturée par le service." in call.transcript()
    assert "guichet" not in call.transcript()
    assert call.status == "completed" and "Au revoir" in call.last_said()


def test_english_without_a_local_model_uses_twilio_speech_with_hints(
    door, devphone: DevPhone, voice_runtime: Runtime
) -> None:
    call = devphone.call(DOOR)
    call.speak("English")
    gather = _last_twiml(call).find("Gather")
    assert gather is not None and gather.get("input") == "speech", call.documents[-1]
    assert gather.get("language") == "en-US" and "callback" in gather.get("hints", "")
    call.speak("callback please")  # Twilio transcribes freely: one meaning is enough
    call.speak("zero six one two three four five six seven eight")
    call.speak("yes")
    assert call.status == "completed"
    [contact] = _contacts(voice_runtime)
    assert (contact.kind, contact.phone, contact.language) == ("callback", "+33612345678", "en")


def test_a_phone_call_still_takes_the_keypad_flow(door, devphone: DevPhone) -> None:
    call = devphone.call("+33612345678")
    assert call.waiting_for == "/voice/step/language" and "Pour le français, tapez 1" in (
        call.transcript()
    )


def _contacts(rt: Runtime) -> list[Contact]:
    with rt.sessions() as s:
        return list(s.scalars(select(Contact).order_by(Contact.id)))


def test_supervisor_sees_which_languages_are_heard_locally(door, app) -> None:
    import re

    from interphone.accounts import add_user

    add_user(
        door.sessions, "chef@example.org", "long enough password", site_code=SITE, role="supervisor"
    )
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    client.post(
        "/login",
        data={"email": "chef@example.org", "password": "long enough password", "csrf_token": token},
    )
    html = client.get("/supervisor/panel").get_data(as_text=True)
    modes = re.search(r'<ul id="speech-modes">(.*?)</ul>', html, re.S).group(1)
    assert "fr : locale (Vosk)" in modes and "en : Twilio" in modes
