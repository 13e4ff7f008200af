"""Flask application factory."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify
from flask_wtf.csrf import CSRFProtect
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from ..config import Settings, load_settings
from ..digits import SQL_INT_MAX
from ..queue.exceptions import QueueError
from ..runtime import Runtime
from ..voice import http as voice_http
from ..voice import supervise_http  # noqa: F401  (adds its route to the voice blueprint)
from . import (
    admin,
    agent,
    api,
    auth,
    headers,
    health,
    i18n,
    metrics,
    nul_guard,
    planning,
    queue_page,
    ratelimit,
    supervisor,
)
from .context import queue_error_response
from .jsonlimit import BoundedJSON
from .sessions import ScreenSessions

log = logging.getLogger(__name__)


def create_app(
    config_override: dict[str, Any] | None = None,
    *,
    settings: Settings | None = None,
    runtime: Runtime | None = None,
) -> Flask:
    """Read configuration, build the runtime, register blueprints; nothing else."""
    if runtime is None:
        runtime = Runtime(settings or load_settings())
    settings = runtime.settings
    app = Flask(__name__, instance_path=str(settings.instance_path))
    app.json = BoundedJSON(app)  # request bodies nested too deep are malformed JSON
    # ids in URLs are SQL integers: a larger number is no such page (a 404), not an
    # overflow in PostgreSQL (a 500); tests/test_hostile_requests.py sends them
    app.url_map.converters["int"] = _SqlInteger
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_base_url.startswith("https"),
        START_SWEEP=settings.env != "test",
        TWILIO_AUTH_TOKEN=settings.twilio_auth_token,
        PUBLIC_BASE_URL=settings.public_base_url,
    )
    if config_override:
        app.config.update(config_override)
    app.extensions["interphone"] = runtime

    app.session_interface = ScreenSessions()  # none for Twilio's webhooks
    csrf = CSRFProtect(app)
    i18n.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(queue_page.bp)
    auth.init_app(app, runtime)  # sign-in and its throttle
    app.register_blueprint(agent.bp)
    app.register_blueprint(supervisor.bp)
    app.register_blueprint(planning.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(api.bp)
    csrf.exempt(api.bp)  # bearer tokens, no cookies
    app.register_blueprint(voice_http.bp)
    csrf.exempt(voice_http.bp)  # Twilio signs its requests instead
    if runtime.twilio_stand_in is not None:  # the dev phone's pages (development only)
        runtime.twilio_stand_in.init_app(app)
    _register_errors(app)
    if settings.trusted_proxies:  # the client's address for per-IP limits (not signatures)
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)  # type: ignore[method-assign]
    metrics.init_app(app, runtime)  # request ids, log context, latency, GET /metrics
    nul_guard.init_app(app)  # 400 for a NUL character, which PostgreSQL's text cannot hold
    ratelimit.init_app(app, runtime)  # RATE_LIMIT_* (docs/operations.md)
    headers.init_app(app, settings.public_base_url)  # CSP, frames, nosniff, referrer, HSTS
    if settings.env != "test":  # tests capture logs their own way
        from ..observability import configure_logging

        configure_logging(settings.log_format, settings.log_level)

    if app.config["START_SWEEP"]:
        _start_sweep(runtime)
    return app


class _SqlInteger(IntegerConverter):
    def __init__(self, url_map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", SQL_INT_MAX)
        super().__init__(url_map, *args, **kwargs)


def _register_errors(app: Flask) -> None:
    app.register_error_handler(QueueError, queue_error_response)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        body: dict[str, Any] = {
            "error_id": (exc.name or "error").lower().replace(" ", "-"),
            "message": exc.description,
            "details": {},
        }
        return jsonify(body), exc.code or 500


def _start_sweep(runtime: Runtime) -> None:
    from .. import jobs

    try:
        jobs.ensure_sweep(runtime.rq_queue, runtime.settings.queue.sweep_interval_s)
    except Exception:  # Redis down at start: /readyz says so; the worker retries later
        log.warning("could not schedule the queue sweep (is Redis up?)", exc_info=True)
