"""``interphone sites``: sites (préfecture, sous-préfectures)."""

from __future__ import annotations

import click

from .helpers import domain_errors, fail_cleanly, get_runtime


@click.group()
def sites() -> None:
    """Sites (préfecture, sous-préfectures)."""


@sites.command("add")
@click.argument("code")
@click.option("--name", help="Display name")
@click.pass_context
@fail_cleanly(domain_errors())
def sites_add(ctx: click.Context, code: str, name: str | None) -> None:
    from ..sites import ensure_site

    site = ensure_site(get_runtime(ctx).sessions, code, name)
    click.echo(f"site {site.code}: {site.name}")
