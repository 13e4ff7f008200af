"""``/dev/phone``: speak at the door through the real speech path.

Where the door's question is heard by the local speech server (``<Connect><Stream>``),
the page can send a WAV file, or a phrase spoken by espeak-ng in the call's language,
as Twilio would stream the caller's voice: the real WebSocket, the real recognizer, then
the ``<Connect action>``. Typed text (``/dev/phone/api/act``, ``say``) stays available.
Phone numbers travel in the request body, never in the URL.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from .audio import AudioError, synthesize, wav_to_mulaw
from .calls import (
    call_lock,
    current_phone,
    load_call,
    page_view,
    parse_number,
    save_call,
)
from .phone import SimCall, TwimlError
from .streaming import StreamError

bp = Blueprint("devphone_voice", __name__)


def _error(message: str, status: int) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    return response


def _through_the_stream(number: str, audio: bytes | None, text: str | None) -> Response:
    """Stream ``audio`` (or ``text`` spoken by espeak-ng) into the call of ``number``."""
    if not number:
        return _error("not a phone number", 400)
    phone = current_phone()
    with call_lock(number, timeout_s=120):
        call: SimCall | None = load_call(phone, number)
        if call is None or call.status != "in-progress":
            return _error("no call in progress", 409)
        if call.listening != "stream":
            reason = (
                "this question is heard by Twilio's recognizer (no local model): type the answer"
                if call.listening == "speech"
                else "nothing listens for speech right now"
            )
            return _error(reason, 409)
        try:
            if audio is None:
                assert call.gather is not None
                audio = synthesize(text or "", call.gather.params.get("lang", "fr"))
            call.speak_audio(audio)
        except AudioError as exc:
            return _error(str(exc), 400)
        except (StreamError, TwimlError) as exc:
            return _error(str(exc), 409)
        save_call(call)
        return jsonify(page_view(phone, number, call))


@bp.post("/dev/phone/api/voice")
def speak_phrase() -> Response:
    """JSON ``{"number", "text"}``: the phrase spoken by espeak-ng into the stream."""
    body = request.get_json(silent=True) or {}
    text = str(body.get("text", ""))[:200]
    if not text.strip():
        return _error("nothing to say", 400)
    return _through_the_stream(parse_number(str(body.get("number", ""))), None, text)


@bp.post("/dev/phone/api/audio")
def speak_wav() -> Response:
    """Form ``number`` and file ``audio`` (a WAV file): streamed as the caller's voice."""
    upload = request.files.get("audio")
    if upload is None:
        return _error("no WAV file sent (field 'audio')", 400)
    try:
        audio = wav_to_mulaw(upload.read(8 * 1024 * 1024 + 1))
    except AudioError as exc:
        return _error(str(exc), 400)
    return _through_the_stream(parse_number(request.form.get("number", "")), audio, None)
