"""A plain page listing a site's queue, for anyone signed in (numbers masked)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, render_template, request
from flask_login import login_required

from . import runtime_of

bp = Blueprint("queue_page", __name__)


@bp.get("/")
@login_required
def index() -> Any:
    rt = runtime_of(current_app)
    site = request.args.get("site", rt.settings.default_site)[:40]
    rows = rt.queue.list_waiting(site, limit=200)
    return render_template("queue.html", site=site, rows=rows)
