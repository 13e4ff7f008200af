"""SMS: confirmations sent to applicants, and their replies (cancel a callback)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from twilio.rest import Client

from .. import failpoints
from ..models import Contact, Site
from ..privacy import InvalidPhoneNumber, mask_phone, to_e164
from ..prompts import REFERENCE, available, catalogue
from ..queue.service import SMS_ACTOR, SMS_CANCELLATION, QueueService
from ..redis_text import as_text

if TYPE_CHECKING:
    from .prompt_texts import SitePrompts

log = logging.getLogger(__name__)

DEFAULT_SENDER = "+33100000000"
SENT_PREFIX = "ip:sms:sent:"  # + contact id + ":" + key: "sending", then the message SID
SENDING = "sending"
SENT_TTL_S = 7 * 24 * 3600  # longer than the job's retries
LOOK_BACK = 20  # messages to the number looked at for an earlier attempt's


class SmsService:
    def __init__(
        self,
        queue: QueueService,
        sessions: sessionmaker[Session],
        client: Callable[[], Client],
        connection: redis.Redis,
        *,
        region: str = "FR",
        prompts: SitePrompts | None = None,
    ) -> None:
        self.queue = queue
        self.sessions = sessions
        self.client = client
        self.redis = connection
        self.region = region
        self.prompts = prompts  # the sites' own texts, when they have some

    def send_to_contact(self, contact_id: int, key: str) -> str | None:
        """Send the prompt ``key`` to a contact's phone, once; returns the message SID.

        The job that calls this is retried, and a worker can die between Twilio's
        answer and the end of its job. Twilio's message API takes no idempotency key,
        so a mark in Redis says "being sent" before asking Twilio and holds the SID
        after; a retry that finds the mark without a SID looks in Twilio's list of
        messages to that number for this contact's reference before sending again."""
        with self.sessions() as s:
            contact = s.get(Contact, contact_id)
            site = s.get(Site, contact.site_id) if contact else None
        if contact is None or site is None or not contact.phone:
            return None
        mark = f"{SENT_PREFIX}{contact_id}:{key}"
        sender = (site.phone_numbers or [DEFAULT_SENDER])[0]
        before = as_text(self.redis.get(mark))
        if before.startswith("SM"):
            return before  # sent already
        if before == SENDING:  # an attempt died between asking Twilio and this mark
            found = self._sent_earlier(contact.phone, sender, contact.reference)
            if found:
                self.redis.set(mark, found, ex=SENT_TTL_S)
                log.info("SMS %s for contact %s was sent by an earlier attempt", key, contact_id)
                return found
        ticket = self.queue.ticket(contact_id)
        lang = contact.language if contact.language in available() else REFERENCE
        with self._site_texts(contact.site_id):
            body = catalogue(lang).text(
                key, reference=contact.reference, position=ticket.position or 1
            )
        self.redis.set(mark, SENDING, ex=SENT_TTL_S)
        message = self.client().messages.create(to=contact.phone, from_=sender, body=body)
        failpoints.hit("sms.sent", self.redis)  # fault tests: killed right here
        self.redis.set(mark, str(message.sid), ex=SENT_TTL_S)
        log.info("SMS %s sent to %s for contact %s", key, mask_phone(contact.phone), contact_id)
        return str(message.sid)

    def _site_texts(self, site_id: int | None) -> AbstractContextManager[None]:
        return self.prompts.applied(site_id) if self.prompts is not None else nullcontext()

    def _sent_earlier(self, phone: str, sender: str, reference: str) -> str | None:
        """The SID of a message to ``phone`` from ``sender`` naming ``reference``, among
        the latest Twilio lists (newest first), if there is one."""
        for message in self.client().messages.list(to=phone, from_=sender, limit=LOOK_BACK):
            if reference and reference in (message.body or ""):
                return str(message.sid)
        return None

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
        with self._site_texts(latest.site_id if latest else None):
            return self._reply(contact, lang, body, phone)

    def _reply(self, contact: Contact | None, lang: str, body: str, phone: str) -> str:
        """The answer to an SMS ``body`` from ``phone``, whose request is ``contact``."""
        cat = catalogue(lang)
        word = (body or "").strip().upper()[:40]
        if not any(word == w for code in available() for w in catalogue(code).cancel_words):
            return cat.text("sms_help")
        if contact is None:
            return cat.text("sms_nothing")
        self.queue.cancel(contact.id, SMS_CANCELLATION, code="sms", actor=SMS_ACTOR)
        log.info("callback %s cancelled by SMS from %s", contact.id, mask_phone(phone))
        return cat.text("sms_cancelled", reference=contact.reference)
