"""The supervisor's leg's webhook: its final status (:mod:`interphone.voice.supervise`).

A route of the ``voice`` blueprint, as every Twilio webhook is (signature checked, no
CSRF, no session, NUL characters left to the fields, the call's SID in the logs); the
web app imports this module before registering that blueprint."""

from __future__ import annotations

import re

from flask import Response, current_app, request

from ..digits import row_id
from ..runtime import Runtime
from .http import bp
from .signature import twilio_signed
from .supervise import SID

STATUS = re.compile(r"[^a-z-]")


@bp.post("/voice/supervisor/leg")
@twilio_signed
def supervisor_leg() -> Response:
    """Twilio's status callback of a supervisor's leg (``?s=<supervisor id>``)."""
    supervisor_id = row_id(request.args.get("s", ""))
    call_sid = request.form.get("CallSid", "")
    if supervisor_id is None or not SID.fullmatch(call_sid):
        return Response("missing or malformed CallSid", status=400, mimetype="text/plain")
    rt: Runtime = current_app.extensions["interphone"]
    status = STATUS.sub("", request.form.get("CallStatus", ""))[:20]  # Twilio's: a-z and -
    rt.supervision.leg_ended(supervisor_id, call_sid, status)
    return Response(status=204)
