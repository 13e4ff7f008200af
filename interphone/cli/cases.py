"""``interphone cases``: case data (application status), imported from CSV or made up."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .helpers import domain_errors, fail_cleanly, get_runtime


@click.group()
def cases() -> None:
    """Case data (application status)."""


@cases.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON")
@click.pass_context
@fail_cleanly(domain_errors())
def cases_import(ctx: click.Context, file: Path, as_json: bool) -> None:
    """Import FILE.csv: file_number,birth_date,status,status_changed_at[,api_valid_until,
    phone,language]. Good rows are kept (re-import updates), bad rows reported by line."""
    from ..cases import CaseDataError, import_records, read_csv

    rt = get_runtime(ctx)
    try:
        with file.open(encoding="utf-8-sig", newline="") as stream:
            records, report = read_csv(stream, region=rt.settings.default_region)
    except UnicodeDecodeError:
        raise CaseDataError("the file is not UTF-8 text") from None
    import_records(rt.sessions, records, rt.settings.birthdate_key, report)
    if as_json:
        click.echo(json.dumps(report.as_json()))
    else:
        click.echo(
            f"{report.created} created, {report.updated} updated, {len(report.rejected)} rejected"
        )
        for line, error in report.rejected:
            click.echo(f"  line {line}: {error}", err=True)
    if report.rejected:
        ctx.exit(1)


@cases.command("demo")
@click.option("--count", default=50, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--seed", type=int, default=None, help="Make the data reproducible")
@click.pass_context
@fail_cleanly(domain_errors())
def cases_demo(ctx: click.Context, count: int, seed: int | None) -> None:
    """Create COUNT synthetic cases and print a few to try on the phone."""
    from ..cases import ImportReport, demo_records, import_records

    rt = get_runtime(ctx)
    records = demo_records(count, seed=seed)
    report = import_records(rt.sessions, records, rt.settings.birthdate_key, ImportReport())
    click.echo(f"{report.created} demo cases created, {report.updated} updated. To try:")
    for r in records[:9]:
        click.echo(f"  file {r.file_number}  born {r.birth_date:%d%m%Y}  status {r.status}")
