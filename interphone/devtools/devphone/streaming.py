"""Twilio's side of a Media Stream, for the dev phone: at ``<Connect><Stream url=…>``
it opens the WebSocket as Twilio does (``X-Twilio-Signature`` of the stream URL), sends
``connected``, ``start`` (with the ``<Parameter>`` s as ``customParameters``), the
caller's audio as 20 ms ``media`` messages (base64 of 8 kHz µ-law), then a quiet line,
until the server closes the stream; the caller's call (``phone.SimCall``) then requests
the ``<Connect action>`` URL, as Twilio does.

Twilio never stops a ``<Connect><Stream>`` on its own while the call is up: the line
keeps sending its quiet hiss. The dev phone bounds that (``max_s`` of the question and
a margin), then says ``stop`` and hangs up the socket itself, so a server that never
decides cannot hang a test or the page.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from .audio import quiet_line

FRAME_BYTES = 160  # 20 ms of 8 kHz µ-law
FRAME_S = 0.02
DEFAULT_LISTEN_S = 20.0  # when the TwiML does not say how long the question listens
MARGIN_S = 5.0  # quiet line sent beyond the question's max_s before giving up
CLOSE_WAIT_S = 30.0  # wall-clock bound on waiting for the server's close


class StreamError(RuntimeError):
    """The stream could not be opened (no server there, handshake refused)."""


@dataclass(frozen=True)
class StreamOutcome:
    closed_by_server: bool  # the server decided and hung up (what should happen)
    media_sent: int  # 20 ms messages sent
    stream_sid: str


def media_messages(audio: bytes, stream_sid: str, first_seq: int = 3) -> Iterator[str]:
    """Twilio's ``media`` messages for ``audio``, 20 ms each."""
    for n, offset in enumerate(range(0, len(audio), FRAME_BYTES)):
        yield json.dumps(
            {
                "event": "media",
                "sequenceNumber": str(first_seq + n),
                "media": {
                    "track": "inbound",
                    "chunk": str(n + 1),
                    "timestamp": str(n * 20),
                    "payload": base64.b64encode(audio[offset : offset + FRAME_BYTES]).decode(),
                },
                "streamSid": stream_sid,
            }
        )


def stream_audio(
    connect_url: str,
    *,
    signature: str,
    call_sid: str,
    account_sid: str,
    parameters: dict[str, str],
    audio: bytes,
    paced: bool = False,
) -> StreamOutcome:
    """One ``<Connect><Stream>``: ``audio`` (8 kHz µ-law) then a quiet line until the
    server closes. ``connect_url``: where the server really listens (the TwiML's URL,
    or a test server's); ``signature``: Twilio's signature of the TwiML's URL.
    ``paced``: at real-time pace (20 ms a message), else as fast as the server takes it.
    """
    from simple_websocket import Client, ConnectionClosed
    from simple_websocket.errors import ConnectionError as HandshakeError

    class TwilioSide(Client):  # type: ignore[misc]
        def handshake(self) -> None:
            try:
                super().handshake()
            except BaseException:
                self.sock.close()  # simple_websocket leaves it open when refused
                raise

    listen_s = _seconds(parameters.get("max_s")) or DEFAULT_LISTEN_S
    line = audio + quiet_line(listen_s + MARGIN_S)
    stream_sid = "MZ" + secrets.token_hex(16)
    try:
        _reachable(connect_url)
        ws = TwilioSide.connect(
            connect_url, headers={"X-Twilio-Signature": signature, "User-Agent": "Twilio.TmeWs/1.0"}
        )
    except HandshakeError as exc:
        status = f" (HTTP {exc.status_code})" if exc.status_code else ""
        raise StreamError(f"the speech stream server refused the stream{status}") from None
    except OSError as exc:
        raise StreamError(
            f"no speech stream server at {connect_url} ({exc.strerror or exc}): "
            "start it (Procfile: stream), or type the answer"
        ) from None
    sent = 0
    closed = False
    try:
        try:
            ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
            ws.send(_start(call_sid, account_sid, stream_sid, parameters))
            t0 = time.monotonic()
            for message in media_messages(line, stream_sid):
                if paced:
                    wait = t0 + sent * FRAME_S - time.monotonic()
                    if wait > 0:
                        ws.receive(timeout=wait)  # nothing comes back; a close raises
                ws.send(message)
                sent += 1
            ws.send(_stop(call_sid, account_sid, stream_sid, 3 + sent))
            deadline = time.monotonic() + CLOSE_WAIT_S
            while ws.connected and time.monotonic() < deadline:
                ws.receive(timeout=0.2)  # the server sends nothing back: wait for its close
            closed = not ws.connected
        except (ConnectionClosed, OSError):
            closed = True
        return StreamOutcome(closed_by_server=closed, media_sent=sent, stream_sid=stream_sid)
    finally:
        if ws.connected:
            with contextlib.suppress(ConnectionClosed, OSError):
                ws.close()
        ws.thread.join(timeout=5)


def _reachable(url: str) -> None:
    """Raise OSError when nothing listens at ``url`` (simple_websocket's client would
    leave its socket to the garbage collector in that case)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    with socket.create_connection((parts.hostname or "", port), timeout=5):
        pass


def _start(call_sid: str, account_sid: str, stream_sid: str, parameters: dict[str, str]) -> str:
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "start": {
                "accountSid": account_sid,
                "streamSid": stream_sid,
                "callSid": call_sid,
                "tracks": ["inbound"],
                "customParameters": parameters,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
            "streamSid": stream_sid,
        },
        ensure_ascii=False,
    )


def _stop(call_sid: str, account_sid: str, stream_sid: str, seq: int) -> str:
    return json.dumps(
        {
            "event": "stop",
            "sequenceNumber": str(seq),
            "stop": {"accountSid": account_sid, "callSid": call_sid},
            "streamSid": stream_sid,
        }
    )


def _seconds(raw: str | None) -> float | None:
    try:
        value = float(raw or "")
    except ValueError:
        return None
    return min(max(value, 1.0), 60.0) if value == value else None
