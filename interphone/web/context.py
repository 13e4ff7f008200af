"""What every blueprint reads from the app it runs in: the runtime, and the one JSON
answer to a queue refusal (the app's, and the screens' outside their actions).

Blueprints import this module, never the package: ``interphone.web`` builds the app
and imports the blueprints.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify

from ..queue.exceptions import QueueError
from ..runtime import Runtime


def runtime_of(app: Flask) -> Runtime:
    rt: Runtime = app.extensions["interphone"]
    return rt


def queue_error_response(exc: QueueError) -> Any:
    """A refusal as JSON: its ``error_id``, message and details, with its HTTP status."""
    body = {"error_id": exc.error_id, "message": exc.message, "details": exc.details}
    return jsonify(body), exc.status_code
