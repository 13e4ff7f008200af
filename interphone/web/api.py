"""JSON API for the préfecture's systems: push case status changes (bearer token)."""

from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, current_app, jsonify, request

from ..cases import CaseConflict, CaseDataError, upsert_case
from ..models import Case
from .context import runtime_of
from .openapi import document

bp = Blueprint("api", __name__, url_prefix="/api")
FIELDS = ("birth_date", "status", "status_changed_at", "api_valid_until", "phone", "language")
MAX_BODY = 16 * 1024


def _error(status: int, error_id: str, message: str, details: dict[str, Any] | None = None) -> Any:
    return jsonify(error_id=error_id, message=message, details=details or {}), status


def _authorized() -> bool:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return False
    given = header[7:].strip().encode()
    tokens = runtime_of(current_app).settings.api_tokens
    return any(hmac.compare_digest(given, token.encode()) for token in tokens)


def _as_json(case: Case) -> dict[str, Any]:
    """A case as the API shows it: never the birth date (only its hash is stored)."""
    return {
        "file_number": case.file_number,
        "status": case.status,
        "status_changed_at": case.status_changed_at.isoformat(),
        "api_valid_until": case.api_valid_until.isoformat() if case.api_valid_until else None,
        "language": case.language,
        "has_phone": bool(case.phone),
    }


@bp.put("/cases/<file_number>")
def put_case(file_number: str) -> Any:
    """400: not a JSON object of string fields; 422: a field's value refused (named in
    the message); 409: the case changed under this request too often to apply it."""
    if not _authorized():
        return _error(401, "unauthorized", "a valid bearer token is required")
    fields = _fields(_json_body(), file_number)
    rt = runtime_of(current_app)
    case, created = upsert_case(
        rt.sessions,
        file_number,
        fields,
        rt.settings.birthdate_key,
        region=rt.settings.default_region,
    )
    return jsonify(_as_json(case)), 201 if created else 200


class _Refused(Exception):
    """A request refused: (status, error_id, message[, details])."""


@bp.errorhandler(_Refused)
def refused(exc: _Refused) -> Any:
    return _error(*exc.args)


@bp.errorhandler(CaseDataError)
def invalid_value(exc: CaseDataError) -> Any:
    return _error(422, "invalid-value", str(exc))


@bp.errorhandler(CaseConflict)
def conflict(exc: CaseConflict) -> Any:
    return _error(409, "conflict", str(exc))


def _fields(body: dict[str, Any], file_number: str) -> dict[str, str]:
    """The fields a case's body sets (a null sets nothing); else :class:`_Refused`."""
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise _Refused(400, "invalid-input", "unknown fields", {"fields": unknown})
    if not all(value is None or isinstance(value, str) for value in body.values()):
        raise _Refused(400, "invalid-input", "every field is a string (or null)")
    if len(file_number) > 40:
        raise _Refused(400, "invalid-input", "file_number is at most 32 letters or digits")
    return {k: v for k, v in body.items() if v is not None}


def _json_body() -> dict[str, Any]:
    """The body, a JSON object read within :data:`MAX_BODY` bytes and the app's JSON
    nesting limit (:mod:`interphone.web.jsonlimit`); else :class:`_Refused`."""
    too_large = (413, "too-large", f"the body is limited to {MAX_BODY} bytes")
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise _Refused(*too_large)
    data = request.get_data(cache=True)  # a chunked body has no Content-Length
    if len(data) > MAX_BODY:
        raise _Refused(*too_large)
    not_an_object = (400, "invalid-json", "the body must be a JSON object")
    if not request.is_json:
        raise _Refused(*not_an_object)
    try:
        body = current_app.json.loads(data)
    except ValueError as exc:
        raise _Refused(400, "invalid-json", f"the body must be a JSON object ({exc})") from None
    if not isinstance(body, dict):
        raise _Refused(*not_an_object)
    return body


@bp.get("/openapi.json")
def openapi() -> Any:
    return jsonify(document())
