"""The end of a call: Twilio's final status closes the call's record (through the
journal, behind its start), and a live caller who hung up leaves the queue.

The hang-up of a caller an agent had accepted is the bridge's (``caller_left``); one
that meets the database down waits in :class:`~interphone.voice.deferred.Deferred`,
which applies it through :meth:`HangUps.live_caller_gone` once the database is back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from .. import journal
from ..digits import small_int
from ..journal import Journal
from ..models import Contact
from ..queue.clock import Clock, to_ms
from ..queue.exceptions import Conflict, QueueError
from ..queue.service import QueueService
from .deferred import Deferred
from .session import CallState

log = logging.getLogger(__name__)

#: Twilio's final call statuses (any other status callback is not the end of the call)
FINAL = ("completed", "busy", "failed", "no-answer", "canceled")


class HangUps:
    def __init__(
        self,
        queue: QueueService,
        sessions: sessionmaker[Session],
        journal: Journal,
        clock: Clock,
        deferred: Deferred,
        *,
        caller_left: Callable[[int], bool] | None = None,
    ) -> None:
        self.queue = queue
        self.sessions = sessions
        self.journal = journal
        self.clock = clock
        self.deferred = deferred
        self.caller_left = caller_left  # the bridge's, for a caller an agent accepted

    def call_ended(
        self, state: CallState | None, sid: str, status: str, duration_s: str = ""
    ) -> None:
        """Twilio's final status callback: the call's record is closed, and a caller
        still in line who hung up is counted as abandoned."""
        if status not in FINAL:
            return
        self.journal.append(
            journal.call_ended(
                sid,
                status=status,
                at_ms=to_ms(self.clock.now()),
                duration_s=small_int(duration_s, 8),
            )
        )
        if state is None or not state.contact_id:
            return
        try:
            kind = self.queue.kind_in_queue(state.contact_id)  # a callback: nothing to do
            if kind is None:  # not in Redis: the database knows what it was
                with self.sessions() as s:
                    contact = s.get(Contact, state.contact_id)
                    kind = contact.kind if contact is not None else None
            if kind == "live":
                self.live_caller_gone(state.contact_id)
        except QueueError as exc:  # a call in progress is handled in live_caller_gone
            log.info("call %s ended: its contact left as it was (%s)", sid, exc.message)
        except SQLAlchemyError:  # the database is down: the hang-up is applied later
            self.deferred.hang_up(state.contact_id)

    def live_caller_gone(self, contact_id: int) -> None:
        """A live caller hung up: abandoned if still in line. If an agent had accepted,
        the bridge decides: not put through yet, abandoned too and the agent freed; put
        through, the call goes on to its end, where the agent gives an outcome."""
        try:
            self.queue.abandon(contact_id)
        except Conflict as exc:
            if exc.details.get("reason") != "ON_CALL" or self.caller_left is None:
                raise
            if not self.caller_left(contact_id):
                log.info("contact %s: the caller left a call in progress", contact_id)
