"""Voicemail after hours: a whole call through the dev phone, Twilio's recording
callbacks (signed as Twilio signs them, retried), the RQ job run by a real worker on a
real Redis, the real Korean Vosk model transcribing freely, and what is kept."""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator

import pytest
from rq.job import Job
from sqlalchemy import select

from interphone import jobs
from interphone.devtools.devphone import rest
from interphone.devtools.devphone.phone import DevPhone, SimCall
from interphone.models import Contact, Site, Voicemail
from interphone.queue.clock import ManualClock, to_ms
from interphone.runtime import Runtime
from interphone.voice.session import CallState, CallStore
from interphone.voice.voicemail import job_id
from interphone.worker import Worker

from .conftest import SITE
from .fixtures.speech import support

CALLER = "+33612345678"


@pytest.fixture
def after_hours(voice_runtime: Runtime, clock: ManualClock) -> Iterator[Runtime]:
    """Friday 21:00 in Paris: the live queue is closed. Transcriptions run here by a
    real RQ worker, with the Korean model as the only local one."""
    clock.advance(12 * 3600)
    voice_runtime.__dict__["speech_models"] = support.ko_registry()
    jobs.use_runtime(voice_runtime)
    yield voice_runtime
    jobs.use_runtime(None)


def work(rt: Runtime) -> None:
    Worker([rt.speech_queue], connection=rt.redis).work(burst=True)


def message_menu(devphone: DevPhone, caller: str = CALLER) -> SimCall:
    call = devphone.call(caller)
    call.press("1").press("3")  # French, then "an agent": closed at this hour
    assert "Le service est fermé" in call.transcript()
    assert call.waiting_for == "/voice/step/closed"
    call.press("1")
    assert "Après le bip, laissez votre message" in call.last_said()
    assert call.listening == "record"
    return call


def voicemails(rt: Runtime) -> list[Voicemail]:
    with rt.sessions() as s:
        return list(s.scalars(select(Voicemail).order_by(Voicemail.id)))


def contacts(rt: Runtime) -> list[Contact]:
    with rt.sessions() as s:
        return list(s.scalars(select(Contact).order_by(Contact.id)))


def test_message_left_after_hours_becomes_a_callback_that_keeps_the_calls_place(
    after_hours: Runtime, devphone: DevPhone
) -> None:
    rt = after_hours
    call = message_menu(devphone)
    started_ms = rt.calls.load(call.sid).started_ms
    call.leave_message(support.fixture("ko_message"))
    assert "Merci, votre message est enregistré." in call.transcript()
    assert "Vous êtes numéro 1 dans la file" in call.transcript()
    assert call.status == "completed"
    [contact] = contacts(rt)
    assert (contact.kind, contact.phone, contact.reason, contact.arrived_ms) == (
        "callback",
        CALLER,
        "voicemail",
        started_ms,
    )
    assert contact.not_before_ms > to_ms(rt.clock.now())  # called back when callbacks open
    [voicemail] = voicemails(rt)
    assert (voicemail.contact_id, voicemail.call_sid, voicemail.language) == (
        contact.id,
        call.sid,
        "fr",
    )
    assert voicemail.state == "pending" and voicemail.duration_s == 1
    assert rt.speech_queue.job_ids == [job_id(voicemail.recording_sid)]
    assert any(m["To"] == CALLER for m in rest.sent_messages(rt.redis))  # SMS confirmation


def test_retried_recording_callbacks_keep_one_voicemail_and_one_job(
    after_hours: Runtime, devphone: DevPhone
) -> None:
    rt = after_hours
    call = message_menu(devphone).leave_message(support.fixture("ko_message"))
    [(url, form)] = call.recording_callbacks
    for _ in range(2):  # Twilio retries a callback it thinks was lost
        devphone.post(url, form)
    assert len(voicemails(rt)) == 1 and len(contacts(rt)) == 1
    assert rt.speech_queue.job_ids == [job_id(form["RecordingSid"])]
    work(rt)
    devphone.post(url, form)  # even after the job ran
    assert rt.speech_queue.count == 0 and len(voicemails(rt)) == 1


def test_the_job_fetches_the_audio_keeps_it_and_deletes_it_at_twilio(
    after_hours: Runtime, devphone: DevPhone
) -> None:
    rt = after_hours
    audio = support.fixture("ko_message")
    call = message_menu(devphone).leave_message(audio)
    [(_, form)] = call.recording_callbacks
    work(rt)
    [voicemail] = voicemails(rt)
    with rt.sessions() as s:
        stored = s.scalar(select(Voicemail.audio).where(Voicemail.id == voicemail.id))
    with wave.open(io.BytesIO(stored)) as wav:
        assert (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) == (8000, 2, 1)
        assert wav.getnframes() == len(audio)
    assert voicemail.audio_type == "audio/wav"
    assert rt.redis.get(rest.RECORDINGS + form["RecordingSid"]) is None  # gone at Twilio
    # French has no local model here: kept, said so, never a made-up transcript
    assert (voicemail.state, voicemail.transcript) == ("no_model", None)
    assert voicemail.detail == "no model for fr"


def _korean_call(rt: Runtime, sid: str) -> None:
    """The state the IVR keeps for a caller who chose Korean (the Korean prompt pack of
    the tests is not one of the IVR's languages: the state is written as it would be)."""
    state = CallState(sid=sid, site=SITE, caller=CALLER, lang="ko", started_ms=1_800_000_000_000)
    turn = CallStore(rt.redis).begin(sid, "0")
    CallStore(rt.redis).finish(turn, "<Response/>", state)


def test_a_korean_message_is_transcribed_by_the_real_model_without_a_grammar(
    after_hours: Runtime, devphone: DevPhone
) -> None:
    rt = after_hours
    sid, recording_sid = "CA" + "1" * 32, "RE" + "2" * 32
    _korean_call(rt, sid)
    rest.keep_recording(rt.redis, recording_sid, support.fixture("ko_message"))
    form = {
        "AccountSid": rt.settings.twilio_account_sid or "",
        "CallSid": sid,
        "RecordingSid": recording_sid,
        "RecordingUrl": f"{rest.API}/Accounts/AC{'0' * 32}/Recordings/{recording_sid}",
        "RecordingStatus": "completed",
        "RecordingDuration": "1",
    }
    devphone.post("/voice/recording", form)  # signed as Twilio signs it
    work(rt)
    [voicemail] = voicemails(rt)
    assert (voicemail.state, voicemail.language, voicemail.transcript) == (
        "transcribed",
        "ko",
        "네 네",
    )
    [contact] = contacts(rt)
    assert (voicemail.contact_id, contact.language, contact.kind) == (contact.id, "ko", "callback")
    assert support.ko_registry().live_recognizers == 0


def test_a_recording_not_ready_is_tried_again_and_the_voicemail_is_kept(
    after_hours: Runtime, devphone: DevPhone
) -> None:
    rt = after_hours
    call = message_menu(devphone).leave_message(support.fixture("ko_message"))
    [(_, form)] = call.recording_callbacks
    recording = rt.redis.get(rest.RECORDINGS + form["RecordingSid"])
    rt.redis.delete(rest.RECORDINGS + form["RecordingSid"])  # Twilio answers 404 for now
    work(rt)
    job = Job.fetch(job_id(form["RecordingSid"]), connection=rt.redis)
    assert job.get_status() == "scheduled" and job.retries_left == 4  # tried again later
    [voicemail] = voicemails(rt)
    assert (voicemail.state, voicemail.attempts) == ("pending", 1)
    assert "not found" in (voicemail.detail or "")
    assert [c.state for c in contacts(rt)] == ["waiting"]  # the callback stands meanwhile
    rt.redis.set(rest.RECORDINGS + form["RecordingSid"], recording)
    rt.speech_queue.scheduled_job_registry.remove(job)
    rt.speech_queue.enqueue_job(job)  # the scheduler's move, now rather than in 10 s
    work(rt)
    [voicemail] = voicemails(rt)
    assert (voicemail.state, voicemail.attempts, voicemail.detail) == (
        "no_model",
        2,
        "no model for fr",
    )


def test_a_withheld_number_still_leaves_a_message_kept_without_a_callback(
    after_hours: Runtime, devphone: DevPhone
) -> None:
    rt = after_hours
    call = message_menu(devphone, "anonymous").leave_message(support.fixture("ko_message"))
    assert "Votre numéro est masqué" in call.transcript()
    [voicemail] = voicemails(rt)
    assert voicemail.contact_id is None and contacts(rt) == []
    with rt.sessions() as s:
        site = s.scalar(select(Site).where(Site.code == SITE))
    assert [v.id for v in rt.voicemail.unattended(site.id)] == [voicemail.id]


def test_silence_at_the_beep_keeps_nothing(after_hours: Runtime, devphone: DevPhone) -> None:
    call = message_menu(devphone).wait()
    assert "Nous n'avons pas reçu de message." in call.transcript()
    assert call.status == "completed"
    assert voicemails(after_hours) == [] and contacts(after_hours) == []


def test_the_door_offers_a_message_by_voice_after_hours(
    after_hours: Runtime, devphone: DevPhone
) -> None:
    rt = after_hours
    with rt.sessions.begin() as s:
        site = s.scalar(select(Site).where(Site.code == SITE))
        site.intercom_identities = ["client:borne-1"]
    call = devphone.call("client:borne-1")
    call.speak("français").speak("agent")  # Twilio's speech here: French has no model
    assert "Voulez-vous laisser un message ? Dites oui ou non." in call.last_said()
    call.speak("oui")
    assert "Après le bip, laissez votre message" in call.last_said()
    call.leave_message(support.fixture("ko_message"))
    [voicemail] = voicemails(rt)
    assert (voicemail.channel, voicemail.contact_id) == ("intercom", None)
    assert rt.speech_queue.job_ids == [job_id(voicemail.recording_sid)]
