"""The supervisor dashboard: live tiles, agents, the line, actions, export, staffing."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select

from ..digits import row_id
from ..models import Agent, Contact, Event, Site
from ..privacy import mask_phone
from ..queue.exceptions import QueueError, UnknownAgent, UnknownContact
from ..queue.stats import HourRow, Statistics, hourly
from ..sites import list_sites
from . import runtime_of
from .agent import feed_response
from .auth import role_required
from .i18n import queue_error_text
from .walls import current_scope, current_site_id

bp = Blueprint("supervisor", __name__)
SUPERVISORS = ("supervisor", "admin")
EXPORT_MAX_DAYS = 366
# a contact or agent of another site is answered as one that does not exist: a 404
NOT_FOUND = {UnknownContact: _l("Contact inconnu."), UnknownAgent: _l("Agent inconnu.")}


def _site() -> Site:
    """The site the dashboard, its feed and the export show: the person's own, or the
    one ``?site=`` names within their scope (an administrator's choice). Another site
    answers as one that does not exist."""
    code = request.args.get("site", "")[:40]
    with runtime_of(current_app).sessions() as s:
        if code:
            site = s.scalar(select(Site).where(Site.code == code))
        else:
            site = s.get(Site, current_site_id())
    if site is None or not current_scope().allows(site.id):
        abort(404, description=_("Site inconnu."))
    return site


def _act(action: Callable[[], object]) -> Any:
    """Run an action on a contact or an agent within the supervisor's sites: a refusal
    is shown on the dashboard; a record of another site, or none, is a 404."""
    try:
        action()
    except (UnknownContact, UnknownAgent) as exc:
        abort(404, description=str(NOT_FOUND[type(exc)]))
    except QueueError as exc:
        flash(queue_error_text(exc))
    return redirect(url_for("supervisor.dashboard", site=request.args.get("site", "")[:40] or None))


def _context() -> dict[str, Any]:
    rt = runtime_of(current_app)
    site = _site()
    stats = Statistics(
        rt.store,
        rt.sessions,
        rt.clock,
        default_handle_time_s=rt.settings.queue.default_handle_time_s,
    )
    with rt.sessions() as s:
        agents = s.scalars(
            select(Agent)
            .where(Agent.site_id == site.id, Agent.active.is_(True))
            .order_by(Agent.name)
        ).all()
    now_ms = rt.store.now_ms()
    roster = []
    for agent in agents:
        live = rt.store.agent(agent.id)
        since = int(float(live.get("since") or now_ms))
        roster.append(
            {
                "id": agent.id,
                "name": agent.name,
                "state": live.get("state", "offline"),
                "reason": live.get("reason", ""),
                "for_s": max(0, (now_ms - since) // 1000),
            }
        )
    return {
        "site": site,
        "figures": stats.figures(site.code),
        "roster": roster,
        "waiting": rt.queue.list_waiting(site.code, limit=100, scope=current_scope()),
        "hours": _working_hours(hourly(rt.sessions, rt.clock, site.code)),
        "speech_modes": rt.hearing.modes(list(site.languages or [])),
    }


def _working_hours(rows: list[HourRow]) -> list[HourRow]:
    """From 08:00, or from the first hour that saw anyone if earlier, to now."""
    first = next((r.hour for r in rows if r.arrivals or r.answered or r.abandoned), 8)
    return [r for r in rows if r.hour >= min(first, 8)]


@bp.get("/supervisor")
@role_required(*SUPERVISORS)
def dashboard() -> Any:
    sites = list_sites(runtime_of(current_app).sessions) if current_user.role == "admin" else []
    return render_template("supervisor.html", sites=sites, **_context())


@bp.get("/supervisor/panel")
@role_required(*SUPERVISORS)
def panel() -> Any:
    return render_template("_supervisor_panel.html", **_context())


@bp.get("/supervisor/feed")
@role_required(*SUPERVISORS)
def feed() -> Response:
    return feed_response(_site().id)


@bp.post("/supervisor/agents/<int:agent_id>/presence")
@role_required(*SUPERVISORS)
def agent_presence(agent_id: int) -> Any:
    rt = runtime_of(current_app)
    return _act(
        lambda: rt.queue.set_presence(
            agent_id,
            request.form.get("state", ""),
            request.form.get("reason", "supervisor")[:64],
            actor=f"supervisor:{current_user.agent_id}",
            scope=current_scope(),
        )
    )


@bp.post("/supervisor/contacts/<int:contact_id>/priority")
@role_required(*SUPERVISORS)
def contact_priority(contact_id: int) -> Any:
    rt = runtime_of(current_app)
    return _act(
        lambda: rt.queue.set_priority(
            contact_id,
            request.form.get("urgent") == "1",
            actor=f"supervisor:{current_user.agent_id}",
            scope=current_scope(),
        )
    )


@bp.post("/supervisor/contacts/<int:contact_id>/reassign")
@role_required(*SUPERVISORS)
def contact_reassign(contact_id: int) -> Any:
    rt = runtime_of(current_app)
    agent_id = row_id(request.form.get("agent_id", ""))
    if agent_id is None:
        flash(_("Choisissez un agent."))
        return redirect(url_for("supervisor.dashboard"))
    return _act(
        lambda: rt.queue.reassign(
            contact_id,
            agent_id,
            actor=f"supervisor:{current_user.agent_id}",
            scope=current_scope(),
        )
    )


@bp.post("/supervisor/contacts/<int:contact_id>/cancel")
@role_required(*SUPERVISORS)
def contact_cancel(contact_id: int) -> Any:
    rt = runtime_of(current_app)
    return _act(
        lambda: rt.queue.cancel(
            contact_id,
            request.form.get("reason", "").strip(),
            actor=f"supervisor:{current_user.agent_id}",
            scope=current_scope(),
        )
    )


@bp.get("/supervisor/export.csv")
@role_required(*SUPERVISORS)
def export() -> Any:
    """Contacts or events of a date range, as CSV. Phone numbers are masked."""
    rt = runtime_of(current_app)
    site = _site()
    try:
        first = date.fromisoformat(request.args.get("from", ""))
        last = date.fromisoformat(request.args.get("to", ""))
    except ValueError:
        return Response(
            "from and to must be dates (YYYY-MM-DD)\n", status=400, mimetype="text/plain"
        )
    what = request.args.get("what", "contacts")
    if what not in ("contacts", "events") or last < first or (last - first).days > EXPORT_MAX_DAYS:
        return Response(
            "what must be contacts or events, over at most a year\n",
            status=400,
            mimetype="text/plain",
        )
    zone = ZoneInfo(site.timezone)
    start = datetime.combine(first, time.min, zone)
    end = datetime.combine(last + timedelta(days=1), time.min, zone)
    out = io.StringIO()
    writer = csv.writer(out)
    with rt.sessions() as s:
        if what == "contacts":
            writer.writerow(
                [
                    "id",
                    "reference",
                    "kind",
                    "channel",
                    "language",
                    "state",
                    "outcome",
                    "priority_class",
                    "attempts",
                    "arrived_at",
                    "closed_at",
                    "phone",
                ]
            )
            rows = s.scalars(
                select(Contact)
                .where(
                    Contact.site_id == site.id,
                    Contact.created_at >= start,
                    Contact.created_at < end,
                )
                .order_by(Contact.id)
            )
            for c in rows:
                writer.writerow(
                    [
                        c.id,
                        c.reference,
                        c.kind,
                        c.channel,
                        c.language,
                        c.state,
                        _safe(c.outcome),
                        c.priority_class,
                        c.attempts,
                        datetime.fromtimestamp(c.arrived_ms / 1000, zone).isoformat(),
                        c.closed_at.isoformat() if c.closed_at else "",
                        mask_phone(c.phone),
                    ]
                )
        else:
            writer.writerow(["id", "at", "kind", "contact_id", "agent_id", "actor"])
            events = s.scalars(
                select(Event)
                .where(Event.site_id == site.id, Event.at >= start, Event.at < end)
                .order_by(Event.id)
            )
            for e in events:
                writer.writerow(
                    [
                        e.id,
                        e.at.isoformat(),
                        e.kind,
                        e.contact_id or "",
                        e.agent_id or "",
                        _safe(e.actor),
                    ]
                )
    filename = f"interphone-{site.code}-{what}-{first}-{last}.csv"
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f"attachment; filename={filename}"},
    )


def _safe(value: str | None) -> str:
    """No spreadsheet formulas from free text (CSV injection)."""
    text = value or ""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
