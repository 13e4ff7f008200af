"""A raw HTTP/1.1 keep-alive client for the load test's callers."""

from __future__ import annotations

import socket
from collections.abc import Callable

TIMEOUT_S = 10.0


class UnreadableAnswer(Exception):
    """An answer the callers' client cannot read (or none)."""


class KeepAliveClient:
    """One keep-alive HTTP/1.1 connection for the callers: the request written in one
    ``send``, the answer read by its length (or its chunks). ``http.client`` parses headers
    with the ``email`` package, and the load generator shares the machine with the
    server it measures: each of its CPU microseconds is one the server does not get."""

    def __init__(self, port: int, timeout_s: float = TIMEOUT_S) -> None:
        self.port, self.timeout_s = port, timeout_s
        self._sock: socket.socket | None = None
        self._buffer = b""

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock, self._buffer = None, b""

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """The status and body of the answer. Raises OSError or :class:`UnreadableAnswer`, the
        connection closed, when the exchange fails."""
        if self._sock is None:
            self._sock = socket.create_connection(("127.0.0.1", self.port), self.timeout_s)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        request = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n{head}"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1") + body
        try:
            self._sock.sendall(request)
            return self._answer()
        except (OSError, UnreadableAnswer):
            self.close()
            raise

    def _answer(self) -> tuple[int, bytes]:
        end = self._fill(lambda data: data.find(b"\r\n\r\n"))
        head, self._buffer = self._buffer[:end], self._buffer[end + 4 :]
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise UnreadableAnswer(f"not an HTTP status line: {lines[0][:40]!r}")
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        status = int(parts[1])
        if status in (204, 304) or status < 200:  # no body, whatever the headers say
            body = b""
        elif "chunked" in fields.get("transfer-encoding", "").lower():
            body = self._chunks()
        elif "content-length" in fields:
            body = self._take(int(fields["content-length"]))
        else:  # HTTP/1.0 style: the body ends with the connection
            body = self._buffer + self._drain()
            self.close()
            return status, body
        if fields.get("connection", "").lower() == "close":
            self.close()
        return status, body

    def _take(self, size: int) -> bytes:
        self._fill(lambda data: size if len(data) >= size else -1)
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    def _chunks(self) -> bytes:
        parts: list[bytes] = []
        while True:
            end = self._fill(lambda data: data.find(b"\r\n"))
            line, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
            try:
                size = int(line.split(b";", 1)[0], 16)
            except ValueError:
                raise UnreadableAnswer("a malformed chunk size") from None
            if size == 0:
                end = self._fill(lambda data: data.find(b"\r\n"))  # no trailers are sent
                self._buffer = self._buffer[end + 2 :]
                return b"".join(parts)
            parts.append(self._take(size))
            self._take(2)  # the chunk's CRLF

    def _drain(self) -> bytes:
        assert self._sock is not None
        chunks = []
        while chunk := self._sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)

    def _fill(self, ready: Callable[[bytes], int]) -> int:
        """Read until ``ready`` finds what it wants in the buffer (an index ≥ 0)."""
        while (found := ready(self._buffer)) < 0:
            assert self._sock is not None
            chunk = self._sock.recv(65536)
            if not chunk:
                raise UnreadableAnswer("the server closed the connection")
            self._buffer += chunk
        return found
