"""Webhook hygiene: signatures, replays, hostile bodies, and TwiML that Twilio can run."""

from __future__ import annotations

import inspect
import os
import xml.etree.ElementTree as ET

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator
from twilio.twiml import voice_response

from interphone.devtools.devphone.phone import DevPhone
from interphone.models import Contact, Event
from interphone.runtime import Runtime

CALLER = "+33612345678"


def _form(sid: str = "CA" + "1" * 32, **extra: str) -> dict[str, str]:
    return {
        "CallSid": sid,
        "From": CALLER,
        "To": "+33473000000",
        "CallStatus": "ringing",
        "AccountSid": "AC" + "0" * 32,
        **extra,
    }


def _count(rt: Runtime, model: type) -> int:
    with rt.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_unsigned_webhook_is_refused_and_records_nothing(app, voice_runtime: Runtime) -> None:
    client = app.test_client()
    for path in (
        "/voice/incoming",
        "/voice/step/main?n=1",
        "/voice/queue",
        "/voice/status",
        "/sms/incoming",
    ):
        response = client.post(path, data=_form(Digits="3"))
        assert response.status_code == 403, path
    assert voice_runtime.calls.load("CA" + "1" * 32) is None
    assert _count(voice_runtime, Contact) == 0 and _count(voice_runtime, Event) == 0


def test_signature_made_with_another_token_is_refused(app, voice_runtime: Runtime) -> None:
    form = _form()
    url = voice_runtime.settings.public_base_url + "/voice/incoming"
    forged = RequestValidator("not-the-token").compute_signature(url, form)
    response = app.test_client().post(
        "/voice/incoming", data=form, headers={"X-Twilio-Signature": forged}
    )
    assert response.status_code == 403


def test_signature_replayed_on_another_url_is_refused(app, devphone: DevPhone) -> None:
    form = _form(Digits="3")
    signature = devphone.signature("/voice/step/main?n=1", form)
    response = app.test_client().post(
        "/voice/step/callback?n=1", data=form, headers={"X-Twilio-Signature": signature}
    )
    assert response.status_code == 403


def test_signature_covers_the_query_string(app, devphone: DevPhone) -> None:
    form = _form(Digits="3")
    signature = devphone.signature("/voice/step/main?n=1", form)
    response = app.test_client().post(
        "/voice/step/main?n=2", data=form, headers={"X-Twilio-Signature": signature}
    )
    assert response.status_code == 403


def test_retried_gather_gets_the_same_answer_and_queues_the_caller_once(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    call = devphone.call(CALLER)
    call.press("2")
    url = call.gather.action
    first = devphone.post(url, call._params({"Digits": "3"}))
    again = devphone.post(url, call._params({"Digits": "3"}))
    assert first == again and "number 1 in line" in first
    assert _count(voice_runtime, Contact) == 1


def test_same_gather_delivered_twice_at_once_is_handled_once_and_answered_alike(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    """A Twilio retry racing the first delivery: one claims the turn, the other waits
    for its answer instead of computing a second one."""
    from concurrent.futures import ThreadPoolExecutor

    call = devphone.call(CALLER)
    call.press("2")
    url, params = call.gather.action, call._params({"Digits": "3"})
    with ThreadPoolExecutor(max_workers=4) as pool:
        bodies = list(pool.map(lambda _: devphone.post(url, params), range(4)))
    assert len(set(bodies)) == 1 and "number 1 in line" in bodies[0]
    assert _count(voice_runtime, Contact) == 1


def test_retried_incoming_webhook_does_not_restart_the_call(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    call = devphone.call(CALLER)
    call.press("2")  # English
    again = devphone.post("/voice/incoming", call._params({"CallStatus": "ringing"}))
    assert again == call.documents[0]
    assert voice_runtime.calls.load(call.sid).lang == "en"


def test_steps_arriving_out_of_order_are_answered_not_crashed(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    """A step posted before the language was chosen (a retried or late webhook) gets an
    answer, not a 500."""
    call = devphone.call(CALLER)
    for path, digits in (
        ("/voice/step/status_birth?n=7", "01011990"),
        ("/voice/step/callback_reason?n=8", "1"),
        ("/voice/queue?n=9", "*"),
    ):
        body = devphone.post(path, call._params({"Digits": digits}))
        assert body.startswith("<?xml")


def test_malformed_call_sid_gets_a_clear_400(app, devphone: DevPhone) -> None:
    form = _form(sid="not-a-sid")
    response = app.test_client().post(
        "/voice/incoming",
        data=form,
        headers={"X-Twilio-Signature": devphone.signature("/voice/incoming", form)},
    )
    assert response.status_code == 400 and b"CallSid" in response.data


def test_a_bridge_leg_for_no_such_contact_hears_the_same_goodbye_in_twiml(
    app, devphone: DevPhone
) -> None:
    """An unknown or unreadable contact in a bridge's link: TwiML, a goodbye and the
    end of the call, alike in every case (the agent's leg answered JSON)."""
    client = app.test_client()
    bodies = set()
    for path in (
        "/voice/agent/join?c=999999",
        "/voice/agent/join?c=abc",
        "/voice/agent/join",
        "/voice/applicant/join?c=999999",
        "/voice/applicant/join?c=%EF%BC%91",  # a full-width 1
        "/voice/bridge?c=99999999999",
    ):
        form = _form(AnsweredBy="human")
        response = client.post(
            path, data=form, headers={"X-Twilio-Signature": devphone.signature(path, form)}
        )
        assert response.status_code == 200 and response.mimetype == "application/xml", path
        document = ET.fromstring(response.data)
        assert [child.tag for child in document] == ["Say", "Hangup"], path
        bodies.add(response.data)
    assert len(bodies) == 1


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _twiml_grammar() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """From twilio-python's TwiML classes: the children each element may hold, and the
    attributes each element may carry (the keyword parameters of the method making it)."""
    classes = {}
    for _, cls in inspect.getmembers(voice_response, inspect.isclass):
        if issubclass(cls, voice_response.TwiML):
            init = inspect.getsource(cls.__init__) if "__init__" in cls.__dict__ else ""
            marker = "self.name = "
            tag = (
                init.split(marker, 1)[1].split()[0].strip("\"'")
                if marker in init
                else (cls.__name__)
            )
            classes[cls.__name__] = (tag, cls)
    children: dict[str, set[str]] = {tag: set() for tag, _ in classes.values()}
    attributes: dict[str, set[str]] = {tag: set() for tag, _ in classes.values()}
    for tag, cls in classes.values():
        for _, method in inspect.getmembers(cls, inspect.isfunction):
            source = inspect.getsource(method)
            for class_name, (child_tag, _) in classes.items():
                if f"nest({class_name}(" in source or f"nest(\n            {class_name}(" in source:
                    children[tag].add(child_tag)
                    params = inspect.signature(method).parameters
                    attributes[child_tag] |= {
                        _camel(p) for p in params if p not in ("self", "kwargs")
                    }
    return children, attributes


def test_every_twiml_document_uses_only_what_twilio_python_defines(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    documents = []
    call = devphone.call(CALLER)
    call.wait().press("2").press("7").press("1").press("12#").press("01011990")
    call.press("2").press("2").press("0612345678#").press("#").press("1")
    documents += call.documents
    live = devphone.call("+33622222222")
    live.press("1").press("3").wait().press("*")
    documents += live.documents
    documents += _door_documents(devphone, voice_runtime)
    children, attributes = _twiml_grammar()
    assert {"Say", "Gather"} <= children["Response"] and "Say" in children["Gather"]
    seen = set()
    for body in documents:
        root = ET.fromstring(body)
        assert root.tag == "Response"
        for parent in root.iter():
            seen.add(parent.tag)
            assert parent.tag in children, parent.tag
            for child in parent:
                assert child.tag in children[parent.tag], f"<{child.tag}> in <{parent.tag}>"
            for attribute in parent.attrib:
                assert attribute in attributes[parent.tag], f"{parent.tag}@{attribute}"
    assert {"Say", "Gather", "Redirect", "Pause", "Hangup", "Connect", "Stream"} <= seen


def _door_documents(devphone: DevPhone, rt: Runtime) -> list[str]:
    """The door intercom's documents: a local speech step (French, a model folder exists)
    and Twilio speech steps (English)."""
    import tempfile
    from pathlib import Path

    from interphone.models import Site
    from interphone.voice.hearing import Hearing
    from interphone.voice.speech.results import SpeechResults

    with rt.sessions.begin() as s:
        site = s.scalar(select(Site))
        site.intercom_identities = ["client:borne-1"]
    models = Path(tempfile.mkdtemp()) / "fr"
    models.mkdir()
    rt.__dict__["hearing"] = Hearing(
        SpeechResults(rt.redis), models_dir=models.parent, local_languages=None
    )
    rt.directory.read()  # the identity was added a moment ago
    call = devphone.call("client:borne-1")
    call.speak("english").speak("hmm").speak("agent")
    return call.documents


KEYS = st.text(alphabet="0123456789*#", max_size=20)
JUNK = st.one_of(KEYS, st.text(max_size=300), st.just("9" * 5000))
STEPS = st.sampled_from(
    [
        "main",
        "language",
        "status_file",
        "status_birth",
        "status_after",
        "callback",
        "callback_number",
        "callback_file",
        "callback_reason",
        "nowhere",
        "../admin",
    ]
)


@settings(
    max_examples=int(os.environ.get("WEBHOOK_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(data=st.data())
def test_hostile_webhook_bodies_never_cause_a_server_error(data, app, devphone) -> None:
    client = app.test_client()
    sid = data.draw(st.one_of(st.just("CA" + "2" * 32), st.text(max_size=40)))
    path = data.draw(
        st.one_of(
            STEPS.map(lambda s: f"/voice/step/{s}?n=" + str(data.draw(st.integers(0, 99)))),
            st.sampled_from(["/voice/incoming", "/voice/queue", "/voice/status", "/sms/incoming"]),
        )
    )
    form = {"CallSid": sid}
    for name in data.draw(
        st.sets(
            st.sampled_from(
                ["Digits", "From", "To", "CallStatus", "Body", "MessageSid", "SpeechResult"]
            )
        )
    ):
        form[name] = data.draw(JUNK)
    signed = data.draw(st.booleans())
    headers = {"X-Twilio-Signature": devphone.signature(path, form)} if signed else {}
    response = client.post(path, data=form, headers=headers)
    assert response.status_code < 500, (path, form, response.data[:300])
    if not signed:
        assert response.status_code in (403, 404)  # refused, or no such route
