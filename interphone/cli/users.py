"""``interphone users``: agents, supervisors and administrators."""

from __future__ import annotations

import sys

import click

from .helpers import domain_errors, fail_cleanly, get_runtime


@click.group()
def users() -> None:
    """Agents, supervisors and administrators."""


@users.command("add")
@click.argument("email")
@click.option("--role", type=click.Choice(["agent", "supervisor", "admin"]), default="agent")
@click.option("--name", help="Full name shown on screens")
@click.option("--site", "site_code", help="Site code (default: INTERPHONE_SITE)")
@click.option("--languages", default="fr", show_default=True, help="Comma-separated codes")
@click.option("--phone", help="Phone to ring for this agent's calls")
@click.pass_context
@fail_cleanly(domain_errors())
def users_add(
    ctx: click.Context,
    email: str,
    role: str,
    name: str | None,
    site_code: str | None,
    languages: str,
    phone: str | None,
) -> None:
    """Add a user; the password is asked for, or read from standard input."""
    from ..accounts import add_user

    rt = get_runtime(ctx)
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    agent = add_user(
        rt.sessions,
        email,
        password,
        role=role,
        name=name,
        site_code=site_code or rt.settings.default_site,
        languages=languages.split(","),
        phone=phone,
        region=rt.settings.default_region,
    )
    click.echo(f"{agent.role} {agent.email} created (id {agent.id})")
