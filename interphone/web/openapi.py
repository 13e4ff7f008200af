"""The OpenAPI description of the case API (``GET /api/openapi.json``)."""

from __future__ import annotations

from typing import Any

from ..models import CASE_STATUSES


def document() -> dict[str, Any]:
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

    return {
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
                            "application/json": {"schema": {"$ref": "#/components/schemas/CaseIn"}}
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
