"""The Makefile's ``help``: the default target, and it lists every target with one line."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

MAKEFILE = Path(__file__).resolve().parent.parent / "Makefile"


def _phony_targets() -> list[str]:
    text = MAKEFILE.read_text(encoding="utf-8")
    match = re.search(r"^\.PHONY:(.*)$", text, re.MULTILINE)
    assert match, "the Makefile declares its targets in .PHONY"
    return match.group(1).split()


def test_every_target_has_a_one_line_description() -> None:
    described = re.findall(r"^## ([a-z-]+): \S", MAKEFILE.read_text(encoding="utf-8"), re.MULTILINE)
    assert sorted(described) == sorted(_phony_targets())


def test_help_says_that_make_test_may_run_apt_get() -> None:
    text = MAKEFILE.read_text(encoding="utf-8")
    (line,) = re.findall(r"^## test: .*$", text, re.MULTILINE)
    assert "apt-get" in line and "chromium" in line and "espeak-ng" in line


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_alone_prints_the_help_with_every_target() -> None:
    out = subprocess.run(
        ["make", "-s", "-f", str(MAKEFILE)],
        cwd=MAKEFILE.parent,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    listed = [line.split()[0] for line in out.splitlines()[1:] if line.strip()]
    assert listed == _ordered_descriptions()
    assert set(listed) == set(_phony_targets())


def _ordered_descriptions() -> list[str]:
    text = MAKEFILE.read_text(encoding="utf-8")
    return re.findall(r"^## ([a-z-]+): ", text, re.MULTILINE)
