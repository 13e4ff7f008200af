"""``interphone retention``: clearing personal data past RETENTION_DAYS."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from .. import retention as retention_mod
from .helpers import domain_errors, fail_cleanly, get_runtime


@click.group()
def retention() -> None:
    """Personal data past RETENTION_DAYS (docs/operations.md)."""


@retention.command("purge")
@click.option("--dry-run", is_flag=True, help="Count what would be cleared, change nothing")
@click.option("--days", type=click.IntRange(1), help="Override RETENTION_DAYS")
@click.pass_context
@fail_cleanly(domain_errors())
def retention_purge(ctx: click.Context, dry_run: bool, days: int | None) -> None:
    """Clear the numbers, file numbers and notes of contacts closed long ago (and of old
    calls and closed cases); anonymous figures stay. Prints the counts as JSON."""
    rt = get_runtime(ctx)
    report = retention_mod.purge(
        rt.sessions,
        datetime.fromtimestamp(rt.clock.now(), tz=UTC),
        days or rt.settings.retention_days,
        dry_run=dry_run,
    )
    click.echo(json.dumps(report.as_json()))
