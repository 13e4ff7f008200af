"""``interphone prompts``: the IVR's texts, the catalogues' and the sites' own."""

from __future__ import annotations

import click

from ..prompt_overrides import check_overrides
from ..prompts import check_catalogues
from .helpers import get_runtime


@click.group("prompts")
def prompts_group() -> None:
    """The IVR's prompts: catalogues per language, and the texts sites replaced."""


@prompts_group.command("check")
@click.option("--catalogues-only", is_flag=True, help="Skip the sites' texts (no database)")
@click.pass_context
def prompts_check(ctx: click.Context, catalogues_only: bool) -> None:
    """Every catalogue has every prompt with the reference's placeholders, and every
    site's own text still has its default's (after an upgrade changed a default, say).
    Exit status 1 with the list of problems."""
    problems = check_catalogues()
    if not catalogues_only:
        problems += check_overrides(get_runtime(ctx).sessions)
    for problem in problems:
        click.echo(problem)
    if problems:
        raise click.ClickException(f"{len(problems)} problem(s) in the prompts")
    click.echo("prompts: complete")
