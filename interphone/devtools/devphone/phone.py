"""The dev phone's voice side: it plays Twilio for a caller.

It posts webhooks exactly as Twilio does (form parameters, ``X-Twilio-Signature`` over
the public URL, ``I-Twilio-Idempotency-Token``), runs the TwiML it gets back (Say, Play,
Pause, Gather, Redirect, Hangup, Reject...) and sends the final status callback. Tests
drive whole calls with it; the ``/dev/phone`` page uses it for people.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import numpy as np
import redis
from twilio.request_validator import RequestValidator

from interphone.voice.hearing import Hearing
from interphone.voice.speech import mulaw
from interphone.voice.speech.results import SpeechResult, SpeechResults

from . import rest
from .audio import AudioError, on_a_line, synthesize
from .conference import DIAL_ENDED, ConferenceError, Conferences, Participant, parse_events
from .conference import hears as conference_hears
from .streaming import StreamError, stream_audio

API_VERSION = "2010-04-01"
ANSWERED = "ip:devphone:answered:"
DIALED = "ip:devphone:dialed:"  # DIALED + parent sid: answered / no-answer / busy
ENDED_RETRY_S = 20.0  # how long a call's end is retried while Redis fails over

log = logging.getLogger(__name__)


class Transport(Protocol):
    def __call__(
        self, path_and_query: str, form: dict[str, str], headers: dict[str, str], /
    ) -> tuple[int, str]: ...


def wsgi_transport(app: Any) -> Transport:
    """Webhooks posted to ``app`` in this process, each response closed once read, as a
    WSGI server closes it once sent: what the app does after its answer is sent
    (``Response.call_on_close``, e.g. the case read ahead while a birth date is typed)
    runs here too, before the next webhook."""
    client = app.test_client()

    def post(path: str, form: dict[str, str], headers: dict[str, str]) -> tuple[int, str]:
        response = client.post(path, data=form, headers=headers)
        try:
            return response.status_code, response.get_data(as_text=True)
        finally:
            response.close()

    return post


class TwimlError(AssertionError):
    """The app answered with something Twilio could not run."""


@dataclass
class Said:
    text: str
    voice: str = ""
    language: str = ""


@dataclass
class PendingGather:
    """What the call waits on: keys or speech (gather), a message (record), a place in a
    Twilio queue (enqueue), a dialled party (dial) or a media stream (stream)."""

    action: str
    num_digits: int | None
    finish_on_key: str
    on_empty: bool
    rest: list[ET.Element]
    kind: str = "gather"
    speech: bool = False
    target: str = ""  # the dialled number, the stream URL or the queue's wait URL
    params: dict[str, str] = field(default_factory=dict)  # a stream's <Parameter>s
    typed: str = ""  # keys pressed one by one (SimCall.key), not yet sent


@dataclass
class SimCall:
    phone: DevPhone
    sid: str
    caller: str
    called: str
    status: str = "ringing"
    heard: list[Said] = field(default_factory=list)
    gather: PendingGather | None = None
    documents: list[str] = field(default_factory=list)
    direction: str = "inbound"
    status_callback: str = "/voice/status"
    conference: str | None = None
    answered_by: str = ""
    bridged: bool = False  # a <Dial><Number>/<Client> was answered
    # recording status callbacks posted (url, form), so a test can deliver one again
    recording_callbacks: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    # -- what a caller does ------------------------------------------------------------
    def press(self, keys: str) -> SimCall:
        """Type ``keys`` at the pending Gather (``#`` ends a free-length entry)."""
        gather = self._pending()
        if gather.kind not in ("gather", "record"):
            raise TwimlError(f"keys are not listened to here ({gather.kind})")
        digits = keys
        if gather.finish_on_key and digits.endswith(gather.finish_on_key):
            digits = digits[: -len(gather.finish_on_key)]
        self.gather = None
        self._post_and_run(gather.action, {"Digits": digits})
        return self

    def key(self, key: str) -> SimCall:
        """One key pressed on the handset, kept as Twilio keeps it: a Gather sends what
        was typed when its ``finishOnKey`` is pressed or its ``numDigits`` are in (a
        silence, :meth:`wait`, sends it too). :meth:`press` types a whole entry."""
        gather = self._pending()
        if gather.kind != "gather" or len(key) != 1:
            return self.press(key)
        if gather.finish_on_key and key == gather.finish_on_key:
            return self.press(gather.typed + key)
        gather.typed += key
        if gather.num_digits and len(gather.typed) >= gather.num_digits:
            return self.press(gather.typed)
        return self

    def wait(self) -> SimCall:
        """Let time pass: a Gather or a Record times out, a queue plays its wait URL
        again, a dialled party that never answers gives up."""
        gather = self._pending()
        if gather.kind == "gather" and gather.typed:  # Twilio sends the keys typed
            return self.press(gather.typed)
        if gather.kind == "enqueue":
            self._queue_music()
            return self
        if gather.kind == "conference":  # the conference goes on
            return self
        self.gather = None
        if gather.kind == "dial":
            self._dial_result(gather, "no-answer")
        elif gather.kind == "record":
            self._post_and_run(gather.action, {"RecordingDuration": "0", "Digits": ""})
        elif gather.on_empty:
            self._post_and_run(gather.action, {"Digits": ""})
        else:
            self._run(gather.rest, base=gather.action)
        return self

    def _dial_result(self, pending: PendingGather, status: str) -> None:
        if pending.action:
            self._post_and_run(pending.action, {"DialCallStatus": status})
        else:
            self._run(pending.rest, base=self.status_callback)

    def hang_up(self) -> SimCall:
        if self.status == "in-progress":
            self._finish("completed")
        return self

    def poll(self) -> SimCall:
        """Apply what happened meanwhile: the app's redirects and hang-ups, and the
        answer of a dialled party."""
        if self.gather is not None and self.gather.kind == "dial":
            outcome = self.phone.dial_outcome(self.sid)
            if outcome == "answered":
                self.bridged = True
            elif outcome:
                pending, self.gather = self.gather, None
                self._dial_result(pending, outcome)
        self.phone.deliver_conference_events()
        for update in self.phone.updates(self.sid):
            if self.status != "in-progress":
                break
            if update.get(DIAL_ENDED):
                self._conference_ended()
            elif update.get("Status") == "completed":
                self._finish("completed", reason="participant_updated_via_api")
            elif update.get("Url"):
                self._leave_conference("participant_updated_via_api")
                self.gather = None
                self._post_and_run(update["Url"], {})
            elif update.get("Twiml"):
                self._leave_conference("participant_updated_via_api")
                self.gather = None
                self._run_document(update["Twiml"], base=self.status_callback)
        self.phone.deliver_conference_events()
        return self

    def _conference_ended(self) -> None:
        """This call's <Dial><Conference> is over (the conference ended, or it was
        kicked): Twilio requests the <Dial action>, else goes on with the verbs after
        the <Dial> (none: the call ends)."""
        if self.gather is None or self.gather.kind != "conference":
            return
        pending, self.gather, self.conference = self.gather, None, None
        if pending.action:
            seconds = max(0, round(time.time() - float(pending.params.get("joined_at") or 0)))
            form = {"DialCallStatus": "completed", "DialCallDuration": str(seconds)}
            self._post_and_run(pending.action, form)
        else:
            self._run(pending.rest, base=pending.params.get("base") or self.status_callback)

    # -- keeping a call between two web requests ----------------------------------------
    def to_dict(self) -> dict[str, Any]:
        gather = None
        if self.gather is not None:
            gather = {
                "action": self.gather.action,
                "num_digits": self.gather.num_digits,
                "finish_on_key": self.gather.finish_on_key,
                "on_empty": self.gather.on_empty,
                "rest": [ET.tostring(v, encoding="unicode") for v in self.gather.rest],
                "kind": self.gather.kind,
                "speech": self.gather.speech,
                "target": self.gather.target,
                "params": self.gather.params,
                "typed": self.gather.typed,
            }
        return {
            "sid": self.sid,
            "caller": self.caller,
            "called": self.called,
            "status": self.status,
            "direction": self.direction,
            "status_callback": self.status_callback,
            "conference": self.conference,
            "answered_by": self.answered_by,
            "gather": gather,
            "heard": [[h.text, h.voice, h.language] for h in self.heard],
        }

    @classmethod
    def from_dict(cls, phone: DevPhone, data: dict[str, Any]) -> SimCall:
        call = cls(
            phone,
            data["sid"],
            data["caller"],
            data["called"],
            data["status"],
            [Said(*h) for h in data["heard"]],
            direction=data["direction"],
            status_callback=data["status_callback"],
            conference=data["conference"],
            answered_by=data["answered_by"],
        )
        if data["gather"]:
            g = data["gather"]
            call.gather = PendingGather(
                g["action"],
                g["num_digits"],
                g["finish_on_key"],
                g["on_empty"],
                [ET.fromstring(v) for v in g["rest"]],
                kind=g.get("kind", "gather"),
                speech=bool(g.get("speech", False)),
                target=g.get("target", ""),
                params=dict(g.get("params") or {}),
                typed=str(g.get("typed", "")),
            )
        return call

    # -- what a test looks at ----------------------------------------------------------
    def last_said(self, count: int = 1) -> str:
        return " ".join(s.text for s in self.heard[-count:])

    def transcript(self) -> str:
        return "\n".join(s.text for s in self.heard)

    @property
    def waiting_for(self) -> str | None:
        """The path of the pending Gather's action, if the call waits for keys."""
        return urlsplit(self.gather.action).path if self.gather else None

    # -- the engine --------------------------------------------------------------------
    def _pending(self) -> PendingGather:
        if self.status != "in-progress" or self.gather is None:
            raise TwimlError(f"call {self.status}: nothing is waiting for keys")
        return self.gather

    def _post_and_run(self, url: str, extra: dict[str, str]) -> None:
        body = self.phone.post(url, self._params(extra))
        self._run_document(body, base=url)

    def _params(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        params = {
            "CallSid": self.sid,
            "AccountSid": self.phone.account_sid,
            "From": self.caller,
            "To": self.called,
            "Caller": self.caller,
            "Called": self.called,
            "CallStatus": self.status,
            "Direction": self.direction,
            "ApiVersion": API_VERSION,
        }
        if self.answered_by:
            params["AnsweredBy"] = self.answered_by
        params.update(extra or {})
        return params

    def _run_document(self, body: str, base: str) -> None:
        self.documents.append(body)
        try:
            root = ET.fromstring(body)
        except ET.ParseError as exc:
            raise TwimlError(f"not XML: {exc}: {body[:200]!r}") from None
        if root.tag != "Response":
            raise TwimlError(f"root element is {root.tag}, not Response")
        self._run(list(root), base)

    def _run(self, verbs: list[ET.Element], base: str) -> None:
        for index, verb in enumerate(verbs):
            if self.status != "in-progress":
                return
            tag = verb.tag
            if tag == "Say":
                self.heard.append(
                    Said(verb.text or "", verb.get("voice", ""), verb.get("language", ""))
                )
            elif tag in ("Play", "Pause"):
                continue
            elif tag == "Gather":
                for child in verb:
                    if child.tag == "Say":
                        self.heard.append(
                            Said(
                                child.text or "", child.get("voice", ""), child.get("language", "")
                            )
                        )
                    elif child.tag not in ("Play", "Pause"):
                        raise TwimlError(f"<{child.tag}> is not allowed in <Gather>")
                digits = verb.get("numDigits")
                self.gather = PendingGather(
                    action=urljoin(base, verb.get("action", base)),
                    num_digits=int(digits) if digits else None,
                    finish_on_key=verb.get("finishOnKey", "#"),
                    on_empty=verb.get("actionOnEmptyResult", "false") == "true",
                    rest=verbs[index + 1 :],
                    speech="speech" in verb.get("input", "dtmf"),
                )
                return
            elif tag in ("Record", "Enqueue", "Connect"):
                self._wait_on(tag, verb, verbs[index + 1 :], base)
                return
            elif tag == "Redirect":
                self._post_and_run(urljoin(base, (verb.text or "").strip()), {})
                return
            elif tag == "Dial":
                self._dial(verb, verbs[index + 1 :], base)
                return
            elif tag in ("Hangup", "Reject"):
                self._finish("completed" if tag == "Hangup" else "busy")
                return
            else:
                raise TwimlError(f"the dev phone does not run <{tag}> yet")
        self._finish("completed")  # Twilio hangs up at the end of a document

    def _leave_conference(self, reason: str, call_status: str = "in-progress") -> None:
        """This call leaves its conference (``reason`` as Twilio's ReasonParticipantLeft)."""
        if self.conference:
            self.conference = None
            if self.gather is not None and self.gather.kind == "conference":
                self.gather = None
            if self.phone.redis is not None:
                connection = self.phone.redis
                self.phone.retrying(
                    lambda: Conferences(connection).leave(self.sid, reason, call_status),
                    f"{self.sid} leaving its conference",
                )
                self.phone.deliver_conference_events()

    def _wait_on(self, tag: str, verb: ET.Element, rest: list[ET.Element], base: str) -> None:
        action = urljoin(base, verb.get("action", base))
        if tag == "Record":
            callback = verb.get("recordingStatusCallback", "")
            self.gather = PendingGather(
                action,
                None,
                verb.get("finishOnKey", "1234567890*#"),
                True,
                rest,
                kind="record",
                target=urljoin(base, callback) if callback else "",
                params={"maxLength": verb.get("maxLength", "3600")},
            )
        elif tag == "Enqueue":
            wait_url = urljoin(base, verb.get("waitUrl", ""))
            self.gather = PendingGather(
                action, None, "", False, rest, kind="enqueue", target=wait_url
            )
            self._queue_music()
        else:  # Connect
            streams = [child for child in verb if child.tag == "Stream"]
            if len(streams) != 1:
                raise TwimlError("<Connect> needs exactly one <Stream>")
            params = {
                p.get("name", ""): p.get("value", "") for p in streams[0] if p.tag == "Parameter"
            }
            self.gather = PendingGather(
                action,
                None,
                "",
                False,
                rest,
                kind="stream",
                target=streams[0].get("url", ""),
                params=params,
            )

    def _queue_music(self) -> None:
        """Fetch the queue's wait URL; its Say/Play/Pause are what the caller hears."""
        assert self.gather is not None and self.gather.kind == "enqueue"
        if not self.gather.target:
            return
        body = self.phone.post(
            self.gather.target,
            self._params({"QueuePosition": "1", "QueueTime": "0", "QueueSid": "QU" + "0" * 32}),
        )
        for verb in ET.fromstring(body):
            if verb.tag == "Say":
                self.heard.append(
                    Said(verb.text or "", verb.get("voice", ""), verb.get("language", ""))
                )
            elif verb.tag == "Leave":
                pending, self.gather = self.gather, None
                self._post_and_run(pending.action, {"QueueResult": "leave"})
                return
            elif verb.tag == "Hangup":
                self._finish("completed")
                return

    def _dial(self, verb: ET.Element, rest: list[ET.Element], base: str) -> None:
        children = list(verb)
        if not children and (verb.text or "").strip():  # <Dial>+33...</Dial>
            child = ET.Element("Number")
            child.text = verb.text
        elif len(children) == 1 and children[0].tag in ("Conference", "Number", "Client"):
            child = children[0]
        else:
            raise TwimlError("<Dial> needs a number, or one <Conference>, <Number> or <Client>")
        name = (child.text or "").strip()
        if child.tag == "Conference":
            self._join_conference(verb, child, name, rest, base)
            return  # connected until the conference ends for this call
        to = name if child.tag == "Number" else f"client:{name}"
        action = urljoin(base, verb.get("action", "")) if verb.get("action") else ""
        self.gather = PendingGather(action, None, "", False, rest, kind="dial", target=to)
        self.phone.ring_leg(self, to)

    def _join_conference(
        self, dial: ET.Element, noun: ET.Element, name: str, rest: list[ET.Element], base: str
    ) -> None:
        """<Dial><Conference>: the attributes Twilio documents (defaults included)."""
        assert self.phone.redis is not None, "the dev phone needs Redis for conferences"
        if noun.get("statusCallbackMethod", "POST").upper() != "POST":
            raise TwimlError("the dev phone posts conference status callbacks (method POST)")
        if dial.get("method", "POST").upper() != "POST":
            raise TwimlError("the dev phone requests <Dial action> with POST")
        coach = noun.get("coach", "")
        participant = Participant(
            self.sid,
            muted=noun.get("muted", "false") == "true",
            coaching=bool(coach),
            call_sid_to_coach=coach,
            start_conference_on_enter=noun.get("startConferenceOnEnter", "true") == "true",
            end_conference_on_exit=noun.get("endConferenceOnExit", "false") == "true",
            beep=noun.get("beep", "true"),
            label=noun.get("participantLabel", ""),
            handset=self.caller if self.direction == "inbound" else self.called,
        )
        callback = noun.get("statusCallback", "")
        action = urljoin(base, dial.get("action", "")) if dial.get("action") else ""
        try:
            events = parse_events(noun.get("statusCallbackEvent"))
            Conferences(self.phone.redis).join(
                name,
                participant,
                account_sid=self.phone.account_sid,
                status_callback=urljoin(base, callback) if callback else "",
                status_callback_events=events,
            )
        except ConferenceError as exc:
            log.warning("dev phone: <Conference> refused (%s): %s", exc.code, exc.message)
            if exc.code == 13240:  # a coach of nobody: the call fails to the action URL
                failed = PendingGather(action, None, "", False, rest, kind="dial")
                self._dial_result(failed, "failed")
            elif exc.code == 16025:  # a label in use: not added, the next verb runs
                self._run(rest, base)
            else:
                message = f"<Conference> refused by Twilio ({exc.code}): {exc.message}"
                raise TwimlError(message) from None
            return
        self.conference = name
        self.gather = PendingGather(
            action,
            None,
            "",
            False,
            rest,
            kind="conference",
            target=name,
            params={"joined_at": str(time.time()), "base": base},
        )
        self.phone.deliver_conference_events()

    def speak(self, text: str) -> SimCall:
        """Say ``text`` where the call listens for speech (a Gather with speech input),
        or leave it as a message at a <Record>."""
        pending = self._pending()
        if pending.kind == "gather" and pending.speech:
            self.gather = None
            self._post_and_run(pending.action, {"SpeechResult": text, "Confidence": "0.9"})
        elif pending.kind == "stream":
            self._typed_into_stream(pending, text)
            self.end_stream()
        elif pending.kind == "record":
            lang = (self.heard[-1].language if self.heard else "")[:2] or "fr"
            self.leave_message(message_audio(text, lang))
        else:
            raise TwimlError(f"nothing listens for speech here ({pending.kind})")
        return self

    def leave_message(self, audio: bytes, *, hang_up: bool = False) -> SimCall:
        """Say ``audio`` (8 kHz µ-law: a fixture, synthesized speech) at a ``<Record>``,
        then press the finish key (the answer is then heard) or hang up. As Twilio does:
        the recording is kept (a WAV the app fetches through the REST side), the
        ``action`` is requested, then the recording status callback says it is ready."""
        pending = self._pending()
        if pending.kind != "record":
            raise TwimlError(f"nothing records a message here ({pending.kind})")
        self.gather = None
        max_s = int(pending.params.get("maxLength", "3600") or 3600)
        audio = audio[: max_s * mulaw.RATE]
        recording_sid = "RE" + secrets.token_hex(16)
        if self.phone.redis is not None:
            rest.keep_recording(self.phone.redis, recording_sid, audio)
        url = f"{rest.API}/Accounts/{self.phone.account_sid}/Recordings/{recording_sid}"
        seconds = str(max(1, round(len(audio) / mulaw.RATE)))
        form = {
            "RecordingUrl": url,
            "RecordingDuration": seconds,
            "RecordingSid": recording_sid,
            "Digits": "hangup" if hang_up else pending.finish_on_key[-1:],
        }
        if hang_up:  # Twilio still requests the action, but nobody hears its answer
            self.phone.post(pending.action, self._params(form))
            self._finish("completed")
        else:
            self._post_and_run(pending.action, form)
        if pending.target:  # the audio is ready: Twilio says so a moment later
            form = {
                "AccountSid": self.phone.account_sid,
                "CallSid": self.sid,
                "RecordingSid": recording_sid,
                "RecordingUrl": url,
                "RecordingStatus": "completed",
                "RecordingDuration": seconds,
                "RecordingChannels": "1",
                "RecordingSource": "RecordVerb",
            }
            self.recording_callbacks.append((pending.target, form))
            self.phone.post(pending.target, form)
        return self

    def _typed_into_stream(self, pending: PendingGather, text: str) -> None:
        """Typed text at a local speech step: taken as what the speech server would have
        understood (the same vocabulary), so the flow can be tried without a microphone.
        ``speak_audio`` sends real audio through the speech server instead."""
        assert self.phone.redis is not None, "the dev phone needs Redis for speech steps"
        results = SpeechResults(self.phone.redis)
        params = pending.params
        grammar, lang = params.get("grammar", ""), params.get("lang", "")
        heard = Hearing(results, models_dir=None, local_languages=None).from_text(
            lang, grammar, text
        )
        result = SpeechResult(grammar, text[:200], heard.meaning, str(heard.status))
        results.put(self.sid, params.get("key", ""), result)

    @property
    def listening(self) -> str:
        """What the call waits on when it waits for speech: ``stream`` (the local speech
        server) or ``speech`` (Twilio's recognizer); empty otherwise."""
        if self.gather is None:
            return ""
        if self.gather.kind in ("stream", "record"):
            return self.gather.kind
        return "speech" if self.gather.kind == "gather" and self.gather.speech else ""

    def speak_audio(self, audio: bytes, *, paced: bool = False) -> SimCall:
        """Say ``audio`` (8 kHz µ-law) into the open ``<Connect><Stream>``: streamed to
        the real speech server as Twilio streams it, then the action URL is requested
        (see :mod:`.streaming`). ``paced``: at real-time pace, else as fast as it goes."""
        pending = self._pending()
        if pending.kind != "stream":
            raise TwimlError(f"no media stream is open ({pending.kind})")
        url = pending.target  # signed as Twilio signs the handshake: the URL, no parameters
        if not url.startswith(("ws://", "wss://")):
            raise StreamError(f"<Stream url> must be a ws:// or wss:// URL, not {url[:80]!r}")
        stream_audio(
            url,
            signature=str(self.phone.validator.compute_signature(url, {})),
            call_sid=self.sid,
            account_sid=self.phone.account_sid,
            parameters=dict(pending.params),
            audio=audio,
            paced=paced,
        )
        return self.end_stream()

    def end_stream(self) -> SimCall:
        """The media stream closes: Twilio asks the <Connect> action what comes next."""
        pending = self._pending()
        if pending.kind != "stream":
            raise TwimlError("no media stream is open")
        self.gather = None
        self._post_and_run(pending.action, {})
        return self

    def _finish(self, status: str, reason: str = "participant_hung_up") -> None:
        self.status = status
        self._leave_conference(reason, status)
        self.gather = None
        self.phone.note_ended(self.sid)
        self.phone.post(self.status_callback, self._params({"CallStatus": status}))


def message_audio(text: str, lang: str) -> bytes:
    """What a caller says at a ``<Record>``, as 8 kHz µ-law: ``text`` spoken by
    espeak-ng in ``lang`` (:func:`.audio.synthesize`) when it can, else as long a quiet
    line (the message is then a silence of about half a second a word)."""
    try:
        return synthesize(text, lang)
    except AudioError:  # no espeak-ng, or no voice for that language
        words = max(1, len(text.split()))
        return on_a_line(np.zeros(int(words / 2 * mulaw.RATE), dtype=np.int16))


class DevPhone:
    """Rings the app as Twilio would, through ``transport`` (WSGI or real HTTP)."""

    def __init__(
        self,
        transport: Transport,
        *,
        public_base_url: str,
        auth_token: str,
        account_sid: str,
        on_post: Callable[[str, int], None] | None = None,
        connection: redis.Redis | None = None,
    ) -> None:
        self.redis = connection  # where the REST stand-in leaves placed calls and updates
        self.transport = transport
        self.base = public_base_url.rstrip("/")
        self.validator = RequestValidator(auth_token)
        self.account_sid = account_sid
        self.on_post = on_post
        self._delivering = False

    def signature(self, path_and_query: str, form: dict[str, str]) -> str:
        return str(self.validator.compute_signature(self.base + path_and_query, form))

    def post(self, url: str, form: dict[str, str]) -> str:
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {
            "X-Twilio-Signature": self.signature(path, form),
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "TwilioProxy/1.1",
        }
        status, body = self.transport(path, form, headers)
        if self.on_post:
            self.on_post(path, status)
        if status >= 400 and not path.startswith("/voice/status"):
            raise TwimlError(f"POST {path} answered {status}: {body[:200]}")
        return body

    # -- calls the app places (through the REST stand-in) ----------------------------------
    def note_ended(self, sid: str) -> None:
        """From now on Twilio refuses to update this call. Redis may be failing over
        (the fault campaign ends calls meanwhile): tried for a while, then left, and
        updates to the call are then taken and never applied, as Twilio would not."""
        if self.redis is None:
            return
        connection = self.redis
        self.retrying(lambda: rest.mark_ended(connection, sid), f"end of call {sid}")

    def retrying(self, change: Callable[[], object], what: str) -> None:
        """``change`` to Redis, tried for a while if Redis fails over meanwhile (the
        fault campaign ends calls then), then left with a warning."""
        deadline = time.monotonic() + ENDED_RETRY_S
        while True:
            try:
                change()
                return
            except redis.RedisError as exc:
                if time.monotonic() > deadline:
                    log.warning("dev phone: %s not recorded (%s)", what, exc)
                    return
                time.sleep(0.2)

    def ringing(self, to: str) -> list[dict[str, str]]:
        """Calls placed by the app to ``to`` that nobody answered or refused yet, and
        that the app did not hang up meanwhile (those end as ``canceled``)."""
        assert self.redis is not None, "the dev phone needs Redis for outbound calls"
        found = []
        for c in rest.placed_calls(self.redis):
            if c.get("To") != to or self.redis.exists(f"{ANSWERED}{c['sid']}"):
                continue
            if rest.hung_up_by_app(self.redis, c["sid"]):
                self._cancel(c)
            else:
                found.append(c)
        return found

    def _cancel(self, record: dict[str, str]) -> None:
        """The app hung up a call of its own before anyone answered it."""
        assert self.redis is not None
        self.redis.set(f"{ANSWERED}{record['sid']}", "1", ex=4 * 3600)
        self.note_ended(record["sid"])
        if record.get("ConferenceName"):  # placed to join a conference: it never did
            Conferences(self.redis).leave(record["sid"], "participant_updated_via_api", "canceled")
            self.deliver_conference_events()
        if record.get("StatusCallback"):
            call = self._outbound(record, record.get("To", ""))
            self.post(call.status_callback, call._params({"CallStatus": "canceled"}))

    def ring_leg(self, parent: SimCall, to: str) -> None:
        """A <Dial> rings ``to``; the answer comes back to the dialling call."""
        assert self.redis is not None, "the dev phone needs Redis to dial"
        record = {
            "sid": "CA" + secrets.token_hex(16),
            "To": to,
            "From": parent.caller,
            "ParentCallSid": parent.sid,
            "status": "ringing",
        }
        self.redis.rpush(rest.CALLS, json.dumps(record))

    def dial_outcome(self, parent_sid: str) -> str:
        if self.redis is None:
            return ""
        raw: Any = self.redis.get(f"{DIALED}{parent_sid}")
        return raw.decode() if isinstance(raw, bytes) else str(raw or "")

    def answer(self, to: str, *, answered_by: str = "human") -> SimCall:
        record = self._take(to)
        if record.get("ParentCallSid"):  # a leg of a <Dial>: no TwiML of its own
            assert self.redis is not None
            self.redis.set(f"{DIALED}{record['ParentCallSid']}", "answered", ex=4 * 3600)
            call = SimCall(
                self,
                record["sid"],
                record.get("From", ""),
                to,
                direction="outbound-dial",
                status_callback="",
            )
            call.status, call.bridged = "in-progress", True
            return call
        if record.get("ConferenceName"):  # placed by participants.create: straight in
            return self._join_placed(record, to)
        call = self._outbound(record, to)
        call.answered_by = answered_by if record.get("MachineDetection") else ""
        call.status = "in-progress"
        call._post_and_run(record["Url"], {})
        return call

    def refuse(self, to: str, status: str = "no-answer") -> None:
        """The phone ``to`` rings out (``no-answer``), is ``busy``, or the call ``failed``."""
        record = self._take(to)
        assert self.redis is not None
        if record.get("ParentCallSid"):
            self.redis.set(f"{DIALED}{record['ParentCallSid']}", status, ex=4 * 3600)
            return
        call = self._outbound(record, to)
        call.status = status
        self.note_ended(call.sid)
        if record.get("ConferenceName"):  # a participant that never joined
            Conferences(self.redis).leave(call.sid, "participant_add_failed", status)
        if call.status_callback:
            self.post(call.status_callback, call._params({"CallStatus": status}))
        self.deliver_conference_events()

    def _join_placed(self, record: dict[str, str], to: str) -> SimCall:
        """A call placed by ``participants.create`` is answered: it joins its conference
        with the flags it was created with, no TwiML asked for."""
        assert self.redis is not None
        call = self._outbound(record, to)
        call.status = "in-progress"
        if Conferences(self.redis).answered(call.sid) is None:  # the conference is over
            call._finish("completed")
            return call
        call.conference = record["ConferenceName"]
        call.gather = PendingGather(
            "",
            None,
            "",
            False,
            [],
            kind="conference",
            target=call.conference,
            params={"joined_at": str(time.time())},
        )
        self.deliver_conference_events()
        return call

    def _outbound(self, record: dict[str, str], to: str) -> SimCall:
        """A call the app placed through the REST API, as it reaches the phone ``to``."""
        return SimCall(
            self,
            record["sid"],
            record.get("From", ""),
            to,
            direction="outbound-api",
            status_callback=record.get("StatusCallback", ""),
        )

    def _take(self, to: str) -> dict[str, str]:
        calls = self.ringing(to)
        if not calls:
            raise TwimlError(f"nothing rings at {to}")
        assert self.redis is not None
        self.redis.set(f"{ANSWERED}{calls[0]['sid']}", "1", ex=4 * 3600)
        return calls[0]

    def updates(self, sid: str) -> list[dict[str, str]]:
        if self.redis is None:
            return []
        found = []
        while (update := rest.next_update(self.redis, sid)) is not None:
            found.append(update)
        return found

    def in_conference(self, room: str) -> set[str]:
        """The calls connected to the live conference named ``room``."""
        if self.redis is None:
            return set()
        conf = Conferences(self.redis).live(room)
        return {p.call_sid for p in conf.connected()} if conf else set()

    def hears(self, call_sid: str) -> set[str]:
        """The calls ``call_sid`` hears in its conference (:func:`.conference.hears`)."""
        if self.redis is None:
            return set()
        conf = Conferences(self.redis).of_call(call_sid)
        return conference_hears(conf, call_sid) if conf else set()

    def deliver_conference_events(self) -> int:
        """Post the conference status callbacks waiting in the outbox, signed, oldest
        first, as Twilio posts them a moment after the change. Whoever caused a change
        (this process or another: the app's REST client) queued them; any dev phone
        delivers them. An error answer raises :class:`TwimlError` (Twilio would only log
        it), so that a test sees the app's failing webhook."""
        if self.redis is None or self._delivering:
            return 0
        conferences, posted = Conferences(self.redis), 0
        self._delivering = True
        try:
            while (item := conferences.next_callback()) is not None:
                self.post(*item)
                posted += 1
        except redis.RedisError as exc:  # failing over: the rest waits for the next delivery
            log.warning("dev phone: conference events not delivered yet (%s)", exc)
        finally:
            self._delivering = False
        return posted

    def call(self, caller: str, called: str = "+33473000000") -> SimCall:
        """Ring the line from ``caller`` ('anonymous' for a withheld number)."""
        call = SimCall(self, "CA" + secrets.token_hex(16), caller, called)
        call.status = "in-progress"
        call._post_and_run("/voice/incoming", {"CallStatus": "ringing"})
        return call
