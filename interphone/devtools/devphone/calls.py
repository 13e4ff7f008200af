"""The dev phone's calls, kept in Redis between the page's requests, and what the page
shows of them. Every request rebuilds a :class:`DevPhone` on the app it runs in."""

from __future__ import annotations

import json
from typing import Any

from flask import current_app
from redis.lock import Lock

from interphone.privacy import InvalidPhoneNumber, to_e164
from interphone.redis_text import as_text
from interphone.runtime import Runtime

from .conference import Conferences, heard_handsets
from .phone import DevPhone, SimCall, wsgi_transport
from .rest import sent_messages

CALLS = "ip:devphone:sim:"
ACTIVE = "ip:devphone:active:"
REVISION = "ip:devphone:rev:"  # per number, +1 at every saved change of its call
TTL_S = 4 * 3600


def current_runtime() -> Runtime:
    rt: Runtime = current_app.extensions["interphone"]
    return rt


def current_phone() -> DevPhone:
    rt = current_runtime()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    return DevPhone(
        wsgi_transport(app),
        public_base_url=rt.settings.public_base_url,
        auth_token=rt.settings.twilio_auth_token or "",
        account_sid=rt.settings.twilio_account_sid or "",
        connection=rt.redis,
    )


def parse_number(raw: str) -> str:
    raw = raw.strip()[:64]
    if raw.startswith("client:") or raw == "anonymous":
        return raw
    try:
        return to_e164(raw, current_runtime().settings.default_region)
    except InvalidPhoneNumber:
        return ""


def call_lock(number: str, timeout_s: float = 30) -> Lock:
    """Held while a request reads, changes and saves the call of ``number``."""
    lock: Lock = current_runtime().redis.lock(
        f"ip:devphone:lock:{number}", timeout=timeout_s, blocking_timeout=10
    )
    return lock


def save_call(call: SimCall) -> None:
    rt = current_runtime()
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


def load_call(phone: DevPhone, number: str) -> SimCall | None:
    rt = current_runtime()
    sid = as_text(rt.redis.get(ACTIVE + number))
    raw = rt.redis.get(CALLS + sid) if sid else None
    return SimCall.from_dict(phone, json.loads(raw)) if raw else None


def _hears(call: SimCall) -> list[str] | None:
    """The handsets ``call`` hears in its conference; None outside one."""
    if not call.conference or call.status != "in-progress":
        return None
    conf = Conferences(current_runtime().redis).of_call(call.sid)
    return heard_handsets(conf, call.sid) if conf is not None else None


def page_view(phone: DevPhone, number: str, call: SimCall | None) -> dict[str, Any]:
    """What the page shows for ``number``; read under the number's lock, so that its
    ``revision`` orders the views: the page drops an answer older than one it showed (a
    poll answered after a key press would otherwise show the call as it was before)."""
    rt = current_runtime()
    return {
        "number": number,
        "revision": int(as_text(rt.redis.get(REVISION + number)) or 0),
        "call": None
        if call is None
        else {
            "sid": call.sid,
            "status": call.status,
            "heard": [{"text": h.text, "lang": h.language} for h in call.heard],
            "waiting_for_keys": call.gather is not None and call.gather.kind != "conference",
            "typed": call.gather.typed if call.gather is not None else "",
            "listening": call.listening,
            "conference": call.conference,
            "hears": _hears(call),
        },
        "ringing": [c["sid"] for c in phone.ringing(number)],
        "messages": [m["Body"] for m in sent_messages(rt.redis) if m.get("To") == number],
    }
