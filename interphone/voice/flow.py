"""The phone IVR as data: steps, their prompts, what each key leads to.

A step gathers keypad input. ``options`` map a key to a target: ``go("step")`` moves to
another step, ``do("action")`` runs an action of :class:`~interphone.voice.ivr.IvrService`
(its table ``actions``) that decides what comes next. ``action`` steps take free input
(a file number, a date, a phone number: its table ``inputs``). Silence and wrong keys
re-prompt, and after ``max_tries`` the call goes to ``give_up``: nobody is left in a
dead end.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Target:
    kind: str  # "go" or "do"
    name: str
    arg: str = ""


def go(step: str) -> Target:
    return Target("go", step)


def do(action: str, arg: str = "") -> Target:
    return Target("do", action, arg)


@dataclass(frozen=True)
class Step:
    prompt: str
    num_digits: int | None = 1
    finish_on_key: str = ""
    timeout_s: int = 6
    options: Mapping[str, Target] = field(default_factory=dict)
    action: str | None = None  # free input handled by IvrService.inputs[action]
    empty_ok: bool = False  # an empty entry (just '#') is an answer, not silence
    max_tries: int = 3
    give_up: Target = field(default_factory=lambda: do("goodbye"))
    # an answer here is counted against the caller's ``counts`` limit (voice.limits,
    # checked as the turn opens); over it, ``over_limit`` is said and ``give_up`` taken
    counts: str | None = None
    over_limit: str = ""  # none: ``give_up`` is taken without a word


STEPS: dict[str, Step] = {
    # the language menu is built from the site's languages; keys map to do("language", code)
    "language": Step(prompt="language_choice", give_up=do("language", "fr")),
    "main": Step(
        prompt="main_menu",
        options={
            "1": go("status_file"),
            "2": go("callback"),
            "3": do("join_queue"),
            "9": go("main"),
        },
    ),
    "status_file": Step(
        prompt="status_ask_file",
        num_digits=None,
        finish_on_key="#",
        timeout_s=10,
        action="take_file_number",
        give_up=go("main"),
    ),
    "status_birth": Step(
        prompt="status_ask_birth",
        num_digits=8,
        timeout_s=12,
        action="check_status",
        give_up=go("main"),
        counts="caller_lookups",
        over_limit="status_limit",
    ),
    "status_after": Step(
        prompt="status_after",
        options={"1": do("repeat_status"), "2": go("callback"), "0": do("goodbye")},
    ),
    # reached from the menu, after failed status lookups or a technical error: 9 declines
    "callback": Step(
        prompt="callback_confirm_number",
        options={"1": go("callback_file"), "2": go("callback_number"), "9": go("main")},
        give_up=go("main"),
    ),
    "callback_number": Step(
        prompt="callback_enter_number",
        num_digits=None,
        finish_on_key="#",
        timeout_s=15,
        action="take_callback_number",
        give_up=go("main"),
    ),
    "callback_file": Step(
        prompt="callback_ask_file",
        num_digits=None,
        finish_on_key="#",
        timeout_s=10,
        action="take_callback_file",
        empty_ok=True,
    ),
    # a file number typed for a callback is the caller's only once its birth date
    # matches; what follows is the reason question whatever the answer (a caller learns
    # nothing of the file), and the file goes to the agent marked not verified if not
    "callback_birth": Step(
        prompt="callback_ask_birth",
        num_digits=8,
        timeout_s=12,
        action="check_callback_birth",
        give_up=go("callback_reason"),
        counts="caller_lookups",
    ),
    "callback_reason": Step(
        prompt="callback_reason",
        options={
            "1": do("register_callback", "file_question"),
            "2": do("register_callback", "permit_expiry"),
            "3": do("register_callback", "other"),
        },
        give_up=do("register_callback", "other"),
    ),
    # a caller on hold whose request the service closed (IvrService._cancelled): one
    # chance to be called back on their number; anything else ends the call
    "cancelled": Step(
        prompt="cancelled_offer",
        options={"1": do("register_callback", "other")},
        max_tries=1,
    ),
    # the live queue is closed: leave a message (recorded, transcribed, called back),
    # ask for a callback, or go back to the menu (status works at every hour)
    "closed": Step(
        prompt="closed_menu",
        options={"1": do("voicemail"), "2": go("callback"), "9": go("main")},
        give_up=go("main"),
    ),
}

#: reasons recorded with a callback, by the key pressed in ``callback_reason``
REASONS = ("file_question", "permit_expiry", "other")


# -- the door intercom: the same service by voice alone ---------------------------------------
@dataclass(frozen=True)
class SpeechStep:
    """A step answered by voice. ``grammar`` is a vocabulary grammar (``yes_no``,
    ``menu``, ``language``, ``digits``: see :mod:`interphone.voice.speech.vocabulary`);
    ``options`` map a meaning to a target, ``action`` handles free answers (digits;
    :class:`~interphone.voice.door.Door`'s table ``answers``).
    What is heard is always read back before anything is stored. No answer understood
    after ``max_tries`` → ``give_up``, which at the door is the live queue."""

    prompt: str
    grammar: str
    options: Mapping[str, Target] = field(default_factory=dict)
    action: str | None = None
    max_tries: int = 2
    give_up: Target = field(default_factory=lambda: do("join_queue"))
    max_s: int = 8  # longest answer, in seconds (digits need more)


DOOR_STEPS: dict[str, SpeechStep] = {
    "door_language": SpeechStep(
        prompt="door_language",
        grammar="language",
        action="door_language",
        give_up=do("door_language", "fr"),
    ),
    "door_main": SpeechStep(
        prompt="door_main",
        grammar="menu",
        options={
            "status": go("door_file"),
            "callback": go("door_number"),
            "agent": do("join_queue"),
            "repeat": go("door_main"),
        },
    ),
    "door_file": SpeechStep(prompt="door_file", grammar="digits", action="door_file", max_s=15),
    "door_file_ok": SpeechStep(
        prompt="door_confirm",
        grammar="yes_no",
        options={"yes": do("door_file_confirmed"), "no": go("door_file")},
    ),
    "door_birth": SpeechStep(prompt="door_birth", grammar="digits", action="door_birth", max_s=15),
    "door_birth_ok": SpeechStep(
        prompt="door_confirm",
        grammar="yes_no",
        options={"yes": do("door_check_status"), "no": go("door_birth")},
    ),
    "door_after": SpeechStep(
        prompt="door_after",
        grammar="menu",
        options={
            "repeat": do("door_repeat_status"),
            "callback": go("door_number"),
            "agent": do("join_queue"),
            "status": go("door_file"),
        },
        give_up=do("goodbye"),
    ),
    "door_number": SpeechStep(
        prompt="door_number", grammar="digits", action="door_number", max_s=20
    ),
    "door_number_ok": SpeechStep(
        prompt="door_confirm",
        grammar="yes_no",
        options={"yes": do("door_callback"), "no": go("door_number")},
    ),
    # the live queue is closed: a message instead? Nothing understood: the message
    "door_closed": SpeechStep(
        prompt="door_closed",
        grammar="yes_no",
        options={"yes": do("voicemail"), "no": go("door_main")},
        give_up=do("voicemail"),
    ),
}
#: while waiting at the door, the one thing to say: "callback" (or "agent"/"repeat")
DOOR_HOLD = SpeechStep(prompt="door_hold", grammar="menu", max_s=50)
