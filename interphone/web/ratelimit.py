"""Rate limits (Flask-Limiter, counters in the app's Redis), configured by ``RATE_LIMIT_*``.

Per client IP (``REMOTE_ADDR``: behind a reverse proxy, see docs/operations.md):

- sign-in: failed sign-ins only, per address (``RATE_LIMIT_LOGIN``) and per account and
  address, by :mod:`interphone.signin`, which answers the sign-in page with a 429;
- the JSON API: every request;
- Twilio webhooks: requests refused for a bad signature only, counted inside the
  signature check (:class:`_ForgeryLimit`, not Flask-Limiter, whose per-request cost
  showed in the webhooks' latency). Twilio never sends those, so its own addresses are
  never limited (a 429 would make Twilio play an error to the caller), while an address
  forging signatures is cut off. A validly signed request costs no Redis round trip.

Per calling number (new calls, IVR turns, SMS): :mod:`interphone.voice.limits`,
counted inside the IVR turn's own Redis script once the signature is checked. The
caller gets a polite sentence and the call ends (an empty answer for SMS): never a 429.

Redis down: the limits let requests through (``swallow_errors``); the rest of the app
says what it can.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any, cast

from flask import Flask, request
from flask_limiter import Limiter, RequestLimit
from flask_limiter.util import get_remote_address
from limits import parse_many
from limits.strategies import RateLimiter

from ..metrics import Recorder, recorder_for
from ..runtime import Runtime

log = logging.getLogger(__name__)

KEY_PREFIX = "ip:limit"
LIMITED_BLUEPRINTS = ("api",)  # webhooks: ForgeryLimit, in the signature check


def init_app(app: Flask, runtime: Runtime) -> Limiter | None:
    """Install the limits on ``app`` (nothing when ``RATE_LIMITS=off``)."""
    settings = runtime.settings.limits
    if not app.config.setdefault("RATELIMIT_ENABLED", settings.enabled):
        return None
    recorder = recorder_for(runtime.redis)

    def breached(limit: RequestLimit) -> None:
        recorder.inc("interphone_rate_limited", "ip")

    limiter = Limiter(
        key_func=get_remote_address,
        storage_uri="redis://",
        storage_options=cast(
            Any, {"connection_pool": runtime.redis.connection_pool, "key_prefix": KEY_PREFIX}
        ),
        strategy="moving-window",
        swallow_errors=True,
        on_breach=breached,
    )
    limiter.init_app(app)
    _hooks_for_limited_blueprints_only(app, limiter)
    # should its hooks have stayed app-wide (not recognized), the other routes, which have
    # no limit, still skip Flask-Limiter's evaluation
    limiter.request_filter(lambda: request.blueprint not in LIMITED_BLUEPRINTS)
    # (RouteLimit's overloads do not type-check with a Blueprint under mypy)
    cast(Any, limiter.limit(settings.api))(app.blueprints["api"])
    app.extensions["twilio_forgery_limit"] = _ForgeryLimit(
        settings.webhooks, limiter.limiter, recorder
    )
    return limiter


def _hooks_for_limited_blueprints_only(app: Flask, limiter: Limiter) -> None:
    """Flask-Limiter hooks itself on every request of the app (before, after, teardown),
    CPU spent on every webhook for nothing, since only the limited blueprints have
    limits. Its three hooks are moved to those blueprints. Should a new release hook
    itself differently, they are left where they are (correct, only slower)."""

    def limiters(hook: Any) -> bool:
        if isinstance(hook, partial):
            return bool(hook.args) and hook.args[0] is limiter
        return getattr(hook, "__self__", None) is limiter

    registries: tuple[dict[str | None, list[Any]], ...] = (
        cast(Any, app.before_request_funcs),
        cast(Any, app.after_request_funcs),
        cast(Any, app.teardown_request_funcs),
    )
    found = [[h for h in r.get(None, []) if limiters(h)] for r in registries]
    if [len(hooks) for hooks in found] != [1, 1, 1]:
        log.warning("Flask-Limiter's hooks not recognized: left on every request")
        return
    for registry, hooks in zip(registries, found, strict=True):
        registry[None] = [h for h in registry[None] if not limiters(h)]
        for blueprint in LIMITED_BLUEPRINTS:
            registry.setdefault(blueprint, []).extend(hooks)


class _ForgeryLimit:
    """Per client address, webhooks refused for a bad signature: called by
    :func:`interphone.voice.signature.twilio_signed` only for such a request, so Twilio's
    own (signed) traffic costs no Redis round trip and is never limited. True when the
    address is over its limit (answered 429 instead of 403)."""

    def __init__(self, limit: str, strategy: RateLimiter, recorder: Recorder):
        self.items = parse_many(limit)
        self.strategy = strategy
        self.recorder = recorder

    def __call__(self) -> bool:
        address = get_remote_address()
        try:
            allowed = all(self.strategy.hit(item, "webhooks", address) for item in self.items)
        except Exception as exc:  # Redis down: the 403 alone
            log.warning("webhook forgery limit not checked (%s)", type(exc).__name__)
            return False
        if not allowed:
            self.recorder.inc("interphone_rate_limited", "ip")
        return not allowed
