"""Whole phone calls through the dev phone against the real app, Redis and database."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import func, select

from interphone import metrics
from interphone.cases import CaseRecord, ImportReport, import_records
from interphone.devtools.devphone.phone import DevPhone, SimCall
from interphone.devtools.devphone.rest import sent_messages
from interphone.models import Contact, Event
from interphone.queue.clock import ManualClock
from interphone.runtime import Runtime

from .conftest import SITE

CALLER = "+33612345678"
FILE = "6300000042"
BORN = date(1990, 4, 12)


@pytest.fixture
def cases(voice_runtime: Runtime) -> None:
    records = [
        CaseRecord(
            FILE,
            BORN,
            "api_issued",
            datetime(2026, 10, 2, tzinfo=UTC),
            api_valid_until=date(2027, 3, 31),
        ),
        CaseRecord(
            "6300000043", date(1985, 1, 2), "card_ready", datetime(2026, 11, 20, tzinfo=UTC)
        ),
    ]
    import_records(
        voice_runtime.sessions, records, voice_runtime.settings.birthdate_key, ImportReport()
    )


def english_main_menu(devphone: DevPhone, caller: str = CALLER) -> SimCall:
    call = devphone.call(caller)
    assert call.waiting_for == "/voice/step/language"
    call.press("2")
    assert call.waiting_for == "/voice/step/main"
    return call


def contacts(rt: Runtime) -> list[Contact]:
    with rt.sessions() as s:
        return list(s.scalars(select(Contact).order_by(Contact.id)))


def test_call_is_greeted_in_french_then_offered_every_language(devphone: DevPhone) -> None:
    call = devphone.call(CALLER)
    first = call.heard[0]
    assert "Bonjour" in first.text and first.language == "fr-FR" and first.voice == "Polly.Lea"
    said = call.transcript()
    assert "Pour le français, tapez 1" in said and "For English, press 2" in said
    assert "للعربية، اضغطوا 3" in said and "Para español, marque 4" in said
    assert {s.language for s in call.heard} == {"fr-FR", "en-US", "arb", "es-ES"}


def test_status_of_a_case_is_read_in_the_callers_language(devphone: DevPhone, cases) -> None:
    call = english_main_menu(devphone)
    call.press("1")
    assert "file number" in call.last_said()
    call.press(FILE + "#").press("12041990")
    assert "valid until March 31, 2027" in call.transcript()
    assert call.waiting_for == "/voice/step/status_after"
    call.press("1")  # repeat
    assert call.transcript().count("valid until March 31, 2027") == 2
    call.press("0")
    assert call.status == "completed" and "Goodbye" in call.last_said()


def test_wrong_birth_date_gets_the_same_answer_as_an_unknown_file(
    devphone: DevPhone, cases
) -> None:
    answers = []
    for file_number, born in ((FILE, "13041990"), ("6399999999", "12041990")):
        call = english_main_menu(devphone, f"+3361234{len(answers):04d}")
        call.press("1").press(file_number + "#").press(born)
        answers.append(call.heard[-2].text)
        assert call.waiting_for == "/voice/step/status_file"
    assert answers[0] == answers[1]
    assert "cannot give you any information" in answers[0]


def test_three_failed_lookups_lead_to_a_callback_offer(devphone: DevPhone, cases) -> None:
    call = english_main_menu(devphone)
    call.press("1")
    for _ in range(3):
        call.press("1111#").press("01011990")
    assert "An agent can call you back" in call.transcript()
    assert call.waiting_for == "/voice/step/callback"
    assert "ending in 5 6 7 8" in call.last_said()


def test_given_failed_lookups_then_the_callback_offer_can_be_declined_for_the_main_menu(
    devphone: DevPhone, voice_runtime: Runtime, cases
) -> None:
    call = english_main_menu(devphone)
    call.press("1")
    for _ in range(3):
        call.press("1111#").press("01011990")
    assert call.waiting_for == "/voice/step/callback"
    assert "For the main menu, press 9." in call.last_said()
    call.press("9")
    assert call.waiting_for == "/voice/step/main"
    assert "To hear the status of your application, press 1." in call.last_said()
    assert contacts(voice_runtime) == []  # declined: no request recorded
    call.press("1").press(FILE + "#").press("12041990")  # the menu works as before
    assert "valid until March 31, 2027" in call.transcript()


@pytest.mark.parametrize(
    ("key", "said"),
    [
        ("1", "Pour revenir au menu principal, tapez 9."),
        ("3", "للعودة إلى القائمة الرئيسية، اضغطوا 9."),
        ("4", "Para volver al menú principal, marque 9."),
    ],
)
def test_the_callback_offer_says_how_to_decline_in_every_language(
    devphone: DevPhone, key: str, said: str
) -> None:
    call = devphone.call(CALLER)
    call.press(key).press("2")
    assert call.waiting_for == "/voice/step/callback"
    assert said in call.last_said()
    call.press("9")
    assert call.waiting_for == "/voice/step/main"


def test_the_failed_lookups_before_the_callback_offer_are_a_setting(
    devphone: DevPhone, voice_runtime: Runtime, cases
) -> None:
    rt = voice_runtime
    rt.settings = rt.settings.with_overrides(status_failures_before_callback=1)
    rt.__dict__.pop("ivr", None)  # built again, from these settings
    call = english_main_menu(devphone)
    call.press("1").press("1111#").press("01011990")
    assert "An agent can call you back" in call.transcript()
    assert call.waiting_for == "/voice/step/callback"


def test_the_silence_between_announcements_on_hold_is_a_setting(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    pauses = []
    for seconds in (50, 7):  # the default, then HOLD_ANNOUNCE_S=7
        voice_runtime.settings = voice_runtime.settings.with_overrides(hold_announce_s=seconds)
        call = english_main_menu(devphone, f"+336111111{seconds:02d}")
        call.press("3")
        assert call.waiting_for == "/voice/queue"
        pause = ET.fromstring(call.documents[-1]).find("./Gather/Pause")
        assert pause is not None
        pauses.append(pause.get("length"))
    assert pauses == ["50", "7"]


def test_impossible_birth_date_is_a_mismatch_not_an_error(devphone: DevPhone, cases) -> None:
    call = english_main_menu(devphone)
    call.press("1").press(FILE + "#").press("31021990")
    assert "cannot give you any information" in call.transcript()


def test_lookups_per_caller_are_limited_per_hour(
    devphone: DevPhone, voice_runtime: Runtime, cases
) -> None:
    for attempt in range(4):
        call = english_main_menu(devphone)
        call.press("1")
        for guess in range(3 if attempt < 3 else 2):
            if call.waiting_for != "/voice/step/status_file":
                break
            # another file each time: the per-file limit is not the one tested here
            call.press(f"11{attempt}{guess}#").press("01011990")
        call.hang_up()
    call = english_main_menu(devphone)
    call.press("1").press(FILE + "#").press("12041990")
    assert "Too many lookups" in call.transcript()
    assert "valid until" not in call.transcript()
    metrics.recorder_for(voice_runtime.redis).flush()
    refused = [
        s.value
        for s in metrics.read(voice_runtime.redis)
        if s.name == "interphone_rate_limited_total" and s.labels == {"limit": "caller_lookups"}
    ]
    assert refused == [2.0]  # the eleventh lookup above, and this one


def test_callback_request_confirms_position_and_sends_an_sms(
    devphone: DevPhone, voice_runtime: Runtime, cases
) -> None:
    call = english_main_menu(devphone)
    call.press("2")
    assert "ending in 5 6 7 8" in call.last_said()
    call.press("1").press(FILE + "#")
    assert "date of birth" in call.last_said()
    call.press("12041990").press("1")
    assert "You are number 1 in line" in call.transcript()
    assert call.status == "completed"
    [contact] = contacts(voice_runtime)
    assert (
        contact.kind,
        contact.phone,
        contact.language,
        contact.file_number,
        contact.file_verified,
        contact.reason,
    ) == ("callback", CALLER, "en", FILE, True, "file_question")
    [sms] = sent_messages(voice_runtime.redis)
    assert sms["To"] == CALLER and sms["From"] == "+33473000000"
    assert contact.reference in sms["Body"] and "CANCEL" in sms["Body"]


def test_given_a_proven_status_lookup_then_the_callback_takes_its_file_without_asking(
    devphone: DevPhone, voice_runtime: Runtime, cases
) -> None:
    call = english_main_menu(devphone)
    call.press("1").press(FILE + "#").press("12041990")
    call.press("2")  # status_after: be called back
    assert "ending in 5 6 7 8" in call.last_said()
    call.press("1")
    assert call.waiting_for == "/voice/step/callback_reason"
    assert "file number you entered earlier" in call.transcript()
    assert "If you have a file number" not in call.transcript()
    call.press("1")
    [contact] = contacts(voice_runtime)
    assert (contact.file_number, contact.file_verified) == (FILE, True)


@pytest.mark.parametrize(
    ("key", "kept", "asked"),
    [
        ("1", "numéro de dossier que vous avez tapé plus tôt", "Si vous avez un numéro"),
        ("2", "file number you entered earlier", "If you have a file number"),
        ("3", "رقم الملف الذي أدخلتموه سابقا", "إذا كان لديكم رقم ملف"),
        ("4", "número de expediente que marcó antes", "Si tiene un número de expediente"),
    ],
)
def test_given_failed_lookups_then_the_callback_keeps_the_file_number_unverified(
    devphone: DevPhone, voice_runtime: Runtime, cases, key: str, kept: str, asked: str
) -> None:
    """Three wrong birth dates lead to the callback offer: the file number typed is
    not asked again, and goes to the agent marked not verified."""
    call = devphone.call(CALLER)
    call.press(key).press("1")
    for _ in range(3):
        call.press(FILE + "#").press("01011990")
    assert call.waiting_for == "/voice/step/callback"
    call.press("1")
    assert call.waiting_for == "/voice/step/callback_reason"
    assert kept in call.transcript() and asked not in call.transcript()
    call.press("3")
    [contact] = contacts(voice_runtime)
    assert (contact.file_number, contact.file_verified, contact.reason) == (FILE, False, "other")


def test_given_a_withheld_number_and_a_status_lookup_then_only_the_number_is_asked(
    devphone: DevPhone, voice_runtime: Runtime, cases
) -> None:
    call = english_main_menu(devphone, "anonymous")
    call.press("1").press(FILE + "#").press("12041990").press("2")
    assert call.waiting_for == "/voice/step/callback_number"
    call.press("0698765432#")
    assert call.waiting_for == "/voice/step/callback_reason"
    call.press("2")
    [contact] = contacts(voice_runtime)
    assert (contact.phone, contact.file_number, contact.file_verified) == (
        "+33698765432",
        FILE,
        True,
    )


def test_given_no_file_number_in_the_call_then_the_callback_asks_for_one(
    devphone: DevPhone, cases
) -> None:
    call = english_main_menu(devphone).press("2").press("1")
    assert call.waiting_for == "/voice/step/callback_file"
    assert "If you have a file number" in call.last_said()


def test_a_second_request_from_the_same_number_hears_the_place_of_the_first(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    english_main_menu(devphone).press("2").press("1").press("#").press("3")
    call = english_main_menu(devphone)
    call.press("2").press("1").press("#").press("3")
    assert "callback request is recorded. You are number 1 in line" in call.transcript()
    assert "already" not in call.transcript()
    assert len(contacts(voice_runtime)) == 1
    assert len(sent_messages(voice_runtime.redis)) == 1


def test_withheld_number_is_asked_for_and_validated(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    call = devphone.call("anonymous")
    call.press("1").press("2")  # français, rappel
    assert call.waiting_for == "/voice/step/callback_number"
    call.press("12#")
    assert "n'est pas valide" in call.transcript()
    call.press("0698765432#").press("#").press("2")
    [contact] = contacts(voice_runtime)
    assert contact.phone == "+33698765432" and contact.reason == "permit_expiry"


def test_silence_reprompts_then_ends_politely(devphone: DevPhone) -> None:
    call = english_main_menu(devphone)
    call.wait()
    assert "did not receive anything" in call.transcript()
    assert call.waiting_for == "/voice/step/main"
    call.wait().wait()
    assert call.status == "completed" and "Goodbye" in call.last_said()


def test_wrong_key_says_so_and_asks_again(devphone: DevPhone) -> None:
    call = english_main_menu(devphone)
    call.press("7")
    assert "not valid" in call.transcript() and call.waiting_for == "/voice/step/main"


def test_silence_at_the_language_menu_continues_in_french(devphone: DevPhone) -> None:
    call = devphone.call(CALLER)
    call.wait().wait().wait()
    assert call.waiting_for == "/voice/step/main"
    assert "Pour connaître l'état de votre demande" in call.last_said()


def test_live_queue_announces_position_and_star_switches_to_callback_keeping_place(
    devphone: DevPhone, voice_runtime: Runtime, clock: ManualClock
) -> None:
    first = english_main_menu(devphone, "+33611111111")
    first.press("3")
    clock.advance(5)
    second = english_main_menu(devphone, "+33622222222")
    second.press("3")
    assert "You are number 2 in line" in second.transcript()
    assert second.waiting_for == "/voice/queue"
    second.wait()  # the next announcement
    assert "You are number 2 in line" in second.last_said()
    first.press("*")
    assert "callback request is recorded" in first.transcript()
    assert "number 1 in line" in first.transcript()
    rows = contacts(voice_runtime)
    assert [(c.kind, c.state) for c in rows] == [("callback", "waiting"), ("live", "waiting")]
    assert [w.id for w in voice_runtime.queue.list_waiting(SITE)] == [rows[0].id, rows[1].id]


def _waiting_then_cancelled(devphone: DevPhone, rt: Runtime, caller: str) -> SimCall:
    """A caller on hold in English; a supervisor cancels their request; the next turn
    of the hold loop."""
    call = english_main_menu(devphone, caller).press("3")
    assert call.waiting_for == "/voice/queue"
    [contact] = contacts(rt)
    assert rt.queue.cancel(contact.id, "Doublon : vu au guichet", actor="supervisor:1")
    call.wait()
    return call


def test_given_a_cancelled_waiting_caller_then_they_hear_why_and_can_be_called_back(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    call = _waiting_then_cancelled(devphone, voice_runtime, CALLER)
    assert "Your request has been closed by the service." in call.transcript()
    assert "Doublon" not in call.transcript()  # the staff's reason stays with the staff
    assert call.waiting_for == "/voice/step/cancelled"
    assert "To be called back on this number, press 1." in call.last_said()
    call.press("1")
    assert "Your callback request is recorded. You are number 1 in line" in call.transcript()
    assert call.status == "completed"
    cancelled, callback = contacts(voice_runtime)
    assert (cancelled.kind, cancelled.state) == ("live", "cancelled")
    assert (callback.kind, callback.state, callback.phone) == ("callback", "waiting", CALLER)
    [sms] = sent_messages(voice_runtime.redis)
    assert sms["To"] == CALLER and callback.reference in sms["Body"]


@pytest.mark.parametrize("answer", ["", "7"])
def test_given_a_cancelled_waiting_caller_who_declines_then_the_call_ends(
    devphone: DevPhone, voice_runtime: Runtime, answer: str
) -> None:
    call = _waiting_then_cancelled(devphone, voice_runtime, CALLER)
    assert call.waiting_for == "/voice/step/cancelled"
    call.press(answer) if answer else call.wait()
    assert call.status == "completed" and "Goodbye" in call.last_said()
    [contact] = contacts(voice_runtime)
    assert contact.state == "cancelled"
    assert sent_messages(voice_runtime.redis) == []


def test_given_a_cancelled_waiting_caller_who_presses_star_then_they_hear_why_too(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    call = english_main_menu(devphone).press("3")
    [contact] = contacts(voice_runtime)
    voice_runtime.queue.cancel(contact.id, "vu au guichet", actor="supervisor:1")
    call.press("*")  # a callback of their live place: there is none any more
    assert "Your request has been closed by the service." in call.transcript()
    assert call.waiting_for == "/voice/step/cancelled"


def test_given_a_caller_offered_to_an_agent_who_presses_star_then_they_keep_holding(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    """Too late to switch to a callback (an agent has the offer): the call goes on."""
    from interphone.accounts import add_user

    rt = voice_runtime
    call = english_main_menu(devphone).press("3")
    agent = add_user(
        rt.sessions, "a@example.org", "long enough password", site_code=SITE, languages=["en"]
    )
    rt.queue.set_presence(agent.id, "available")
    [offer] = rt.queue.dispatch(SITE)
    call.press("*")
    assert call.status != "completed" and call.waiting_for == "/voice/queue"
    [contact] = contacts(rt)
    assert (contact.id, contact.kind, contact.state) == (offer.contact_id, "live", "offered")


def test_given_a_cancelled_waiting_caller_with_a_withheld_number_then_no_offer(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    call = _waiting_then_cancelled(devphone, voice_runtime, "anonymous")
    assert "Your request has been closed by the service." in call.transcript()
    assert "press 1" not in call.last_said()
    assert call.status == "completed" and "Goodbye" in call.last_said()


def test_caller_hanging_up_in_the_queue_is_counted_abandoned_once(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    call = english_main_menu(devphone)
    call.press("3")
    call.hang_up()
    [contact] = contacts(voice_runtime)
    assert contact.state == "abandoned"
    assert voice_runtime.store.waiting_count(SITE) == 0
    # Twilio may deliver the final status twice: nothing changes the second time
    devphone.post("/voice/status", call._params({"CallStatus": "completed"}))
    with voice_runtime.sessions() as s:
        assert (
            s.scalar(
                select(func.count()).select_from(Event).where(Event.kind == "contact.abandoned")
            )
            == 1
        )


def test_sms_reply_cancels_the_callback(devphone: DevPhone, voice_runtime: Runtime) -> None:
    english_main_menu(devphone).press("2").press("1").press("#").press("3")
    form = {
        "MessageSid": "SM" + "a" * 32,
        "From": CALLER,
        "To": "+33473000000",
        "Body": " cancel ",
        "AccountSid": devphone.account_sid,
    }
    body = devphone.post("/sms/incoming", form)
    assert "is cancelled" in body
    [contact] = contacts(voice_runtime)
    assert contact.state == "cancelled"
    again = devphone.post("/sms/incoming", form)  # Twilio retry: same answer, no change
    assert again == body
    other = devphone.post("/sms/incoming", {**form, "MessageSid": "SM" + "b" * 32})
    assert "no callback request in progress" in other


def test_live_queue_outside_opening_hours_offers_a_callback(
    devphone: DevPhone, clock: ManualClock
) -> None:
    clock.advance(12 * 3600)  # Friday 21:00 in Paris
    call = english_main_menu(devphone)
    call.press("3")
    assert "closed right now" in call.transcript()
    assert "To leave a message, press 1. To be called back, press 2." in call.last_said()
    assert call.waiting_for == "/voice/step/closed"
    call.press("9")
    assert call.waiting_for == "/voice/step/main"


def test_callback_asked_at_night_is_scheduled_for_the_next_opening(
    devphone: DevPhone, voice_runtime: Runtime, clock: ManualClock
) -> None:
    clock.advance(12 * 3600)  # Friday 21:00: next callback hours on Monday 09:00
    english_main_menu(devphone).press("2").press("1").press("#").press("3")
    [contact] = contacts(voice_runtime)
    monday = datetime(2027, 1, 18, 8, 0, tzinfo=UTC)
    assert contact.not_before_ms == int(monday.timestamp() * 1000)


def test_every_call_gets_one_record_closed_by_its_final_status(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    from interphone.models import Call

    call = english_main_menu(devphone)
    devphone.post("/voice/incoming", call._params({"CallStatus": "ringing"}))  # a retry
    devphone.post("/voice/status", call._params({"CallStatus": "completed", "CallDuration": "42"}))
    with voice_runtime.sessions() as s:  # written behind the IVR: the sweep applies it
        assert s.scalars(select(Call)).all() == []
    assert voice_runtime.journal.drain() == 2  # started (once, despite the retry), ended
    with voice_runtime.sessions() as s:
        [row] = s.scalars(select(Call)).all()
    assert (row.sid, row.direction, row.from_number, row.status, row.duration_s) == (
        call.sid,
        "inbound",
        CALLER,
        "completed",
        42,
    )
    assert row.ended_at is not None


def _extra(rt: Runtime, sid: str) -> dict[str, str]:
    raw = rt.redis.hgetall(f"ip:call:{sid}")
    return {k.decode()[2:]: v.decode() for k, v in raw.items() if k.startswith(b"x_")}


def test_case_read_while_the_birth_date_is_typed_answers_with_the_database_gone(
    devphone: DevPhone, cases, voice_runtime: Runtime, tmp_path
) -> None:
    """The status turn's row is read once the birth-date question is sent (off the
    webhook's wait), so the turn answers even if the database went away meanwhile."""
    from interphone import db as dbmod

    rt = voice_runtime
    call = english_main_menu(devphone).press("1").press(FILE + "#")
    assert FILE in _extra(rt, call.sid)["case"]  # read ahead, hash and all
    unreachable = dbmod.make_engine(f"sqlite:///{tmp_path / 'missing' / 'db.sqlite3'}")
    reads, rt.case_lookup.reads = rt.case_lookup.reads, unreachable
    try:
        call.press("12041990")
    finally:
        rt.case_lookup.reads = reads
        unreachable.dispose()
    assert "valid until March 31, 2027" in call.transcript()
    assert "case" not in _extra(rt, call.sid)  # used once, then dropped


def test_case_read_ahead_for_another_file_number_is_not_used(
    devphone: DevPhone, cases, voice_runtime: Runtime
) -> None:
    """The row read ahead answers only for the file number it was read for."""
    rt = voice_runtime
    call = english_main_menu(devphone).press("1").press(FILE + "#")
    # as if the caller's state named another file than the row read ahead
    rt.redis.hset(f"ip:call:{call.sid}", "file_number", "6300000043")
    call.press("02011985")  # the birth date of 6300000043 (card ready)
    assert "Your residence permit is ready" in call.transcript()  # read for 6300000043
    assert "valid until" not in call.transcript()  # not the row read ahead for FILE


def test_unknown_file_read_ahead_gets_the_same_answer_as_a_wrong_birth_date(
    devphone: DevPhone, cases, voice_runtime: Runtime
) -> None:
    call = english_main_menu(devphone).press("1").press("6399999999#")
    assert _extra(voice_runtime, call.sid)["case"] == '["6399999999"]'
    call.press("12041990")
    assert "cannot give you any information" in call.heard[-2].text


def test_a_caller_switching_to_a_callback_on_a_number_with_one_gets_no_second_sms(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    """Their request stands at its place: they hear it, and its confirmation is not
    sent again (a number typed at the door may be somebody else's)."""
    caller = "+33633333333"
    english_main_menu(devphone, caller).press("2").press("1").press("#").press("3")
    sms = voice_runtime.twilio_client().messages
    assert len(sms.list(to=caller, limit=20)) == 1
    # the SMS job's once-marks last 7 days; a request may wait longer than that
    for mark in voice_runtime.redis.scan_iter("ip:sms:sent:*"):
        voice_runtime.redis.delete(mark)
    live = english_main_menu(devphone, caller).press("3")
    live.press("*")
    assert "callback request is recorded" in live.transcript()
    assert "number 1 in line" in live.transcript()
    assert len(sms.list(to=caller, limit=20)) == 1
    switched = english_main_menu(devphone, "+33644444444").press("3")
    switched.press("*")  # a number without one: converted, and confirmed once
    assert len(sms.list(to="+33644444444", limit=20)) == 1
