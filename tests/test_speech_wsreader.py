"""The stream server reads each WebSocket in the stream's own thread (no reader thread per
connection): the WebSocket protocol must still be whole. Raw frames on a real socket to
the real server: fragments, pings, several messages in one segment, oversized messages,
a close from the caller."""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator

import pytest
import redis

from interphone.voice.speech.results import SpeechResults
from interphone.voice.speech.stream import MAX_MESSAGE_BYTES
from interphone.voice.speech.wsreader import NoThread

from .fixtures.speech import support
from .fixtures.speech.support import StreamServer, fixture, hiss, media_messages, raw_connect
from .topology import wait_until

TEXT, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x0, 0x8, 0x9, 0xA


def frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """One client→server frame (masked, as clients must)."""
    mask = b"\x0a\x0b\x0c\x0d"
    head = bytearray([(0x80 if fin else 0) | opcode])
    if len(payload) < 126:
        head.append(0x80 | len(payload))
    elif len(payload) < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", len(payload))
    return bytes(head) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_frames(
    sock: socket.socket, until_opcode: int, timeout: float = 10.0
) -> list[tuple[int, bytes]]:
    """Server→client frames (unmasked) until one with ``until_opcode`` (or the end)."""
    sock.settimeout(timeout)
    buffer, frames = b"", []
    while True:
        while len(buffer) >= 2:
            opcode, length = buffer[0] & 0x0F, buffer[1] & 0x7F
            start = 2
            if length == 126:
                length, start = struct.unpack("!H", buffer[2:4])[0], 4
            elif length == 127:
                length, start = struct.unpack("!Q", buffer[2:10])[0], 10
            if len(buffer) < start + length:
                break
            frames.append((opcode, buffer[start : start + length]))
            buffer = buffer[start + length :]
            if opcode == until_opcode:
                return frames
        chunk = sock.recv(4096)
        if not chunk:
            return frames
        buffer += chunk


@pytest.fixture
def server(redis_url: str, redis_client: redis.Redis) -> Iterator[StreamServer]:
    server = support.stream_server(redis_url)
    server.wait_idle()
    yield server
    server.wait_idle()


def sid(n: int) -> str:
    return f"CA{n + 5000:032x}"


def test_the_stream_server_asks_for_no_reader_thread_per_connection(server: StreamServer) -> None:
    from flask import Flask

    from interphone.voice.speech.stream import SpeechStreams, init_app

    app = Flask(__name__)
    init_app(app, SpeechStreams(server.registry, SpeechResults(redis.Redis())))
    assert app.config["SOCK_SERVER_OPTIONS"]["thread_class"] is NoThread


def test_a_start_message_split_into_fragments_is_reassembled(
    server: StreamServer, redis_client: redis.Redis
) -> None:
    start = support.start_message(sid(1), "confirm", "yes_no").encode()
    sock = raw_connect(server.url)
    try:
        third = len(start) // 3
        sock.sendall(frame(TEXT, start[:third], fin=False))
        sock.sendall(frame(CONTINUATION, start[third : 2 * third], fin=False))
        sock.sendall(frame(CONTINUATION, start[2 * third :]))
        for message in media_messages(fixture("ko_yes") + hiss(3)):
            sock.sendall(frame(TEXT, message.encode()))
        assert read_frames(sock, CLOSE)[-1][0] == CLOSE
    finally:
        sock.close()
    result = SpeechResults(redis_client).get(sid(1), "confirm")
    assert result is not None and result.meaning == "yes"


def test_a_ping_in_the_middle_of_the_audio_is_answered_with_its_pong(
    server: StreamServer, redis_client: redis.Redis
) -> None:
    sock = raw_connect(server.url)
    try:
        sock.sendall(frame(TEXT, support.start_message(sid(2), "confirm", "yes_no").encode()))
        messages = list(media_messages(fixture("ko_no") + hiss(3)))
        for message in messages[:10]:
            sock.sendall(frame(TEXT, message.encode()))
        sock.sendall(frame(PING, b"are you there"))
        assert (PONG, b"are you there") in read_frames(sock, PONG)
        for message in messages[10:]:
            sock.sendall(frame(TEXT, message.encode()))
        read_frames(sock, CLOSE)
    finally:
        sock.close()
    result = SpeechResults(redis_client).get(sid(2), "confirm")
    assert result is not None and result.meaning == "no"


def test_every_message_of_one_tcp_segment_is_taken_not_only_the_first(
    server: StreamServer, redis_client: redis.Redis
) -> None:
    sock = raw_connect(server.url)
    try:
        burst = frame(TEXT, b'{"event": "connected", "protocol": "Call", "version": "1.0.0"}')
        burst += frame(TEXT, support.start_message(sid(3), "main", "menu").encode())
        burst += b"".join(frame(TEXT, m.encode()) for m in media_messages(fixture("ko_agent")))
        burst += b"".join(frame(TEXT, m.encode()) for m in media_messages(hiss(3)))
        sock.sendall(burst)  # one write: the server reads many messages per recv
        read_frames(sock, CLOSE)
    finally:
        sock.close()
    result = SpeechResults(redis_client).get(sid(3), "main")
    assert result is not None and result.meaning == "agent"


def test_a_message_over_the_size_limit_closes_the_stream_with_1009(
    server: StreamServer, redis_client: redis.Redis
) -> None:
    sock = raw_connect(server.url)
    try:
        sock.sendall(frame(TEXT, support.start_message(sid(4), "confirm", "yes_no").encode()))
        huge = json.dumps({"event": "media", "media": {"payload": "A" * MAX_MESSAGE_BYTES}})
        sock.sendall(frame(TEXT, huge.encode()))
        closing = read_frames(sock, CLOSE)[-1]
    finally:
        sock.close()
    assert closing[0] == CLOSE and struct.unpack("!H", closing[1][:2])[0] == 1009
    server.wait_idle()  # the recognizer is freed
    result = SpeechResults(redis_client).get(sid(4), "confirm")
    assert result is not None and result.status == "error"  # the IVR asks again


def test_a_close_from_the_caller_is_answered_and_the_step_gets_an_error(
    server: StreamServer, redis_client: redis.Redis
) -> None:
    sock = raw_connect(server.url)
    try:
        sock.sendall(frame(TEXT, support.start_message(sid(5), "confirm", "yes_no").encode()))
        for message in list(media_messages(hiss(0.3))):
            sock.sendall(frame(TEXT, message.encode()))
        sock.sendall(frame(CLOSE, struct.pack("!H", 1000)))
        closing = read_frames(sock, CLOSE)[-1]
    finally:
        sock.close()
    assert closing[0] == CLOSE
    server.wait_idle()
    result = SpeechResults(redis_client).get(sid(5), "confirm")
    assert result is not None and result.status == "error"


def test_the_server_closes_its_socket_once_the_caller_answered_the_close(
    server: StreamServer,
) -> None:
    sock = raw_connect(server.url)
    try:
        sock.sendall(frame(TEXT, support.start_message(sid(6), "confirm", "yes_no").encode()))
        for message in media_messages(fixture("ko_yes") + hiss(3)):
            sock.sendall(frame(TEXT, message.encode()))
        read_frames(sock, CLOSE)
        sock.sendall(frame(CLOSE, struct.pack("!H", 1000)))
        sock.settimeout(10)
        deadline = time.monotonic() + 10
        rest = b"x"
        while rest and time.monotonic() < deadline:
            rest = sock.recv(4096)  # b"" once the server closed the TCP connection
        assert rest == b""
    finally:
        sock.close()


def test_a_stream_beyond_the_maximum_on_the_real_socket_gets_error_and_the_first_goes_on(
    redis_url: str, redis_client: redis.Redis
) -> None:
    import threading

    from werkzeug.serving import make_server

    from interphone.config import load_settings
    from interphone.voice.speech.app import create_stream_app

    app = create_stream_app(
        load_settings(
            {"INTERPHONE_ENV": "test", "REDIS_URL": redis_url, "SECRET_KEY": support.SECRET}
        ),
        registry=support.ko_registry(),
        results=SpeechResults(redis_client),
        limits=support.TEST_LIMITS,
        max_streams=1,
    )
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"ws://127.0.0.1:{httpd.server_port}{support.PATH}"
    server = StreamServer(url, app.extensions["speech_streams"], support.ko_registry(), httpd)
    try:
        first = support.TwilioStream(url)
        first.start(sid(7), "confirm", "yes_no")
        first.speak(hiss(0.2))
        # admitted once its start message is read, in the stream's own thread: a loaded
        # machine could read the second's first, and the cap would refuse the first
        wait_until(
            lambda: server.streams.describe()["active_streams"] == 1, 10, "the first admitted"
        )
        second = support.TwilioStream(url)
        second.start(sid(8), "confirm", "yes_no")
        second.wait_closed()  # refused at once: the IVR falls back
        first.speak(fixture("ko_yes") + hiss(3))
        first.wait_closed()
        first.close()
        second.close()
        server.wait_idle()
    finally:
        httpd.shutdown()
        thread.join(timeout=10)
    results = SpeechResults(redis_client)
    refused, served = results.get(sid(8), "confirm"), results.get(sid(7), "confirm")
    assert refused is not None and refused.status == "error"
    assert served is not None and served.meaning == "yes"
    described = server.streams.describe()
    assert (described["handled_streams"], described["active_streams"]) == (
        1,
        0,
    )  # refused: never admitted


@pytest.mark.parametrize(
    ("bad_frame", "code"),
    [
        (frame(TEXT, b"\xff\xfe not utf-8"), 1007),
        (bytes([0x81, 0x05]) + b"hello", 1002),  # not masked
        (frame(CONTINUATION, b"a continuation of nothing"), 1002),
        (frame(0x3, b"a reserved opcode"), 1002),
        (bytes([0xC1]) + frame(TEXT, b"{}")[1:], 1002),  # compressed, none agreed
        (frame(PING, b"x" * 126), 1002),  # control frames carry at most 125 bytes
    ],
)
def test_a_frame_no_twilio_would_send_closes_the_stream_with_the_rfc_code(
    server: StreamServer, redis_client: redis.Redis, bad_frame: bytes, code: int
) -> None:
    sock = raw_connect(server.url)
    try:
        sock.sendall(frame(TEXT, support.start_message(sid(9), "confirm", "yes_no").encode()))
        sock.sendall(bad_frame)
        closing = read_frames(sock, CLOSE)[-1]
    finally:
        sock.close()
    assert closing[0] == CLOSE and struct.unpack("!H", closing[1][:2])[0] == code
    server.wait_idle()
    result = SpeechResults(redis_client).get(sid(9), "confirm")
    assert result is not None and result.status == "error"  # the IVR asks again


def test_a_caller_offering_compression_is_read_by_wsproto_and_still_understood(
    server: StreamServer, redis_client: redis.Redis
) -> None:
    import base64

    host_port = server.url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    try:
        sock.sendall(
            (
                f"GET {support.PATH} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Key: {base64.b64encode(b'compressed-tests').decode()}\r\n"
                "Sec-WebSocket-Extensions: permessage-deflate\r\n"
                f"X-Twilio-Signature: {support.signature()}\r\n\r\n"
            ).encode()
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(1024)
        assert answer.startswith(b"HTTP/1.1 101")
        assert b"permessage-deflate" in answer.lower()
        sock.sendall(frame(TEXT, support.start_message(sid(10), "confirm", "yes_no").encode()))
        for message in media_messages(fixture("ko_yes") + hiss(3)):
            sock.sendall(frame(TEXT, message.encode()))  # uncompressed: allowed
        read_frames(sock, CLOSE)
    finally:
        sock.close()
    result = SpeechResults(redis_client).get(sid(10), "confirm")
    assert result is not None and result.meaning == "yes"


def test_a_pong_the_socket_no_longer_takes_ends_the_connection_instead_of_escaping() -> None:
    from types import SimpleNamespace

    from simple_websocket import ConnectionClosed
    from wsproto.connection import Connection, ConnectionType

    from interphone.voice.speech.wsreader import InlineSocket

    ours, theirs = socket.socketpair()  # a real socket whose other end goes away
    server = SimpleNamespace(
        sock=ours, connected=True, ws=Connection(ConnectionType.SERVER), environ={}
    )
    inline = InlineSocket(server, MAX_MESSAGE_BYTES)
    theirs.sendall(frame(PING, b"still there?"))
    theirs.close()  # the ping is read, its pong cannot be sent (EPIPE)
    try:
        with pytest.raises(ConnectionClosed):  # what the stream handler expects
            inline.receive(timeout=1)
        assert not server.connected
    finally:
        ours.close()
