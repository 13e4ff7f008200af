"""The supervisor dashboard: live tiles, agents, the line, actions, export, staffing."""

from __future__ import annotations

from typing import Any

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
from werkzeug.exceptions import NotFound

from ..digits import row_id
from ..models import Agent, Site
from ..queue import agentlog
from ..queue import export as exports
from ..queue.clock import to_ms
from ..queue.exceptions import QueueError, UnknownAgent, UnknownContact
from ..queue.stats import HourRow, Statistics, hourly
from ..sites import list_sites
from .agent import feed_response
from .auth import role_required
from .context import queue_error_response, runtime_of
from .i18n import queue_error_text
from .walls import current_scope, current_site_id

bp = Blueprint("supervisor", __name__)
SUPERVISORS = ("supervisor", "admin")
# a contact or agent of another site is answered as one that does not exist: a 404
NOT_FOUND = {UnknownContact: _l("Contact inconnu."), UnknownAgent: _l("Agent inconnu.")}
# the cancel form's reasons (queue.service.CANCEL_REASONS but the applicant's SMS)
CANCEL_LABELS = {
    "other": _l("Autre motif (à préciser) — rappel proposé"),
    "duplicate": _l("Doublon — pas de proposition de rappel"),
    "closing": _l("Fermeture du service — rappel proposé"),
}


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


@bp.errorhandler(QueueError)
def refused(exc: QueueError) -> Any:
    """An action on a contact or an agent refused: shown on the dashboard; a record of
    another site, or none, is a 404. Outside an action, the app's JSON answer."""
    if request.method != "POST":
        return queue_error_response(exc)
    if isinstance(exc, UnknownContact | UnknownAgent):
        return current_app.handle_http_exception(NotFound(str(NOT_FOUND[type(exc)])))
    flash(queue_error_text(exc))
    return _back()


def _back() -> Any:
    """To the dashboard of the site the action was taken from."""
    return redirect(url_for("supervisor.dashboard", site=request.args.get("site", "")[:40] or None))


def _actor() -> str:
    return f"supervisor:{current_user.agent_id}"


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
        moves = agentlog.last_moves(s, [agent.id for agent in agents])
    now_ms = rt.store.now_ms()
    roster = []
    for agent in agents:
        live = rt.store.agent(agent.id)
        move = moves.get(agent.id)  # time in state: since the agent's last move logged
        moved_ms = None if move is None else to_ms(move.at.timestamp())
        roster.append(
            {
                "id": agent.id,
                "name": agent.name,
                "state": live.get("state", "offline"),
                "reason": live.get("reason", ""),
                "for_s": None if moved_ms is None else max(0, (now_ms - moved_ms) // 1000),
            }
        )
    return {
        "site": site,
        "listening": rt.supervision.listening(current_user.agent_id),
        "figures": stats.figures(site.code),
        "roster": roster,
        "waiting": rt.queue.list_waiting(site.code, limit=100, scope=current_scope()),
        "hours": _working_hours(hourly(rt.sessions, rt.clock, site.code)),
        "speech_modes": rt.hearing.modes(list(site.languages or [])),
        "cancel_reasons": CANCEL_LABELS,
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
    runtime_of(current_app).queue.set_presence(
        agent_id,
        request.form.get("state", ""),
        request.form.get("reason", "supervisor")[:64],
        actor=_actor(),
        scope=current_scope(),
    )
    return _back()


@bp.post("/supervisor/agents/<int:agent_id>/listen")
@role_required(*SUPERVISORS)
def agent_listen(agent_id: int) -> Any:
    """Join the agent's call muted (monitor), heard by the agent (coach) or by both
    (barge), or switch to that mode (:mod:`interphone.voice.supervise`)."""
    mode = request.form.get("mode", "")[:16]
    runtime_of(current_app).supervision.listen(
        current_user.agent_id, agent_id, mode, scope=current_scope()
    )
    return _back()


@bp.post("/supervisor/agents/<int:agent_id>/leave")
@role_required(*SUPERVISORS)
def agent_leave(agent_id: int) -> Any:
    runtime_of(current_app).supervision.leave(
        current_user.agent_id, agent_id, scope=current_scope()
    )
    return _back()


@bp.post("/supervisor/contacts/<int:contact_id>/priority")
@role_required(*SUPERVISORS)
def contact_priority(contact_id: int) -> Any:
    runtime_of(current_app).queue.set_priority(
        contact_id, request.form.get("urgent") == "1", actor=_actor(), scope=current_scope()
    )
    return _back()


@bp.post("/supervisor/contacts/<int:contact_id>/reassign")
@role_required(*SUPERVISORS)
def contact_reassign(contact_id: int) -> Any:
    agent_id = row_id(request.form.get("agent_id", ""))
    if agent_id is None:
        flash(_("Choisissez un agent."))
        return redirect(url_for("supervisor.dashboard"))
    runtime_of(current_app).queue.reassign(
        contact_id, agent_id, actor=_actor(), scope=current_scope()
    )
    return _back()


@bp.post("/supervisor/contacts/<int:contact_id>/cancel")
@role_required(*SUPERVISORS)
def contact_cancel(contact_id: int) -> Any:
    runtime_of(current_app).queue.cancel(
        contact_id,
        request.form.get("reason", ""),
        code=request.form.get("code", "other"),
        actor=_actor(),
        scope=current_scope(),
    )
    return _back()


@bp.get("/supervisor/export.csv")
@role_required(*SUPERVISORS)
def export() -> Any:
    """Contacts, events or the agent log of a date range, as CSV
    (:mod:`interphone.queue.export`)."""
    site = _site()
    args = request.args
    what, first, last = exports.read_request(
        args.get("what", "contacts"), args.get("from", ""), args.get("to", "")
    )
    sessions = runtime_of(current_app).sessions
    body = exports.export_csv(sessions, site, what, first, last, scope=current_scope())
    name = exports.filename(site, what, first, last)
    return Response(
        body, mimetype="text/csv", headers={"Content-Disposition": f"attachment; filename={name}"}
    )


@bp.errorhandler(exports.ExportError)
def export_refused(exc: exports.ExportError) -> Any:
    return Response(f"{exc}\n", status=400, mimetype="text/plain")
