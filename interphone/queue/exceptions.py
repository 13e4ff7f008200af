"""Domain errors of the queue. Each carries its HTTP meaning once, for the web layer."""

from __future__ import annotations

from typing import Any


class QueueError(Exception):
    status_code = 400
    error_id = "queue-error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(QueueError):
    status_code = 400
    error_id = "invalid-input"


class UnknownSite(QueueError):
    status_code = 404
    error_id = "unknown-site"


class UnknownAgent(QueueError):
    status_code = 404
    error_id = "unknown-agent"


class UnknownContact(QueueError):
    status_code = 404
    error_id = "unknown-contact"


class UnknownVoicemail(QueueError):
    status_code = 404
    error_id = "unknown-voicemail"


class Conflict(QueueError):
    """The request does not fit the current state (offer expired, agent on a call...)."""

    status_code = 409
    error_id = "conflict"
