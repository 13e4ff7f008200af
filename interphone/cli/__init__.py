"""The ``interphone`` command line: one module per command group; each command builds a
runtime and calls a service."""

from __future__ import annotations

import click

from .bench import bench
from .cases import cases
from .db import db
from .dev import dev
from .journal import journal_group
from .prompts import prompts_group
from .queue import queue_group
from .retention import retention
from .simulate import simulate
from .sites import sites
from .users import users
from .worker import worker_command


@click.group()
def main() -> None:
    """Interphone: IVR, door intercom and call queue of a préfecture's foreigners' service."""


main.add_command(db)
main.add_command(sites)
main.add_command(cases)
main.add_command(users)
main.add_command(queue_group)
main.add_command(worker_command)
main.add_command(retention)
main.add_command(journal_group)
main.add_command(prompts_group)
main.add_command(bench)
main.add_command(dev)
main.add_command(simulate)
