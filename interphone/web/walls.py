"""The signed-in person's walls: their own site, or every site for an administrator.

Views pass :func:`current_scope` to the services, which answer "not found" for a record
of another site exactly as for one that does not exist (:mod:`interphone.scope`); a view
turns that into the same 404 for both.
"""

from __future__ import annotations

from flask import abort, current_app, g
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from ..models import Agent
from ..scope import EVERYWHERE, Scope
from . import runtime_of


def current_site_id() -> int:
    """The signed-in person's own site (read once per request)."""
    if "site_id" not in g:
        with runtime_of(current_app).sessions() as s:
            site_id = s.scalar(select(Agent.site_id).where(Agent.id == int(current_user.agent_id)))
        if site_id is None:  # the account was deleted since the page was opened
            abort(404, description=_("Page introuvable."))
        g.site_id = int(site_id)
    return int(g.site_id)


def current_scope() -> Scope:
    if current_user.role == "admin":
        return EVERYWHERE
    return Scope.of_site(current_site_id())
