"""Personal data: masked in logs and lists, birth dates never stored in clear."""

from __future__ import annotations

import logging
from datetime import date

import pytest

from interphone.privacy import (
    InvalidPhoneNumber,
    check_birth_date,
    hash_birth_date,
    mask_phone,
    to_e164,
)

from .conftest import SITE


def test_masked_number_keeps_country_code_and_last_two_digits() -> None:
    assert mask_phone("+33612345678") == "+33 •••••••78"
    assert mask_phone(None) == "—"


@pytest.mark.parametrize("raw", ["06 12 34 56 78", "+33 6 12 34 56 78", "0033612345678"])
def test_french_numbers_in_any_common_form_become_e164(raw: str) -> None:
    assert to_e164(raw) == "+33612345678"


@pytest.mark.parametrize("raw", ["", "abc", "061234", "+1 555", "9" * 33])
def test_invalid_numbers_are_refused(raw: str) -> None:
    with pytest.raises(InvalidPhoneNumber):
        to_e164(raw)


def test_birth_date_hash_is_keyed_and_salted_by_file() -> None:
    born = date(1990, 4, 12)
    a = hash_birth_date("key", "631", born)
    assert a != hash_birth_date("other key", "631", born)
    assert a != hash_birth_date("key", "632", born)
    assert "1990" not in a and "12041990" not in a
    assert check_birth_date("key", "6 3-1", born, a)
    assert not check_birth_date("key", "631", date(1990, 4, 13), a)


def test_queue_logs_never_carry_a_phone_number_in_clear(
    queue, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    queue.request_callback(SITE, phone="+33612345678", language="fr")
    assert "612345678" not in caplog.text
    assert "•78" in caplog.text


def test_no_route_takes_a_phone_number_in_its_url(app) -> None:
    """Numbers travel in form or JSON bodies only: URLs end up in access logs."""
    for rule in app.url_map.iter_rules():
        for argument in rule.arguments:
            assert argument in {
                "step",
                "contact_id",
                "voicemail_id",
                "agent_id",
                "answer",
                "filename",
                "file_number",
                "code",  # a site code
                "lang",  # a prompt catalogue's language code
                "key",  # a prompt's key in the catalogues
            }, (
                rule,
                argument,
            )
