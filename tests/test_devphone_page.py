"""The /dev/phone page's API: a person rings, types, hears and answers through it."""

from __future__ import annotations

import json
import re

import pytest

from interphone.accounts import add_user
from interphone.config import ConfigError
from interphone.devtools.devphone.plugin import DevPhonePlugin, dev_runtime
from interphone.runtime import Runtime

from .conftest import SITE

APPLICANT = "+33612345678"


def _act(client, number: str, action: str, keys: str = "") -> dict:
    response = client.post(
        "/dev/phone/api/act", json={"number": number, "action": action, "keys": keys}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def _state(client, number: str) -> dict:
    return client.post("/dev/phone/api/state", json={"number": number}).get_json()


def test_page_is_served_offline_with_no_external_assets(app) -> None:
    client = app.test_client()
    html = client.get("/dev/phone").get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="(/[^"]+)"', html)
    assert any(path.endswith(".js") for path in assets), assets
    everything = html
    for path in assets:
        with client.get(path) as response:
            assert response.status_code == 200, path
            everything += response.get_data(as_text=True)
    assert "Dev phone" in html and "speechSynthesis" in everything
    assert "http://" not in everything.replace("http://127.0.0.1", "")
    assert "https://" not in everything


def test_ringing_typing_and_getting_a_callback_through_the_page(
    app, voice_runtime: Runtime
) -> None:
    client = app.test_client()
    view = _act(client, APPLICANT, "ring")
    assert "Bonjour" in view["call"]["heard"][0]["text"]
    assert view["call"]["waiting_for_keys"]
    for key in ("2", "2", "1", "#", "3"):
        view = _act(client, APPLICANT, "keys", key)
    assert view["call"]["status"] == "completed"
    assert any("callback request is recorded" in h["text"] for h in view["call"]["heard"])
    assert "CANCEL" in _state(client, APPLICANT)["messages"][0]


def test_agent_handset_rings_and_answers_through_the_page(app, voice_runtime: Runtime) -> None:
    client = app.test_client()
    _act(client, APPLICANT, "ring")
    _act(client, APPLICANT, "keys", "1")
    _act(client, APPLICANT, "keys", "3")  # wait for an agent
    agent = add_user(
        voice_runtime.sessions,
        "a@example.org",
        "long enough pw",
        site_code=SITE,
        phone="+33600000001",
    )
    voice_runtime.queue.set_presence(agent.id, "available")
    [offer] = voice_runtime.queue.dispatch(SITE)
    voice_runtime.bridge.accept(agent.id, offer.contact_id)
    assert _state(client, "+33600000001")["ringing"]
    view = _act(client, "+33600000001", "answer")
    assert view["call"]["conference"] == f"contact-{offer.contact_id}"
    applicant = _state(client, APPLICANT)
    assert applicant["call"]["conference"] == f"contact-{offer.contact_id}"
    # each handset in the conference says whom it hears
    assert applicant["call"]["hears"] == ["+33600000001"]
    assert _state(client, "+33600000001")["call"]["hears"] == [APPLICANT]
    _act(client, "+33600000001", "hangup")  # the agent's leg ends the conference
    applicant = _state(client, APPLICANT)
    assert applicant["call"]["status"] == "completed" and applicant["call"]["hears"] is None


def test_the_page_poll_delivers_conference_events_the_app_caused_through_rest(
    app, voice_runtime: Runtime
) -> None:
    from interphone.devtools.devphone.conference import OUTBOX

    client = app.test_client()
    voice_runtime.redis.rpush(
        OUTBOX, json.dumps({"url": "/voice/status", "form": {"CallSid": "CA" + "0" * 32}})
    )
    _state(client, APPLICANT)  # no call on this handset: it delivers them all the same
    assert voice_runtime.redis.llen(OUTBOX) == 0


def test_bad_number_or_action_gets_a_clear_400(app) -> None:
    client = app.test_client()
    api = "/dev/phone/api/act"
    assert client.post(api, json={"number": "12", "action": "ring"}).status_code == 400
    assert client.post(api, json={"number": APPLICANT, "action": "x"}).status_code == 400
    assert client.post(api, data="not json").status_code == 400
    response = client.post(api, json={"number": APPLICANT, "action": "keys", "keys": "1"})
    assert response.status_code == 409


def test_dev_phone_does_not_exist_in_production(voice_runtime: Runtime) -> None:
    """With a Twilio account configured, the dev phone is not plugged in even when the
    tooling offers it."""
    from interphone.web import create_app

    settings = voice_runtime.settings.with_overrides(dev_phone=False)
    rt = dev_runtime(settings)
    try:
        assert rt.twilio_stand_in is None
        client = create_app(runtime=rt).test_client()
        assert client.get("/dev/phone").status_code == 404
        response = client.post("/dev/phone/api/act", json={"number": APPLICANT, "action": "ring"})
        assert response.status_code == 404
    finally:
        rt.close()


def test_the_product_alone_never_plugs_the_dev_phone_in(voice_runtime: Runtime) -> None:
    """No Twilio account and no stand-in given (the product's own entry points): no dev
    phone page, and no Twilio client that would send the published dev credentials."""
    from interphone.web import create_app

    rt = Runtime(voice_runtime.settings)
    try:
        assert rt.settings.dev_phone and rt.twilio_stand_in is None
        client = create_app(runtime=rt).test_client()
        assert client.get("/dev/phone").status_code == 404
        with pytest.raises(ConfigError, match="no dev phone"):
            rt.twilio_client()
    finally:
        rt.close()


def test_the_plugged_in_dev_phone_serves_its_page_and_takes_the_rest_calls(
    voice_runtime: Runtime,
) -> None:
    from interphone.devtools.devphone.rest import DevPhoneHttpClient
    from interphone.web import create_app

    assert isinstance(voice_runtime.twilio_stand_in, DevPhonePlugin)
    assert isinstance(voice_runtime.twilio_client().http_client, DevPhoneHttpClient)
    assert create_app(runtime=voice_runtime).test_client().get("/dev/phone").status_code == 200


def test_the_plugged_in_dev_phone_is_reached_over_http_when_its_rest_url_is_set(
    voice_runtime: Runtime,
) -> None:
    """The fault topology's processes reach the dev phone's REST side over the network."""
    from interphone.devtools.devphone.rest_http import RemoteDevPhoneHttpClient

    settings = voice_runtime.settings.with_overrides(dev_phone_rest_url="http://127.0.0.1:9")
    rt = dev_runtime(settings)
    try:
        client = rt.twilio_client().http_client
        assert isinstance(client, RemoteDevPhoneHttpClient)
        assert client.base_url == "http://127.0.0.1:9"
    finally:
        rt.close()


def test_keypad_keys_wait_for_the_whole_entry_as_twilio_collects_them(
    app, voice_runtime: Runtime
) -> None:
    """The page's keypad sent every key as a whole entry: a file number typed key by key
    arrived as "6", and a person could never hear a case's status from the page."""
    from datetime import UTC, date, datetime

    from interphone.cases import CaseRecord, ImportReport, import_records

    record = CaseRecord("6310125148", date(1978, 3, 2), "under_review", datetime.now(UTC))
    import_records(
        voice_runtime.sessions, [record], voice_runtime.settings.birthdate_key, ImportReport()
    )
    client = app.test_client()
    _act(client, APPLICANT, "ring")
    for key in "21" + "6310125148":
        view = _act(client, APPLICANT, "key", key)
    assert view["call"]["typed"] == "6310125148"  # nothing sent yet: no # so far
    assert view["call"]["heard"][-1]["text"].startswith("Enter your file number")
    _act(client, APPLICANT, "key", "#")
    for key in "0203197":
        view = _act(client, APPLICANT, "key", key)
    assert view["call"]["typed"] == "0203197"
    view = _act(client, APPLICANT, "key", "8")  # the eighth digit: the entry is complete
    assert view["call"]["typed"] == ""
    assert any("under review" in h["text"] for h in view["call"]["heard"])
    for key in "22":  # a callback, to another number
        _act(client, APPLICANT, "key", key)
    for key in "0698765432":  # typed without a #: the Gather's timeout sends it
        view = _act(client, APPLICANT, "key", key)
    assert view["call"]["typed"] == "0698765432"
    view = _act(client, APPLICANT, "wait")
    assert view["call"]["typed"] == ""
    # the number was taken: the file of the status lookup is kept, the reason asked next
    heard = [h["text"] for h in view["call"]["heard"]]
    assert "the file number you entered earlier" in heard[-2]
    assert heard[-1].startswith("For a question about your file, press 1")


def test_every_view_carries_a_revision_so_a_stale_poll_answer_can_be_dropped(
    app, voice_runtime: Runtime
) -> None:
    client = app.test_client()
    before = _state(client, APPLICANT)
    rung = _act(client, APPLICANT, "ring")
    typed = _act(client, APPLICANT, "key", "2")
    polled = _state(client, APPLICANT)
    assert before["revision"] < rung["revision"] < typed["revision"] <= polled["revision"]
    assert _state(client, "+33699999999")["revision"] == 0  # another number, its own count
