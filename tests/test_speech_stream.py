"""The Media Streams WebSocket endpoint, end to end: a real threaded HTTP server, real
WebSocket connections speaking Twilio's protocol, the real Korean model, a real Redis."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
import redis

from interphone.voice.speech import mulaw
from interphone.voice.speech.results import SpeechResult, SpeechResults
from interphone.voice.speech.stream import MAX_MESSAGE_BYTES
from interphone.voice.speech.token import TTL_S as TOKEN_TTL_S
from interphone.voice.speech.token import sign

from .fixtures.speech import support
from .fixtures.speech.support import (
    SPOKEN,
    TEST_LIMITS,
    StreamServer,
    TwilioStream,
    call_step,
    fixture,
    hiss,
    masked_text_frame,
    raw_connect,
)


@pytest.fixture
def server(redis_url: str, redis_client: redis.Redis) -> Iterator[StreamServer]:
    server = support.stream_server(redis_url)
    server.wait_idle()
    yield server
    server.wait_idle()  # every stream closed, every recognizer freed


@pytest.fixture
def results(redis_client: redis.Redis) -> SpeechResults:
    return SpeechResults(redis_client)


def sid(n: int) -> str:
    return f"CA{n:032x}"


@pytest.mark.parametrize("name", ["ko_yes", "ko_no"])
def test_yes_and_no_spoken_into_the_stream_are_stored_for_the_ivr(
    server: StreamServer, results: SpeechResults, name: str
) -> None:
    grammar, meaning = SPOKEN[name]
    call_step(server, sid(1), "confirm_phone", grammar, fixture(name))
    result = results.get(sid(1), "confirm_phone")
    assert result is not None
    assert (result.grammar, result.status, result.meaning) == (grammar, "match", meaning)


@pytest.mark.parametrize("name", ["ko_status", "ko_callback", "ko_agent", "ko_repeat"])
def test_menu_words_spoken_into_the_stream_choose_the_menu_entry(
    server: StreamServer, results: SpeechResults, name: str
) -> None:
    grammar, meaning = SPOKEN[name]
    call_step(server, sid(2), "main", grammar, fixture(name))
    result = results.get(sid(2), "main")
    assert result == SpeechResult(grammar, result.word, meaning, "match", result.audio_ms)
    assert result.word  # the Korean word heard, for the read-back


def test_the_server_closes_the_stream_soon_after_the_word_so_twilio_moves_on(
    server: StreamServer, results: SpeechResults
) -> None:
    stream = TwilioStream(server.url)
    stream.start(sid(3), "language", "language")
    audio = fixture("ko_english") + hiss(3)
    stream.speak(audio)
    stream.wait_closed()
    assert stream.closed_by_server
    result = results.get(sid(3), "language")
    assert result is not None and result.meaning == "en"
    assert result.audio_ms < len(audio) / 8  # decided before the end of the audio


def test_each_step_of_a_call_has_its_own_result(
    server: StreamServer, results: SpeechResults
) -> None:
    call_step(server, sid(4), "main", "menu", fixture("ko_agent"))
    call_step(server, sid(4), "confirm", "yes_no", fixture("ko_no"))
    main, confirm = results.get(sid(4), "main"), results.get(sid(4), "confirm")
    assert main is not None and main.meaning == "agent"
    assert confirm is not None and confirm.meaning == "no"
    assert results.get(sid(5), "main") is None


def test_results_expire_after_an_hour_and_spoken_digits_after_the_call_state(
    results: SpeechResults, redis_client: redis.Redis
) -> None:
    results.put(sid(6), "menu", SpeechResult("menu", "상담원", "agent", "match"))
    results.put(sid(6), "phone", SpeechResult("digits", "공 육", "06", "match"))
    assert 3500 < redis_client.ttl(results.key(sid(6), "menu")) <= 3600
    assert 4 * 3600 - 100 < redis_client.ttl(results.key(sid(6), "phone")) <= 4 * 3600
    assert "06" not in repr(results.get(sid(6), "phone"))  # never a number in a log line


def test_malformed_json_bad_base64_and_binary_messages_are_skipped(
    server: StreamServer, results: SpeechResults
) -> None:
    stream = TwilioStream(server.url)
    stream.start(sid(7), "confirm", "yes_no")
    for junk in [
        "not json at all",
        '{"event": "media", "media": {"payload": "!!! not base64 !!!"}}',
        '{"event": "media", "media": {"payload": 12}}',
        '{"event": "med',  # a message cut short
        "[1, 2, 3]",
        '{"event": "media"}',
        b"\x00\xff\xfe binary",
    ]:
        stream.send(junk)
    stream.speak(fixture("ko_yes") + hiss(3))
    stream.wait_closed()
    result = results.get(sid(7), "confirm")
    assert result is not None and result.meaning == "yes"


def test_a_flood_of_malformed_messages_ends_the_stream_with_an_error(
    server: StreamServer, results: SpeechResults
) -> None:
    stream = TwilioStream(server.url)
    stream.start(sid(8), "confirm", "yes_no")
    for _ in range(60):
        if not stream.send("{oops"):
            break
    stream.wait_closed()
    result = results.get(sid(8), "confirm")
    assert result is not None and result.status == "error"


def test_a_frame_cut_short_by_a_dropped_connection_frees_the_recognizer(
    server: StreamServer, results: SpeechResults
) -> None:
    sock = raw_connect(server.url)
    sock.sendall(masked_text_frame(support.start_message(sid(9), "confirm", "yes_no")))
    assert support.poll_until(lambda: server.registry.live_recognizers > 0, 5)
    frame = masked_text_frame(json.dumps({"event": "media", "media": {"payload": "/w==" * 60}}))
    sock.sendall(frame[: len(frame) // 2])  # half a frame, then the line drops
    sock.close()
    server.wait_idle()
    result = results.get(sid(9), "confirm")
    assert result is not None and result.status == "error"  # the IVR re-asks


def test_a_frame_cut_short_on_a_line_that_stays_open_ends_at_the_idle_limit(
    server: StreamServer, results: SpeechResults
) -> None:
    sock = raw_connect(server.url)
    try:
        sock.sendall(masked_text_frame(support.start_message(sid(10), "confirm", "yes_no")))
        frame = masked_text_frame(json.dumps({"event": "media", "media": {"payload": "/w=="}}))
        sock.sendall(frame[:5])
        started = time.monotonic()
        sock.settimeout(5)
        closing = sock.recv(16)  # the server's close frame
        assert closing[:1] == b"\x88"
        assert time.monotonic() - started < TEST_LIMITS.idle_s + 2
    finally:
        sock.close()
    result = results.get(sid(10), "confirm")
    assert result is not None and result.status == "silence"


def test_a_stream_that_never_sends_start_is_closed_after_the_start_timeout(
    server: StreamServer, redis_client: redis.Redis
) -> None:
    stream = TwilioStream(server.url)
    stream.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
    stream.speak(hiss(0.2))  # media before start means nothing
    waited = stream.wait_closed(timeout=TEST_LIMITS.start_timeout_s + 3)
    assert waited < TEST_LIMITS.start_timeout_s + 1
    assert server.registry.live_recognizers == 0
    assert list(redis_client.scan_iter("ip:speech:*")) == []


def test_a_silent_connection_with_no_message_at_all_is_closed_too(server: StreamServer) -> None:
    stream = TwilioStream(server.url)
    assert stream.wait_closed(timeout=TEST_LIMITS.start_timeout_s + 3) < (
        TEST_LIMITS.start_timeout_s + 1
    )


def test_a_caller_who_talks_past_the_maximum_gets_too_long(
    server: StreamServer, results: SpeechResults
) -> None:
    speech = mulaw.decode(fixture("ko_hello"))[1200:-1200]
    endless = mulaw.encode(np.tile(speech, 8))  # 8 s of speech without a pause
    call_step(server, sid(11), "confirm", "yes_no", endless, tail_s=0)
    result = results.get(sid(11), "confirm")
    assert result is not None and result.status == "too_long"
    assert result.audio_ms == pytest.approx(TEST_LIMITS.max_s * 1000, abs=40)


def test_a_stream_left_open_without_audio_ends_at_the_idle_limit_as_silence(
    server: StreamServer, results: SpeechResults
) -> None:
    stream = TwilioStream(server.url)
    stream.start(sid(12), "confirm", "yes_no")
    stream.speak(hiss(0.3))
    assert stream.wait_closed(timeout=TEST_LIMITS.idle_s + 3) < TEST_LIMITS.idle_s + 1
    result = results.get(sid(12), "confirm")
    assert result is not None and result.status == "silence"


def test_stop_before_a_decision_classifies_what_was_heard(
    server: StreamServer, results: SpeechResults
) -> None:
    stream = TwilioStream(server.url)
    stream.start(sid(13), "confirm", "yes_no")
    stream.speak(hiss(0.5))
    stream.send(json.dumps({"event": "stop", "stop": {"callSid": sid(13)}}))
    stream.wait_closed()
    result = results.get(sid(13), "confirm")
    assert result is not None and result.status == "silence"


@pytest.mark.parametrize(
    ("lang", "grammar"), [("fr", "yes_no"), ("ko", "nonsense"), ("", "yes_no")]
)
def test_a_language_without_a_model_or_an_unknown_grammar_answers_error(
    server: StreamServer, results: SpeechResults, lang: str, grammar: str
) -> None:
    stream = TwilioStream(server.url)
    stream.start(sid(14), "main", grammar, lang)
    stream.wait_closed()
    result = results.get(sid(14), "main")
    assert result is not None and result.status == "error"


def test_a_start_without_call_sid_or_step_is_closed_without_storing(
    server: StreamServer, redis_client: redis.Redis
) -> None:
    stream = TwilioStream(server.url)
    stream.send(json.dumps({"event": "start", "start": {"customParameters": {}}}))
    stream.wait_closed()
    stream = TwilioStream(server.url)
    stream.send(support.start_message("CA../../etc", "main", "menu"))
    stream.wait_closed()
    assert list(redis_client.scan_iter("ip:speech:*")) == []


def test_100_concurrent_streams_are_all_answered_without_crash_or_leak(
    server: StreamServer, results: SpeechResults
) -> None:
    audio = {"ko_yes": fixture("ko_yes"), "ko_agent": fixture("ko_agent")}
    errors: list[BaseException] = []

    def caller(n: int) -> None:
        name = "ko_yes" if n % 2 else "ko_agent"
        try:
            call_step(server, sid(1000 + n), "step", SPOKEN[name][0], audio[name], tail_s=2.5)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    before = server.streams.describe()["handled_streams"]
    threads = [threading.Thread(target=caller, args=(n,)) for n in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    server.wait_idle(timeout=30)
    meanings = [results.get(sid(1000 + n), "step") for n in range(100)]
    assert all(r is not None for r in meanings)
    assert [r.meaning for r in meanings if r] == ["yes" if n % 2 else "agent" for n in range(100)]
    assert server.streams.describe()["handled_streams"] - before == 100
    assert server.registry.live_recognizers == 0


def test_healthz_reports_the_loaded_model_and_open_streams(server: StreamServer) -> None:
    host_port = server.url.split("//", 1)[1].split("/", 1)[0]
    with urllib.request.urlopen(f"http://{host_port}/healthz", timeout=5) as response:
        health = json.loads(response.read())
    assert health["status"] == "ok"
    assert health["models"]["ko"]["unk"] == "<UNK>"
    assert health["models"]["ko"]["missing_words"] == {}
    assert health["live_recognizers"] == 0
    assert health["rss_mb"] > 100


def test_the_server_still_answers_after_all_the_failures(
    server: StreamServer, results: SpeechResults
) -> None:
    sock = raw_connect(server.url)
    sock.sendall(b"\x81\xff garbage header")
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    call_step(server, sid(15), "confirm", "yes_no", fixture("ko_yes"))
    result = results.get(sid(15), "confirm")
    assert result is not None and result.meaning == "yes"


class ScriptedSocket:
    """A WebSocket that delivers a fixed list of messages, then nothing."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = messages
        self.closed = False
        self._quiet = threading.Event()  # never set: nothing more arrives

    def receive(self, timeout: float | None = None) -> str | None:
        if self.messages:
            return self.messages.pop(0)
        self._quiet.wait(min(timeout or 0.0, 0.01))  # a receive that times out
        return None

    def close(self, reason: int | None = None, message: str | None = None) -> None:
        self.closed = True


def test_a_stream_beyond_the_maximum_is_answered_error_so_the_ivr_falls_back(
    redis_client: redis.Redis, results: SpeechResults
) -> None:
    from interphone.voice.speech.stream import SpeechStreams

    registry = support.ko_registry()
    streams = SpeechStreams(registry, results, TEST_LIMITS, secret=support.SECRET, max_streams=0)
    socket_ = ScriptedSocket([support.start_message(sid(16), "main", "menu")])
    streams.handle(socket_)
    assert socket_.closed
    result = results.get(sid(16), "main")
    assert result is not None and result.status == "error"
    assert registry.live_recognizers == 0
    assert streams.describe()["active_streams"] == 0


@pytest.mark.parametrize(
    "forged",
    [
        "",  # no signature
        support.signature(token="not-the-auth-token"),
        support.signature(url="ws://127.0.0.1:5000/elsewhere"),
    ],
)
def test_a_handshake_not_signed_by_twilio_is_refused_before_any_audio(
    server: StreamServer, redis_client: redis.Redis, forged: str
) -> None:
    before = server.streams.describe()["handled_streams"]
    sock, status = support.handshake(server.url, signed=forged)
    sock.close()
    assert status == 403
    assert server.streams.describe()["handled_streams"] == before
    assert list(redis_client.scan_iter("ip:speech:*")) == []


def test_twilio_may_sign_the_stream_url_in_its_https_form(
    server: StreamServer, results: SpeechResults
) -> None:
    https_form = support.signature(url="http://127.0.0.1:5000" + support.PATH)
    stream = TwilioStream(server.url, signed=https_form)
    stream.start(sid(17), "confirm", "yes_no")
    stream.speak(fixture("ko_no") + hiss(3))
    stream.wait_closed()
    result = results.get(sid(17), "confirm")
    assert result is not None and result.meaning == "no"


def test_the_ivr_s_max_s_parameter_sets_how_long_a_question_listens(
    server: StreamServer, results: SpeechResults
) -> None:
    stream = TwilioStream(server.url)
    stream.send(support.start_message(sid(18), "door_hold-4", "menu", max_s="2"))
    stream.speak(hiss(6))
    stream.wait_closed()
    result = results.get(sid(18), "door_hold-4")
    assert result is not None and result.status == "silence"
    assert result.audio_ms == 2000  # not the server's default no-speech limit (3 s here)


def test_the_result_key_may_also_be_named_step(
    server: StreamServer, results: SpeechResults
) -> None:
    stream = TwilioStream(server.url)
    stream.send(support.start_message(sid(19), "confirm", "yes_no", key_name="step"))
    stream.speak(fixture("ko_yes") + hiss(3))
    stream.wait_closed()
    result = results.get(sid(19), "confirm")
    assert result is not None and result.meaning == "yes"


@pytest.mark.parametrize("max_s", ["soon", "nan", ""])
def test_a_malformed_max_s_falls_back_to_the_server_limits(
    server: StreamServer, results: SpeechResults, max_s: str
) -> None:
    stream = TwilioStream(server.url)
    stream.send(support.start_message(sid(20), "confirm", "yes_no", max_s=max_s))
    stream.speak(fixture("ko_no") + hiss(3))
    stream.wait_closed()
    result = results.get(sid(20), "confirm")
    assert result is not None and result.meaning == "no"


def test_a_stream_server_on_its_own_host_checks_the_signature_of_that_url() -> None:
    from flask import Flask

    from interphone.config import load_settings
    from interphone.voice.speech.app import stream_urls

    settings = load_settings(
        {
            "INTERPHONE_ENV": "test",
            "PUBLIC_BASE_URL": "https://prefecture.example",
            "SPEECH_STREAM_URL": "wss://speech.prefecture.example/voice/stream",
        }
    )
    with Flask(__name__).test_request_context("/voice/stream"):
        urls = stream_urls(settings)
    assert "wss://speech.prefecture.example/voice/stream" in urls
    assert "wss://prefecture.example/voice/stream" in urls
    assert "https://prefecture.example/voice/stream" in urls


@pytest.mark.parametrize(
    "token",
    [
        "",  # none
        "1999999999.0123",  # made up
        sign(support.SECRET, sid(22), "confirm", now=time.time() - TOKEN_TTL_S - 1),  # expired
        sign(support.SECRET, sid(23), "confirm"),  # another call's
        sign(support.SECRET, sid(22), "main"),  # another question's
        sign("not-the-secret-key-0123456789abcdef", sid(22), "confirm"),
    ],
)
def test_a_stream_without_its_call_token_is_refused(
    server: StreamServer, results: SpeechResults, token: str
) -> None:
    before = server.registry.created_recognizers
    refused = server.streams.describe()["refused_streams"]
    stream = TwilioStream(server.url)  # the handshake's signature is right
    stream.send(support.start_message(sid(22), "confirm", "yes_no", token=token))
    stream.speak(fixture("ko_yes") + hiss(1))  # heard by nobody
    assert stream.wait_closed(timeout=5) < 2
    result = results.get(sid(22), "confirm")
    assert result is not None and result.status == "error"  # the IVR falls back at once
    assert server.registry.created_recognizers == before  # nothing was heard
    assert server.streams.describe()["refused_streams"] == refused + 1  # on /healthz


def test_a_refused_stream_never_overwrites_the_decision_of_the_real_one(
    server: StreamServer, results: SpeechResults
) -> None:
    call_step(server, sid(24), "confirm", "yes_no", fixture("ko_yes"))
    stream = TwilioStream(server.url)
    stream.send(support.start_message(sid(24), "confirm", "yes_no", token=""))
    stream.wait_closed(timeout=5)
    result = results.get(sid(24), "confirm")
    assert result is not None and result.meaning == "yes"


def test_nested_json_in_a_stream_ends_in_an_error_decision(
    server: StreamServer, results: SpeechResults
) -> None:
    stream = TwilioStream(server.url)
    stream.start(sid(25), "confirm", "yes_no")
    stream.speak(hiss(0.2))
    depth = (MAX_MESSAGE_BYTES - 100) // 2  # within the size limit, far past json's depth
    stream.send('{"event": "media", "media": ' + "[" * depth + "]" * depth + "}")
    stream.wait_closed(timeout=5)
    assert support.poll_until(lambda: results.get(sid(25), "confirm") is not None, 5)
    result = results.get(sid(25), "confirm")
    assert result is not None and result.status == "error"


class GoneSocket(ScriptedSocket):
    """A WebSocket whose other side has gone: closing it fails as a socket does."""

    def close(self, reason: int | None = None, message: str | None = None) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_caller_gone_when_the_stream_is_refused_is_no_error_in_the_logs(
    results: SpeechResults, caplog: pytest.LogCaptureFixture
) -> None:
    from interphone.voice.speech.stream import SpeechStreams

    streams = SpeechStreams(support.ko_registry(), results, TEST_LIMITS, secret=support.SECRET)
    streams.handle(GoneSocket([support.start_message(sid(26), "main", "menu", token="")]))
    result = results.get(sid(26), "main")
    assert result is not None and result.status == "error"
    assert [r for r in caplog.records if r.levelname == "ERROR"] == []


def test_a_call_sid_or_language_with_a_trailing_newline_is_refused(
    server: StreamServer, redis_client: redis.Redis, results: SpeechResults
) -> None:
    stream = TwilioStream(server.url)
    stream.send(support.start_message(sid(27) + "\n", "confirm", "yes_no"))
    stream.wait_closed(timeout=5)
    assert [k for k in redis_client.scan_iter("ip:speech:*") if b"\n" in k] == []
    stream = TwilioStream(server.url)
    stream.send(support.start_message(sid(28), "confirm", "yes_no", lang="ko\n"))
    stream.speak(fixture("ko_yes") + hiss(1))
    stream.wait_closed(timeout=5)
    result = results.get(sid(28), "confirm")
    assert result is not None and result.status == "error"  # no language "ko\n" is heard
