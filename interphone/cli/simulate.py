"""``interphone simulate``: simulated days pushed through the real queue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .plan_options import build_plan, need_matplotlib, plan_options


@click.group()
def simulate() -> None:
    """Simulated days pushed through the real queue, on a private Redis and database."""


@simulate.command("day")
@plan_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object")
@click.option(
    "--csv",
    "csv_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the per-caller timeline to this CSV file",
)
@click.option(
    "--plot",
    "plot_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Draw the day to this PNG file (needs matplotlib)",
)
@click.option(
    "--exhaustive-sweeps",
    is_flag=True,
    help="Run the periodic sweep at every tick, even when nothing can be due (slower; "
    "gives the same day)",
)
def simulate_day(
    as_json: bool,
    csv_file: Path | None,
    plot_file: Path | None,
    exhaustive_sweeps: bool,
    **options: Any,
) -> None:
    """Simulate a day of calls and intercom rings through the real queue and dispatch
    code on a virtual clock, and report what applicants and agents live through."""
    from ..sim import render_text, write_csv, write_plot
    from ..sim import simulate_day as run_day

    plan = build_plan(options)
    if plot_file is not None:
        need_matplotlib()
    try:
        day = run_day(plan, exhaustive_sweeps=exhaustive_sweeps)
    except (OSError, RuntimeError) as exc:
        raise click.ClickException(f"the simulation could not run: {exc}") from None
    if csv_file is not None:
        with csv_file.open("w", encoding="utf-8", newline="") as stream:
            rows = write_csv(day, stream)
        if not as_json:
            click.echo(f"timeline of {rows} callers written to {csv_file}", err=True)
    if plot_file is not None:
        write_plot(day, plot_file)
        if not as_json:
            click.echo(f"chart written to {plot_file}", err=True)
    if as_json:
        click.echo(json.dumps(day.report.as_json(), ensure_ascii=False))
    else:
        click.echo(render_text(day))


@simulate.command("staff")
@plan_options
@click.option(
    "--target-sl",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.8,
    show_default=True,
    help="Share of live calls to answer within --threshold seconds, every hour",
)
@click.option("--min-agents", type=click.IntRange(1, 500), default=1, show_default=True)
@click.option("--max-agents", type=click.IntRange(1, 500), default=60, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object")
def simulate_staff(
    target_sl: float, min_agents: int, max_agents: int, as_json: bool, **options: Any
) -> None:
    """Fewest agents per hour that meet the target in simulation, beside Erlang C.
    (--agents is not used: the search sets the staffing.)"""
    from dataclasses import asdict

    from ..sim import Sandbox
    from ..sim.staffing import search

    if min_agents > max_agents:
        raise click.UsageError("--min-agents is larger than --max-agents")
    plan = build_plan(options)

    def progress(line: str) -> None:
        if not as_json:
            click.echo(f"  {line}", err=True)

    try:
        with Sandbox() as box:
            result = search(
                plan,
                target_sl,
                sandbox=box,
                min_agents=min_agents,
                max_agents=max_agents,
                progress=progress,
            )
    except (OSError, RuntimeError) as exc:
        raise click.ClickException(f"the simulation could not run: {exc}") from None
    report = result.day.report
    if as_json:
        click.echo(
            json.dumps(
                {
                    "target_sl": target_sl,
                    "sl_threshold_s": result.threshold_s,
                    "hours": [asdict(h) for h in result.hours],
                    "agent_hours": sum(h.agents for h in result.hours),
                    "erlang_c_agent_hours": sum(h.erlang_c_agents for h in result.hours),
                    "day": report.as_json(),
                },
                ensure_ascii=False,
            )
        )
        return
    click.echo(
        f"Fewest agents per hour for {target_sl:.0%} of live calls answered within "
        f"{result.threshold_s:g} s (seed {plan.seed}):"
    )
    click.echo(
        f"{'hour':<7}{'calls/h':>8}{'live/h':>8}{'agents':>8}{'SL':>7}   {'Erlang C':>8}{'SL':>7}"
    )
    short = [
        h.hour for h in result.hours if h.service_level is not None and h.service_level < target_sl
    ]
    for h in result.hours:
        level = "—" if h.service_level is None else f"{h.service_level:.0%}"
        level += "*" if h.hour in short else ""
        erlang = "—" if h.erlang_c_service_level is None else f"{h.erlang_c_service_level:.0%}"
        click.echo(
            f"{h.hour:<7}{h.arrivals_per_hour:>8.0f}{h.live_calls_per_hour:>8.0f}"
            f"{h.agents:>8}{level:>7}   {h.erlang_c_agents:>8}{erlang:>7}"
        )
    if short:
        click.echo(f"* the target is not reached even with --max-agents {max_agents}")
    click.echo(
        f"Agent-hours: {sum(h.agents for h in result.hours)} in simulation, "
        f"{sum(h.erlang_c_agents for h in result.hours)} by Erlang C (live calls only)."
    )
    click.echo(
        f"With that staffing the day gives: service level {report.service_level}, "
        f"{report.abandoned} hang-ups, {report.callbacks_completed}/"
        f"{report.callbacks_requested} callbacks done, occupancy {report.agent_occupancy}; "
        f"lost {report.lost}, duplicated {report.duplicated}."
    )
