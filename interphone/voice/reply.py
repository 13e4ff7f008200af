"""What the IVR answers a turn with: :class:`Reply`, rendered by :mod:`interphone.voice.twiml`.

Shared by the IVR's rules (:mod:`interphone.voice.ivr`), the door's spoken flow
(:mod:`interphone.voice.door`) and the case lookup (:mod:`interphone.voice.lookup`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..journal import Record
from ..prompts import REFERENCE, catalogue
from .session import CallState

#: marks kept of a caller's path through the IVR (:func:`trace`)
PATH_STEPS = 24


@dataclass(frozen=True)
class Speech:
    text: str
    lang: str


@dataclass
class Reply:
    speech: list[Speech] = field(default_factory=list)
    gather: str | None = None  # the step whose input comes next
    prompt: list[Speech] = field(default_factory=list)  # said inside the gather
    hold: bool = False  # the live-queue hold loop
    hangup: bool = False
    seq: int = 0  # the number of this answer in the call, carried by its action URLs
    state: CallState | None = None  # the call's state after this answer, to be stored
    records: list[Record] = field(default_factory=list)  # for the journal, with the answer
    listen: str | None = None  # a speech step (the door): its prompt is said, then listened to
    record: bool = False  # a message is recorded after the prompt (<Record>)
    prefetch_case: str = ""  # a file number whose case is read once this answer is sent


def say(lang: str, key: str, **params: object) -> Speech:
    """The prompt ``key`` in ``lang`` (the reference language when none is chosen yet)."""
    code = lang or REFERENCE
    return Speech(catalogue(code).text(key, **params), code)


def trace(state: CallState, mark: str) -> None:
    """The caller's path through the IVR (steps and key moments), shown to the agent
    who takes the call: the last few dozen marks, no input values."""
    path = [p for p in state.extra.get("path", "").split(",") if p]
    path.append(mark)
    state.extra["path"] = ",".join(path[-PATH_STEPS:])
