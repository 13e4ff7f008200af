"""``/dev/phone``: ring the line, press keys, hear the prompts, answer callbacks.

Development only (registered when no Twilio credentials are configured). The page talks
to a small JSON API; calls live in Redis between requests, and every webhook goes
through the app's full request stack, signed as Twilio signs it.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template, request

from ...privacy import InvalidPhoneNumber, to_e164
from ...redis_text import as_text
from ...runtime import Runtime
from .phone import DevPhone, SimCall, TwimlError, wsgi_transport
from .rest import sent_messages

bp = Blueprint(
    "devphone",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/dev/phone/static",
)

CALLS = "ip:devphone:sim:"
ACTIVE = "ip:devphone:active:"
REVISION = "ip:devphone:rev:"  # per number, +1 at every saved change of its call
TTL_S = 4 * 3600


def _runtime() -> Runtime:
    rt: Runtime = current_app.extensions["interphone"]
    return rt


def _phone() -> DevPhone:
    rt = _runtime()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    return DevPhone(
        wsgi_transport(app),
        public_base_url=rt.settings.public_base_url,
        auth_token=rt.settings.twilio_auth_token or "",
        account_sid=rt.settings.twilio_account_sid or "",
        connection=rt.redis,
    )


def _number(raw: str) -> str:
    raw = raw.strip()[:64]
    if raw.startswith("client:") or raw == "anonymous":
        return raw
    try:
        return to_e164(raw, _runtime().settings.default_region)
    except InvalidPhoneNumber:
        return ""


def _save(call: SimCall) -> None:
    rt = _runtime()
    number = call.caller if call.direction == "inbound" else call.called
    pipe = rt.redis.pipeline(transaction=False)
    pipe.set(CALLS + call.sid, json.dumps(call.to_dict()), ex=TTL_S)
    pipe.incr(REVISION + number)
    pipe.expire(REVISION + number, TTL_S)
    pipe.execute()
    if call.status == "in-progress":
        rt.redis.set(ACTIVE + number, call.sid, ex=TTL_S)
    elif as_text(rt.redis.get(ACTIVE + number)) == call.sid:
        rt.redis.delete(ACTIVE + number)


def _load(phone: DevPhone, number: str) -> SimCall | None:
    rt = _runtime()
    sid = as_text(rt.redis.get(ACTIVE + number))
    raw = rt.redis.get(CALLS + sid) if sid else None
    return SimCall.from_dict(phone, json.loads(raw)) if raw else None


def _view(phone: DevPhone, number: str, call: SimCall | None) -> dict[str, Any]:
    """What the page shows for ``number``; read under the number's lock, so that its
    ``revision`` orders the views: the page drops an answer older than one it showed (a
    poll answered after a key press would otherwise show the call as it was before)."""
    rt = _runtime()
    return {
        "number": number,
        "revision": int(as_text(rt.redis.get(REVISION + number)) or 0),
        "call": None
        if call is None
        else {
            "sid": call.sid,
            "status": call.status,
            "heard": [{"text": h.text, "lang": h.language} for h in call.heard],
            "waiting_for_keys": call.gather is not None,
            "typed": call.gather.typed if call.gather is not None else "",
            "listening": call.listening,
            "conference": call.conference,
        },
        "ringing": [c["sid"] for c in phone.ringing(number)],
        "messages": [m["Body"] for m in sent_messages(rt.redis) if m.get("To") == number],
    }


@bp.get("/dev/phone")
def page() -> str:
    return render_template("devphone.html", line=_line_number(), door=DEMO_DOOR)


DEMO_DOOR = "client:borne-1"  # the demo site's door (a browser kiosk identity)


def _line_number() -> str:
    from sqlalchemy import select

    from ...models import Site

    rt = _runtime()
    with rt.sessions() as s:
        site = s.scalar(select(Site).where(Site.code == rt.settings.default_site))
    return (site.phone_numbers or ["+33473000000"])[0] if site else "+33473000000"


def _request_number() -> str:
    """Phone numbers travel in the JSON body, never in URLs (they would reach logs)."""
    return _number(str((request.get_json(silent=True) or {}).get("number", "")))


@bp.post("/dev/phone/api/state")
def state() -> Response:
    number = _request_number()
    if not number:
        return jsonify(error="not a phone number"), 400  # type: ignore[return-value]
    phone = _phone()
    with _runtime().redis.lock(f"ip:devphone:lock:{number}", timeout=30, blocking_timeout=10):
        call = _load(phone, number)
        if call is not None and call.status == "in-progress":
            call.poll()
            _save(call)
        return jsonify(_view(phone, number, call))


@bp.post("/dev/phone/api/act")
def act() -> Response:
    number = _request_number()
    action = (request.get_json(silent=True) or {}).get("action", "")
    keys = str((request.get_json(silent=True) or {}).get("keys", ""))[:32]
    text = str((request.get_json(silent=True) or {}).get("text", ""))[:200]
    known = ("ring", "key", "keys", "say", "wait", "hangup", "answer", "refuse")
    if not number or action not in known:
        return jsonify(error="unknown number or action"), 400  # type: ignore[return-value]
    phone = _phone()
    with _runtime().redis.lock(f"ip:devphone:lock:{number}", timeout=30, blocking_timeout=10):
        call = _load(phone, number)
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
            _save(call)
        return jsonify(_view(phone, number, call))


from . import voice_web  # noqa: E402,F401  (its routes: speaking through the real stream)
