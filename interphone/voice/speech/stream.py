"""The Twilio Media Streams WebSocket endpoint (flask-sock): one stream = one speech step.

Twilio opens the socket for ``<Connect action=...><Stream url=...>`` and sends JSON text
messages: ``connected``; ``start`` (``start.callSid``, ``start.streamSid``,
``start.customParameters`` = the ``<Parameter>`` s of the TwiML); ``media``
(``media.payload``: base64 of 8 kHz µ-law, about 20 ms each); ``mark``; ``stop``.

The ``<Parameter>`` s: ``key`` (or ``step``) names the question's result, ``grammar``
and ``lang`` choose the words, ``max_s`` (optional, 1-60) is how long the question
listens, ``token`` is the IVR's signature of the call and the question (:mod:`.token`):
a stream without a valid token for its ``callSid`` and ``key`` is refused before any
audio is heard. The server decodes the audio into a grammar-restricted recognizer, stores the
decision with :class:`SpeechResults` under (CallSid, key) and closes the socket, upon
which Twilio requests the ``action`` URL.

Whatever arrives, the server answers within bounds: malformed messages are skipped (and
too many of them end the stream with ``error``), a stream that never says ``start`` is
closed after ``Limits.start_timeout_s``, one that stays open ends with ``too_long`` or
``silence``, and the recognizer is freed whatever happens.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Protocol

import redis
from flask import Flask
from flask_sock import Sock
from simple_websocket import ConnectionClosed

from ... import metrics
from . import token as call_token
from .models import ModelError, ModelRegistry
from .recognizer import Limits, Utterance
from .results import SpeechResult, SpeechResults, Status, valid_key_part
from .wsreader import InlineSocket, NoThread

log = logging.getLogger(__name__)

PATH = "/voice/stream"
MAX_MESSAGE_BYTES = 64 * 1024  # a media message is about 250 bytes, a start about 1 KB
MAX_BAD_MESSAGES = 50
MIN_LISTEN_S, MAX_LISTEN_S = 1.0, 60.0  # bounds of a question's ``max_s`` parameter
_LANGUAGE = re.compile(r"[a-z]{2,3}")  # matched whole: no trailing newline


class Socket(Protocol):
    """What the handler needs of a WebSocket (``simple_websocket.Server``)."""

    def receive(self, timeout: float | None = None) -> Any: ...

    def close(self, reason: int | None = None, message: str | None = None) -> None: ...


@dataclass
class _Call:
    sid: str
    step: str  # the result's key
    grammar: str
    lang: str
    max_s: float | None = None  # how long this question listens, when the IVR says
    token: str = ""  # the IVR's signature of (sid, step): see .token


@dataclass
class _State:
    """One connection: its call and step once started, its utterance, its decision."""

    call: _Call | None = None
    utterance: Utterance | None = None
    decided: bool = False


class SpeechStreams:
    """Handles Media Streams connections; counts them and the decisions taken.

    ``secret``: the app's ``SECRET_KEY``, which signs each stream's call token (without
    it, every stream is refused)."""

    def __init__(
        self,
        registry: ModelRegistry,
        results: SpeechResults,
        limits: Limits | None = None,
        *,
        secret: str = "",
        max_streams: int = 100,
    ) -> None:
        self.registry = registry
        self.results = results
        self.limits = limits or Limits()
        self.secret = secret
        self.max_streams = max_streams
        self._lock = threading.Lock()
        self.active = 0
        self.handled = 0
        self.refused = 0  # streams without a valid call token
        self.decisions: dict[str, int] = {}

    # -- bookkeeping ----------------------------------------------------------------------
    def _enter(self) -> bool:
        with self._lock:
            if self.active >= self.max_streams:
                return False
            self.active += 1
            return True

    def _leave(self) -> None:
        with self._lock:
            self.active -= 1
            self.handled += 1

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "active_streams": self.active,
                "handled_streams": self.handled,
                "refused_streams": self.refused,
                "decisions": dict(self.decisions),
                "max_streams": self.max_streams,
            }

    # -- one connection ---------------------------------------------------------------------
    def handle(self, ws: Socket) -> None:
        admitted = self._enter()
        state = _State()
        cpu_started = time.thread_time()  # a stream has its thread: its CPU is the stream's
        try:
            self._serve(ws, admitted, state)
        except ConnectionClosed:
            # The other side went away (hang-up, network). Twilio moves on to the
            # action URL if the call is still up: leave it an explicit error.
            if state.call is not None and not state.decided:
                self._store(state.call, self._error(state.call))
        except Exception:  # whatever broke (a message nested too deep for json, a bug)
            log.exception("speech stream failed")
            if state.call is not None and not state.decided:
                state.decided = True
                self._store(state.call, self._error(state.call))
            with contextlib.suppress(Exception):
                ws.close()
        finally:
            if state.utterance is not None:
                state.utterance.close()
                self._account(time.thread_time() - cpu_started, state.utterance.audio_s)
            if admitted:
                self._leave()

    def _account(self, cpu_s: float, audio_s: float) -> None:
        """The recognizer's real-time factor, for the web's ``GET /metrics`` (in Redis)."""
        if audio_s <= 0:
            return
        try:
            recorder = metrics.recorder_for(self.results.redis)
            recorder.inc("interphone_speech_audio_seconds", amount=audio_s)
            recorder.inc("interphone_speech_cpu_seconds", amount=cpu_s)
            recorder.observe("interphone_speech_real_time_factor", cpu_s / audio_s)
            recorder.flush()
        except Exception:  # figures never break a stream
            log.warning("speech figures not recorded", exc_info=True)

    def _serve(self, ws: Socket, admitted: bool, state: _State) -> None:
        limits = self.limits
        opened = time.monotonic()
        started = 0.0
        bad = 0
        while True:
            now = time.monotonic()
            call, utterance = state.call, state.utterance
            if call is None:
                timeout = opened + limits.start_timeout_s - now
                if timeout <= 0:
                    log.warning(
                        "speech stream closed: no start within %.0f s", limits.start_timeout_s
                    )
                    return
            elif utterance is None:
                return
            else:
                if now - started > utterance.limits.max_s + limits.idle_s:
                    self._decide(state, utterance.expire(), ws)
                    return
                timeout = limits.idle_s
            message = ws.receive(timeout=timeout)
            if message is None:  # nothing within the timeout
                if utterance is not None:
                    self._decide(state, utterance.expire(), ws)
                    return
                continue  # the start deadline is checked above
            event = _parse(message)
            if event is None:
                bad += 1
                if bad > MAX_BAD_MESSAGES:
                    log.warning("speech stream closed: %d malformed messages", bad)
                    if call is not None:
                        self._decide(state, self._error(call), ws)
                    return
                continue
            kind = event.get("event")
            if kind == "start" and call is None:
                state.call = call = _start(event)
                if call is None:
                    log.warning("speech stream closed: start without callSid/step parameters")
                    return
                started = time.monotonic()
                if not call_token.verify(self.secret, call.token, call.sid, call.step):
                    self._refuse(state, call, ws)
                    return
                if not admitted:
                    log.warning("speech stream refused: %d streams already", self.max_streams)
                    self._decide(state, self._error(call), ws)
                    return
                state.utterance = self._utterance(call, event)
                if state.utterance is None:
                    self._decide(state, self._error(call), ws)
                    return
            elif kind == "media" and utterance is not None:
                payload = _payload(event)
                if payload is None:
                    bad += 1
                    continue
                result = utterance.feed_mulaw(payload)
                if result is not None:
                    self._decide(state, result, ws)
                    return
            elif kind == "stop":
                if utterance is not None:
                    self._decide(state, utterance.finish(), ws)
                return
            # connected, mark, a second start, media before start: nothing to do

    def _utterance(self, call: _Call, event: dict[str, Any]) -> Utterance | None:
        fmt = event.get("start", {}).get("mediaFormat") or {}
        if isinstance(fmt, dict) and fmt:
            encoding = str(fmt.get("encoding", "audio/x-mulaw"))
            rate = fmt.get("sampleRate", 8000)
            if encoding != "audio/x-mulaw" or rate != 8000:
                log.warning("speech stream: unsupported media format %s/%s", encoding, rate)
                return None
        try:
            loaded = self.registry.get(call.lang)
            grammar = loaded.grammar(call.grammar)
        except ModelError as exc:
            log.warning("speech stream %s: %s", call.step, exc)
            return None
        limits = self.limits
        if call.max_s is not None:  # the question listens this long, speech or not
            limits = replace(limits, max_s=call.max_s, no_speech_s=call.max_s)
        elif grammar.sequence:
            limits = replace(limits, max_s=limits.sequence_max_s)
        return Utterance(self.registry, loaded, grammar, limits=limits)

    def _decide(self, state: _State, result: SpeechResult, ws: Socket) -> None:
        assert state.call is not None
        state.decided = True
        self._store(state.call, result)
        if state.utterance is not None:
            state.utterance.close()
        with contextlib.suppress(ConnectionClosed, OSError):  # the caller may be gone
            ws.close()  # Twilio now requests the <Connect action> URL

    def _refuse(self, state: _State, call: _Call, ws: Socket) -> None:
        """A stream without a valid token for its call and question: anyone holding the
        handshake's signature (the same for every call) could otherwise answer any call's
        question. An error is left for the IVR, never over a decision already taken."""
        log.warning("speech stream refused: no valid call token for %s", call.step)
        with self._lock:
            self.refused += 1
        state.decided = True
        self._store(call, self._error(call), overwrite=False)
        with contextlib.suppress(ConnectionClosed, OSError):  # the caller may be gone
            ws.close()

    def _error(self, call: _Call) -> SpeechResult:
        return SpeechResult(grammar=call.grammar, word="", meaning="", status=str(Status.ERROR))

    def _store(self, call: _Call, result: SpeechResult, *, overwrite: bool = True) -> None:
        with self._lock:
            self.decisions[result.status] = self.decisions.get(result.status, 0) + 1
        if result.personal:  # a spoken number: never in a log
            log.info("speech %s %s: %s", call.step, call.grammar, result.status)
        else:
            log.info(
                "speech %s %s: %s %r → %r",
                call.step,
                call.grammar,
                result.status,
                result.word,
                result.meaning,
            )
        try:
            self.results.put(call.sid, call.step, result, overwrite=overwrite)
        except redis.RedisError:
            log.exception("speech result of %s could not be stored", call.step)


def _parse(message: Any) -> dict[str, Any] | None:
    if isinstance(message, bytes):
        try:
            message = message.decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        event = json.loads(message)
    except (ValueError, TypeError):
        return None
    return event if isinstance(event, dict) else None


def _start(event: dict[str, Any]) -> _Call | None:
    start = event.get("start")
    if not isinstance(start, dict):
        return None
    params = start.get("customParameters")
    params = params if isinstance(params, dict) else {}
    sid = str(start.get("callSid") or "")
    step = str(params.get("key") or params.get("step") or "")
    if not valid_key_part(sid) or not valid_key_part(step):
        return None
    lang = str(params.get("lang") or "")
    return _Call(
        sid=sid,
        step=step,
        grammar=str(params.get("grammar") or ""),
        lang=lang if _LANGUAGE.fullmatch(lang) else "",  # a folder name under VOSK_MODELS_DIR
        max_s=_seconds(params.get("max_s")),
        token=str(params.get(call_token.PARAMETER) or ""),
    )


def _seconds(raw: Any) -> float | None:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return min(max(value, MIN_LISTEN_S), MAX_LISTEN_S) if value == value else None


def _payload(event: dict[str, Any]) -> bytes | None:
    media = event.get("media")
    if not isinstance(media, dict) or media.get("track", "inbound") == "outbound":
        return None
    payload = media.get("payload")
    if not isinstance(payload, str) or len(payload) > MAX_MESSAGE_BYTES:
        return None
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None


def init_app(app: Flask, streams: SpeechStreams, path: str = PATH) -> None:
    """Serve ``streams`` on ``path`` (a WebSocket route). Each connection is read in its
    handler's thread (:mod:`.wsreader`), without Flask-Sock's reader thread."""
    app.config.setdefault(
        "SOCK_SERVER_OPTIONS", {"max_message_size": MAX_MESSAGE_BYTES, "thread_class": NoThread}
    )
    sock = Sock(app)

    @sock.route(path)  # type: ignore[untyped-decorator]
    def speech_stream(ws: Any) -> None:
        if not isinstance(getattr(ws, "thread", None), NoThread):
            streams.handle(ws)  # a reader thread of its own (other SOCK_SERVER_OPTIONS)
            return
        inline = InlineSocket(ws, MAX_MESSAGE_BYTES)
        try:
            streams.handle(inline)
        finally:
            inline.finish()


__all__ = ["PATH", "SpeechStreams", "init_app"]
