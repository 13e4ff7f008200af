"""``interphone worker``: the RQ worker and its scheduler."""

from __future__ import annotations

import click

from .. import worker
from ..runtime import RQ_QUEUE
from .helpers import get_runtime


@click.command("worker")
@click.option("--burst", is_flag=True, help="Run the queued jobs, then stop")
@click.option(
    "--maintenance",
    default=30,
    show_default=True,
    type=click.IntRange(5),
    help="Seconds between RQ's clean-ups (jobs of dead workers, scheduler take-over)",
)
@click.option("--logging-level", default="WARNING", show_default=True)
@click.option(
    "--queue",
    "queues",
    multiple=True,
    help="RQ queue to serve (repeatable; default: interphone, e.g. interphone-speech "
    "for the voicemail transcriber)",
)
@click.pass_context
def worker_command(
    ctx: click.Context, burst: bool, maintenance: int, logging_level: str, queues: tuple[str, ...]
) -> None:
    """The RQ worker with its scheduler, on REDIS_URL or through REDIS_SENTINELS."""
    settings = get_runtime(ctx).settings
    worker.run(
        settings,
        burst=burst,
        maintenance_s=maintenance,
        logging_level=logging_level,
        queues=queues or (RQ_QUEUE,),
    )
