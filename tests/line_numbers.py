"""A failing test is reported, even when a frame of its traceback has no line number.

CPython 3.11 gives some traceback entries ``tb_lineno = None`` (an instruction with no
line, as in the clean-up code of ``finally`` and ``with`` blocks that Playwright's sync
API runs through greenlets). pytest's report computes ``tb_lineno - 1`` for every entry,
so such a failure became an INTERNALERROR that stopped the whole run and hid the real
error (CI, 2026-11). Before pytest builds its report, each such entry is given its
frame's current line (or the function's first line): the report then shows the real
error and the run goes on. Tracebacks that have their numbers are left as they are.
"""

from __future__ import annotations

import types
from collections.abc import Generator
from typing import Any

import pytest
from _pytest._code import ExceptionInfo


def number_every_frame(exc: BaseException) -> bool:
    """Give every traceback entry of ``exc``, its causes, contexts and group members a
    line number; True when one was missing."""
    fixed = False
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        tb = current.__traceback__
        if tb is not None and _missing_a_line(tb):
            current.__traceback__ = _renumbered(tb)
            fixed = True
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
    return fixed


def _missing_a_line(tb: types.TracebackType | None) -> bool:
    while tb is not None:
        if tb.tb_lineno is None:
            return True
        tb = tb.tb_next
    return False


def _renumbered(tb: types.TracebackType) -> types.TracebackType:
    entries: list[tuple[types.FrameType, int, int]] = []
    walk: types.TracebackType | None = tb
    while walk is not None:
        frame = walk.tb_frame
        line = walk.tb_lineno
        if line is None:
            line = frame.f_lineno if frame.f_lineno is not None else frame.f_code.co_firstlineno
        entries.append((frame, walk.tb_lasti, line))
        walk = walk.tb_next
    rebuilt: types.TracebackType | None = None
    for frame, lasti, line in reversed(entries):
        rebuilt = types.TracebackType(rebuilt, frame, lasti, line)
    assert rebuilt is not None
    return rebuilt


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[Any]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    if call.excinfo is not None and number_every_frame(call.excinfo.value):
        call.excinfo = ExceptionInfo.from_exception(call.excinfo.value)
    return (yield)
