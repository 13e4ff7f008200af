"""Structured logs: one JSON object per line with the call, contact, request and route
they concern; numbers masked even when a careless message carries one."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from flask import request_finished

from interphone.config import ConfigError, load_settings
from interphone.devtools.devphone.phone import DevPhone
from interphone.observability import configure_logging, log_context, mask_digits


@pytest.fixture
def log_output() -> Iterator[Any]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    gunicorn_access = logging.getLogger("gunicorn.access")
    saved_access = gunicorn_access.handlers[:]
    out = io.StringIO()

    def install(fmt: str) -> io.StringIO:
        configure_logging(fmt, "DEBUG", stream=out)
        return out

    yield install
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    gunicorn_access.handlers[:] = saved_access
    gunicorn_access.propagate = True


def _lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("+33612345678", "+•••••••••78"),
        ("call 0612345678 now", "call ••••••••78 now"),
        ("06 12 34 56 78", "••••••••78"),
        ("06.12.34.56.78", "••••••••78"),
        ("born 12041990", "born ••••••90"),
    ],
)
def test_numbers_and_birth_dates_are_masked_but_their_last_two_digits(
    raw: str, masked: str
) -> None:
    assert mask_digits(raw) == masked


@pytest.mark.parametrize(
    "kept",
    [
        "CA" + "1234567890" * 3 + "ab",  # a CallSid
        "contact #42 at 2026-11-27T10:47:02",  # ids, ISO dates and times
        "request 4f3a1234567890bc",
        "took 12.5 ms, 300 requests",
        "from 127.0.0.1 and 192.168.10.254",
    ],
)
def test_identifiers_dates_and_small_numbers_are_not_masked(kept: str) -> None:
    assert mask_digits(kept) == kept


def test_json_lines_carry_time_level_logger_message_and_context(log_output) -> None:
    out = log_output("json")
    with log_context(call_sid="CA" + "a" * 32, contact_id=7):
        logging.getLogger("interphone.test").info("offer made to agent %d", 3)
    logging.getLogger("interphone.test").warning("outside")
    first, second = _lines(out)
    assert first["level"] == "INFO" and first["logger"] == "interphone.test"
    assert first["message"] == "offer made to agent 3" and first["time"].startswith("20")
    assert first["call_sid"] == "CA" + "a" * 32 and first["contact_id"] == 7
    assert second["call_sid"] is None and second["contact_id"] is None  # context left


def test_a_webhook_logs_with_its_call_request_id_and_route(
    app, devphone: DevPhone, log_output
) -> None:
    out = log_output("json")

    def log_during_request(sender: Any, response: Any, **extra: Any) -> None:
        logging.getLogger("interphone.test").info("answered %s", response.status_code)

    call = devphone.call("+33612345678")
    with request_finished.connected_to(log_during_request, app):
        call.press("2")
    line = next(r for r in _lines(out) if r["logger"] == "interphone.test")
    assert line["call_sid"] == call.sid
    assert line["route"] == "/voice/step/<step>" and len(line["request_id"]) == 16
    assert line["message"] == "answered 200"


def test_text_format_has_the_context_too(log_output) -> None:
    out = log_output("text")
    with log_context(contact_id=12):
        logging.getLogger("interphone.test").info("hello +33612345678")
    text = out.getvalue()
    assert "contact=12" in text and "hello +•••••••••78" in text


def test_gunicorn_access_lines_are_masked_and_json_too(log_output) -> None:
    access = logging.getLogger("gunicorn.access")
    access.addHandler(logging.StreamHandler(io.StringIO()))
    access.propagate = False  # as gunicorn sets it up
    out = log_output("json")
    stream = access.handlers[-1].stream  # gunicorn's own handler, now with our formatter
    access.info('127.0.0.1 "GET /x?n=0612345678 HTTP/1.1" 200')
    record = json.loads(stream.getvalue())
    assert record["message"] == '127.0.0.1 "GET /x?n=••••••••78 HTTP/1.1" 200'
    assert out.getvalue() == ""  # gunicorn's loggers do not propagate


def test_log_format_setting_is_strict() -> None:
    assert load_settings({}).log_format == "text"
    assert load_settings({"LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        load_settings({"LOG_FORMAT": "xml"})


def test_access_log_keeps_its_status_and_size_and_masks_the_request_line() -> None:
    """The masker saw "200 13791" (a status and a size) as a phone number: every access
    log line lost its status code."""
    from gunicorn.glogging import SafeAtoms

    from interphone.observability import PiiFilter

    atoms = SafeAtoms(
        {
            "h": "127.0.0.1",
            "r": "GET /agent?phone=0612345678 HTTP/1.1",
            "s": "200",
            "b": "137910",
            "{user-agent}i": "curl/7.88.1",
        }
    )
    record = logging.LogRecord(
        "gunicorn.access", logging.INFO, __file__, 1, '%(h)s "%(r)s" %(s)s %(b)s', (atoms,), None
    )
    assert PiiFilter().filter(record)
    line = record.getMessage()
    assert line == '127.0.0.1 "GET /agent?phone=••••••••78 HTTP/1.1" 200 137910'


def test_access_log_header_atoms_in_the_format_are_masked_and_others_left_unread() -> None:
    """Only what the format prints is masked (gunicorn passes every header and environ
    entry as an atom, too many to mask on every request); a header atom written in
    capitals in the format is found, and masked, under gunicorn's lowercased key."""
    from gunicorn.glogging import SafeAtoms

    from interphone.observability import PiiFilter

    atoms = SafeAtoms(
        {
            "r": "GET /ping HTTP/1.1",
            "s": "200",
            "{x-caller}i": "+33612345678",
            "{x-other}i": "+33698765432",
        }
    )
    record = logging.LogRecord(
        "gunicorn.access",
        logging.INFO,
        __file__,
        1,
        '"%(r)s" %(s)s %({X-Caller}i)s',
        (atoms,),
        None,
    )
    assert PiiFilter().filter(record)
    assert record.getMessage() == '"GET /ping HTTP/1.1" 200 +•••••••••78'
    assert dict.__getitem__(atoms, "{x-other}i") == "+33698765432"  # not printed: not read
