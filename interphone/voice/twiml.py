"""Rendering IVR replies as TwiML, with twilio's own classes (never string building)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from twilio.twiml.voice_response import Gather, VoiceResponse

from ..prompts import catalogue
from .flow import STEPS
from .reply import Reply, Speech
from .speech import token as call_token


def _say(target: VoiceResponse | Gather, speech: Speech) -> None:
    cat = catalogue(speech.lang)
    target.say(speech.text, voice=cat.voice, language=cat.say_language)


@dataclass(frozen=True)
class Listening:
    """How the door's answer to one question is heard: by the local speech server
    (``local``: the call's audio is streamed to ``stream_url``) or by Twilio."""

    local: bool
    stream_url: str
    key: str  # names this question's result (step and sequence number)
    grammar: str
    lang: str
    max_s: int
    token: str = ""  # signs the call and the question for the speech server
    hints: list[str] = field(default_factory=list)


def _listen(response: VoiceResponse, reply: Reply, how: Listening, action: str) -> None:
    speech = reply.speech + reply.prompt
    if how.local:
        for item in speech:
            _say(response, item)
        connect = response.connect(action=action, method="POST")
        stream = connect.stream(url=how.stream_url)
        for name, value in (
            ("key", how.key),
            ("grammar", how.grammar),
            ("lang", how.lang),
            ("max_s", str(how.max_s)),
            (call_token.PARAMETER, how.token),
        ):
            stream.parameter(name=name, value=value)
        return
    gather = response.gather(
        input="speech",
        action=action,
        method="POST",
        language=catalogue(how.lang).say_language,
        hints=", ".join(how.hints) or None,
        speech_timeout="auto",
        timeout=min(how.max_s, 60),
        action_on_empty_result=True,
    )
    for item in speech:
        _say(gather, item)
    response.redirect(action, method="POST")


@dataclass(frozen=True)
class Recording:
    """Where a message's recording goes: ``action`` (the caller's next step, with the
    RecordingSid) and ``status_callback`` (Twilio says when the audio is ready)."""

    action: str
    status_callback: str
    max_s: int
    finish_on_key: str = "#"
    silence_s: int = 5


def _record(response: VoiceResponse, reply: Reply, recording: Recording) -> None:
    for speech in reply.speech + reply.prompt:
        _say(response, speech)
    response.record(
        action=recording.action,
        method="POST",
        max_length=recording.max_s,
        timeout=recording.silence_s,
        finish_on_key=recording.finish_on_key,
        play_beep=True,
        recording_status_callback=recording.status_callback,
        recording_status_callback_method="POST",
        recording_status_callback_event="completed absent",
    )
    response.redirect(recording.action, method="POST")  # nothing was recorded


def render(
    reply: Reply,
    *,
    step_url: Callable[[str], str],
    hold_url: str,
    hold_s: int,
    listening: Listening | None = None,
    recording: Recording | None = None,
) -> str:
    response = VoiceResponse()
    if reply.record and recording is not None:
        _record(response, reply, recording)
    elif reply.listen and listening is not None:
        _listen(response, reply, listening, hold_url if reply.hold else step_url(reply.listen))
    elif reply.gather:
        step = STEPS[reply.gather]
        url = step_url(reply.gather)
        gather = response.gather(
            input="dtmf",
            action=url,
            method="POST",
            timeout=step.timeout_s,
            num_digits=step.num_digits,
            finish_on_key=step.finish_on_key or None,
            action_on_empty_result=True,
        )
        for speech in reply.speech + reply.prompt:
            _say(gather, speech)
        response.redirect(url, method="POST")
    elif reply.hold:
        gather = response.gather(
            input="dtmf",
            action=hold_url,
            method="POST",
            timeout=1,
            num_digits=1,
            finish_on_key="",
            action_on_empty_result=True,
        )
        for speech in reply.speech:
            _say(gather, speech)
        gather.pause(length=hold_s)  # then the next announcement
        response.redirect(hold_url, method="POST")
    else:
        for speech in reply.speech:
            _say(response, speech)
    if reply.hangup:
        response.hangup()
    return str(response)
