"""Personal data: phone numbers (parsed, validated, masked) and birth dates (keyed hash)."""

from __future__ import annotations

import hashlib
import hmac
import re
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


# What Twilio puts in ``From`` when a caller withholds their number is a word
# ("anonymous", "restricted"...) or, from some carriers, the word spelt on a keypad as if
# it were a number: ANONYMOUS, RESTRICTED, BLOCKED, UNKNOWN, UNAVAILABLE, PRIVATE. None of
# those is anyone's number.
WITHHELD_PLACEHOLDERS = frozenset(
    {"+266696687", "+7378742833", "+2562533", "+8656696", "+86282452253", "+7748283"}
)
_E164 = re.compile(r"\+[1-9][0-9]{5,14}")
DEVICES = ("client:", "sip:", "sips:")  # the door intercom, a browser: not a number


def is_device(raw: str) -> bool:
    """True when ``raw`` (Twilio's ``From``) names a device, not a telephone number."""
    return (raw or "").strip().lower().startswith(DEVICES)


def is_withheld(raw: str) -> bool:
    """True when ``raw`` (Twilio's ``From``) names no caller: empty, a withheld word or
    its keypad placeholder, or anything that is not an E.164 number. A client or SIP
    identity (the door, a browser) is not withheld: it names its device."""
    if is_device(raw):
        return False
    text = (raw or "").strip()
    return text in WITHHELD_PLACEHOLDERS or not _E164.fullmatch(text)


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
