"""Twilio request signatures, checked on every Twilio-facing route.

The signed URL is ``PUBLIC_BASE_URL`` + the raw path and query as the client sent them:
``request.url`` would use the internal host behind a proxy and un-escape the query.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

from flask import abort, current_app, g, request
from twilio.request_validator import (
    HMAC_SHA1,
    HMAC_SHA256,
    RequestValidator,
    get_signature_algorithm,
)

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


@functools.lru_cache(maxsize=8)
def _validator(token: str) -> RequestValidator:
    return RequestValidator(token)


def valid_signature(token: str, url: str, params: Any, signature: str, algorithm: str) -> bool:
    """twilio's check (:meth:`RequestValidator.validate`), cheapest case first.

    ``validate`` signs the URL twice, with and without its port, since Twilio's signing
    is inconsistent there; the URL as configured is the usual match, so it is tried
    first with one HMAC, and only a miss goes through the full check."""
    validator = _validator(token)
    if algorithm.upper() in (HMAC_SHA1, HMAC_SHA256):
        expected = validator.compute_signature(url, params, algorithm)
        if hmac.compare_digest(expected.encode(), signature.encode()):
            return True
    return bool(validator.validate(url, params, signature, algorithm=algorithm))


def request_is_signed() -> bool:
    """Whether the current request carries a valid ``X-Twilio-Signature``; checked once
    per request (the rate limiter asks before the view does)."""
    known: bool | None = g.get("twilio_signed")
    if known is None:
        signature = request.headers.get("X-Twilio-Signature", "")
        algorithm = get_signature_algorithm(
            request.headers.get("X-Twilio-Webhooks-Signature-Settings", "")
        )
        url = signed_url(current_app.config["PUBLIC_BASE_URL"])
        params = request.form if request.method == "POST" else {}
        token = current_app.config["TWILIO_AUTH_TOKEN"]
        known = bool(signature) and valid_signature(token, url, params, signature, algorithm)
        g.twilio_signed = known
    return known


def twilio_signed(view: F) -> F:
    """403 unless the request carries a valid ``X-Twilio-Signature``."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not request_is_signed():
            # an address forging signatures is cut off (web.ratelimit), never Twilio
            forgery_limit = current_app.extensions.get("twilio_forgery_limit")
            if forgery_limit is not None and forgery_limit():
                abort(429, description="too many requests with an invalid signature")
            abort(403, description="invalid Twilio signature")
        # limits per calling number are counted by the view, once signed: a forged
        # request cannot use up a real caller's allowance (interphone.voice.limits)
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
