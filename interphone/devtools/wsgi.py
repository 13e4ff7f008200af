"""The web process of ``interphone dev serve``: the product's app with the dev phone
plugged in (``gunicorn interphone.devtools.wsgi:app``), built and frozen as
:mod:`interphone.web.wsgi` builds the production one."""

from __future__ import annotations

import gc

from interphone.web import create_app

from .devphone.plugin import dev_runtime

app = create_app(runtime=dev_runtime())
gc.collect()  # as interphone.web.wsgi: what building the app left behind goes now
gc.freeze()
