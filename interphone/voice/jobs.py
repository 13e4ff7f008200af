"""RQ jobs of the voice side. Arguments carry ids, never phone numbers (RQ logs them)."""

from __future__ import annotations

from ..queue.jobs import runtime


def send_contact_sms(contact_id: int, key: str) -> str | None:
    return runtime().sms.send_to_contact(contact_id, key)


def connect(contact_id: int) -> None:
    runtime().bridge.connect(contact_id)


def call_applicant(contact_id: int) -> None:
    runtime().bridge.call_applicant(contact_id)


def transcribe_voicemail(voicemail_id: int) -> str:
    """Fetch a voicemail's audio and transcribe it (``rt.speech_queue``, retried)."""
    return runtime().voicemail.transcribe(voicemail_id)
