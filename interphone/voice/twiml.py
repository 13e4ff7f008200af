"""Rendering IVR replies as TwiML, with twilio's own classes (never string building)."""

from __future__ import annotations

from collections.abc import Callable

from twilio.twiml.voice_response import Gather, VoiceResponse

from ..prompts import catalogue
from .flow import STEPS
from .ivr import HOLD_ANNOUNCE_S, Reply, Speech


def _say(target: VoiceResponse | Gather, speech: Speech) -> None:
    cat = catalogue(speech.lang)
    target.say(speech.text, voice=cat.voice, language=cat.say_language)


def render(reply: Reply, *, step_url: Callable[[str], str], hold_url: str) -> str:
    response = VoiceResponse()
    if reply.gather:
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
        gather.pause(length=HOLD_ANNOUNCE_S)
        response.redirect(hold_url, method="POST")
    else:
        for speech in reply.speech:
            _say(response, speech)
    if reply.hangup:
        response.hangup()
    return str(response)
