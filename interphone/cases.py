"""Case data: CSV import from the préfecture's systems, and synthetic demo cases."""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from . import events
from .db import transaction
from .models import CASE_STATUSES, Case
from .privacy import InvalidPhoneNumber, hash_birth_date, normalize_file_number, to_e164

REQUIRED = ("file_number", "birth_date", "status", "status_changed_at")
OPTIONAL = ("api_valid_until", "phone", "language")
MAX_ROWS = 500_000
# the dates a case may hold: nothing earlier is a case of this service, a status change
# is not in the future (a day of clock skew aside), and a permit ends within ten years
EARLIEST_BIRTH = date(1900, 1, 1)
EARLIEST_CHANGE = datetime(1970, 1, 1, tzinfo=UTC)
CLOCK_SKEW = timedelta(days=1)
EARLIEST_VALID_UNTIL = date(2000, 1, 1)
LONGEST_VALIDITY = timedelta(days=3660)


class CaseDataError(ValueError):
    """A field's value refused; the message names the field."""


class EmptyFile(CaseDataError):
    """An uploaded file with nothing in it."""


class NotUtf8(CaseDataError):
    """An uploaded file that is not UTF-8 text."""


class CaseConflict(Exception):
    """A case changed by others while this change was written, more than once."""


@dataclass(frozen=True)
class CaseRecord:
    file_number: str
    birth_date: date
    status: str
    status_changed_at: datetime
    api_valid_until: date | None = None
    phone: str | None = None
    language: str | None = None


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {
            "created": self.created,
            "updated": self.updated,
            "rejected": [{"line": line, "error": error} for line, error in self.rejected],
        }


def parse_record(row: dict[str, str], *, region: str = "FR") -> CaseRecord:
    """Validate one row; raises :class:`CaseDataError` naming the bad field."""

    def text(name: str) -> str:
        return (row.get(name) or "").strip()

    file_number = normalize_file_number(text("file_number"))
    # ASCII only: other scripts' digits (full-width ６３…) make a case no keypad reaches
    if not file_number or len(file_number) > 32 or not file_number.isascii():
        raise CaseDataError("file_number: 1 to 32 letters A-Z or digits 0-9")
    today, now = date.today(), datetime.now(UTC)
    birth_date = _date("birth_date", text("birth_date"))
    if not EARLIEST_BIRTH <= birth_date <= today:
        raise CaseDataError("birth_date: not a plausible date of birth")
    status = text("status")
    if status not in CASE_STATUSES:
        raise CaseDataError(f"status: {status!r} is not one of {', '.join(CASE_STATUSES)}")
    changed = _datetime("status_changed_at", text("status_changed_at"))
    if not EARLIEST_CHANGE <= changed <= now + CLOCK_SKEW:
        raise CaseDataError(
            f"status_changed_at: between {EARLIEST_CHANGE:%Y-%m-%d} and now, not {changed}"
        )
    api_raw = text("api_valid_until")
    api = _date("api_valid_until", api_raw) if api_raw else None
    if status == "api_issued" and api is None:
        raise CaseDataError("api_valid_until: required when status is api_issued")
    if api is not None and not EARLIEST_VALID_UNTIL <= api <= today + LONGEST_VALIDITY:
        raise CaseDataError(
            f"api_valid_until: between {EARLIEST_VALID_UNTIL} and ten years from now, not {api}"
        )
    phone_raw = text("phone")
    try:
        phone = to_e164(phone_raw, region) if phone_raw else None
    except InvalidPhoneNumber as exc:
        raise CaseDataError(f"phone: {exc}") from None
    language = text("language").lower() or None
    if language is not None and (len(language) > 8 or not language.isalpha()):
        raise CaseDataError("language: a short code such as fr, en, ar")
    return CaseRecord(file_number, birth_date, status, changed, api, phone, language)


def upsert_case(
    sessions: sessionmaker[Session],
    file_number: str,
    fields: dict[str, str],
    key: str,
    *,
    region: str = "FR",
) -> tuple[Case, bool]:
    """Create or update one case from the préfecture's systems (the JSON API).

    A new case needs every required field; an update may leave out the birth date (the
    stored hash is kept) and the status change time (now). Returns (case, created).
    When the case is created by a concurrent request meanwhile (the unique file number
    refuses the second row), the change is applied again as an update; a second refusal
    raises :class:`CaseConflict`.
    """
    for _attempt in range(2):
        try:
            return _upsert(sessions, normalize_file_number(file_number), fields, key, region)
        except IntegrityError:
            continue
    raise CaseConflict("the case changed meanwhile; send the change again")


def _upsert(
    sessions: sessionmaker[Session], number: str, fields: dict[str, str], key: str, region: str
) -> tuple[Case, bool]:
    with transaction(sessions) as s:
        case = s.scalar(select(Case).where(Case.file_number == number))
        row = {"file_number": number, **fields}
        if case is not None:
            row.setdefault("status_changed_at", datetime.now(UTC).isoformat())
            if not row.get("birth_date"):
                row["birth_date"] = "1900-01-01"  # placeholder: the stored hash is kept
        record = parse_record(row, region=region)
        created = case is None
        if case is None:
            case = Case(file_number=record.file_number)
            s.add(case)
        if created or fields.get("birth_date"):
            case.birth_date_hash = hash_birth_date(key, record.file_number, record.birth_date)
        case.status = record.status
        case.status_changed_at = record.status_changed_at
        case.api_valid_until = record.api_valid_until
        case.phone = record.phone
        case.language = record.language
    return case, created


def read_csv(stream: Iterable[str], *, region: str = "FR") -> tuple[list[CaseRecord], ImportReport]:
    """Parse a whole file; good rows are returned, bad ones reported by line number."""
    report = ImportReport()
    reader = csv.DictReader(stream)
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise CaseDataError(f"line 1: missing column(s) {', '.join(missing)}")
    reader.fieldnames = header
    records: dict[str, tuple[int, CaseRecord]] = {}
    for row in reader:
        line = reader.line_num
        if line > MAX_ROWS:
            raise CaseDataError(f"more than {MAX_ROWS} rows; split the file")
        if None in row:
            report.rejected.append((line, "too many fields"))
            continue
        try:
            record = parse_record(row, region=region)
        except CaseDataError as exc:
            report.rejected.append((line, str(exc)))
            continue
        records[record.file_number] = (line, record)  # a later line for one file wins
    return [r for _, r in records.values()], report


def read_upload(raw: bytes, *, region: str = "FR") -> tuple[list[CaseRecord], ImportReport]:
    """An uploaded file's rows (:func:`read_csv`): UTF-8, with or without the BOM of
    Excel's "CSV UTF-8". A file refused whole raises :class:`EmptyFile`,
    :class:`NotUtf8` or :class:`CaseDataError` (a malformed CSV's among them)."""
    if not raw.strip():
        raise EmptyFile("the file is empty")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise NotUtf8("the file is not UTF-8 text") from None
    try:
        return read_csv(io.StringIO(text, newline=""), region=region)
    except csv.Error as exc:
        raise CaseDataError(str(exc)) from exc


def import_records(
    sessions: sessionmaker[Session],
    records: list[CaseRecord],
    key: str,
    report: ImportReport,
    *,
    actor: str | None = None,
) -> ImportReport:
    """Create or update cases in one transaction: all good rows land, or none. With an
    ``actor`` (an admin's upload), audited as ``admin.cases_imported`` with the counts."""
    with transaction(sessions) as s:
        existing = {
            c.file_number: c
            for c in s.scalars(
                select(Case).where(Case.file_number.in_([r.file_number for r in records]))
            )
        }
        for r in records:
            case = existing.get(r.file_number)
            if case is None:
                case = Case(file_number=r.file_number)
                s.add(case)
                report.created += 1
            else:
                report.updated += 1
            case.birth_date_hash = hash_birth_date(key, r.file_number, r.birth_date)
            case.status = r.status
            case.status_changed_at = r.status_changed_at
            case.api_valid_until = r.api_valid_until
            case.phone = r.phone
            case.language = r.language
        if actor is not None:
            counts = {
                "created": report.created,
                "updated": report.updated,
                "rejected": len(report.rejected),
            }
            events.record(s, "admin.cases_imported", actor=actor, data=counts)
    return report


def import_csv(
    sessions: sessionmaker[Session], text: str, key: str, *, region: str = "FR"
) -> ImportReport:
    records, report = read_csv(io.StringIO(text), region=region)
    return import_records(sessions, records, key, report)


def demo_records(
    count: int, *, seed: int | None = None, today: date | None = None
) -> list[CaseRecord]:
    """Synthetic cases with every status; file numbers are 10 digits (keypad friendly)."""
    rng = random.Random(seed)
    today = today or date.today()
    records = []
    used: set[str] = set()
    for i in range(count):
        while True:
            file_number = f"63{rng.randrange(10**8):08d}"
            if file_number not in used:
                used.add(file_number)
                break
        status = CASE_STATUSES[i % len(CASE_STATUSES)]
        birth = date(1960, 1, 1) + timedelta(days=rng.randrange(365 * 45))
        changed = datetime.combine(
            today - timedelta(days=rng.randrange(1, 200)), datetime.min.time(), UTC
        )
        api = today + timedelta(days=rng.randrange(-5, 90)) if status == "api_issued" else None
        language = rng.choice(["fr", "en", "ar", "es"])
        records.append(CaseRecord(file_number, birth, status, changed, api, None, language))
    return records


def _date(name: str, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CaseDataError(f"{name}: {value!r} is not a date (YYYY-MM-DD)") from None


def _datetime(name: str, value: str) -> datetime:
    """An ISO 8601 time in UTC (a date alone is its midnight UTC). A time at the edge of
    the calendar has no UTC equivalent (``0001-01-01T00:00:00+14:00``): refused too."""
    try:
        parsed = datetime.fromisoformat(value)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise CaseDataError(f"{name}: {value!r} is not an ISO 8601 date or time") from None
