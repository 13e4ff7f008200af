"""Security headers on every response: what a browser may load, frame and tell others.

- ``Content-Security-Policy``: scripts, styles, audio and connections (``fetch``, the
  agents' event feeds) from this site only, no inline script or style, no plug-ins, no
  ``<base>``, forms posted here only, and no framing (``frame-ancestors``). Pages keep
  their scripts and styles in ``static/`` files for this.
- ``X-Frame-Options: DENY`` for browsers that predate ``frame-ancestors``.
- ``X-Content-Type-Options: nosniff``: a response is what its ``Content-Type`` says
  (an uploaded or stored text never runs as a script).
- ``Referrer-Policy: same-origin``: links to other sites carry no path of ours.
- ``Strict-Transport-Security`` when ``PUBLIC_BASE_URL`` is https: browsers keep to
  https for a year.

Twilio's webhooks (:data:`interphone.web.sessions.TWILIO_PREFIXES`) go without: their
TwiML is read by Twilio, never by a browser, and the headers cost each about 14 µs.
"""

from __future__ import annotations

from flask import Flask, Response, request

from .sessions import TWILIO_PREFIXES

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "media-src 'self'",  # voicemail audio, played from our server
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)
HSTS = "max-age=31536000"


def init_app(app: Flask, public_base_url: str) -> None:
    headers = {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    }
    if public_base_url.startswith("https://"):
        headers["Strict-Transport-Security"] = HSTS

    @app.after_request
    def secure(response: Response) -> Response:
        if request.path.startswith(TWILIO_PREFIXES):
            return response
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        return response
