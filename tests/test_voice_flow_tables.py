"""The IVR as data (``voice/flow.py``) and the code that runs it agree: every action,
free input and step a flow names has its entry in the IVR's tables, and every entry of
those tables is named by the flow (no dead code reached by a name nobody gives)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from interphone.runtime import Runtime
from interphone.voice.flow import DOOR_HOLD, DOOR_STEPS, STEPS, Target


def _targets() -> Iterator[Target]:
    for step in [*STEPS.values(), *DOOR_STEPS.values(), DOOR_HOLD]:
        yield from step.options.values()
        yield step.give_up


def test_every_target_is_a_step_or_an_action() -> None:
    for target in _targets():
        assert target.kind in ("go", "do"), target
        if target.kind == "go":
            assert target.name in STEPS or target.name in DOOR_STEPS, target


def test_every_action_named_by_the_flow_has_an_entry_and_every_entry_is_named(
    voice_runtime: Runtime,
) -> None:
    named = {target.name for target in _targets() if target.kind == "do"}
    assert set(voice_runtime.ivr.actions) == named


def test_every_keypad_input_has_an_entry_and_every_entry_is_a_steps(
    voice_runtime: Runtime,
) -> None:
    named = {step.action for step in STEPS.values() if step.action is not None}
    assert set(voice_runtime.ivr.inputs) == named


def test_every_spoken_answer_has_an_entry_and_every_entry_is_a_door_steps(
    voice_runtime: Runtime,
) -> None:
    steps = [*DOOR_STEPS.values(), DOOR_HOLD]
    named = {step.action for step in steps if step.action is not None}
    assert set(voice_runtime.ivr.door.answers) == named


@pytest.mark.parametrize("name", sorted(STEPS))
def test_a_keypad_step_takes_keys_or_free_input_never_both(name: str) -> None:
    """``handle`` follows the keys of a step with options and runs the input of one
    without: a step with both would never run its input (the language menu's keys
    come from the site)."""
    step = STEPS[name]
    assert not (step.options and step.action), name
    assert step.options or step.action or name == "language", name


@pytest.mark.parametrize("code", ["fr", "en", "ar", "es"])
def test_every_key_of_a_keypad_menu_is_announced_in_its_prompt_in_every_language(
    code: str,
) -> None:
    """A key the caller is never told about is a way out nobody finds: each key of a
    step's ``options`` is said, as a digit, in that step's prompt (``*`` and ``#``
    have no such menus)."""
    from interphone.prompts import catalogue

    cat = catalogue(code)
    for name, step in STEPS.items():
        text = cat.prompts[step.prompt]
        said = set(re.findall(r"(?<![\d{])\d(?![\d}])", text))
        assert set(step.options) <= said, (code, name, sorted(set(step.options) - said))
