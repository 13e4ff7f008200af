"""A plain page listing a site's queue, for anyone signed in (numbers masked): their own
site, or any site for an administrator (``?site=``)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, render_template, request
from flask_login import login_required

from ..models import Site
from .context import runtime_of
from .walls import current_scope, current_site_id

bp = Blueprint("queue_page", __name__)


@bp.get("/")
@login_required
def index() -> Any:
    rt = runtime_of(current_app)
    site = request.args.get("site", "")[:40]
    if not site:
        with rt.sessions() as s:
            site = s.get_one(Site, current_site_id()).code
    # another site's queue is answered as a site that does not exist: UnknownSite, a 404
    rows = rt.queue.list_waiting(site, limit=200, scope=current_scope())
    return render_template("queue.html", site=site, rows=rows)
