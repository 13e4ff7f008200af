"""``/dev/phone``: ring the line, press keys, hear the prompts, answer callbacks.

Development only (plugged in by the development tooling when no Twilio credentials are
configured). The page talks to a small JSON API; calls live in Redis between requests
(:mod:`.calls`), and every webhook goes through the app's full request stack, signed as
Twilio signs it.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, render_template, request
from sqlalchemy import select

from interphone.models import Site

from .calls import (
    call_lock,
    current_phone,
    current_runtime,
    load_call,
    page_view,
    parse_number,
    save_call,
)
from .phone import TwimlError

bp = Blueprint(
    "devphone",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/dev/phone/static",
)


@bp.get("/dev/phone")
def page() -> str:
    return render_template("devphone.html", line=_line_number(), door=DEMO_DOOR)


DEMO_DOOR = "client:borne-1"  # the demo site's door (a browser kiosk identity)


def _line_number() -> str:
    rt = current_runtime()
    with rt.sessions() as s:
        site = s.scalar(select(Site).where(Site.code == rt.settings.default_site))
    return (site.phone_numbers or ["+33473000000"])[0] if site else "+33473000000"


def _request_number() -> str:
    """Phone numbers travel in the JSON body, never in URLs (they would reach logs)."""
    return parse_number(str((request.get_json(silent=True) or {}).get("number", "")))


@bp.post("/dev/phone/api/state")
def state() -> Response:
    number = _request_number()
    if not number:
        return jsonify(error="not a phone number"), 400  # type: ignore[return-value]
    phone = current_phone()
    with call_lock(number):
        call = load_call(phone, number)
        if call is not None and call.status == "in-progress":
            call.poll()
            save_call(call)
        else:  # what the app's REST calls changed in a conference, posted at the next poll
            phone.deliver_conference_events()
        return jsonify(page_view(phone, number, call))


@bp.post("/dev/phone/api/act")
def act() -> Response:
    number = _request_number()
    action = (request.get_json(silent=True) or {}).get("action", "")
    keys = str((request.get_json(silent=True) or {}).get("keys", ""))[:32]
    text = str((request.get_json(silent=True) or {}).get("text", ""))[:200]
    known = ("ring", "key", "keys", "say", "wait", "hangup", "answer", "refuse")
    if not number or action not in known:
        return jsonify(error="unknown number or action"), 400  # type: ignore[return-value]
    phone = current_phone()
    with call_lock(number):
        call = load_call(phone, number)
        try:
            if action == "ring":
                call = phone.call(number, _line_number())
            elif action == "answer":
                call = phone.answer(number)
            elif action == "refuse":
                phone.refuse(number, "no-answer")
            elif call is None:
                return jsonify(error="no call in progress"), 409  # type: ignore[return-value]
            elif action == "key":  # the keypad: one key, kept until the entry is complete
                call.key(keys[:1])
            elif action == "keys":
                call.press(keys)
            elif action == "say":
                call.speak(text)
            elif action == "wait":
                call.end_stream() if call.listening == "stream" else call.wait()
            else:
                call.hang_up()
        except TwimlError as exc:
            return jsonify(error=str(exc)), 409  # type: ignore[return-value]
        if call is not None:
            save_call(call)
        return jsonify(page_view(phone, number, call))
