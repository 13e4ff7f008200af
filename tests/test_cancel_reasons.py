"""Cancellation reasons: a supervisor cancels a request for a reason of a list (plus text);
a caller still on hold hears why, and is offered a callback only when the reason allows
it (not for a duplicate: they have another request open)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from interphone.accounts import add_user
from interphone.devtools.devphone.phone import DevPhone, SimCall
from interphone.devtools.devphone.rest import sent_messages
from interphone.models import Contact
from interphone.prompts import available, catalogue
from interphone.queue.exceptions import InvalidInput
from interphone.queue.service import CANCEL_REASONS, QueueService
from interphone.runtime import Runtime

from .conftest import SITE

CALLER = "+33612345678"
PASSWORD = "long enough password"


def _contacts(rt: Runtime) -> list[Contact]:
    with rt.sessions() as s:
        return list(s.scalars(select(Contact).order_by(Contact.id)))


def test_given_a_reason_of_the_list_then_no_text_is_needed_and_the_code_is_kept(
    queue: QueueService,
) -> None:
    cid = queue.enqueue_live(SITE, language="fr").contact_id
    assert queue.cancellation(cid) is None  # still waiting
    assert queue.cancel(cid, code="duplicate", actor="supervisor:1") is True
    assert queue.cancellation(cid) == "duplicate"
    with queue.sessions() as s:
        assert s.get(Contact, cid).outcome == "duplicate"


def test_given_a_typed_reason_with_a_code_then_the_outcome_is_the_text_and_the_code_stays(
    queue: QueueService,
) -> None:
    cid = queue.enqueue_live(SITE, language="fr").contact_id
    assert queue.cancel(cid, " vu au guichet ", code="closing") is True
    assert queue.cancellation(cid) == "closing"
    with queue.sessions() as s:
        assert s.get(Contact, cid).outcome == "vu au guichet"


@pytest.mark.parametrize(
    ("reason", "code"), [("", "other"), ("   ", "other"), ("x", "nope"), ("x" * 201, "duplicate")]
)
def test_given_other_without_text_an_unknown_code_or_a_long_text_then_it_is_refused(
    queue: QueueService, reason: str, code: str
) -> None:
    cid = queue.enqueue_live(SITE, language="fr").contact_id
    with pytest.raises(InvalidInput) as refused:
        queue.cancel(cid, reason, code=code)
    assert refused.value.details == {"reason": "CANCEL_REASON"}
    assert queue.ticket(cid).state == "waiting"


@pytest.mark.parametrize("lang", ["fr", "en", "ar", "es"])
def test_every_reason_but_other_has_its_words_for_the_caller_in_every_language(
    lang: str,
) -> None:
    assert lang in available()
    for code in CANCEL_REASONS:
        key = "queue_cancelled" if code == "other" else f"queue_cancelled_{code}"
        assert catalogue(lang).text(key).strip()


def test_only_a_duplicate_goes_without_a_callback_offer() -> None:
    assert [code for code, offer in CANCEL_REASONS.items() if not offer] == ["duplicate"]


# -- end to end: a caller on hold on the dev phone, a supervisor's cancel form ---------------
def _token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match is not None
    return match.group(1)


@pytest.fixture
def supervisor(app, voice_runtime: Runtime):
    add_user(
        voice_runtime.sessions, "chef@example.org", PASSWORD, site_code=SITE, role="supervisor"
    )
    client = app.test_client()
    token = _token(client.get("/login").get_data(as_text=True))
    client.post(
        "/login", data={"email": "chef@example.org", "password": PASSWORD, "csrf_token": token}
    )
    return client


def _on_hold(devphone: DevPhone) -> SimCall:
    """A caller in English who chose to wait for an agent."""
    call = devphone.call(CALLER)
    call.press("2")  # English
    call.press("3")  # an agent
    assert call.waiting_for == "/voice/queue"
    return call


def _cancel_from_the_dashboard(supervisor, contact_id: int, **form: str) -> str:
    """The cancel form of the dashboard's line, as the supervisor's browser posts it;
    the page the supervisor lands on."""
    page = supervisor.get("/supervisor").get_data(as_text=True)
    assert 'name="code"' in page and 'value="duplicate"' in page
    response = supervisor.post(
        f"/supervisor/contacts/{contact_id}/cancel",
        data={"csrf_token": _token(page), **form},
        follow_redirects=True,
    )
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_given_a_duplicate_then_the_caller_on_hold_hears_why_and_goodbye_without_an_offer(
    supervisor, devphone: DevPhone, voice_runtime: Runtime
) -> None:
    call = _on_hold(devphone)
    [contact] = _contacts(voice_runtime)
    _cancel_from_the_dashboard(supervisor, contact.id, code="duplicate", reason="appel 2")
    call.wait()  # the next turn of the hold loop
    said = call.transcript()
    assert "You already have another request in progress with the service" in said
    assert "appel 2" not in said  # the staff's words stay with the staff
    assert "press 1" not in call.last_said()
    assert call.status == "completed" and "Goodbye" in call.last_said()
    [contact] = _contacts(voice_runtime)
    assert (contact.state, contact.outcome) == ("cancelled", "appel 2")
    assert sent_messages(voice_runtime.redis) == []


def test_given_the_service_closing_then_the_caller_hears_why_and_is_offered_a_callback(
    supervisor, devphone: DevPhone, voice_runtime: Runtime
) -> None:
    call = _on_hold(devphone)
    [contact] = _contacts(voice_runtime)
    _cancel_from_the_dashboard(supervisor, contact.id, code="closing")
    call.wait()
    assert "The service cannot take any more calls today" in call.transcript()
    assert call.waiting_for == "/voice/step/cancelled"
    assert "To be called back on this number, press 1." in call.last_said()
    call.press("1")
    assert "Your callback request is recorded." in call.transcript()
    cancelled, callback = _contacts(voice_runtime)
    assert (cancelled.state, callback.kind, callback.phone) == ("cancelled", "callback", CALLER)


def test_given_other_with_its_text_then_the_caller_hears_the_general_words_and_the_offer(
    supervisor, devphone: DevPhone, voice_runtime: Runtime
) -> None:
    call = _on_hold(devphone)
    [contact] = _contacts(voice_runtime)
    _cancel_from_the_dashboard(supervisor, contact.id, code="other", reason="vu au guichet")
    call.wait()
    assert "Your request has been closed by the service." in call.transcript()
    assert "guichet" not in call.transcript()
    assert "To be called back on this number, press 1." in call.last_said()


def test_given_other_without_its_text_then_the_form_says_so_in_the_supervisors_language(
    supervisor, voice_runtime: Runtime
) -> None:
    cid = voice_runtime.queue.enqueue_live(SITE, language="fr").contact_id
    page = _cancel_from_the_dashboard(supervisor, cid, code="other", reason="")
    assert "précisez « Autre motif »" in page
    assert voice_runtime.queue.ticket(cid).state == "waiting"


def test_the_applicants_sms_code_is_refused_from_the_supervisors_form(
    supervisor, voice_runtime: Runtime
) -> None:
    cid = voice_runtime.queue.enqueue_live(SITE, language="fr").contact_id
    page = _cancel_from_the_dashboard(supervisor, cid, code="sms", reason="par SMS")
    assert "choisissez un motif de la liste" in page
    assert voice_runtime.queue.ticket(cid).state == "waiting"
    assert voice_runtime.queue.cancellation(cid) is None
