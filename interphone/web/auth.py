"""Sign-in with Flask-Login: argon2 passwords, lock-out after repeated failures."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import LoginManager, UserMixin, login_required, login_user, logout_user
from sqlalchemy import select

from ..accounts import verify_password
from ..models import Agent
from . import runtime_of

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "Connectez-vous pour continuer."

MAX_FAILURES = 5
LOCK_S = 15 * 60


class User(UserMixin):
    def __init__(self, agent: Agent) -> None:
        self.id = str(agent.id)
        self.agent_id = agent.id
        self.name = agent.name
        self.role = agent.role


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    if not user_id.isdigit():
        return None
    with runtime_of(current_app).sessions() as s:
        agent = s.get(Agent, int(user_id))
    return User(agent) if agent is not None and agent.active else None


def _failures_key(email: str) -> str:
    return f"ip:login-failures:{email}"


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if request.method == "GET":
        return render_template("login.html")
    rt = runtime_of(current_app)
    email = request.form.get("email", "").strip().lower()[:254]
    password = request.form.get("password", "")[:200]
    failures = int(rt.redis.get(_failures_key(email)) or 0)
    if failures >= MAX_FAILURES:
        flash("Trop d'essais : compte bloqué pendant 15 minutes.")
        return render_template("login.html"), 429
    with rt.sessions() as s:
        agent = s.scalar(select(Agent).where(Agent.email == email, Agent.active.is_(True)))
    if agent is None or not verify_password(agent, password):
        pipe = rt.redis.pipeline()
        pipe.incr(_failures_key(email))
        pipe.expire(_failures_key(email), LOCK_S)
        pipe.execute()
        flash("Adresse ou mot de passe incorrect.")
        return render_template("login.html"), 401
    rt.redis.delete(_failures_key(email))
    login_user(User(agent))
    return redirect(url_for("agent.screen"))


@bp.post("/logout")
@login_required
def logout() -> Any:
    logout_user()
    return redirect(url_for("auth.login"))
