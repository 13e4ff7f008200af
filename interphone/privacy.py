"""Personal data: phone numbers (parsed, validated, masked) and birth dates (keyed hash)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import date

import phonenumbers


class InvalidPhoneNumber(ValueError):
    pass


def to_e164(raw: str, region: str = "FR") -> str:
    """Parse a number as typed or spoken (national or international) into E.164."""
    text = (raw or "").strip()
    if not text or len(text) > 32:
        raise InvalidPhoneNumber("a phone number has 6 to 15 digits")
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise InvalidPhoneNumber("not a phone number") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhoneNumber("this phone number does not exist")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def mask_phone(e164: str | None) -> str:
    """'+33612345678' -> '+33 •••••••78': enough for an agent to confirm, not to dial."""
    if not e164:
        return "—"
    digits = e164.lstrip("+")
    try:
        country = str(phonenumbers.parse(e164).country_code)
    except phonenumbers.NumberParseException:
        country = ""
    rest = digits[len(country) :] if country and digits.startswith(country) else digits
    if len(rest) <= 2:
        return f"+{country} ••"
    return f"+{country} " + "•" * (len(rest) - 2) + rest[-2:]


def last_digits(e164: str, count: int = 4) -> str:
    return e164[-count:]


def hash_birth_date(key: str, file_number: str, birth_date: date) -> str:
    """Keyed hash of a birth date, salted by the file number (identical dates differ)."""
    message = f"{normalize_file_number(file_number)}|{birth_date.isoformat()}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def check_birth_date(key: str, file_number: str, birth_date: date, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_birth_date(key, file_number, birth_date), stored_hash)


def normalize_file_number(raw: str) -> str:
    """File numbers are compared without spaces, dashes or case."""
    return "".join(ch for ch in raw.upper() if ch.isalnum())
