"""The web process's WSGI entry point: the Procfile's ``web`` serves ``interphone.web.wsgi:app``.

Each gunicorn worker builds the app once, then tells the garbage collector to leave
everything built so far alone (:func:`gc.freeze`). Without it, every few seconds of
traffic a full collection walked the whole app (Flask, SQLAlchemy, twilio, the prompt
catalogues: hundreds of thousands of objects) and stopped every thread of the process for
80 to 210 ms, measured in ``interphone bench ivr``'s workers: the load test's webhook p99
above 100 ms came from those pauses. Frozen, the later full collections took 5 to 20 ms.
Tests build apps with :func:`interphone.web.create_app` and never freeze their process.
"""

from __future__ import annotations

import gc

from . import create_app

app = create_app()
gc.collect()  # what building the app left behind goes now, not during a call
gc.freeze()
