"""The door's voice flow end to end, through the real path: the dev phone plays Twilio,
runs the IVR's TwiML and, at each ``<Connect><Stream>``, opens the real WebSocket of the
real stream server (a threaded HTTP server on a loopback port, the real Korean model,
Twilio's signed handshake and messages), streams committed µ-law fixtures, then requests
the ``<Connect action>`` URL as Twilio does; the IVR reads the server's decision from
the real Redis and the flow goes on.

The IVR runs in Korean here (the test prompt pack of fixtures/speech, the one model
installable from PyPI). Digits are typed (the Korean model does not recognize espeak's
digits: see docs/speech.md); yes/no and the menu words are spoken.
"""

from __future__ import annotations

import io
import threading
import wave
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from playwright.sync_api import Page
from sqlalchemy import select

from interphone.cases import CaseRecord, ImportReport, import_records
from interphone.config import Settings, load_settings
from interphone.devtools.devphone.audio import AudioError, synthesize, wav_to_mulaw
from interphone.devtools.devphone.phone import DevPhone, SimCall
from interphone.devtools.devphone.rest import sent_messages
from interphone.devtools.devphone.streaming import StreamError, stream_audio
from interphone.devtools.harness import free_port
from interphone.models import Contact, Site
from interphone.prompts import extra_catalogues
from interphone.runtime import Runtime
from interphone.voice import hearing as hearing_module
from interphone.voice.hearing import Hearing
from interphone.voice.speech import mulaw
from interphone.voice.speech.app import create_stream_app
from interphone.voice.speech.results import SpeechResults
from interphone.voice.speech.stream import PATH
from interphone.voice.speech.token import verify

from .conftest import SITE
from .fixtures.speech import support
from .fixtures.speech.support import TEST_LIMITS, StreamServer, fixture, korean_pack
from .test_browser_devphone import browser, open_page, server  # noqa: F401  (shared fixtures)

KIOSK = "client:borne-1"
FILE, BORN = "6300000042", date(1990, 4, 12)


@cache
def door_stream_server(redis_url: str) -> StreamServer:
    """The stream server as ``make run`` starts it: its URL is ``SPEECH_STREAM_URL``,
    the URL in the TwiML and the one Twilio (here the dev phone) signs."""
    from werkzeug.serving import make_server

    port = free_port()
    url = f"ws://127.0.0.1:{port}{PATH}"
    settings = load_settings(
        {
            "INTERPHONE_ENV": "test",
            "REDIS_URL": redis_url,
            "SPEECH_STREAM_URL": url,
            "SECRET_KEY": support.SECRET,
        }
    )
    app = create_stream_app(
        settings,
        registry=support.ko_registry(),
        results=SpeechResults(redis.Redis.from_url(redis_url)),
        # a caller whose audio stalls a second (a loaded test machine) is not taken for
        # a silent one: the door's flow is tested here, the limits in test_speech_stream
        limits=replace(TEST_LIMITS, idle_s=10.0, start_timeout_s=10.0),
    )
    httpd = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=httpd.serve_forever, name="door-stream", daemon=True).start()
    return StreamServer(url, app.extensions["speech_streams"], support.ko_registry(), httpd)


@pytest.fixture
def stream_server(redis_url: str) -> Iterator[StreamServer]:
    door = door_stream_server(redis_url)
    door.wait_idle()
    yield door
    door.wait_idle()  # every stream closed, every recognizer freed


@pytest.fixture
def settings(settings: Settings, stream_server: StreamServer) -> Settings:
    # the IVR signs each stream's call token with the stream server's SECRET_KEY
    return replace(settings, speech_stream_url=stream_server.url, secret_key=support.SECRET)


@pytest.fixture
def korean_door(voice_runtime: Runtime, tmp_path: Path) -> Iterator[Runtime]:
    """The test site's door speaks Korean, heard by the local stream server."""
    rt = voice_runtime
    korean_pack(tmp_path)
    with extra_catalogues(tmp_path):
        hearing_module._grammar.cache_clear()
        with rt.sessions.begin() as s:
            site = s.scalar(select(Site).where(Site.code == SITE))
            assert site is not None
            site.intercom_identities = [KIOSK]
            site.languages = ["ko"]
        rt.__dict__["hearing"] = Hearing(
            SpeechResults(rt.redis), models_dir=support.model_without_dither(), local_languages=None
        )
        import_records(
            rt.sessions,
            [CaseRecord(FILE, BORN, "under_review", datetime(2026, 9, 1, tzinfo=UTC))],
            rt.settings.birthdate_key,
            ImportReport(),
        )
        yield rt
    hearing_module._grammar.cache_clear()


def _stream(call: SimCall) -> dict[str, str]:
    """The ``<Parameter>`` s of the ``<Stream>`` the call waits on (fails if none)."""
    stream = ET.fromstring(call.documents[-1]).find("Connect/Stream")
    assert stream is not None, call.documents[-1]
    return {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}


def _answer(rt: Runtime, call: SimCall, key: str) -> tuple[str, str]:
    result = SpeechResults(rt.redis).get(call.sid, key)
    assert result is not None, f"no decision stored for {key}"
    return result.status, result.meaning


def _contacts(rt: Runtime) -> list[Contact]:
    with rt.sessions() as s:
        return list(s.scalars(select(Contact).order_by(Contact.id)))


def _ring(devphone: DevPhone) -> SimCall:
    call = devphone.call(KIOSK)
    assert "외국인 민원실 인터폰" in call.transcript()
    assert call.listening == "stream" and call.waiting_for == "/voice/step/door_main"
    return call


def test_agent_spoken_at_the_door_is_recognized_by_the_real_server_and_joins_the_live_queue(
    korean_door: Runtime, devphone: DevPhone, stream_server: StreamServer
) -> None:
    call = _ring(devphone)
    params = _stream(call)
    assert (params["grammar"], params["lang"]) == ("menu", "ko")
    before = stream_server.streams.describe()["handled_streams"]
    call.speak_audio(fixture("ko_agent"))
    assert _answer(korean_door, call, params["key"]) == ("match", "agent")
    assert stream_server.streams.describe()["handled_streams"] == before + 1
    [contact] = _contacts(korean_door)
    assert (contact.kind, contact.channel, contact.language) == ("live", "intercom", "ko")
    assert "대기 순서는 1번입니다" in call.transcript()
    hold = _stream(call)  # waiting at the door is listened to
    assert hold["grammar"] == "menu" and hold["key"].startswith("door_hold-")


def test_callback_spoken_while_waiting_then_a_typed_number_and_a_spoken_yes_register_it(
    korean_door: Runtime, devphone: DevPhone
) -> None:
    call = _ring(devphone)
    call.speak_audio(fixture("ko_agent"))
    hold = _stream(call)
    call.speak_audio(fixture("ko_callback"))
    assert _answer(korean_door, call, hold["key"]) == ("match", "callback")
    assert call.waiting_for == "/voice/step/door_number"
    assert _stream(call)["grammar"] == "digits"
    call.speak("공 육 일 이 삼 사 오 육 칠 팔")  # digits: the typed path
    assert "0 6 1 2 3 4 5 6 7 8, 맞습니까?" in call.last_said()
    confirm = _stream(call)
    assert confirm["grammar"] == "yes_no"
    call.speak_audio(fixture("ko_yes"))
    assert _answer(korean_door, call, confirm["key"]) == ("match", "yes")
    assert call.status == "completed" and "콜백 요청이 등록되었습니다" in call.transcript()
    [callback] = _contacts(korean_door)  # the live place became the callback
    assert (callback.kind, callback.phone, callback.channel) == (
        "callback",
        "+33612345678",
        "intercom",
    )
    assert any(m["To"] == "+33612345678" for m in sent_messages(korean_door.redis))


def test_status_spoken_then_a_spoken_no_asks_for_the_file_number_again(
    korean_door: Runtime, devphone: DevPhone
) -> None:
    call = _ring(devphone)
    call.speak_audio(fixture("ko_status"))
    assert call.waiting_for == "/voice/step/door_file"
    call.speak("육 삼")
    assert call.waiting_for == "/voice/step/door_file_ok"
    confirm = _stream(call)
    call.speak_audio(fixture("ko_no"))
    assert _answer(korean_door, call, confirm["key"]) == ("match", "no")
    assert call.waiting_for == "/voice/step/door_file"
    assert call.last_said() == "서류 번호를 한 자리씩 말씀해 주세요."
    assert _contacts(korean_door) == []


def test_the_status_is_read_after_spoken_yes_to_the_file_number_and_birth_date(
    korean_door: Runtime, devphone: DevPhone
) -> None:
    call = _ring(devphone)
    call.speak_audio(fixture("ko_status"))
    call.speak("육 삼 공 공 공 공 공 공 사 이")
    assert "6 3 0 0 0 0 0 0 4 2" in call.last_said()
    call.speak_audio(fixture("ko_yes"))
    assert call.waiting_for == "/voice/step/door_birth"
    call.speak("일 이 공 사 일 구 구 공")
    assert "1990년 4월 12일" in call.last_said()
    call.speak_audio(fixture("ko_yes"))
    assert "under review since" in call.transcript()  # the status (English fallback text)
    assert call.waiting_for == "/voice/step/door_after"


def test_repeat_spoken_at_the_menu_asks_the_menu_again(
    korean_door: Runtime, devphone: DevPhone
) -> None:
    call = _ring(devphone)
    first = _stream(call)
    call.speak_audio(fixture("ko_repeat"))
    assert _answer(korean_door, call, first["key"]) == ("match", "repeat")
    assert call.waiting_for == "/voice/step/door_main"
    assert _stream(call)["key"] != first["key"]  # a new question, a new result key
    assert call.transcript().count("민원 상태는 확인") == 2


def test_two_menu_words_at_once_twice_lead_to_the_live_queue_not_a_dead_end(
    korean_door: Runtime, devphone: DevPhone
) -> None:
    call = _ring(devphone)
    first = _stream(call)
    call.speak_audio(fixture("ko_two_words"))  # "status agent": not one answer
    assert _answer(korean_door, call, first["key"])[0] == "no_match"
    assert "잘 이해하지 못했습니다." in call.transcript()
    call.speak_audio(fixture("ko_two_words"))
    [contact] = _contacts(korean_door)
    assert (contact.kind, contact.channel) == ("live", "intercom")


def test_a_quiet_line_at_the_menu_is_silence_and_the_question_is_asked_again(
    korean_door: Runtime, devphone: DevPhone
) -> None:
    call = _ring(devphone)
    first = _stream(call)
    call.speak_audio(b"")  # nothing said: only the line's hiss until the server decides
    assert _answer(korean_door, call, first["key"]) == ("silence", "")
    assert call.waiting_for == "/voice/step/door_main"


def test_paced_audio_at_real_time_is_decided_and_the_flow_goes_on(
    korean_door: Runtime, devphone: DevPhone
) -> None:
    call = _ring(devphone)
    key = _stream(call)["key"]
    call.speak_audio(fixture("ko_agent"), paced=True)
    assert _answer(korean_door, call, key) == ("match", "agent")
    assert _stream(call)["key"].startswith("door_hold-")


def _wav(samples: np.ndarray, rate: int, channels: int = 1) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        frames = np.repeat(samples[:, None], channels, axis=1) if channels > 1 else samples
        wav.writeframes(np.asarray(frames, dtype="<i2").tobytes())
    return out.getvalue()


def test_a_44_1_khz_stereo_wav_file_is_resampled_to_8_khz_mulaw_and_recognized(
    korean_door: Runtime, devphone: DevPhone
) -> None:
    from interphone.devtools.devphone.audio import resample

    pcm = mulaw.decode(fixture("ko_yes")).astype(np.float64)
    wav = _wav(resample(pcm, 8000, 44100), 44100, channels=2)
    audio = wav_to_mulaw(wav)
    assert abs(len(audio) - len(fixture("ko_yes"))) <= 1  # 8 kHz, one byte a sample
    call = _ring(devphone)
    call.speak_audio(fixture("ko_status"))
    call.speak("육 삼")
    key = _stream(call)["key"]
    call.speak_audio(audio)
    assert _answer(korean_door, call, key) == ("match", "yes")


def test_a_phrase_spoken_by_espeak_ng_goes_through_the_real_stream(
    korean_door: Runtime, devphone: DevPhone
) -> None:
    call = _ring(devphone)
    key = _stream(call)["key"]
    call.speak_audio(synthesize("상담원", "ko"))
    assert _answer(korean_door, call, key) == ("match", "agent")


@pytest.mark.parametrize(
    "junk",
    [b"", b"RIFF\x00\x00\x00\x00WAVEnot really", b"\x00" * 64, b"ID3 an mp3 file"],
)
def test_a_file_that_is_not_a_pcm_wav_is_a_clear_error(junk: bytes) -> None:
    with pytest.raises(AudioError, match="WAV"):
        wav_to_mulaw(junk)


def test_without_espeak_ng_speaking_a_phrase_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(AudioError, match="apt-get install espeak-ng"):
        synthesize("네", "ko")


def test_a_handshake_signed_with_another_auth_token_is_refused_and_the_call_still_waits(
    korean_door: Runtime, devphone: DevPhone, stream_server: StreamServer
) -> None:
    call = _ring(devphone)
    key = _stream(call)["key"]
    forger = DevPhone(
        devphone.transport,
        public_base_url=devphone.base,
        auth_token="not-the-auth-token",
        account_sid=devphone.account_sid,
        connection=devphone.redis,
    )
    stolen = SimCall.from_dict(forger, call.to_dict())
    before = stream_server.streams.describe()["handled_streams"]
    with pytest.raises(StreamError, match="403"):
        stolen.speak_audio(fixture("ko_agent"))
    assert stream_server.streams.describe()["handled_streams"] == before
    assert SpeechResults(korean_door.redis).get(call.sid, key) is None
    assert stolen.listening == "stream"  # nothing was decided: the call still listens


def test_no_stream_server_listening_is_a_clear_error_not_a_hang(
    korean_door: Runtime, devphone: DevPhone
) -> None:
    call = _ring(devphone)
    pending = call.gather
    assert pending is not None
    pending.target = f"ws://127.0.0.1:{free_port()}{PATH}"  # nobody listens there
    with pytest.raises(StreamError, match="no speech stream server"):
        call.speak_audio(fixture("ko_agent"))
    assert call.listening == "stream"


# -- the dev-phone page's door panel ---------------------------------------------------------
def _post(app: Any, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    response = app.test_client().post(path, **kwargs)
    return response.status_code, response.get_json()


def test_the_door_panel_speaks_a_phrase_through_espeak_ng_and_the_real_stream(
    korean_door: Runtime, app: Any
) -> None:
    status, view = _post(app, "/dev/phone/api/act", json={"number": KIOSK, "action": "ring"})
    assert status == 200 and view["call"]["listening"] == "stream"
    status, view = _post(app, "/dev/phone/api/voice", json={"number": KIOSK, "text": "상담원"})
    assert status == 200, view
    heard = " ".join(h["text"] for h in view["call"]["heard"])
    assert "대기 순서는 1번입니다" in heard  # "agent" was recognized: in the live queue
    [contact] = _contacts(korean_door)
    assert contact.kind == "live"


def test_the_door_panel_sends_a_wav_file_through_the_real_stream(
    korean_door: Runtime, app: Any
) -> None:
    pcm = mulaw.decode(fixture("ko_agent"))
    _post(app, "/dev/phone/api/act", json={"number": KIOSK, "action": "ring"})
    status, view = _post(
        app,
        "/dev/phone/api/audio",
        data={"number": KIOSK, "audio": (io.BytesIO(_wav(pcm, 8000)), "agent.wav")},
    )
    assert status == 200, view
    assert view["call"]["listening"] == "stream"  # now listened to while waiting
    assert _contacts(korean_door)[0].kind == "live"


def test_the_door_panel_answers_bad_audio_and_wrong_moments_clearly_never_500(
    korean_door: Runtime, app: Any
) -> None:
    status, view = _post(app, "/dev/phone/api/voice", json={"number": KIOSK, "text": "네"})
    assert (status, view["error"]) == (409, "no call in progress")
    _post(app, "/dev/phone/api/act", json={"number": KIOSK, "action": "ring"})
    status, view = _post(
        app,
        "/dev/phone/api/audio",
        data={"number": KIOSK, "audio": (io.BytesIO(b"ID3 not a wav"), "song.mp3")},
    )
    assert status == 400 and "WAV" in view["error"]
    status, view = _post(app, "/dev/phone/api/audio", data={"number": KIOSK})
    assert status == 400 and "no WAV file" in view["error"]
    status, view = _post(app, "/dev/phone/api/voice", json={"number": KIOSK, "text": "  "})
    assert (status, view["error"]) == (400, "nothing to say")
    status, view = _post(app, "/dev/phone/api/voice", json={"number": "nonsense", "text": "네"})
    assert (status, view["error"]) == (400, "not a phone number")
    assert _contacts(korean_door) == []  # nothing reached the IVR


def test_speaking_audio_where_twilio_s_recognizer_listens_says_to_type_instead(
    voice_runtime: Runtime, app: Any
) -> None:
    with voice_runtime.sessions.begin() as s:
        site = s.scalar(select(Site).where(Site.code == SITE))
        assert site is not None
        site.intercom_identities = [KIOSK]  # French, no local model: Twilio's <Gather>
    _, view = _post(app, "/dev/phone/api/act", json={"number": KIOSK, "action": "ring"})
    assert view["call"]["listening"] == "speech"
    status, view = _post(app, "/dev/phone/api/voice", json={"number": KIOSK, "text": "agent"})
    assert status == 409 and "type the answer" in view["error"]


def test_dev_serve_runs_the_stream_server_when_models_are_configured(tmp_path: Path) -> None:
    from interphone.cli.dev import dev_processes

    procfile = (Path(__file__).parent.parent / "Procfile").read_text()
    assert any(line.startswith("stream:") for line in procfile.splitlines())
    env: dict[str, str] = {}
    assert dev_processes(None, 5000, env) == ["web", "worker", "transcriber"] and env == {}
    assert dev_processes(tmp_path, 5000, env) == ["web", "worker", "stream", "transcriber"]
    assert env["SPEECH_STREAM_URL"] == "ws://127.0.0.1:5200/voice/stream"  # honcho: +200
    own = {"SPEECH_STREAM_URL": "wss://speech.example/voice/stream"}
    dev_processes(tmp_path, 5000, own)
    assert own["SPEECH_STREAM_URL"] == "wss://speech.example/voice/stream"


def test_in_a_browser_the_door_panel_speaks_a_phrase_then_a_wav_file_through_the_stream(
    korean_door: Runtime,
    server: str,  # noqa: F811
    open_page: Callable[..., Page],  # noqa: F811
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    page = open_page()
    page.goto(f"{server}/dev/phone")
    door = page.locator("[data-phone]").filter(
        has=page.get_by_role("heading", name="Interphone (porte)")
    )
    door.get_by_label("Identité").fill(KIOSK)
    door.get_by_role("button", name="Sonner").click()
    log = door.locator("[data-log]")
    expect(log).to_contain_text("외국인 민원실 인터폰")
    door.get_by_label("Prononcer (espeak-ng)").fill("상담원")
    with page.expect_response(lambda r: r.url.endswith("/dev/phone/api/voice")) as answer:
        door.get_by_role("button", name="Prononcer").click()
    assert answer.value.status == 200
    expect(log).to_contain_text("대기 순서는 1번입니다")  # "agent" heard: in the live queue
    wav = tmp_path / "callback.wav"
    wav.write_bytes(_wav(mulaw.decode(fixture("ko_callback")), 8000))
    door.get_by_label("Fichier WAV").set_input_files(str(wav))
    with page.expect_response(lambda r: r.url.endswith("/dev/phone/api/audio")) as answer:
        door.get_by_role("button", name="Envoyer l'audio").click()
    assert answer.value.status == 200
    expect(log).to_contain_text("휴대 전화 번호를 한 자리씩")  # "callback" heard: the number
    page.close()


def test_a_stream_cannot_answer_another_call_s_question_with_its_own_token(
    korean_door: Runtime, devphone: DevPhone, stream_server: StreamServer
) -> None:
    first, second = _ring(devphone), _ring(devphone)
    mine, theirs = _stream(first), _stream(second)
    assert verify(support.SECRET, theirs["token"], second.sid, theirs["key"])
    # The handshake's signature is the same for every call: only the token tells them apart.
    url = stream_server.url
    before = stream_server.registry.created_recognizers
    stream_audio(
        url,
        signature=str(devphone.validator.compute_signature(url, {})),
        call_sid=first.sid,  # the second call's parameters, token included, for the first
        account_sid=devphone.account_sid,
        parameters={**theirs, "key": mine["key"]},
        audio=fixture("ko_callback"),
    )
    assert stream_server.registry.created_recognizers == before  # nothing was heard
    assert _answer(korean_door, first, mine["key"]) == ("error", "")
    first.speak_audio(fixture("ko_agent"))  # the first call's own stream is still heard
    assert _answer(korean_door, first, mine["key"]) == ("match", "agent")
