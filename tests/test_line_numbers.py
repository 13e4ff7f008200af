"""The suite's report survives a traceback entry without a line number (tests/line_numbers.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types
from pathlib import Path

from .line_numbers import number_every_frame

ROOT = Path(__file__).resolve().parent.parent

# Raises from an instruction that CPython gives no line (a `with` block's clean-up), as
# the frames of Playwright's sync API can: pytest then reads tb_lineno = None.
LINELESS = """
import sys, types


def lineless_offset(code):
    for start, _end, line in code.co_lines():
        if line is None:
            return start
    raise LookupError("no instruction without a line")


def raise_lineless(cause=None):
    try:
        with open(__file__):
            raise ValueError("the real error")
    except ValueError as exc:
        here = sys._getframe()
        tb = types.TracebackType(None, here, lineless_offset(here.f_code), -1)
        raise exc.with_traceback(tb) from cause
"""


def _lineless_error() -> BaseException:
    namespace: dict[str, object] = {"__file__": __file__}
    exec(compile(LINELESS, __file__, "exec"), namespace)
    try:
        namespace["raise_lineless"](KeyError("the cause"))  # type: ignore[operator]
    except ValueError as exc:
        return exc
    raise AssertionError("raise_lineless did not raise")


def _lines(tb: types.TracebackType | None) -> list[int | None]:
    lines = []
    while tb is not None:
        lines.append(tb.tb_lineno)
        tb = tb.tb_next
    return lines


def test_a_frame_without_a_line_number_gets_its_frames_line() -> None:
    error = _lineless_error()
    assert None in _lines(error.__traceback__)
    assert number_every_frame(error)
    assert None not in _lines(error.__traceback__)
    assert str(error) == "the real error"
    assert isinstance(error.__cause__, KeyError)  # the chain is kept


def test_tracebacks_with_every_line_number_are_left_alone() -> None:
    try:
        raise RuntimeError("plain")
    except RuntimeError as exc:
        error = exc
    before = error.__traceback__
    assert not number_every_frame(error)
    assert error.__traceback__ is before


def test_lineless_frame_fails_its_test_instead_of_an_internal_error(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_lineless.py").write_text(
        LINELESS
        + textwrap.dedent(
            """

            def test_fails_with_a_frame_without_a_line():
                raise_lineless()


            def test_runs_after_it():
                assert True
            """
        )
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "tests.line_numbers",
            f"--rootdir={tmp_path}",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = run.stdout + run.stderr
    assert "INTERNALERROR" not in out, out
    assert "ValueError: the real error" in out, out
    assert "1 failed, 1 passed" in out, out
