"""Voicemail: a message left after hours, kept, fetched, transcribed, shown with its contact.

1. The caller records (``<Record>``). The first webhook that names the RecordingSid —
   the ``<Record action>`` while the caller is still on the line, or Twilio's recording
   status callback — creates the :class:`~interphone.models.Voicemail` row (the
   RecordingSid is unique: a retried webhook finds it) and, when the caller's number is
   known, a callback request that keeps the call's place in line (``QueueService``: one
   active request per number, so a second message joins the first request).
2. Both webhooks ask for the RQ job ``voicemail-<RecordingSid>`` (one job however many
   times they come): it downloads the audio through the Twilio client into the
   database, deletes it at Twilio, then transcribes it with the language's Vosk model
   (free dictation, no grammar). A download that fails raises, and RQ tries again; the
   row and the contact are there from the start, whatever happens to the job.
3. Agents see the transcript (as text) and an audio player (served by an authenticated
   route by the voicemail's id) with the contact; a message with no number to call back
   is listed on its own until an agent marks it handled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker, undefer

from .. import events
from ..db import transaction
from ..models import Site, Voicemail
from ..queue.clock import Clock, from_ms, to_ms
from ..queue.exceptions import QueueError, UnknownSite, UnknownVoicemail
from ..queue.service import QueueService, Ticket
from ..scope import EVERYWHERE, Scope
from . import recordings
from .recordings import RecordingError

if TYPE_CHECKING:
    from twilio.rest import Client

    from .speech.models import ModelRegistry

log = logging.getLogger(__name__)

REASON = "voicemail"  # the reason recorded with the callback a message creates


def job_id(recording_sid: str) -> str:
    """One job per recording, however many webhooks name it."""
    return f"voicemail-{recording_sid}"


@dataclass(frozen=True)
class Saved:
    voicemail_id: int
    ticket: Ticket | None  # the callback that will answer the message, if any
    callback_created: bool = False


@dataclass(frozen=True)
class VoicemailView:
    """What a screen shows of a message (never its audio bytes)."""

    id: int
    contact_id: int | None
    created_at: datetime
    language: str
    channel: str
    duration_s: int | None
    state: str
    transcript: str | None
    detail: str | None
    has_audio: bool

    @classmethod
    def of(cls, row: Voicemail) -> VoicemailView:
        return cls(
            id=row.id,
            contact_id=row.contact_id,
            created_at=row.created_at,
            language=row.language,
            channel=row.channel,
            duration_s=row.duration_s,
            state=row.state,
            transcript=row.transcript,
            detail=row.detail,
            has_audio=row.audio_type is not None,
        )


class VoicemailService:
    def __init__(
        self,
        queue: QueueService,
        sessions: sessionmaker[Session],
        clock: Clock,
        *,
        client: Callable[[], Client],
        models: Callable[[], ModelRegistry],
        run_job: Callable[[int, str], None],
    ) -> None:
        self.queue = queue
        self.sessions = sessions
        self.clock = clock
        self.client = client
        self.models = models
        self.run_job = run_job  # (voicemail id, job id)

    # -- intake (webhooks) ---------------------------------------------------------------
    def save(
        self,
        *,
        recording_sid: str,
        call_sid: str,
        site: str,
        language: str,
        channel: str,
        duration_s: int | None,
        phone: str | None,
        arrived_ms: int | None,
        not_before_ms: int = 0,
    ) -> Saved:
        """Keep the message (once per RecordingSid) and the callback that answers it."""
        voicemail_id, contact_id = self._row(
            recording_sid, call_sid, site, language, channel, duration_s
        )
        if contact_id is not None:
            return Saved(voicemail_id, self.queue.ticket(contact_id))
        if not phone:
            return Saved(voicemail_id, None)
        try:
            ticket = self.queue.request_callback(
                site,
                phone=phone,
                language=language,
                channel=channel,
                reason=REASON,
                arrived_ms=arrived_ms,
                not_before_ms=not_before_ms,
                call_sid=call_sid,
            )
        except QueueError:
            log.exception("voicemail %s kept without a callback", voicemail_id)
            return Saved(voicemail_id, None)
        with transaction(self.sessions) as s:
            row = s.get(Voicemail, voicemail_id)
            assert row is not None
            if row.contact_id is None:
                row.contact_id = ticket.contact_id
                self._event(s, "voicemail.linked", row)
        return Saved(voicemail_id, ticket, ticket.created)

    def _row(
        self,
        recording_sid: str,
        call_sid: str,
        site: str,
        language: str,
        channel: str,
        duration_s: int | None,
    ) -> tuple[int, int | None]:
        for _ in range(2):
            with self.sessions() as s:
                found = s.execute(
                    select(Voicemail.id, Voicemail.contact_id).where(
                        Voicemail.recording_sid == recording_sid
                    )
                ).one_or_none()
            if found is not None:
                return int(found[0]), found[1]
            try:
                with transaction(self.sessions) as s:
                    site_id = s.scalar(select(Site.id).where(Site.code == site))
                    if site_id is None:
                        raise QueueError(f"unknown site {site!r}")
                    row = Voicemail(
                        recording_sid=recording_sid,
                        call_sid=call_sid,
                        site_id=site_id,
                        language=language,
                        channel=channel,
                        duration_s=duration_s,
                        state="pending",
                        attempts=0,
                        created_at=self._now(),
                    )
                    s.add(row)
                    s.flush()
                    self._event(s, "voicemail.received", row)
                log.info("voicemail %s kept for call %s", row.id, call_sid)
                return row.id, None
            except IntegrityError:
                continue  # the other webhook of the same recording won the race: read it
        raise QueueError("the voicemail could not be recorded; please try again")

    def schedule(self, voicemail_id: int, recording_sid: str) -> None:
        """Ask for the download and transcription (one job per recording)."""
        try:
            self.run_job(voicemail_id, job_id(recording_sid))
        except Exception:  # the row is kept; the other webhook of the recording asks again
            log.exception("transcription of voicemail %s not queued", voicemail_id)

    # -- the job ----------------------------------------------------------------------
    def transcribe(self, voicemail_id: int) -> str:
        """Fetch the audio (once) and transcribe it; returns the voicemail's state.
        A download that fails raises :class:`RecordingError` (RQ tries again)."""
        with self.sessions() as s:
            row = s.get(Voicemail, voicemail_id)
            if row is None:
                return "missing"
            if row.state != "pending":
                return row.state  # done already: a repeated job changes nothing
            recording_sid, lang, stored = row.recording_sid, row.language, row.audio_type
        if stored is None:
            self._fetch(voicemail_id, recording_sid)
        with self.sessions() as s:
            audio = s.scalar(select(Voicemail.audio).where(Voicemail.id == voicemail_id))
        state, transcript, detail = self._dictation(lang, audio or b"")
        with transaction(self.sessions) as s:
            row = s.get(Voicemail, voicemail_id)
            assert row is not None
            row.state, row.transcript, row.detail = state, transcript, detail
            row.transcribed_at = self._now()
            self._event(s, "voicemail.transcribed", row, data={"state": state})
        log.info("voicemail %s: %s", voicemail_id, state)
        return state

    def _fetch(self, voicemail_id: int, recording_sid: str) -> None:
        client = self.client()
        try:
            media = recordings.download(client, recording_sid)
        except RecordingError as exc:
            with transaction(self.sessions) as s:
                row = s.get(Voicemail, voicemail_id)
                assert row is not None
                row.attempts += 1
                row.detail = str(exc)[:200]
            log.warning("voicemail %s: %s (will try again)", voicemail_id, exc)
            raise
        with transaction(self.sessions) as s:
            row = s.get(Voicemail, voicemail_id)
            assert row is not None
            row.attempts += 1
            row.audio, row.audio_type, row.detail = media.content, media.content_type, None
        try:  # stored here: the copy at Twilio is no longer needed
            recordings.delete(client, recording_sid)
        except Exception:
            log.warning("recording %s could not be deleted at Twilio", recording_sid)

    def _dictation(self, lang: str, audio: bytes) -> tuple[str, str | None, str | None]:
        """(state, transcript, detail) for the audio in ``lang``."""
        from .speech.dictation import AudioFormatError, read_wav, transcribe
        from .speech.models import ModelError, is_model_dir

        registry = self.models()
        try:
            has_model = is_model_dir(registry.path(lang))
        except ModelError:
            has_model = False
        if not has_model:
            return "no_model", None, f"no model for {lang}"
        try:
            return "transcribed", transcribe(registry, lang, read_wav(audio)), None
        except AudioFormatError as exc:
            return "failed", None, str(exc)[:200]
        except ModelError as exc:
            log.error("voicemail in %s: %s", lang, exc)
            return "failed", None, str(exc)[:200]

    # -- what screens show ------------------------------------------------------------
    def unattended(
        self, site_id: int, limit: int = 20, *, scope: Scope = EVERYWHERE
    ) -> list[VoicemailView]:
        """Messages with no number to call back, not yet handled, oldest first."""
        if not scope.allows(site_id):
            raise UnknownSite(f"unknown site {site_id}", site=site_id)
        with self.sessions() as s:
            rows = s.scalars(
                select(Voicemail)
                .where(
                    Voicemail.site_id == site_id,
                    Voicemail.contact_id.is_(None),
                    Voicemail.handled_at.is_(None),
                )
                .order_by(Voicemail.id)
                .limit(limit)
            ).all()
        return [VoicemailView.of(row) for row in rows]

    def audio(self, voicemail_id: int, *, scope: Scope = EVERYWHERE) -> tuple[bytes, str] | None:
        """(audio, content type) of a message of ``scope``'s sites, or None when it has
        no audio yet. Raises :class:`UnknownVoicemail` for a message outside ``scope``
        exactly as for one that does not exist."""
        with self.sessions() as s:
            row = s.scalars(
                select(Voicemail)
                .options(undefer(Voicemail.audio))
                .where(Voicemail.id == voicemail_id)
            ).one_or_none()
        if row is None or not scope.allows(row.site_id):
            raise UnknownVoicemail("no such voicemail", voicemail_id=voicemail_id)
        if row.audio is None:
            return None
        return row.audio, row.audio_type or "audio/wav"

    def mark_handled(self, voicemail_id: int, agent_id: int, *, scope: Scope = EVERYWHERE) -> bool:
        """An agent of ``scope`` dealt with a message that had no number: it leaves the
        list. False when it had left it already."""
        with transaction(self.sessions) as s:
            row = s.get(Voicemail, voicemail_id)
            if row is None or not scope.allows(row.site_id):
                raise UnknownVoicemail("no such voicemail", voicemail_id=voicemail_id)
            if row.handled_at is not None:
                return False
            row.handled_at, row.handled_by = self._now(), agent_id
            self._event(s, "voicemail.handled", row, agent_id=agent_id)
        return True

    # -- plumbing ------------------------------------------------------------------------
    def _now(self) -> datetime:
        return from_ms(to_ms(self.clock.now()))

    def _event(
        self,
        s: Session,
        kind: str,
        row: Voicemail,
        *,
        agent_id: int | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        events.record(
            s,
            kind,
            site_id=row.site_id,
            contact_id=row.contact_id,
            agent_id=agent_id,
            actor=f"agent:{agent_id}" if agent_id else None,
            data={"voicemail_id": row.id, **(data or {})},
            at=self._now(),
        )
