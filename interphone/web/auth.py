"""Sign-in with Flask-Login: argon2 passwords, lock-out after repeated failures."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_login import (
    LoginManager,
    UserMixin,
    current_user,
    login_required,
    login_user,
    logout_user,
)
from sqlalchemy import select

from ..accounts import verify_password
from ..digits import ascii_digits
from ..models import Agent, Event
from . import runtime_of

F = TypeVar("F", bound=Callable[..., Any])
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
    if not ascii_digits(user_id):
        return None
    with runtime_of(current_app).sessions() as s:
        agent = s.get(Agent, int(user_id))
    return User(agent) if agent is not None and agent.active else None


def _failures_key(email: str) -> str:
    return f"ip:login-failures:{email}"


def role_required(*roles: str) -> Callable[[F], F]:
    """Signed-in users only (redirect to /login), and only these roles (403)."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if current_user.role not in roles:
                abort(403, description="this page is not for your role")
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if request.method == "GET":
        return render_template("login.html")
    rt = runtime_of(current_app)
    email = request.form.get("email", "").strip().lower()[:254]
    password = request.form.get("password", "")[:200]
    failures = int(rt.redis.get(_failures_key(email)) or 0)
    if failures >= MAX_FAILURES:
        flash(_("Trop d'essais : compte bloqué pendant 15 minutes."))
        return render_template("login.html"), 429
    with rt.sessions() as s:
        agent = s.scalar(select(Agent).where(Agent.email == email, Agent.active.is_(True)))
    if agent is None or not verify_password(agent, password):
        pipe = rt.redis.pipeline()
        pipe.incr(_failures_key(email))
        pipe.expire(_failures_key(email), LOCK_S)
        pipe.execute()
        flash(_("Adresse ou mot de passe incorrect."))
        return render_template("login.html"), 401
    rt.redis.delete(_failures_key(email))
    login_user(User(agent))
    with rt.sessions.begin() as s:
        s.add(
            Event(
                kind="user.signed_in",
                site_id=agent.site_id,
                agent_id=agent.id,
                actor=f"agent:{agent.id}",
            )
        )
    home = "supervisor.dashboard" if agent.role in ("supervisor", "admin") else "agent.screen"
    return redirect(url_for(home))


@bp.post("/logout")
@login_required
def logout() -> Any:
    logout_user()
    return redirect(url_for("auth.login"))
