"""Sign-in with Flask-Login: argon2 passwords behind a throttle (:mod:`interphone.signin`),
sessions that end everywhere at sign-out."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import (
    Blueprint,
    Flask,
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

from ..accounts import end_sessions
from ..digits import ascii_digits
from ..models import Agent
from ..runtime import Runtime
from ..signin import SignIn, SignInError, Throttled
from .context import runtime_of
from .redirects import local_path

F = TypeVar("F", bound=Callable[..., Any])
bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "Connectez-vous pour continuer."


def init_app(app: Flask, runtime: Runtime) -> None:
    login_manager.init_app(app)
    app.extensions["sign_in"] = SignIn(
        runtime.sessions,
        runtime.redis,
        secret_key=runtime.settings.secret_key,
        per_address=runtime.settings.limits.login,
    )
    app.register_blueprint(bp)


class User(UserMixin):
    """The signed-in account. Its session id, ``<agent id>.<session version>``, stops
    matching once the account's sessions end (sign-out, password reset, deactivation),
    in every copy of the cookie."""

    def __init__(self, agent: Agent) -> None:
        self.id = f"{agent.id}.{agent.session_version}"
        self.agent_id = agent.id
        self.name = agent.name
        self.role = agent.role
        self.site_id = agent.site_id


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    agent_id, _, version = user_id.partition(".")
    if not ascii_digits(agent_id) or not ascii_digits(version):
        return None
    with runtime_of(current_app).sessions() as s:
        agent = s.get(Agent, int(agent_id))
    if agent is None or not agent.active or agent.session_version != int(version):
        return None
    return User(agent)


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
        return _login_page(request.args.get("next"))
    sign_in: SignIn = current_app.extensions["sign_in"]
    agent = sign_in.attempt(
        request.form.get("email", "")[:254],
        request.form.get("password", "")[:200],
        request.remote_addr or "",
    )
    login_user(User(agent))
    home = "supervisor.dashboard" if agent.role in ("supervisor", "admin") else "agent.screen"
    return redirect(local_path(request.form.get("next")) or url_for(home))


@bp.errorhandler(SignInError)
def refused(exc: SignInError) -> Any:
    """A refused sign-in: the form again, with why (one answer for every wrong pair)."""
    if isinstance(exc, Throttled):
        flash(_("Trop d'essais depuis cette adresse : réessayez dans quelques minutes."))
        return _login_page(request.form.get("next")), 429
    flash(_("Adresse ou mot de passe incorrect."))
    return _login_page(request.form.get("next")), 401


def _login_page(target: str | None) -> str:
    """The form, carrying the page asked for before sign-in when it is on this site."""
    return render_template("login.html", next=local_path(target) or "")


@bp.post("/logout")
@login_required
def logout() -> Any:
    """Sign out here and in every other copy of this session."""
    runtime = runtime_of(current_app)
    end_sessions(runtime.sessions, current_user.agent_id)
    runtime.queue.sign_out(current_user.agent_id)
    logout_user()
    return redirect(url_for("auth.login"))
