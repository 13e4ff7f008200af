"""A supervisor's cancellation keeps the reason they typed, up to its documented length."""

from __future__ import annotations

from sqlalchemy import select

from interphone.models import Contact
from interphone.queue.service import REASON_MAX, QueueService

from .conftest import SITE, phone


def test_a_cancellation_keeps_a_reason_of_the_longest_length_allowed(queue: QueueService) -> None:
    # contacts.outcome holds REASON_MAX characters: PostgreSQL refuses longer text
    ticket = queue.request_callback(SITE, phone=phone(1), language="fr", reason="file_question")
    reason = "Doublon : la personne a déjà été rappelée hier par l'accueil. " * 4
    reason = reason[:REASON_MAX]

    assert queue.cancel(ticket.contact_id, reason, actor="supervisor:1")

    with queue.sessions() as session:
        contact = session.scalars(select(Contact).where(Contact.id == ticket.contact_id)).one()
    assert (contact.state, contact.outcome) == ("cancelled", reason)
