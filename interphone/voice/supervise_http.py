"""The supervisor's leg's webhook: its final status (:mod:`interphone.voice.supervise`)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from ..digits import row_id
from ..runtime import Runtime
from .signature import twilio_signed
from .supervise import SID

bp = Blueprint("voice_supervise", __name__)


@bp.post("/voice/supervisor/leg")
@twilio_signed
def supervisor_leg() -> Response:
    """Twilio's status callback of a supervisor's leg (``?s=<supervisor id>``)."""
    supervisor_id = row_id(request.args.get("s", ""))
    call_sid = request.form.get("CallSid", "")
    if supervisor_id is None or not SID.fullmatch(call_sid):
        return Response("missing or malformed CallSid", status=400, mimetype="text/plain")
    rt: Runtime = current_app.extensions["interphone"]
    rt.supervision.leg_ended(supervisor_id, call_sid, request.form.get("CallStatus", "")[:20])
    return Response(status=204)
