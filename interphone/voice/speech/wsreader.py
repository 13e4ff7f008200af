"""The stream's WebSocket, read in the stream's own thread.

Flask-Sock's server (``simple_websocket``) gives every connection a reader thread that
receives the frames and hands each message to the handler's thread through an event.
Twilio sends a message every 20 ms per call, so that handoff (a thread woken up, a
condition variable, a second thread contending for the interpreter) would be paid 50
times a second per stream, a large share of the endpoint's CPU beside Vosk's own
(figures in docs/performance.md, ``interphone bench speech``). The stream server asks
Flask-Sock for no reader thread (``SOCK_SERVER_OPTIONS["thread_class"]``) and reads the
socket itself, in the thread that decodes the audio: Flask-Sock still does the HTTP
upgrade; the frames are parsed here (RFC 6455 §5: masking, fragments, ping, close,
size limit, UTF-8), in about a quarter of wsproto's time, or by wsproto (through the
``simple_websocket`` connection's ``ws`` attribute) when the handshake offered an
extension. Closing: our close frame, then the other side's answer read (briefly) so
that audio still in flight is not answered by a TCP reset.

Each message is read as it comes: waiting to gather a 100 ms chunk's messages in one
read would save little CPU and delay every decision by tens of milliseconds.
"""

from __future__ import annotations

import socket
import time
from collections import deque
from typing import Any

from simple_websocket import ConnectionClosed
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

RECEIVE_BYTES = 16 * 1024
CLOSE_DRAIN_S = 2.0  # after our close frame, how long to wait for the other side's


class NoThread:
    """A ``thread_class`` for ``simple_websocket`` that starts nothing."""

    def __init__(self, target: Any = None, **_: Any) -> None:
        self.name = "speech-stream-inline"

    def start(self) -> None:
        pass

    def join(self, timeout: float | None = None) -> None:
        pass

    def is_alive(self) -> bool:
        return False


class InlineSocket:
    """``receive``/``close`` over a ``simple_websocket.Server`` started with
    :class:`NoThread`: frames are read and decoded by the caller's thread, and several
    messages that arrived together are taken in one ``recv``."""

    def __init__(self, server: Any, max_message_size: int) -> None:
        self.server = server
        self.sock: socket.socket = server.sock
        self.max_message_size = max_message_size
        self.messages: deque[str | bytes] = deque()
        self._partial: list[str | bytes] = []
        self._partial_size = 0
        self.close_code: int | None = None
        # Frames are parsed here unless the handshake offered an extension (compression),
        # which wsproto then handles: every message of every stream goes through the
        # parser below, much cheaper than wsproto's (docs/performance.md, bench speech).
        environ = getattr(server, "environ", {}) or {}
        self._fast = not environ.get("HTTP_SEC_WEBSOCKET_EXTENSIONS")
        self._buffer = b""
        self._opcode = 0  # of the message being assembled from fragments

    @property
    def connected(self) -> bool:
        return bool(self.server.connected)

    def receive(self, timeout: float | None = None) -> str | bytes | None:
        """The next message; None when nothing came within ``timeout`` seconds;
        ``ConnectionClosed`` once the connection is over and every message was taken."""
        if self.messages:
            return self.messages.popleft()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.server.connected:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            if not self._read(remaining):
                return None
            if self.messages:
                return self.messages.popleft()
        if self.messages:
            return self.messages.popleft()
        raise ConnectionClosed(self.close_code or CloseReason.NO_STATUS_RCVD)

    def _read(self, timeout: float | None) -> bool:
        """One ``recv`` and its events; False on timeout."""
        try:
            self.sock.settimeout(timeout)
            data = self.sock.recv(RECEIVE_BYTES)
        except TimeoutError:
            return False
        except OSError:
            self.server.connected = False
            return True
        if not data:
            self.server.connected = False
            return True
        try:
            if self._fast:
                self._frames(data)
            else:
                self.server.ws.receive_data(data)
                self._events()
        except (LocalProtocolError, RemoteProtocolError, OSError):
            # a broken protocol, or an answer (pong, close) the socket no longer takes
            self.server.connected = False
        return True

    def _events(self) -> None:
        out = b""
        ws = self.server.ws
        for event in ws.events():
            if isinstance(event, TextMessage | BytesMessage):
                data = event.data if isinstance(event.data, str) else bytes(event.data)
                self._partial.append(data)
                self._partial_size += len(data)
                if self._partial_size > self.max_message_size:
                    out += ws.send(
                        CloseConnection(CloseReason.MESSAGE_TOO_BIG, "Message is too big")
                    )
                    self.server.connected = False
                    break
                if event.message_finished:
                    parts, self._partial, self._partial_size = self._partial, [], 0
                    if len(parts) == 1:
                        self.messages.append(parts[0])
                    elif isinstance(event, TextMessage):
                        self.messages.append("".join(str(p) for p in parts))
                    else:
                        self.messages.append(b"".join(p for p in parts if isinstance(p, bytes)))
            elif isinstance(event, Ping):
                out += ws.send(event.response())
            elif isinstance(event, CloseConnection):
                self.close_code = event.code
                out += ws.send(event.response())
                self.server.connected = False
                break
        if out:
            self.sock.sendall(out)

    def _frames(self, data: bytes, *, draining: bool = False) -> bool:
        """Parse client frames (RFC 6455 §5): messages to ``self.messages``, pings
        answered, a close answered. True once a close frame came. ``draining``: our
        close is sent, only the other side's is looked for."""
        buf = self._buffer + data if self._buffer else data
        size, pos, out = len(buf), 0, b""
        ws = self.server.ws
        closed = False
        while size - pos >= 2:
            first, second = buf[pos], buf[pos + 1]
            fin, opcode, length, head = first & 0x80, first & 0x0F, second & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            control = opcode >= 0x8
            if (
                first & 0x70  # a reserved bit: no extension was agreed
                or not second & 0x80  # a client must mask its frames
                or opcode not in (0x0, 0x1, 0x2, 0x8, 0x9, 0xA)
                or (control and (not fin or length > 125))
            ):
                return self._fail(CloseReason.PROTOCOL_ERROR, "protocol error", draining)
            if not control and self._partial_size + length > self.max_message_size:
                return self._fail(CloseReason.MESSAGE_TOO_BIG, "Message is too big", draining)
            end = pos + head + 4 + length
            if size < end:
                break
            payload = _unmask(buf[pos + head + 4 : end], buf[pos + head : pos + head + 4])
            pos = end
            if opcode == 0x8:
                closed = True
                if not draining:
                    code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                    self.close_code = code or CloseReason.NO_STATUS_RCVD
                    out += ws.send(CloseConnection(code or CloseReason.NORMAL_CLOSURE))
                    self.server.connected = False
                break
            if draining:
                continue
            if opcode == 0x9:
                out += ws.send(Ping(payload).response())
            elif opcode in (0x1, 0x2, 0x0):
                if (opcode == 0x0) != bool(self._partial):  # a continuation needs a start
                    return self._fail(CloseReason.PROTOCOL_ERROR, "protocol error", draining)
                if opcode:
                    self._opcode = opcode
                self._partial.append(payload)
                self._partial_size += length
                if fin:
                    message = b"".join(p for p in self._partial if isinstance(p, bytes))
                    self._partial, self._partial_size = [], 0
                    if self._opcode == 0x1:
                        try:
                            self.messages.append(message.decode("utf-8"))
                        except UnicodeDecodeError:
                            return self._fail(
                                CloseReason.INVALID_FRAME_PAYLOAD_DATA, "not UTF-8", draining
                            )
                    else:
                        self.messages.append(message)
        self._buffer = buf[pos:]
        if out:
            self.sock.sendall(out)
        return closed

    def _fail(self, code: int, reason: str, draining: bool) -> bool:
        """A frame no conforming client sends: close the connection with ``code``."""
        self._buffer = b""
        if not draining and self.server.connected:
            self.sock.sendall(self.server.ws.send(CloseConnection(code, reason)))
            self.server.connected = False
        return True

    def close(self, reason: int | None = None, message: str | None = None) -> None:
        """Send our close frame (Twilio then requests the action URL)."""
        if self.server.connected:
            self.server.close(reason, message)

    def finish(self) -> None:
        """Wait (briefly) for the other side's close frame, so that audio still in
        flight is read rather than answered by a TCP reset, then close the socket."""
        deadline = time.monotonic() + CLOSE_DRAIN_S
        ws = self.server.ws
        try:
            self.close()
            while self.close_code is None and time.monotonic() < deadline:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                data = self.sock.recv(RECEIVE_BYTES)
                if not data:
                    break
                if self._fast:
                    if self._frames(data, draining=True):
                        break
                    continue
                ws.receive_data(data)
                if any(isinstance(e, CloseConnection) for e in ws.events()):
                    break
        except (OSError, LocalProtocolError, RemoteProtocolError):
            pass
        finally:
            self.server.connected = False
            self.sock.close()


def _unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte masking key, as one big integer operation."""
    length = len(payload)
    if not length:
        return b""
    key = (mask * (length // 4 + 1))[:length]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
        length, "little"
    )
