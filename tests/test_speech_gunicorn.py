"""The speech stream server as the Procfile starts it (gunicorn, its worker class, its
128 threads), attacked as finding 8 of issue 18 did: sockets that send a handshake's
request line and ``Host`` line, then nothing, must never hold its threads."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
from collections.abc import Iterator

import pytest
import redis

from interphone.devtools import harness
from interphone.devtools.harness import free_port
from interphone.gunicorn_worker import BODY_BYTES, CONTINUE, HEAD_DEADLINE_S, _verdict
from interphone.voice.speech.results import SpeechResults

from .fixtures.speech import support

HALF_OPEN = 130  # more than the stream line's 128 threads


def _healthz(port: int, timeout: float = 5.0) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.fixture
def stream_port(redis_url: str) -> Iterator[int]:
    """The Procfile's ``stream`` line."""
    port = free_port()
    env = dict(os.environ)
    env.pop("VOSK_MODELS_DIR", None)  # no model: every stream that starts answers error
    env.update(
        HOST="127.0.0.1",
        PORT=str(port),
        INTERPHONE_ENV="test",
        REDIS_URL=redis_url,
        PUBLIC_BASE_URL="http://127.0.0.1:5000",  # what support.signature() signs
        SECRET_KEY=support.SECRET,
    )
    proc = subprocess.Popen(
        harness.procfile_command("stream", env),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def up() -> bool:
        assert proc.poll() is None, "the stream server stopped"
        try:
            return _healthz(port, timeout=1) == 200
        except OSError:
            return False

    try:
        assert support.poll_until(up, 30, every=0.1), "the stream server did not start"
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_half_open_handshakes_never_hold_the_stream_threads(
    stream_port: int, redis_client: redis.Redis
) -> None:
    url = f"ws://127.0.0.1:{stream_port}{support.PATH}"
    half_open = []
    try:
        for _ in range(HALF_OPEN):
            sock = socket.create_connection(("127.0.0.1", stream_port), timeout=5)
            sock.sendall(f"GET {support.PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())
            half_open.append(sock)

        assert _healthz(stream_port) == 200  # a thread is free: answered at once
        stream = support.TwilioStream(url)  # a signed handshake, then a whole stream
        call_sid = "CA" + "7" * 32
        stream.send(support.start_message(call_sid, "confirm", "yes_no"))
        stream.wait_closed(timeout=5)
        result = SpeechResults(redis_client).get(call_sid, "confirm")
        assert result is not None and result.status == "error"  # no model here

        for sock in half_open:  # closed by the server at the head's deadline
            sock.settimeout(HEAD_DEADLINE_S + 3)
            assert sock.recv(64) == b""
        keep_alive = http.client.HTTPConnection("127.0.0.1", stream_port, timeout=5)
        for _ in range(2):  # one connection, two requests: kept alive through the guard
            keep_alive.request("GET", "/healthz")
            answer = keep_alive.getresponse()
            assert answer.status == 200 and json.loads(answer.read())["status"] == "ok"
        keep_alive.close()

        # a client that waits for "100 Continue" before its body (curl) gets it at once
        with socket.create_connection(("127.0.0.1", stream_port), timeout=5) as expects:
            expects.sendall(
                b"POST /healthz HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                b"Content-Length: 4\r\n\r\n"
            )
            assert expects.recv(64) == CONTINUE
            expects.sendall(b"body")
            answer = b""
            while b"HTTP/1.1 405" not in answer:  # /healthz is GET only (after a 1xx or so)
                chunk = expects.recv(4096)
                assert chunk, answer
                answer += chunk
    finally:
        for sock in half_open:
            sock.close()


@pytest.mark.parametrize(
    ("request_bytes", "verdict"),
    [
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n", None),  # the head goes on
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", b""),  # whole: to a thread
        (b"POST /x HTTP/1.1\r\nContent-Length: 4\r\n\r\nab", None),  # the body goes on
        (b"POST /x HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd", b""),
        (b"POST /x HTTP/1.1\r\nContent-Length: x\r\n\r\n", b""),  # gunicorn answers 400
        (b"POST /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n", CONTINUE),
        (b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b"HTTP/1.1 413"),
        (f"POST /x HTTP/1.1\r\nContent-Length: {BODY_BYTES + 1}\r\n\r\n".encode(), b"HTTP/1.1 413"),
        (b"GET / HTTP/1.1\r\n" + b"X: " + b"y" * 40_000, b"HTTP/1.1 431"),
    ],
)
def test_a_thread_takes_only_a_request_arrived_whole_or_none_at_all(
    request_bytes: bytes, verdict: bytes | None
) -> None:
    found = _verdict(bytearray(request_bytes))
    if verdict is None or not verdict:
        assert found == verdict
    else:
        assert found is not None and found.startswith(verdict)
