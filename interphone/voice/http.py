"""Twilio webhooks: parse, call the IVR service, render TwiML. Nothing else.

Every route checks Twilio's signature. Every TwiML document carries a sequence number
``n`` in its action URLs, and the answer to (CallSid, n) is stored: a webhook Twilio
retries gets the same answer and changes nothing twice.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, current_app, request, url_for
from twilio.twiml.messaging_response import MessagingResponse

from ..runtime import Runtime
from .signature import twilio_signed
from .twiml import render

bp = Blueprint("voice", __name__)

SID = re.compile(r"^[A-Z]{2}[0-9a-f]{32}$")
MAX_FIELD = 256


def _runtime() -> Runtime:
    rt: Runtime = current_app.extensions["interphone"]
    return rt


def _xml(body: str) -> Response:
    return Response(body, mimetype="application/xml")


def _field(name: str) -> str:
    return request.form.get(name, "")[:MAX_FIELD]


def _call_sid() -> str | None:
    sid = request.form.get("CallSid", "")
    return sid if SID.match(sid) else None


def _render(sid: str, reply: Any) -> str:
    rt = _runtime()
    n = int(rt.redis.incr(f"ip:call:{sid}:seq"))
    rt.redis.expire(f"ip:call:{sid}:seq", 4 * 3600)
    return render(
        reply,
        step_url=lambda step: url_for("voice.step", step=step, n=n),
        hold_url=url_for("voice.hold", n=n),
    )


def _bad_request() -> Response:
    return Response("missing or malformed CallSid", status=400, mimetype="text/plain")


@bp.post("/voice/incoming")
@twilio_signed
def incoming() -> Response:
    sid = _call_sid()
    if sid is None:
        return _bad_request()
    rt = _runtime()
    channel = "browser" if _field("From").startswith("client:") else "phone"
    body = rt.calls.once(
        sid, "0", lambda: _render(sid, rt.ivr.incoming(sid, _field("From"), _field("To"), channel))
    )
    return _xml(body)


@bp.post("/voice/step/<step>")
@twilio_signed
def step(step: str) -> Response:
    sid = _call_sid()
    if sid is None:
        return _bad_request()
    rt = _runtime()
    n = request.args.get("n", "")[:12]
    digits = _field("Digits")
    body = rt.calls.once(
        sid,
        n or f"step:{step}:{digits}",
        lambda: _render(sid, rt.ivr.handle(sid, step[:40], digits)),
    )
    return _xml(body)


@bp.post("/voice/queue")
@twilio_signed
def hold() -> Response:
    sid = _call_sid()
    if sid is None:
        return _bad_request()
    rt = _runtime()
    n = request.args.get("n", "")[:12]
    digits = _field("Digits")
    body = rt.calls.once(sid, n or f"hold:{digits}", lambda: _render(sid, rt.ivr.hold(sid, digits)))
    return _xml(body)


@bp.post("/voice/status")
@twilio_signed
def status() -> Response:
    sid = _call_sid()
    if sid is None:
        return _bad_request()
    _runtime().ivr.call_ended(sid, _field("CallStatus"))
    return Response(status=204)


@bp.post("/sms/incoming")
@twilio_signed
def sms_incoming() -> Response:
    rt = _runtime()
    message_sid = _field("MessageSid") or _field("SmsSid")
    if not SID.match(message_sid):
        return Response("missing or malformed MessageSid", status=400, mimetype="text/plain")

    def answer() -> str:
        reply = MessagingResponse()
        reply.message(rt.sms.incoming(_field("From"), _field("Body")))
        return str(reply)

    return _xml(rt.calls.once(message_sid, "sms", answer))
