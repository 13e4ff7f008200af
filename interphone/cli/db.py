"""``interphone db``: the database schema."""

from __future__ import annotations

import click

from .helpers import get_runtime


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Apply Alembic migrations up to the latest."""
    from .. import db as dbmod

    dbmod.upgrade(get_runtime(ctx).database_url)
    click.echo("database is up to date")
