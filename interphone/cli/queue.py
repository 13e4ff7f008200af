"""``interphone queue``: the call queue in Redis."""

from __future__ import annotations

import json

import click

from .helpers import domain_errors, fail_cleanly, get_runtime


@click.group("queue")
def queue_group() -> None:
    """The call queue in Redis."""


@queue_group.command("rebuild")
@click.pass_context
@fail_cleanly(domain_errors())
def queue_rebuild(ctx: click.Context) -> None:
    """Restore the Redis queue from SQL (after Redis data loss), in the same order."""
    counts = get_runtime(ctx).queue.rebuild()
    click.echo(json.dumps(counts))


@queue_group.command("list")
@click.option("--site", "site_code", help="Site code (default: INTERPHONE_SITE)")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line")
@click.pass_context
@fail_cleanly(domain_errors())
def queue_list(ctx: click.Context, site_code: str | None, as_json: bool) -> None:
    """Waiting contacts in dispatch order (phone numbers masked)."""
    rt = get_runtime(ctx)
    rows = rt.queue.list_waiting(site_code or rt.settings.default_site)
    for row in rows:
        if as_json:
            click.echo(json.dumps(row.as_json(), ensure_ascii=False))
        else:
            click.echo(
                f"{row.position:>5}  #{row.id:<7} {row.kind:<8} {row.language:<3} "
                f"{row.priority:<7} {row.arrived_at}  {row.phone}"
            )


@queue_group.command("sweep")
@click.pass_context
def queue_sweep(ctx: click.Context) -> None:
    """Expire offers and wrap-ups and dispatch, once."""
    click.echo(json.dumps(get_runtime(ctx).queue.sweep()))
