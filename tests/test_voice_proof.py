"""A file number is the caller's only once proven by its birth date; failed birth dates
are limited per file number whoever types them. Whole calls through the dev phone
(signed webhooks) against the real app, Redis and database."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select

from interphone import metrics
from interphone.accounts import add_user
from interphone.caller_card import contact_card
from interphone.cases import CaseRecord, ImportReport, import_records
from interphone.devtools.devphone.phone import DevPhone, SimCall
from interphone.models import Contact
from interphone.queue.store import NORMAL, URGENT
from interphone.runtime import Runtime

from .conftest import SITE

FILE = "6300000042"
BORN = "12041990"
WRONG = "13041990"
OTHER_FILE = "6300000043"


@pytest.fixture
def cases(voice_runtime: Runtime) -> None:
    """FILE's extension certificate expires within URGENT_WITHIN_DAYS of the test clock
    (2027-01-15): a proven FILE is urgent."""
    records = [
        CaseRecord(
            FILE,
            date(1990, 4, 12),
            "api_issued",
            datetime(2026, 10, 2, tzinfo=UTC),
            api_valid_until=date(2027, 1, 20),
        ),
        CaseRecord(OTHER_FILE, date(1985, 1, 2), "card_ready", datetime(2026, 11, 20, tzinfo=UTC)),
    ]
    import_records(
        voice_runtime.sessions, records, voice_runtime.settings.birthdate_key, ImportReport()
    )


def _english(devphone: DevPhone, caller: str) -> SimCall:
    call = devphone.call(caller)
    call.press("2")
    assert call.waiting_for == "/voice/step/main"
    return call


def _callback_with_file(devphone: DevPhone, caller: str, born: str) -> SimCall:
    """Main menu 2, this number, the file number, a birth date, reason 3."""
    call = _english(devphone, caller).press("2").press("1").press(FILE + "#")
    assert call.waiting_for == "/voice/step/callback_birth"
    return call.press(born).press("3")


def _someone_waits(devphone: DevPhone) -> None:
    _english(devphone, "+33611111111").press("2").press("1").press("#").press("3")


def _contact_of(rt: Runtime, caller: str) -> Contact:
    with rt.sessions() as s:
        return s.scalars(select(Contact).where(Contact.phone == caller)).one()


def test_an_unverified_file_number_gives_no_priority(
    devphone: DevPhone, voice_runtime: Runtime, cases
) -> None:
    _someone_waits(devphone)
    call = _callback_with_file(devphone, "+33622222222", WRONG)
    assert "You are number 2 in line" in call.transcript()
    contact = _contact_of(voice_runtime, "+33622222222")
    assert (contact.file_number, contact.file_verified) == (FILE, False)
    assert (contact.priority_class, contact.active_file) == (NORMAL, None)


def test_a_proven_file_is_still_made_urgent(
    devphone: DevPhone, voice_runtime: Runtime, cases
) -> None:
    _someone_waits(devphone)
    call = _callback_with_file(devphone, "+33622222222", BORN)
    assert "You are number 1 in line" in call.transcript()
    contact = _contact_of(voice_runtime, "+33622222222")
    assert (contact.file_verified, contact.priority_class, contact.active_file) == (
        True,
        URGENT,
        FILE,
    )


def test_a_file_proven_by_a_status_lookup_is_not_asked_for_again(
    devphone: DevPhone, voice_runtime: Runtime, cases
) -> None:
    call = _english(devphone, "+33622222222").press("1").press(FILE + "#").press(BORN)
    assert call.waiting_for == "/voice/step/status_after"
    call.press("2").press("1")
    assert call.waiting_for == "/voice/step/callback_reason"  # the proof of the call
    call.press("3")
    contact = _contact_of(voice_runtime, "+33622222222")
    assert (contact.file_verified, contact.priority_class) == (True, URGENT)


def test_a_failed_status_lookup_leaves_the_callback_file_unverified(
    devphone: DevPhone, voice_runtime: Runtime, cases
) -> None:
    """The door and the phone fall back on the status lookup's file number: unproven."""
    call = _english(devphone, "+33622222222").press("1").press(FILE + "#").press(WRONG)
    call.wait().wait().wait()  # silence: back to the main menu
    call.press("2").press("1")
    assert call.waiting_for == "/voice/step/callback_reason"  # not asked for it again
    call.press("3")
    contact = _contact_of(voice_runtime, "+33622222222")
    assert (contact.file_number, contact.file_verified, contact.priority_class) == (
        FILE,
        False,
        NORMAL,
    )


def test_an_unverified_file_number_never_counts_as_a_duplicate(
    devphone: DevPhone, voice_runtime: Runtime, cases
) -> None:
    squatter = _callback_with_file(devphone, "+33622222222", WRONG)
    owner = _callback_with_file(devphone, "+33633333333", BORN)
    stranger = _callback_with_file(devphone, "+33644444444", WRONG)
    for call in (squatter, owner, stranger):
        assert "Your callback request is recorded. You are number" in call.transcript()
        assert "already" not in call.transcript()
    assert "You are number 1 in line" in owner.transcript()  # proven and urgent
    with voice_runtime.sessions() as s:
        rows = s.scalars(select(Contact).order_by(Contact.id)).all()
    assert [(c.phone, c.active_file) for c in rows] == [
        ("+33622222222", None),
        ("+33633333333", FILE),
        ("+33644444444", None),
    ]


def test_a_typed_number_with_a_pending_callback_hears_the_same_as_one_without(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    """A withheld caller types someone's number: the words never say whether that
    number has a request. Theirs stands (it is the one called), none is added."""
    _english(devphone, "+33698765432").press("2").press("1").press("#").press("3")
    heard = []
    for typed in ("0698765432", "0611223344"):
        call = _english(devphone, "anonymous").press("2")
        assert call.waiting_for == "/voice/step/callback_number"
        call.press(typed + "#").press("#").press("3")
        assert call.status == "completed"
        heard.append(call.transcript())
    assert heard[0] == heard[1]
    assert "We will call you back on the number you gave" in heard[0]
    with voice_runtime.sessions() as s:
        rows = s.scalars(select(Contact).order_by(Contact.id)).all()
    assert [c.phone for c in rows] == ["+33698765432", "+33611223344"]


def _signed_in_agent(app, rt: Runtime):
    agent = add_user(
        rt.sessions,
        "agent@example.org",
        "long enough password",
        site_code=SITE,
        languages=["fr", "en"],
    )
    client = app.test_client()

    def token() -> str:
        page = client.get("/login").get_data(as_text=True)
        return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)

    form = {"email": "agent@example.org", "password": "long enough password"}
    assert client.post("/login", data={**form, "csrf_token": token()}).status_code == 302
    return agent, client


def test_the_agent_card_shows_an_unverified_file_without_its_case(
    app, devphone: DevPhone, voice_runtime: Runtime, cases
) -> None:
    rt = voice_runtime
    agent, client = _signed_in_agent(app, rt)
    earlier = rt.queue.request_callback(
        SITE, phone="+33633333333", language="fr", file_number=FILE, file_verified=True
    ).contact_id
    rt.queue.set_presence(agent.id, "available")
    rt.queue.dispatch(SITE)
    rt.queue.accept(agent.id, earlier)
    rt.queue.finish(agent.id, earlier, "resolved", "note about the owner's file")
    rt.clock.advance(60)  # past the wrap-up
    rt.queue.sweep()
    _callback_with_file(devphone, "+33622222222", WRONG)
    [offer] = rt.queue.dispatch(SITE)
    rt.queue.accept(agent.id, offer.contact_id)
    card = contact_card(rt.sessions, rt.calls, offer.contact_id)
    assert card is not None
    assert (card.file_number, card.file_verified) == (FILE, False)
    assert (card.case_status, card.case_changed_at, card.api_valid_until) == (None, None, None)
    assert card.earlier == []
    page = client.get("/agent/panel").get_data(as_text=True)
    assert "non vérifié" in page
    assert "API valable" not in page and "note about the owner" not in page
    english = client.get("/agent/panel", headers={"Accept-Language": "en"})
    assert "not verified" in english.get_data(as_text=True)


def _file_limited(rt: Runtime) -> float:
    metrics.recorder_for(rt.redis).flush()
    return sum(
        s.value
        for s in metrics.read(rt.redis)
        if s.name == "interphone_rate_limited_total" and s.labels.get("limit") == "file_failures"
    )


def test_birth_date_guesses_on_one_file_are_limited_across_numbers(
    devphone: DevPhone, voice_runtime: Runtime, cases
) -> None:
    """Five wrong birth dates on one file, from five numbers: then nobody, not even its
    owner with the right date, hears that file's status from the IVR today; an unknown
    file gets the same words, and other files are answered as before."""
    rt = voice_runtime
    for n, file_number in enumerate([FILE] * 5 + ["6399999999"] * 5):
        call = _english(devphone, f"+336100000{n:02d}").press("1").press(file_number + "#")
        call.press(WRONG)
        assert "cannot give you any information" in call.transcript()
    owner = _english(devphone, "+33655555555").press("1").press(FILE + "#").press(BORN)
    said = owner.heard[-2].text
    assert said == "For this file, only an agent can give you the status of the application today."
    assert "valid until" not in owner.transcript()
    assert owner.waiting_for == "/voice/step/callback"  # an agent, by a callback
    unknown = _english(devphone, "+33666666666").press("1").press("6399999999#").press(BORN)
    assert unknown.heard[-2].text == said
    assert _file_limited(rt) == 2
    other = _english(devphone, "+33677777777").press("1").press(OTHER_FILE + "#")
    other.press("02011985")
    assert "Your residence permit is ready" in other.transcript()


def test_birth_date_guesses_from_parallel_calls_never_pass_the_files_allowance(
    devphone: DevPhone, voice_runtime: Runtime, cases
) -> None:
    """Eight callers from eight numbers type the file number, then all type a wrong date:
    a try is taken as the date is compared, not checked as the number is typed, so five
    dates are compared and the other three hear that only an agent can help."""
    calls = [
        _english(devphone, f"+336200000{n:02d}").press("1").press(FILE + "#") for n in range(8)
    ]
    for call in calls:
        assert call.waiting_for == "/voice/step/status_birth"
    for call in calls:
        call.press(WRONG)
    compared = [c for c in calls if "cannot give you any information" in c.transcript()]
    limited = [c for c in calls if "only an agent can give you the status" in c.transcript()]
    assert (len(compared), len(limited)) == (5, 3)


def test_a_birth_date_that_matches_spends_none_of_the_files_tries(
    devphone: DevPhone, voice_runtime: Runtime, cases
) -> None:
    for n in range(4):
        _english(devphone, f"+336300000{n:02d}").press("1").press(FILE + "#").press(WRONG)
    for n in range(3):  # the owner, three times: each proves the file
        owner = _english(devphone, f"+336400000{n:02d}").press("1").press(FILE + "#").press(BORN)
        assert "valid until" in owner.transcript()
    fifth = _english(devphone, "+33650000000").press("1").press(FILE + "#").press(WRONG)
    assert "cannot give you any information" in fifth.transcript()
    sixth = _english(devphone, "+33650000001").press("1").press(FILE + "#").press(WRONG)
    assert "only an agent can give you the status" in sixth.transcript()
