"""A plain agent page: presence, the offer in hand, the call in progress and its outcome.

The full queue screen (live updates, countdowns, notes) comes with its own issue; this
page is what an agent needs to take calls today.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ..queue.exceptions import QueueError
from ..queue.service import OUTCOMES
from . import runtime_of

bp = Blueprint("agent", __name__)


def _agent_id() -> int:
    return int(current_user.agent_id)


@bp.get("/agent")
@login_required
def screen() -> Any:
    rt = runtime_of(current_app)
    state = rt.store.agent(_agent_id())
    offer = int(state["offer"]) if state.get("offer") else None
    call = int(state["call"]) if state.get("call") else None
    current = offer or call
    contact = rt.queue.ticket(current) if current else None
    with rt.sessions() as s:
        from ..models import Agent, Site

        agent = s.get(Agent, _agent_id())
        site = s.get(Site, agent.site_id) if agent else None
    waiting = rt.queue.list_waiting(site.code, limit=50) if site else []
    return render_template(
        "agent.html",
        state=state,
        offer=offer,
        call=call,
        contact=contact,
        waiting=waiting,
        outcomes=list(OUTCOMES),
    )


@bp.post("/agent/presence")
@login_required
def presence() -> Any:
    rt = runtime_of(current_app)
    state = request.form.get("state", "")
    try:
        rt.queue.set_presence(
            _agent_id(), state, request.form.get("reason", "")[:64], actor=f"agent:{_agent_id()}"
        )
    except QueueError as exc:
        flash(exc.message)
    return redirect(url_for("agent.screen"))


@bp.post("/agent/offer/<int:contact_id>/<any(accept, decline):answer>")
@login_required
def answer_offer(contact_id: int, answer: str) -> Any:
    rt = runtime_of(current_app)
    try:
        if answer == "accept":
            rt.bridge.accept(_agent_id(), contact_id)
        else:
            rt.queue.decline(_agent_id(), contact_id)
    except QueueError as exc:
        flash(exc.message)
    return redirect(url_for("agent.screen"))


@bp.post("/agent/call/<int:contact_id>/finish")
@login_required
def finish(contact_id: int) -> Any:
    rt = runtime_of(current_app)
    try:
        rt.queue.finish(
            _agent_id(),
            contact_id,
            request.form.get("outcome", ""),
            request.form.get("note") or None,
        )
    except QueueError as exc:
        flash(exc.message)
    return redirect(url_for("agent.screen"))
