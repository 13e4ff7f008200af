"""No personal data in logs or URLs: calls that carry a phone number (a callback to
another number) and a birth date (a status lookup) go through the app with every log
record captured at DEBUG, every URL requested (what an access log shows), every URL in
the TwiML, every redirect and every live-feed message recorded; none may hold the
number (E.164 or national) or the birth date."""

from __future__ import annotations

import io
import logging
import re
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import select

from interphone.cases import CaseRecord, ImportReport, import_records
from interphone.devtools.devphone.phone import DevPhone
from interphone.models import Contact, Site
from interphone.observability import configure_logging
from interphone.queue.notifier import channel
from interphone.runtime import Runtime

from .conftest import SITE

FILE, BORN = "6300000077", date(1990, 4, 12)
CALLER = "+33612345678"
CALLBACK_E164, CALLBACK_NATIONAL = "+33698765432", "0698765432"
SECRETS = (
    CALLER,
    CALLER[1:],  # 33612345678
    "0612345678",
    CALLBACK_E164,
    CALLBACK_E164[1:],
    CALLBACK_NATIONAL,
    "06 98 76 54 32",
    "12041990",  # the birth date as typed (DDMMYYYY)
    "1990-04-12",
)


class Recorder:
    """The dev phone's transport, recording what an access log and a proxy would see."""

    def __init__(self, app: Any) -> None:
        self.client = app.test_client()
        self.urls: list[str] = []
        self.bodies: list[str] = []

    def __call__(self, path: str, form: dict[str, str], headers: dict[str, str]) -> Any:
        response = self.client.post(path, data=form, headers=headers)
        self.urls.append(path)
        if response.location:
            self.urls.append(response.location)
        body = response.get_data(as_text=True)
        response.close()  # as a server does once it sent it (the app's after-answer work)
        self.bodies.append(body)
        return response.status_code, body

    def twiml_urls(self) -> list[str]:
        urls = []
        for body in self.bodies:
            if not body.startswith("<?xml"):
                continue
            for element in ET.fromstring(body).iter():
                urls += [v for k, v in element.attrib.items() if k in ("action", "url")]
                if element.tag in ("Redirect", "Play", "Stream") and element.text:
                    urls.append(element.text)
        return urls


def _leaks(texts: list[str]) -> list[tuple[str, str]]:
    found = []
    for text in texts:
        flat = re.sub(r"%20|\+", " ", text)
        for secret in SECRETS:
            if secret in text or secret in flat:
                found.append((secret, text[:200]))
    return found


@pytest.fixture
def recorded(app: Any, voice_runtime: Runtime) -> tuple[DevPhone, Recorder]:
    recorder = Recorder(app)
    settings = voice_runtime.settings
    phone = DevPhone(
        recorder,
        public_base_url=settings.public_base_url,
        auth_token=settings.twilio_auth_token or "",
        account_sid=settings.twilio_account_sid or "",
        connection=voice_runtime.redis,
    )
    import_records(
        voice_runtime.sessions,
        [CaseRecord(FILE, BORN, "under_review", datetime(2026, 10, 2, tzinfo=UTC))],
        voice_runtime.settings.birthdate_key,
        ImportReport(),
    )
    return phone, recorder


def test_no_phone_number_or_birth_date_in_logs_urls_or_live_feed(
    app: Any,
    voice_runtime: Runtime,
    recorded: tuple[DevPhone, Recorder],
    caplog: pytest.LogCaptureFixture,
) -> None:
    phone, recorder = recorded
    caplog.set_level(logging.DEBUG)
    feed = voice_runtime.redis.pubsub(ignore_subscribe_messages=True)
    with voice_runtime.sessions() as s:
        site_id = s.scalar(select(Site.id).where(Site.code == SITE))
    feed.subscribe(channel(site_id))

    status = phone.call(CALLER).press("2").press("1").press(FILE + "#").press("12041990")
    assert "under review" in status.transcript()
    status.press("0").hang_up()
    callback = phone.call(CALLER).press("2").press("2")  # English, be called back
    callback.press("2").press(CALLBACK_NATIONAL + "#").press("#").press("1")
    assert "call you back on the number you gave" in callback.transcript()  # a typed number
    callback.hang_up()
    voice_runtime.journal.drain()

    messages = []
    for _ in range(40):  # the subscription's own reply comes first: poll a little
        message = feed.get_message(timeout=0.05)
        if message is not None:
            messages.append(str(message["data"]))
    feed.close()
    assert messages, "the live feed said nothing: the check would be empty"

    logs = [record.getMessage() for record in caplog.records]
    logs += [str(record.__dict__) for record in caplog.records]
    assert len(recorder.urls) >= 10 and recorder.twiml_urls()
    assert _leaks(logs) == []
    assert _leaks(recorder.urls) == []
    assert _leaks(recorder.twiml_urls()) == []
    assert _leaks(messages) == []
    assert _birth_date_in_redis(voice_runtime) == []  # not even in the call's state
    # and the callback really went to the other number (the check above is not vacuous)
    with voice_runtime.sessions() as s:
        assert s.scalar(select(Contact.phone)) == CALLBACK_E164


def test_log_handler_masks_a_number_that_slipped_into_a_message() -> None:
    """The safety net: even a careless log call ends up masked in the output."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    out = io.StringIO()
    try:
        configure_logging("json", "DEBUG", stream=out)
        logging.getLogger("interphone.careless").warning(
            "callback for %s born %s, national %s", CALLER, "12041990", "06 98 76 54 32"
        )
        try:
            raise ValueError(f"bad number {CALLBACK_E164}")
        except ValueError:
            logging.getLogger("interphone.careless").exception("failed")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    text = out.getvalue()
    assert "78" in text and "ValueError" in text
    assert _leaks([text]) == []


def _birth_date_in_redis(rt: Runtime) -> list[str]:
    found = []
    for raw in rt.redis.keys("*"):
        key = raw.decode()
        kind = rt.redis.type(key).decode()
        if kind == "string":
            values = [rt.redis.get(key)]
        elif kind == "hash":
            values = list(rt.redis.hgetall(key).values())
        elif kind == "list":
            values = rt.redis.lrange(key, 0, -1)
        elif kind in ("set", "zset"):
            values = list(rt.redis.smembers(key)) if kind == "set" else rt.redis.zrange(key, 0, -1)
        else:
            values = []
        text = key + " ".join(v.decode("utf-8", "replace") for v in values if v is not None)
        if "12041990" in text or "1990-04-12" in text:
            found.append(key)
    return found
