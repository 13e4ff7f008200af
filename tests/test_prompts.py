"""Prompt catalogues: complete in every language, placeholders the same everywhere."""

from __future__ import annotations

from datetime import date

import pytest

from interphone.prompts import PromptError, available, catalogue, check_catalogues


def test_every_catalogue_has_every_key_with_the_same_placeholders() -> None:
    assert check_catalogues() == []


def test_the_four_default_languages_are_there_french_first() -> None:
    assert available()[0] == "fr"
    assert {"fr", "en", "ar", "es"} <= set(available())


@pytest.mark.parametrize("code", ["fr", "en", "ar", "es"])
def test_every_status_code_has_a_sentence_in_every_language(code: str) -> None:
    from interphone.models import CASE_STATUSES

    cat = catalogue(code)
    for status in CASE_STATUSES:
        text = cat.text(f"status.{status}", date="1 mai 2026", api_date="2 juin 2026")
        assert text.strip()


def test_missing_placeholder_value_is_refused() -> None:
    with pytest.raises(PromptError, match="position"):
        catalogue("fr").text("queue_position", eta="")


def test_dates_are_spoken_in_the_callers_language() -> None:
    day = date(2027, 3, 31)
    assert catalogue("fr").spoken_date(day) == "31 mars 2027"
    assert catalogue("en").spoken_date(day) == "March 31, 2027"
    assert catalogue("es").spoken_date(day) == "31 de marzo de 2027"
    assert "مارس" in catalogue("ar").spoken_date(day)
