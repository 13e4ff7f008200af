"""The door intercom's spoken flow: each question of :data:`~interphone.voice.flow.DOOR_STEPS`
asked aloud, and what was heard turned into the step's answer.

A free answer (a language, a file number, a birth date, a phone number) is read back
and confirmed before it counts; a meaning the step lists is followed; nothing understood
is asked again, then the step gives up. Where an answer leads (a step, or an action of
:class:`~interphone.voice.ivr.IvrService`) is the IVR's: it passes its ``follow``.
"""

from __future__ import annotations

from collections.abc import Callable

from ..privacy import InvalidPhoneNumber, normalize_file_number, to_e164
from ..prompts import REFERENCE, catalogue
from ..queue.clock import Clock
from .directory import SiteDirectory
from .flow import DOOR_STEPS, SpeechStep, Target
from .hearing import Heard
from .lookup import parse_ddmmyyyy
from .reply import Reply, Speech, say, trace
from .session import CallState

Follow = Callable[[CallState, Target], Reply]  # the IVR's: go to a step or run an action
Answer = Callable[[CallState, str], Reply | None]  # a free answer; None: not one


class Door:
    """``callback_offer_s``: a wait at the door after which the hold's announcements
    offer a callback that keeps the place."""

    def __init__(
        self, directory: SiteDirectory, clock: Clock, *, region: str, callback_offer_s: float
    ) -> None:
        self.directory = directory
        self.clock = clock
        self.region = region
        self.callback_offer_s = callback_offer_s
        #: the free answers of :data:`DOOR_STEPS`, by the step's ``action``
        self.answers: dict[str, Answer] = {
            "door_language": self.language,
            "door_file": self._file,
            "door_birth": self._birth,
            "door_number": self._number,
        }

    def answer(self, state: CallState, step_name: str, heard: Heard, follow: Follow) -> Reply:
        """What comes after ``heard``, the answer to the door step ``step_name``."""
        step = DOOR_STEPS[step_name]
        reply: Reply | None = None
        if heard.matched:
            if step.action is not None:
                reply = self.answers[step.action](state, heard.meaning)
            elif heard.meaning in step.options:
                reply = follow(state, step.options[heard.meaning])
        if reply is None:
            reply = self._retry(state, step_name, step, follow)
        return reply

    def ask(self, state: CallState, step_name: str, before: list[Speech] | None = None) -> Reply:
        """Ask the door step ``step_name`` (after ``before``), its tries counted afresh."""
        state.step, state.tries = step_name, 0
        trace(state, step_name)
        return Reply(
            speech=list(before or []), listen=step_name, prompt=self._prompt(state, step_name)
        )

    def hold(
        self, state: CallState, heard: Heard, hold: Callable[[CallState, str], Reply]
    ) -> Reply:
        """Waiting at the door, ``hold`` being the IVR's hold loop: position announcements;
        "callback" leaves a number and keeps the place; after a long wait the callback
        is offered."""
        if heard.matched and heard.meaning == "callback" and state.contact_id:
            return self.ask(state, "door_number")
        reply = hold(state, "")
        if reply.hold:
            waited_s = self.clock.now() - state.started_ms / 1000
            key = "door_callback_offer" if waited_s >= self.callback_offer_s else "door_hold"
            reply.speech.append(say(state.lang, key))
        return reply

    def language(self, state: CallState, code: str) -> Reply:
        """The language said (or the one given up on): then the door's menu."""
        languages = self.directory.languages_of(state.site)
        state.lang = code if code in languages else REFERENCE
        return self.ask(state, "door_main")

    def file_confirmed(self, state: CallState, _: str = "") -> Reply:
        """The file number read back was confirmed: its birth date is asked, its case
        read ahead meanwhile."""
        state.file_number = state.extra.pop("pending", "")
        reply = self.ask(state, "door_birth")
        reply.prefetch_case = state.file_number
        return reply

    def repeat_status(self, state: CallState, _: str = "") -> Reply:
        before = [Speech(state.extra.get("status_text", ""), state.lang)]
        return self.ask(state, "door_after", before)

    def _prompt(self, state: CallState, step_name: str) -> list[Speech]:
        step: SpeechStep = DOOR_STEPS[step_name]
        if step_name == "door_language":
            return [
                Speech(catalogue(code).text("door_language"), code)
                for code in self.directory.languages_of(state.site)
            ]
        if step.prompt == "door_confirm":
            pending = state.extra.get("pending", "")
            heard = (
                self._spoken_birth_date(state.lang, pending)
                if step_name == "door_birth_ok"
                else " ".join(pending)
            )
            return [say(state.lang, "door_confirm", heard=heard)]
        return [say(state.lang, step.prompt)]

    def _retry(self, state: CallState, step_name: str, step: SpeechStep, follow: Follow) -> Reply:
        state.tries += 1
        notice = say(state.lang or REFERENCE, "door_not_understood")
        if state.tries >= step.max_tries:
            reply = follow(state, step.give_up)
            reply.speech.insert(0, notice)
            return reply
        tries = state.tries
        reply = self.ask(state, step_name, [notice])
        state.tries = tries
        return reply

    @staticmethod
    def _spoken_birth_date(lang: str, digits: str) -> str:
        born = parse_ddmmyyyy(digits)
        return catalogue(lang).spoken_date(born) if born else " ".join(digits)

    # -- free answers, read back before they count ------------------------------------------
    def _file(self, state: CallState, digits: str) -> Reply | None:
        number = normalize_file_number(digits)
        if not number or len(number) > 32:
            return None
        state.extra["pending"] = number
        return self.ask(state, "door_file_ok")

    def _birth(self, state: CallState, digits: str) -> Reply | None:
        if parse_ddmmyyyy(digits) is None:
            return None
        state.extra["pending"] = digits
        return self.ask(state, "door_birth_ok")

    def _number(self, state: CallState, digits: str) -> Reply | None:
        try:
            phone = to_e164(digits, self.region)
        except InvalidPhoneNumber:
            return None
        state.extra["pending"] = digits
        state.callback_phone = phone
        return self.ask(state, "door_number_ok")
