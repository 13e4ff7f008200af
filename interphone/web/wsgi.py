"""The web process's WSGI entry point: the Procfile's ``web`` serves ``interphone.web.wsgi:app``.

Each gunicorn worker builds the app once, then tells the garbage collector to leave
everything built so far alone (:func:`gc.freeze`): a full collection would otherwise walk
the whole app (Flask, SQLAlchemy, twilio, the prompt catalogues: hundreds of thousands of
objects) every few seconds of traffic, and stop every thread of the process meanwhile,
callers' webhooks included (``interphone bench ivr`` shows it in the webhooks' p99).
Tests build apps with :func:`interphone.web.create_app` and never freeze their process.
"""

from __future__ import annotations

import gc

from . import create_app

app = create_app()
gc.collect()  # what building the app left behind goes now, not during a call
gc.freeze()
