"""JSON API for the préfecture's systems: push case status changes (bearer token)."""

from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, current_app, jsonify, request

from ..cases import CaseConflict, CaseDataError, upsert_case
from ..models import CASE_STATUSES, Case
from . import runtime_of

bp = Blueprint("api", __name__, url_prefix="/api")
FIELDS = ("birth_date", "status", "status_changed_at", "api_valid_until", "phone", "language")
MAX_BODY = 16 * 1024


def _error(status: int, error_id: str, message: str, **details: Any) -> Any:
    return jsonify(error_id=error_id, message=message, details=details), status


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
    try:
        body = _json_body()
    except _Refused as refused:
        return _error(*refused.args)
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        return _error(400, "invalid-input", "unknown fields", fields=unknown)
    if not all(value is None or isinstance(value, str) for value in body.values()):
        return _error(400, "invalid-input", "every field is a string (or null)")
    fields = {k: v for k, v in body.items() if v is not None}
    if len(file_number) > 40:
        return _error(400, "invalid-input", "file_number is at most 32 letters or digits")
    rt = runtime_of(current_app)
    try:
        case, created = upsert_case(
            rt.sessions,
            file_number,
            fields,
            rt.settings.birthdate_key,
            region=rt.settings.default_region,
        )
    except CaseDataError as exc:
        return _error(422, "invalid-value", str(exc))
    except CaseConflict as exc:
        return _error(409, "conflict", str(exc))
    return jsonify(_as_json(case)), 201 if created else 200


class _Refused(Exception):
    """A body refused: (status, error_id, message)."""


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
    case_in = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "birth_date": {
                "type": "string",
                "format": "date",
                "description": "required when the case is new; from 1900 to today",
            },
            "status": {"type": "string", "enum": list(CASE_STATUSES)},
            "status_changed_at": {
                "type": "string",
                "format": "date-time",
                "description": "from 1970 to now (a day of clock skew allowed); default now",
            },
            "api_valid_until": {
                "type": "string",
                "format": "date",
                "description": "required with status api_issued; from 2000 to ten years ahead",
            },
            "phone": {"type": "string"},
            "language": {"type": "string", "maxLength": 8},
        },
        "required": ["status"],
    }
    case_out = {
        "type": "object",
        "properties": {
            "file_number": {"type": "string"},
            "status": {"type": "string", "enum": list(CASE_STATUSES)},
            "status_changed_at": {"type": "string"},
            "api_valid_until": {"type": ["string", "null"]},
            "language": {"type": ["string", "null"]},
            "has_phone": {"type": "boolean"},
        },
        "required": ["file_number", "status", "status_changed_at"],
    }
    error = {
        "type": "object",
        "properties": {
            "error_id": {"type": "string"},
            "message": {"type": "string"},
            "details": {"type": "object"},
        },
        "required": ["error_id", "message"],
    }

    def reply(description: str, schema: str) -> dict[str, Any]:
        return {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": schema}}},
        }

    return jsonify(
        {
            "openapi": "3.1.0",
            "info": {
                "title": "Interphone case API",
                "version": "1.0.0",
                "description": "Status changes pushed by the préfecture's case systems.",
            },
            "components": {
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                "schemas": {"CaseIn": case_in, "Case": case_out, "Error": error},
            },
            "security": [{"bearer": []}],
            "paths": {
                "/api/cases/{file_number}": {
                    "put": {
                        "summary": "Create or update a case",
                        "parameters": [
                            {
                                "name": "file_number",
                                "in": "path",
                                "required": True,
                                "schema": {"type": "string", "maxLength": 32},
                            }
                        ],
                        "requestBody": {
                            "required": True,
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/CaseIn"}
                                }
                            },
                        },
                        "responses": {
                            "200": reply("updated", "#/components/schemas/Case"),
                            "201": reply("created", "#/components/schemas/Case"),
                            "400": reply("not an object of strings", "#/components/schemas/Error"),
                            "401": reply("missing or wrong token", "#/components/schemas/Error"),
                            "409": reply("changed meanwhile, retry", "#/components/schemas/Error"),
                            "413": reply("body too large", "#/components/schemas/Error"),
                            "422": reply("a value refused", "#/components/schemas/Error"),
                        },
                    }
                }
            },
        }
    )
