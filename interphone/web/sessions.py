"""Cookie sessions for people's screens, none for Twilio's webhooks.

Twilio's requests carry no cookie and are authenticated by their signature: opening and
saving a signed-cookie session for each of them (an itsdangerous serializer built, a
cookie looked up, the session checked after the response) is work for nothing on the
IVR's hot path. Requests under these paths get Flask's null session instead: reading it
works (Flask-Login and Flask-Babel look into it), writing it raises.
"""

from __future__ import annotations

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

TWILIO_PREFIXES = ("/voice/", "/sms/")  # interphone.voice.http's routes


class ScreenSessions(SecureCookieSessionInterface):
    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if str(request.environ.get("PATH_INFO", "")).startswith(TWILIO_PREFIXES):
            return None  # Flask then uses its null session, and never saves it
        return super().open_session(app, request)
