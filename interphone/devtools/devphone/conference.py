"""The dev phone's conferences, run as Twilio runs them, shared through Redis.

A conference lives under one SID (``CF`` + 32 hex) per FriendlyName while it lasts:
``init`` until a participant with ``startConferenceOnEnter`` is in it, then
``in-progress``, then ``completed`` when a participant with ``endConferenceOnExit``
leaves, the last participant leaves, or the REST API ends it. Every change is made
under one Redis lock, by whichever process causes it (a handset hanging up, the app's
REST client muting a participant...), and gives back :class:`Effects`:

- the conference status callbacks to post (kept in an outbox, posted signed by the
  next :class:`~.phone.DevPhone` that delivers them, as Twilio posts them a moment later);
- the participants whose ``<Dial>`` ended (the conference ended, or they were kicked):
  told through the call update list that ``SimCall.poll`` applies, so a call held in
  another process goes on after its ``<Dial>`` as Twilio's would.

Twilio's rules relied on (TwiML ``<Conference>``, Conference and Participant resources):
a conference starts once at least two participants are in and one of them has
``startConferenceOnEnter``; its status callback and events are the ones of the first
participant to join, later ones are ignored; ``statusCallbackEvent`` has no default in
TwiML, ``start end`` through the REST API; a ``coach`` is a call connected to the
conference while it is in progress (else error 13240, and the ``<Dial>`` fails); a
``participantLabel`` already in use is error 16025 (the call goes on after the
``<Dial>``).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis

from interphone.redis_text import as_text

from . import rest

LIVE = "ip:devphone:conf:live:"  # LIVE + FriendlyName: the SID of the conference living now
STATE = "ip:devphone:conf:sid:"  # STATE + SID: the conference as JSON (kept once completed)
ALL = "ip:devphone:conf:all"  # every SID, by creation time
OF_CALL = "ip:devphone:conf:call:"  # OF_CALL + CallSid: the SID of its live conference
OUTBOX = "ip:devphone:conf:outbox"  # status callbacks to post: {"url": ..., "form": {...}}
LOCK = "ip:devphone:conf:lock"
TTL_S = 4 * 3600
REST_EVENTS = ("start", "end")  # conference_status_callback_event's default
EVENTS = ("start", "end", "join", "leave", "mute", "hold", "modify", "speaker", "announcement")
# a participant's <Dial> ended: what SimCall.poll finds in the call's update list
DIAL_ENDED = "DevPhoneConferenceLeft"


class ConferenceError(Exception):
    """What Twilio refuses: ``status`` and ``code`` as its REST API answers them."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _now() -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())


def _flag(value: Any, default: bool) -> bool:
    """A TwiML attribute or a REST form field: ``true``/``false``, anything else is false,
    as Twilio reads ``muted``; absent is ``default``."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() == "true"


def parse_events(raw: str | Iterable[str] | None, default: Iterable[str] = ()) -> list[str]:
    """``statusCallbackEvent``: space-separated (TwiML) or repeated (REST); unknown words
    are Twilio's error 16002 (attributes it cannot validate)."""
    if raw is None:
        return list(default)
    words = raw.split() if isinstance(raw, str) else [w for r in raw for w in str(r).split()]
    unknown = [w for w in words if w not in EVENTS]
    if unknown:
        raise ConferenceError(400, 16002, f"statusCallbackEvent: unknown {unknown}")
    return words


@dataclass
class Participant:
    call_sid: str
    muted: bool = False
    hold: bool = False
    coaching: bool = False
    call_sid_to_coach: str = ""
    start_conference_on_enter: bool = True
    end_conference_on_exit: bool = False
    beep: str = "true"
    label: str = ""
    handset: str = ""  # the dev phone's own: the number or client the call rings at
    status: str = "connected"  # or ringing: placed by participants.create, not answered yet
    date_created: str = field(default_factory=_now)
    date_updated: str = field(default_factory=_now)
    joined_at: float = field(default_factory=time.time)


@dataclass
class Conference:
    sid: str
    friendly_name: str
    account_sid: str
    status: str = "init"
    status_callback: str = ""
    status_callback_events: list[str] = field(default_factory=list)
    participants: dict[str, Participant] = field(default_factory=dict)
    sequence: int = 0
    reason_conference_ended: str = ""
    call_sid_ending_conference: str = ""
    date_created: str = field(default_factory=_now)
    date_updated: str = field(default_factory=_now)

    def connected(self) -> list[Participant]:
        return [p for p in self.participants.values() if p.status == "connected"]

    def to_json(self) -> str:
        data = dict(self.__dict__)
        data["participants"] = {k: dict(v.__dict__) for k, v in self.participants.items()}
        return json.dumps(data)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Conference:
        data = json.loads(raw)
        data["participants"] = {k: Participant(**v) for k, v in data["participants"].items()}
        return cls(**data)

    def resource(self) -> dict[str, Any]:
        """The Conference resource as Twilio's REST API answers it."""
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Conferences/{self.sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "call_sid_ending_conference": self.call_sid_ending_conference or None,
            "date_created": self.date_created,
            "date_updated": self.date_updated,
            "friendly_name": self.friendly_name,
            "reason_conference_ended": self.reason_conference_ended or None,
            "region": "ie1",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {
                "participants": f"{uri}/Participants.json",
                "recordings": f"{uri}/Recordings.json",
            },
            "uri": f"{uri}.json",
        }

    def participant_resource(self, p: Participant) -> dict[str, Any]:
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Conferences/{self.sid}"
        return {
            "account_sid": self.account_sid,
            "call_sid": p.call_sid,
            "call_sid_to_coach": p.call_sid_to_coach or None,
            "coaching": p.coaching,
            "conference_sid": self.sid,
            "date_created": p.date_created,
            "date_updated": p.date_updated,
            "end_conference_on_exit": p.end_conference_on_exit,
            "hold": p.hold,
            "label": p.label or None,
            "muted": p.muted,
            "queue_time": None,
            "start_conference_on_enter": p.start_conference_on_enter,
            "status": p.status,
            "uri": f"{uri}/Participants/{p.call_sid}.json",
        }


@dataclass
class Effects:
    """What a change gives back: callbacks queued, calls whose <Dial> ended."""

    callbacks: int = 0
    dial_ended: list[str] = field(default_factory=list)
    canceled: list[str] = field(default_factory=list)  # placed to join, not answered yet


def hears(conference: Conference, listener: str) -> set[str]:
    """The calls ``listener`` hears: none before the conference starts (wait music) or
    while on hold; else each other unmuted participant not on hold, a coach only by the
    participant it coaches. A coach hears everyone."""
    me = conference.participants.get(listener)
    if conference.status != "in-progress" or me is None or me.status != "connected" or me.hold:
        return set()
    heard = set()
    for p in conference.connected():
        if p.call_sid == listener or p.muted or p.hold:
            continue
        if p.coaching and p.call_sid_to_coach != listener:
            continue
        heard.add(p.call_sid)
    return heard


def heard_handsets(conference: Conference, listener: str) -> list[str]:
    """:func:`hears`, naming the handsets (the call SID when a handset is not known)."""
    found = conference.participants
    return sorted(found[sid].handset or sid for sid in hears(conference, listener))


class Conferences:
    """The conferences of the dev phone, in ``connection``."""

    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection

    # -- reading ---------------------------------------------------------------------------
    def get(self, sid: str) -> Conference | None:
        raw = self.redis.get(STATE + sid)
        return Conference.from_json(raw) if raw else None

    def live(self, friendly_name: str) -> Conference | None:
        sid = as_text(self.redis.get(LIVE + friendly_name))
        return self.get(sid) if sid else None

    def find(self, sid_or_name: str) -> Conference | None:
        """A conference by SID, or the live one by FriendlyName (as Twilio's Participants
        resource takes either in its path)."""
        if sid_or_name.startswith("CF") and len(sid_or_name) == 34:
            return self.get(sid_or_name)
        return self.live(sid_or_name)

    def all(self) -> list[Conference]:
        found = []
        for raw_sid in self.redis.zrange(ALL, 0, -1):
            conf = self.get(as_text(raw_sid))
            if conf is not None:
                found.append(conf)
        return found

    def of_call(self, call_sid: str) -> Conference | None:
        """The live conference ``call_sid`` is a participant of."""
        sid = as_text(self.redis.get(OF_CALL + call_sid))
        conf = self.get(sid) if sid else None
        if conf is None or conf.status == "completed" or call_sid not in conf.participants:
            return None
        return conf

    # -- changing --------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self.redis.lock(LOCK, timeout=30, blocking_timeout=30):
            yield

    def _save(self, conf: Conference, *, gone: Iterable[str] = ()) -> None:
        """Keep ``conf``; ``gone``: calls that are no longer its participants."""
        conf.date_updated = _now()
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(STATE + conf.sid, conf.to_json(), ex=TTL_S)
        for call_sid in conf.participants:
            pipe.set(OF_CALL + call_sid, conf.sid, ex=TTL_S)
        for call_sid in gone:
            pipe.delete(OF_CALL + call_sid)
        if conf.status == "completed":
            pipe.delete(LIVE + conf.friendly_name)
        else:
            pipe.set(LIVE + conf.friendly_name, conf.sid, ex=TTL_S)
        pipe.execute()

    def _open(self, name: str, account_sid: str, callback: str, events: list[str]) -> Conference:
        conf = self.live(name)
        if conf is not None:
            return conf
        conf = Conference(
            "CF" + secrets.token_hex(16),
            name,
            account_sid,
            status_callback=callback,
            status_callback_events=events if callback else [],
        )
        self.redis.zadd(ALL, {conf.sid: time.time()})
        self.redis.expire(ALL, TTL_S)
        return conf

    def join(
        self,
        name: str,
        participant: Participant,
        *,
        account_sid: str,
        status_callback: str = "",
        status_callback_events: list[str] | None = None,
    ) -> tuple[Conference, Effects]:
        """``participant`` enters conference ``name`` (created if none lives)."""
        effects = Effects()
        with self._locked():
            conf = self._open(name, account_sid, status_callback, status_callback_events or [])
            if participant.coaching and (
                conf.status != "in-progress"
                or participant.call_sid_to_coach not in {p.call_sid for p in conf.connected()}
            ):
                raise ConferenceError(
                    400, 13240, "coach: not a call of this conference in progress"
                )
            if participant.label and any(
                p.label == participant.label for p in conf.participants.values()
            ):
                raise ConferenceError(400, 16025, "participantLabel already in this conference")
            conf.participants[participant.call_sid] = participant
            if participant.status == "connected":
                self._connected(conf, participant, effects)
            self._save(conf)
        return conf, effects

    def _connected(self, conf: Conference, p: Participant, effects: Effects) -> None:
        p.joined_at = time.time()
        self._event(conf, "participant-join", effects, p)
        connected = conf.connected()
        if (
            conf.status == "init"
            and len(connected) >= 2
            and any(q.start_conference_on_enter for q in connected)
        ):
            conf.status = "in-progress"
            self._event(conf, "conference-start", effects)

    def answered(self, call_sid: str) -> Conference | None:
        """A participant placed by ``participants.create`` answered: it is in."""
        effects = Effects()
        with self._locked():
            conf = self.of_call(call_sid)
            if conf is None:
                return None
            p = conf.participants[call_sid]
            p.status = "connected"
            self._connected(conf, p, effects)
            self._save(conf)
        return conf

    def leave(
        self, call_sid: str, reason: str, call_status: str, *, kicked: bool = False
    ) -> Effects:
        """``call_sid`` leaves its conference: ``reason`` as Twilio's
        ReasonParticipantLeft (participant_hung_up, participant_updated_via_api,
        participant_add_failed), ``call_status`` its call's status then; ``kicked``
        through the Participant resource (its <Dial> ends)."""
        effects = Effects()
        with self._locked():
            conf = self.of_call(call_sid)
            if conf is None:
                return effects
            p = conf.participants.pop(call_sid)
            extra = {"ReasonParticipantLeft": reason, "ParticipantCallStatus": call_status}
            self._event(conf, "participant-leave", effects, p, extra)
            if p.status == "connected" and p.end_conference_on_exit:
                how = "kicked" if kicked else "left"
                self._end(conf, f"participant-with-end-conference-on-exit-{how}", p, effects)
            elif not conf.connected() and not any(
                q.status == "ringing" for q in conf.participants.values()
            ):
                how = "kicked" if kicked else "left"
                self._end(conf, f"last-participant-{how}", p, effects)
            if kicked:
                effects.dial_ended.append(call_sid)
            self._save(conf, gone=[call_sid, *effects.dial_ended, *effects.canceled])
        self._tell(effects)
        return effects

    def end(self, sid: str) -> Conference:
        """``conferences(sid).update(status="completed")``."""
        effects = Effects()
        with self._locked():
            conf = self.get(sid)
            if conf is None:
                raise ConferenceError(404, 20404, f"Conference {sid} not found")
            if conf.status != "completed":
                self._end(conf, "conference-ended-via-api", None, effects)
                self._save(conf, gone=[*effects.dial_ended, *effects.canceled])
        self._tell(effects)
        return conf

    def _end(
        self, conf: Conference, reason: str, ending: Participant | None, effects: Effects
    ) -> None:
        """Every remaining participant's <Dial> ends; then the conference does."""
        left_reason = "conference_ended_via_api" if ending is None else "moderator_ended_conference"
        for p in list(conf.participants.values()):
            status = "in-progress" if p.status == "connected" else "canceled"
            extra = {"ReasonParticipantLeft": left_reason, "ParticipantCallStatus": status}
            self._event(conf, "participant-leave", effects, p, extra)
            (effects.dial_ended if p.status == "connected" else effects.canceled).append(p.call_sid)
        conf.participants = {}
        conf.status = "completed"
        conf.reason_conference_ended = reason
        conf.call_sid_ending_conference = ending.call_sid if ending else ""
        extra = {"ReasonConferenceEnded": reason}
        if ending is not None:
            extra["CallSidEndingConference"] = ending.call_sid
            if ending.label:
                extra["ParticipantLabelEndingConference"] = ending.label
        self._event(conf, "conference-end", effects, extra=extra)

    def update_participant(self, sid_or_name: str, who: str, form: dict[str, Any]) -> Conference:
        """``participants(call_sid or label).update(...)``: muted, hold, coaching,
        call_sid_to_coach, end_conference_on_exit, beep_on_exit..."""
        effects = Effects()
        with self._locked():
            conf, p = self._participant(sid_or_name, who)
            coaching = _flag(form.get("Coaching"), p.coaching or bool(form.get("CallSidToCoach")))
            to_coach = str(form.get("CallSidToCoach") or (p.call_sid_to_coach if coaching else ""))
            if coaching and to_coach not in {q.call_sid for q in conf.connected()}:
                raise ConferenceError(400, 16002, "CallSidToCoach: not a call in this conference")
            before = (p.muted, p.hold, p.coaching, p.call_sid_to_coach, p.end_conference_on_exit)
            p.muted = _flag(form.get("Muted"), p.muted)
            p.hold = _flag(form.get("Hold"), p.hold)
            p.coaching, p.call_sid_to_coach = coaching, to_coach if coaching else ""
            p.end_conference_on_exit = _flag(
                form.get("EndConferenceOnExit"), p.end_conference_on_exit
            )
            p.date_updated = _now()
            if p.muted != before[0]:
                self._event(
                    conf, "participant-mute" if p.muted else "participant-unmute", effects, p
                )
            if p.hold != before[1]:
                self._event(
                    conf, "participant-hold" if p.hold else "participant-unhold", effects, p
                )
            # modify: BeepOnExit, EndConferenceOnExit, Coaching or WaitUrl changed
            changed = (p.coaching, p.call_sid_to_coach, p.end_conference_on_exit) != before[2:]
            if changed or "BeepOnExit" in form or "WaitUrl" in form:
                self._event(conf, "participant-modify", effects, p)
            self._save(conf)
        return conf

    def participant(self, sid_or_name: str, who: str) -> tuple[Conference, Participant]:
        return self._participant(sid_or_name, who)

    def _participant(self, sid_or_name: str, who: str) -> tuple[Conference, Participant]:
        conf = self.find(sid_or_name)
        if conf is None:
            raise ConferenceError(404, 20404, f"Conference {sid_or_name} not found")
        for p in conf.participants.values():
            if who in (p.call_sid, p.label):
                return conf, p
        raise ConferenceError(404, 20404, f"Participant {who} not found")

    # -- status callbacks ------------------------------------------------------------------
    def _event(
        self,
        conf: Conference,
        event: str,
        effects: Effects,
        p: Participant | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        """Queue ``event`` for the conference's status callback, if it asked for it."""
        word = event.split("-", 1)[1].removeprefix("un")
        if not conf.status_callback or word not in conf.status_callback_events:
            return
        conf.sequence += 1
        form = {
            "AccountSid": conf.account_sid,
            "ConferenceSid": conf.sid,
            "FriendlyName": conf.friendly_name,
            "StatusCallbackEvent": event,
            "SequenceNumber": str(conf.sequence),
            "Timestamp": _now(),
        }
        if p is not None:
            form.update(
                {
                    "CallSid": p.call_sid,
                    "Muted": str(p.muted).lower(),
                    "Hold": str(p.hold).lower(),
                    "Coaching": str(p.coaching).lower(),
                    "EndConferenceOnExit": str(p.end_conference_on_exit).lower(),
                    "StartConferenceOnEnter": str(p.start_conference_on_enter).lower(),
                }
            )
            if p.coaching:
                form["CallSidToCoach"] = p.call_sid_to_coach
            if p.label:
                form["ParticipantLabel"] = p.label
        form.update(extra or {})
        self.redis.rpush(OUTBOX, json.dumps({"url": conf.status_callback, "form": form}))
        self.redis.expire(OUTBOX, TTL_S)
        effects.callbacks += 1

    def next_callback(self) -> tuple[str, dict[str, str]] | None:
        raw: Any = self.redis.lpop(OUTBOX)
        if raw is None:
            return None
        item = json.loads(raw)
        return str(item["url"]), dict(item["form"])

    def _tell(self, effects: Effects) -> None:
        """The calls whose <Dial> ended learn it at their next poll, wherever they live."""
        updates = [(sid, {DIAL_ENDED: "1"}) for sid in effects.dial_ended]
        updates += [(sid, {"Status": "canceled"}) for sid in effects.canceled]
        for sid, update in updates:
            self.redis.rpush(rest.UPDATES + sid, json.dumps(update))
            self.redis.expire(rest.UPDATES + sid, TTL_S)
