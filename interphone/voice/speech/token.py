"""The per-call token of a speech stream.

Twilio's signature of the WebSocket handshake covers the stream's URL only, the same for
every call, and the ``callSid`` of the ``start`` message comes after it, unsigned. So the
IVR signs (call SID, question, expiry) with the app's ``SECRET_KEY`` and puts the token
in the ``<Stream>``'s ``<Parameter name="token">``; Twilio hands it back in the
``start`` message's ``customParameters``, and the stream server checks it against that
message's ``callSid`` and ``key`` before it hears anything. A stream can then only
answer the one question of the one call the IVR asked, for ``TTL_S`` seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import time

PARAMETER = "token"  # the <Parameter> name
TTL_S = 300  # from the TwiML to the stream's start: the prompts before it, then Twilio
_CONTEXT = b"interphone speech stream token v1"  # this key signs nothing else


def _mac(secret: str, call_sid: str, key: str, expires: int) -> str:
    derived = hmac.new(secret.encode(), _CONTEXT, hashlib.sha256).digest()
    signed = f"{call_sid}\n{key}\n{expires}".encode()
    return hmac.new(derived, signed, hashlib.sha256).hexdigest()


def sign(secret: str, call_sid: str, key: str, *, now: float | None = None) -> str:
    """The token for the question ``key`` of call ``call_sid``: ``<expiry>.<hmac>``."""
    expires = int((time.time() if now is None else now) + TTL_S)
    return f"{expires}.{_mac(secret, call_sid, key, expires)}"


def verify(secret: str, token: str, call_sid: str, key: str, *, now: float | None = None) -> bool:
    """Whether ``token`` was signed with ``secret`` for this call and question and has not
    expired."""
    expires, _, mac = token.partition(".")
    if not secret or not (expires.isascii() and expires.isdigit()) or len(expires) > 12:
        return False
    if int(expires) < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(mac.encode(), _mac(secret, call_sid, key, int(expires)).encode())
