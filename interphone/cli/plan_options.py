"""The command-line options that describe a simulated day, shared by ``simulate day`` and
``simulate staff``, and their conversion to a plan."""

from __future__ import annotations

from typing import Any

import click

from .helpers import F


def plan_options(fn: F) -> F:
    """The options that describe a simulated day (shared by ``simulate day`` and ``staff``).
    Defaults are those of :class:`interphone.sim.DayPlan`."""
    from ..sim.plan import DayPlan

    d = DayPlan()
    share = click.FloatRange(0, 1)
    seconds = click.FloatRange(0)
    options = [
        click.option(
            "--arrivals-per-hour",
            help="Calls and rings per hour: one rate, or one per hour separated by commas "
            f"[default: {d.arrivals_per_hour[0]:g}]",
        ),
        click.option(
            "--hours",
            type=click.FloatRange(0, 4800, min_open=True),
            help=f"Length of the simulated period; the line is open throughout unless --open "
            f"says otherwise [default: {d.hours:g}]",
        ),
        click.option("--start", help=f"Local time the period starts [default: {d.start:%H:%M}]"),
        click.option("--date", "day", help=f"Simulated date [default: {d.day} (a Monday)]"),
        click.option(
            "--profile",
            type=click.Choice(["flat", "monday"]),
            help="Shape of the day: flat, or the Monday-morning peak by clock hour (rescaled "
            "so that the mean stays --arrivals-per-hour) [default: flat]",
        ),
        click.option(
            "--agents",
            help=f"Agents signed in: one number, or one per hour [default: {d.agents[0]}]",
        ),
        click.option(
            "--agent-languages",
            help="What each agent speaks, given to agents in turn, e.g. fr+en,fr,fr+ar "
            "[default: fr]",
        ),
        click.option(
            "--languages",
            help="Callers' languages and shares, e.g. fr=0.7,en=0.2,ar=0.1 [default: fr]",
        ),
        click.option(
            "--intercom-share",
            type=share,
            help=f"Share of arrivals ringing the door intercom [default: {d.intercom_share:g}]",
        ),
        click.option(
            "--self-service",
            type=share,
            help="Share of arrivals served by the IVR alone, who never reach the queue "
            f"[default: {d.self_service:g}]",
        ),
        click.option(
            "--callback-share",
            type=share,
            help="Share of those who want an agent that ask for a callback instead of "
            f"waiting [default: {d.callback_share:g}]",
        ),
        click.option(
            "--closed-callback-share",
            type=share,
            help="When the line is closed, share who take a callback "
            f"[default: {d.closed_callback_share:g}]",
        ),
        click.option(
            "--urgent-share",
            type=share,
            help="Share whose permit expires within days (urgent class) "
            f"[default: {d.urgent_share:g}]",
        ),
        click.option(
            "--patience",
            help="Mean seconds a caller holds before hanging up (exponential), or inf "
            f"[default: {d.patience_s:g}]",
        ),
        click.option(
            "--aht",
            type=click.FloatRange(1),
            help=f"Mean handle time, seconds [default: {d.aht_s:g}]",
        ),
        click.option(
            "--handle",
            type=click.Choice(["exponential", "lognormal"]),
            help="Distribution of handle times [default: exponential]",
        ),
        click.option(
            "--handle-cv",
            type=click.FloatRange(0.01, 10),
            help=f"Coefficient of variation of log-normal handle times [default: {d.handle_cv:g}]",
        ),
        click.option(
            "--wrap-up",
            type=seconds,
            help=f"Wrap-up after each call, seconds [default: {d.wrap_up_s:g}]",
        ),
        click.option(
            "--ivr-time",
            type=seconds,
            help=f"Mean seconds in the menus before joining the queue [default: {d.ivr_s:g}]",
        ),
        click.option(
            "--accept-delay",
            type=seconds,
            help="Seconds an agent takes to accept an offer [default: 0]",
        ),
        click.option(
            "--callback-answer",
            type=share,
            help="Chance that the applicant picks up a callback attempt "
            f"[default: {d.callback_answer:g}]",
        ),
        click.option(
            "--ring-time",
            type=seconds,
            help=f"Seconds an unanswered callback rings [default: {d.ring_s:g}]",
        ),
        click.option(
            "--retry-delay",
            type=seconds,
            help="Seconds before an unanswered callback is tried again "
            f"[default: {d.queue.callback_retry_delay_s:g}]",
        ),
        click.option(
            "--max-attempts",
            type=click.IntRange(1, 20),
            help="Callback attempts before 'unreachable' "
            f"[default: {d.queue.callback_max_attempts}]",
        ),
        click.option(
            "--open",
            "open",
            help="Opening hours of the live line, e.g. 09:00-12:00,13:30-16:30 [default: always]",
        ),
        click.option(
            "--callback-hours",
            help="Hours in which callbacks are placed, e.g. 09:00-17:00 [default: always]",
        ),
        click.option(
            "--drain",
            type=seconds,
            help="After the period, at most this long for the agents to finish the line "
            f"[default: {d.drain_s:g}]",
        ),
        click.option(
            "--sl-threshold",
            "--threshold",
            "sl_threshold",
            type=seconds,
            help="Service level: answered within this many seconds "
            f"[default: {d.sl_threshold_s:g}]",
        ),
        click.option(
            "--seed", type=int, help=f"Random seed of the day's callers [default: {d.seed}]"
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def build_plan(options: dict[str, Any]) -> Any:
    """The day the options describe; a bad option is a usage error."""
    from ..sim.plan import PlanError, plan_from_options

    try:
        return plan_from_options(**options)
    except PlanError as exc:
        raise click.UsageError(str(exc)) from None


def need_matplotlib() -> None:
    """Refuse --plot up front when matplotlib is missing, with the hint to install it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        from ..sim.report import PLOT_HINT

        raise click.UsageError(f"--plot: {PLOT_HINT}") from None
