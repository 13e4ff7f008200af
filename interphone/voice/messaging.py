"""SMS: confirmations sent to applicants, and their replies (cancel a callback)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from twilio.rest import Client

from ..models import Contact, Site
from ..privacy import InvalidPhoneNumber, mask_phone, to_e164
from ..prompts import REFERENCE, available, catalogue
from ..queue.service import QueueService

log = logging.getLogger(__name__)

DEFAULT_SENDER = "+33100000000"


class SmsService:
    def __init__(
        self,
        queue: QueueService,
        sessions: sessionmaker[Session],
        client: Callable[[], Client],
        *,
        region: str = "FR",
    ) -> None:
        self.queue = queue
        self.sessions = sessions
        self.client = client
        self.region = region

    def send_to_contact(self, contact_id: int, key: str) -> str | None:
        """Send the prompt ``key`` to a contact's phone; returns the message SID."""
        with self.sessions() as s:
            contact = s.get(Contact, contact_id)
            site = s.get(Site, contact.site_id) if contact else None
        if contact is None or site is None or not contact.phone:
            return None
        ticket = self.queue.ticket(contact_id)
        lang = contact.language if contact.language in available() else REFERENCE
        body = catalogue(lang).text(key, reference=contact.reference, position=ticket.position or 1)
        sender = (site.phone_numbers or [DEFAULT_SENDER])[0]
        message = self.client().messages.create(to=contact.phone, from_=sender, body=body)
        log.info("SMS %s sent to %s for contact %s", key, mask_phone(contact.phone), contact_id)
        return str(message.sid)

    def incoming(self, sender: str, body: str) -> str:
        """Handle an SMS reply; returns the text to answer with."""
        try:
            phone = to_e164(sender, self.region)
        except InvalidPhoneNumber:
            return catalogue(REFERENCE).text("sms_help")
        with self.sessions() as s:
            contact = s.scalar(select(Contact).where(Contact.active_phone == phone))
            # answer in the language of this number's latest request, even a closed one
            latest = (
                contact
                or s.scalars(
                    select(Contact).where(Contact.phone == phone).order_by(Contact.id.desc())
                ).first()
            )
        lang = latest.language if latest and latest.language in available() else REFERENCE
        cat = catalogue(lang)
        word = (body or "").strip().upper()[:40]
        if not any(word == w for code in available() for w in catalogue(code).cancel_words):
            return cat.text("sms_help")
        if contact is None:
            return cat.text("sms_nothing")
        self.queue.cancel(contact.id, "cancelled by SMS reply", actor="sms")
        log.info("callback %s cancelled by SMS from %s", contact.id, mask_phone(phone))
        return cat.text("sms_cancelled", reference=contact.reference)
