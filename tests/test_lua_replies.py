"""The reply codes of the Lua scripts are the members of their ``IntEnum``: each script
runs on the real Redis in the situations that give each code it can return, and the
number it returns is the member's value (no code without a member, no member that the
script never returns)."""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import Any

import pytest
import redis

from interphone import journal, signin
from interphone.voice import deferred, limits, session

Run = Callable[[redis.Redis], Any]  # sets the scene, runs the script, returns its code
MINUTE_MS = 60_000


# -- voice/session.py ----------------------------------------------------------------------
def _begin(*, answered: bool = False, busy: bool = False, over: bool = False) -> Run:
    def run(r: redis.Redis) -> Any:
        keys = ["t:answer", "t:lock", "t:state"]
        if answered:
            r.set(keys[0], "<Response/>")
        if busy:
            r.set(keys[1], "1")
        args: list[int] = [0, 0]  # no take
        if over:  # one take, the turn's own limit, of an allowance of nothing
            keys += ["t:count", "t:previous"]
            args = [1, 1, 0, 1, 0, MINUTE_MS]
        return r.register_script(session._BEGIN)(keys=keys, args=args)[0]

    return run


def _remember(*, call_there: bool) -> Run:
    def run(r: redis.Redis) -> Any:
        if call_there:
            r.hset("t:call", "sid", "CA1")
        return r.register_script(session._REMEMBER)(keys=["t:call"], args=["x_case", "1"])

    return run


# -- voice/limits.py and signin.py: an allowance of one ---------------------------------------
def _take(script: str, args: list[int], *, times: int) -> Run:
    def run(r: redis.Redis) -> Any:
        take = r.register_script(script)
        keys = ["t:count", "t:previous"] if script == limits.TAKE_SCRIPT else ["t:count"]
        replies = [take(keys=keys, args=args) for _ in range(times)]
        return replies[-1]

    return run


LIMITS_ARGS = [0, 1, 1, MINUTE_MS]  # now, one window, its amount and length
SIGNIN_ARGS = [1, MINUTE_MS]  # amount and length


# -- journal.py and voice/deferred.py: acting only while the lock is ours ---------------------
def _guarded(script: str, keys: list[str], args: list[Any], *, owner: bool) -> Run:
    def run(r: redis.Redis) -> Any:
        r.set("t:lock", "token" if owner else "another")
        r.rpush("t:list", "head", "next")
        return r.register_script(script)(keys=keys, args=args)

    return run


SETTLE = (journal._SETTLE_IF_OWNER, ["t:list", "t:lock", "t:aside"], ["token", 1, 60])
REPLACE_HEAD = (journal._REPLACE_HEAD_IF_OWNER, ["t:list", "t:lock"], ["token", "head", "", 60])
POP = (deferred._POP_IF_OWNER, ["t:list", "t:lock"], ["token", 60])
SET_ASIDE = (deferred._SET_ASIDE_IF_OWNER, ["t:list", "t:lock", "t:aside"], ["token", 60])

SCENES: dict[type[IntEnum], list[tuple[str, IntEnum, Run]]] = {
    session.Opened: [
        ("begin: a new turn", session.Opened.CLAIMED, _begin()),
        ("begin: answered already", session.Opened.ANSWERED, _begin(answered=True)),
        ("begin: being handled", session.Opened.BUSY, _begin(busy=True)),
        ("begin: over the limit", session.Opened.OVER_LIMIT, _begin(over=True)),
    ],
    session.Remembered: [
        ("remember: the call is there", session.Remembered.KEPT, _remember(call_there=True)),
        ("remember: the call is gone", session.Remembered.GONE, _remember(call_there=False)),
    ],
    limits.Room: [
        ("take: room", limits.Room.TAKEN, _take(limits.TAKE_SCRIPT, LIMITS_ARGS, times=1)),
        ("take: full", limits.Room.NONE, _take(limits.TAKE_SCRIPT, LIMITS_ARGS, times=2)),
    ],
    signin.Room: [
        ("sign-in: room", signin.Room.TAKEN, _take(signin._TAKE, SIGNIN_ARGS, times=1)),
        ("sign-in: full", signin.Room.NONE, _take(signin._TAKE, SIGNIN_ARGS, times=2)),
    ],
    journal.Guarded: [
        (f"{name}: {'ours' if owner else 'lost'}", member, _guarded(*script, owner=owner))
        for name, script in [
            ("settle", SETTLE),
            ("replace head", REPLACE_HEAD),
            ("deferred pop", POP),
            ("deferred set aside", SET_ASIDE),
        ]
        for owner, member in [(True, journal.Guarded.DONE), (False, journal.Guarded.REFUSED)]
    ],
}

CASES = [
    pytest.param(enum, member, run, id=f"{enum.__module__}.{enum.__name__}: {scene}")
    for enum, scenes in SCENES.items()
    for scene, member, run in scenes
]


@pytest.mark.parametrize(("enum", "member", "run"), CASES)
def test_a_scripts_reply_is_the_member_of_its_enum(
    redis_client: redis.Redis, enum: type[IntEnum], member: IntEnum, run: Run
) -> None:
    code = run(redis_client)
    assert enum(int(code)) is member


@pytest.mark.parametrize("enum", list(SCENES), ids=lambda enum: enum.__name__)
def test_every_member_is_a_reply_some_scene_gives(enum: type[IntEnum]) -> None:
    assert {member for _, member, _ in SCENES[enum]} == set(enum)


def test_replace_head_refuses_when_the_head_moved_even_with_the_lock(
    redis_client: redis.Redis,
) -> None:
    script, keys, args = REPLACE_HEAD
    run = _guarded(script, keys, [args[0], "not the head", *args[2:]], owner=True)
    assert journal.Guarded(run(redis_client)) is journal.Guarded.REFUSED
