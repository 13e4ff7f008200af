"""The RQ workers of ``interphone dev serve``: ``python -m interphone.devtools.worker
[OPTIONS]`` is ``interphone worker [OPTIONS]`` whose jobs run on a runtime with the dev
phone plugged in (the bridge's calls and the SMS reach the dev phone's REST side)."""

from __future__ import annotations

import sys

from interphone import jobs
from interphone.cli import main as cli_main

from .devphone.plugin import dev_runtime


def main(argv: list[str] | None = None) -> None:
    jobs.use_runtime(dev_runtime())
    cli_main(["worker", *(sys.argv[1:] if argv is None else argv)], prog_name="interphone")


if __name__ == "__main__":  # pragma: no cover
    main()
