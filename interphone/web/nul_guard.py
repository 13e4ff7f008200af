"""Refuses NUL characters (U+0000), which PostgreSQL's text columns cannot hold, in
what the screens and the API accept.

No person types one, so a request carrying one in its path, query, form or JSON body
is refused with a 400 before any view runs, instead of failing in the database with a
500 (SQLite stores the character, PostgreSQL refuses it; tests/test_hostile_requests.py
sends them).

Twilio's webhooks are not refused: an answer other than TwiML makes Twilio play an
error to the caller, and the signature must be checked first. Their fields lose the
character as they are read (:func:`interphone.voice.http._field`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import Flask, abort, request

NUL = "\x00"
WEBHOOK_BLUEPRINTS = frozenset({"voice"})


def init_app(app: Flask) -> None:
    app.before_request(_refuse_nul)


def _refuse_nul() -> None:
    if request.blueprint in WEBHOOK_BLUEPRINTS or request.routing_exception is not None:
        return  # a webhook, or no such route (its 404 or 405 is the answer)
    if _holds_nul(request.path) or _holds_nul_in(request.args.items(multi=True)):
        abort(400, description="NUL characters are not accepted")
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    if request.is_json:
        if _holds_nul(request.get_json(silent=True)):
            abort(400, description="NUL characters are not accepted")
    elif _holds_nul_in(request.form.items(multi=True)):
        abort(400, description="NUL characters are not accepted")


def _holds_nul_in(pairs: Iterable[tuple[str, str]]) -> bool:
    return any(NUL in key or NUL in value for key, value in pairs)


def _holds_nul(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` (text, or JSON: lists and objects) holds a NUL character."""
    if isinstance(value, str):
        return NUL in value
    if depth > 32:  # deeper than any body the API takes: its views refuse it anyway
        return False
    if isinstance(value, dict):
        return any(_holds_nul(k, depth + 1) or _holds_nul(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item, depth + 1) for item in value)
    return False
