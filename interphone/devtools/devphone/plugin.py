"""The dev phone plugged into the product through its one hook, the runtime's
``twilio_stand_in`` (:class:`interphone.runtime.TwilioStandIn`): twilio-python's REST
calls land in the dev phone, and the app serves its page ``/dev/phone``.

The product never imports this package; the tooling entry points build their runtime
with :func:`dev_runtime`: ``interphone dev serve``'s web (:mod:`interphone.devtools.wsgi`)
and workers (:mod:`interphone.devtools.worker`), the benches, the load test, the tests.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from twilio.http import HttpClient

from interphone.config import Settings
from interphone.runtime import Runtime

from . import voice_web, web
from .rest import DevPhoneHttpClient
from .rest_http import RemoteDevPhoneHttpClient


class DevPhonePlugin:
    """Stands in for Twilio while no Twilio account is configured (``settings.dev_phone``)."""

    def http_client(self, runtime: Runtime) -> HttpClient:
        """In-process (the dev phone's records in Redis), or over HTTP to a
        :class:`.rest_http.RestServer` when ``DEV_PHONE_REST_URL`` is set (fault tests)."""
        if runtime.settings.dev_phone_rest_url:
            return RemoteDevPhoneHttpClient(runtime.settings.dev_phone_rest_url)
        return DevPhoneHttpClient(runtime.redis)

    def init_app(self, app: Flask) -> None:
        """``/dev/phone`` and its JSON API; no CSRF token (a local page for development)."""
        csrf = app.extensions["csrf"]
        for bp in (web.bp, voice_web.bp):
            app.register_blueprint(bp)
            csrf.exempt(bp)


def dev_runtime(settings: Settings | None = None, **options: Any) -> Runtime:
    """A runtime with the dev phone standing in for Twilio (used only without a Twilio
    account: with one, the runtime talks to Twilio as in production)."""
    return Runtime(settings, twilio_stand_in=DevPhonePlugin(), **options)
