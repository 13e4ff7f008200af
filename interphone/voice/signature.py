"""Twilio request signatures, checked on every Twilio-facing route.

The signed URL is ``PUBLIC_BASE_URL`` + the raw path and query as the client sent them:
``request.url`` would use the internal host behind a proxy and un-escape the query.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

from flask import abort, current_app, request
from twilio.request_validator import RequestValidator, get_signature_algorithm

F = TypeVar("F", bound=Callable[..., Any])


def raw_path_and_query() -> str:
    environ = request.environ
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        return str(raw)
    path = quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""), safe="/%:@")
    query = environ.get("QUERY_STRING", "")
    return path + (f"?{query}" if query else "")


def signed_url(base_url: str) -> str:
    return base_url.rstrip("/") + raw_path_and_query()


def twilio_signed(view: F) -> F:
    """403 unless the request carries a valid ``X-Twilio-Signature``."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = current_app.config["TWILIO_AUTH_TOKEN"]
        signature = request.headers.get("X-Twilio-Signature", "")
        algorithm = get_signature_algorithm(
            request.headers.get("X-Twilio-Webhooks-Signature-Settings", "")
        )
        url = signed_url(current_app.config["PUBLIC_BASE_URL"])
        params = request.form if request.method == "POST" else {}
        if not signature or not RequestValidator(token).validate(
            url, params, signature, algorithm=algorithm
        ):
            abort(403, description="invalid Twilio signature")
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
