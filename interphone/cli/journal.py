"""``interphone journal``: the call records set aside, listed and replayed."""

from __future__ import annotations

import json

import click

from ..journal import ReplayRunning
from .helpers import get_runtime


@click.group("journal")
def journal_group() -> None:
    """Call records written behind the IVR; those set aside for their own data."""


@journal_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1))
@click.pass_context
def journal_list(ctx: click.Context, as_json: bool, limit: int) -> None:
    """The records set aside, oldest first, with their error (numbers masked)."""
    rt = get_runtime(ctx)
    for position, entry in enumerate(rt.journal.set_aside(limit), start=1):
        row = entry.summary()
        if as_json:
            click.echo(json.dumps({"position": position, **row}, ensure_ascii=False))
        else:
            shown = {k: "-" if v is None else v for k, v in row.items()}
            click.echo(
                f"{position:>5}  {shown['set_aside_at']}  {shown['type']:<10} {shown['call']}  "
                f"site {shown['site_id']}  {shown['from']}  {shown['error']}"
            )


@journal_group.command("replay")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON")
@click.pass_context
def journal_replay(ctx: click.Context, as_json: bool) -> None:
    """Apply the records set aside again, once their cause is fixed: those that fail
    again stay set aside with their new error; nothing is applied twice. Callback
    requests set aside (taken while the database was down) go back in line for the next
    sweep."""
    rt = get_runtime(ctx)
    try:
        report = rt.journal.replay()
    except ReplayRunning as exc:
        raise click.ClickException(str(exc)) from None
    requeued = rt.deferred.replay()  # the next sweep applies them
    if as_json:
        click.echo(json.dumps({**report.as_json(), "deferred_requeued": requeued}))
    else:
        click.echo(f"{report.applied} applied, {report.failed} set aside again")
        click.echo(f"{requeued} deferred requests back in line for the next sweep")
    if report.waiting:
        raise click.ClickException(
            f"{report.waiting} records not tried (the database did not answer): "
            "run the command again once it is back"
        )
