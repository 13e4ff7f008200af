"""Twilio's Conference and Participant REST resources, played by the dev phone.

``/Conferences.json`` (list by FriendlyName and Status), ``/Conferences/<sid>.json``
(fetch; update ``Status=completed``), ``/Conferences/<sid or name>/Participants.json``
(list; create: an outbound call that joins the conference once answered) and
``/Participants/<call sid or label>.json`` (fetch, update, delete: kick). The answers
have the JSON shape twilio-python reads; refusals carry Twilio's codes (20404 for an
unknown conference or participant).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any

import redis

from . import rest
from .conference import (
    REST_EVENTS,
    ConferenceError,
    Conferences,
    Participant,
    _flag,
    parse_events,
)

_PATH = re.compile(
    r"/Conferences(?:/(?P<conf>[^/]+?))?(?P<participants>/Participants(?:/(?P<who>[^/]+?))?)?\.json$"
)

_ACCOUNT = re.compile(r"/Accounts/(AC[0-9a-fA-F]{32})/")

Answer = tuple[int, dict[str, Any] | None]


def _error(exc: ConferenceError) -> Answer:
    return exc.status, {
        "code": exc.code,
        "message": exc.message,
        "more_info": f"https://www.twilio.com/docs/errors/{exc.code}",
        "status": exc.status,
    }


def _page(key: str, records: list[dict[str, Any]], params: dict[str, Any]) -> Answer:
    size = (
        int(str(params.get("PageSize") or 50))
        if str(params.get("PageSize") or "").isdigit()
        else 50
    )
    meta = {"key": key, "page": 0, "page_size": size, "next_page_url": None}
    return 200, {key: records[:size], "meta": meta}


def answer(
    connection: redis.Redis, method: str, path: str, params: dict[str, Any], data: dict[str, Any]
) -> Answer:
    found = _PATH.search(path)
    if found is None:
        return 404, {"code": 20404, "message": f"not simulated: {path}", "status": 404}
    conferences = Conferences(connection)
    conf_id, who = found.group("conf") or "", found.group("who") or ""
    try:
        if not conf_id:
            return _list(conferences, params)
        if not found.group("participants"):
            return _conference(conferences, method, conf_id, data)
        if not who:
            if method == "POST":
                account = _ACCOUNT.search(path)
                sid = account.group(1) if account else ""
                return _create(connection, conferences, conf_id, data, sid)
            return _participants(conferences, conf_id, params)
        return _participant(conferences, method, conf_id, who, data)
    except ConferenceError as exc:
        return _error(exc)


def _list(conferences: Conferences, params: dict[str, Any]) -> Answer:
    """Newest first, filtered by FriendlyName and Status as Twilio's list is."""
    name, status = params.get("FriendlyName"), params.get("Status")
    found = [
        c.resource()
        for c in reversed(conferences.all())
        if (not name or c.friendly_name == name) and (not status or c.status == status)
    ]
    return _page("conferences", found, params)


def _conference(conferences: Conferences, method: str, sid: str, data: dict[str, Any]) -> Answer:
    conf = conferences.get(sid)
    if conf is None:
        raise ConferenceError(404, 20404, f"The requested resource Conference {sid} was not found")
    if method == "POST" and data.get("Status"):
        if str(data["Status"]) != "completed":
            raise ConferenceError(400, 20001, "Status: only 'completed' can be set")
        conf = conferences.end(sid)
    return 200, conf.resource()


def _participants(conferences: Conferences, conf_id: str, params: dict[str, Any]) -> Answer:
    conf = conferences.find(conf_id)
    if conf is None:
        raise ConferenceError(
            404, 20404, f"The requested resource Conference {conf_id} was not found"
        )
    wanted = {k: str(params[k]).lower() for k in ("Muted", "Hold", "Coaching") if k in params}
    found = []
    for p in conf.participants.values():
        record = conf.participant_resource(p)
        if all(str(record[k.lower()]).lower() == v for k, v in wanted.items()):
            found.append(record)
    return _page("participants", found, params)


def _participant(
    conferences: Conferences, method: str, conf_id: str, who: str, data: dict[str, Any]
) -> Answer:
    conf, p = conferences.participant(conf_id, who)
    if method == "DELETE":
        conferences.leave(p.call_sid, "participant_updated_via_api", "in-progress", kicked=True)
        return 204, None
    if method == "POST":
        conf = conferences.update_participant(conf_id, who, data)
        p = conf.participants[p.call_sid]
    return 200, conf.participant_resource(p)


def _create(
    connection: redis.Redis,
    conferences: Conferences,
    conf_id: str,
    data: dict[str, Any],
    account_sid: str,
) -> Answer:
    """An outbound call to ``To`` that joins the conference with these flags when it is
    answered (``DevPhone.answer``); the conference is created if none lives by that name."""
    if not data.get("From") or not data.get("To"):
        raise ConferenceError(400, 21604, "From and To are required")
    if conf_id.startswith("CF"):
        conf = conferences.get(conf_id)
        if conf is None:
            raise ConferenceError(
                404, 20404, f"The requested resource Conference {conf_id} was not found"
            )
        if conf.status == "completed":
            raise ConferenceError(400, 16099, f"Conference {conf_id} is completed")
        name = conf.friendly_name
    else:
        name = conf_id
    call_sid = "CA" + secrets.token_hex(16)
    to_coach = str(data.get("CallSidToCoach") or "")
    participant = Participant(
        call_sid,
        muted=_flag(data.get("Muted"), False),
        coaching=_flag(data.get("Coaching"), bool(to_coach)),
        call_sid_to_coach=to_coach,
        start_conference_on_enter=_flag(data.get("StartConferenceOnEnter"), True),
        end_conference_on_exit=_flag(data.get("EndConferenceOnExit"), False),
        beep=str(data.get("Beep") or "true"),
        label=str(data.get("Label") or ""),
        handset=str(data["To"]),
        status="ringing",
    )
    if participant.coaching and not to_coach:
        raise ConferenceError(400, 16002, "Coaching needs CallSidToCoach")
    events = data.get("ConferenceStatusCallbackEvent")
    conf, _ = conferences.join(
        name,
        participant,
        account_sid=account_sid,
        status_callback=str(data.get("ConferenceStatusCallback") or ""),
        status_callback_events=parse_events(events, REST_EVENTS),
    )
    record = {
        "sid": call_sid,
        "status": "queued",
        "date_created": time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()),
        "To": str(data["To"]),
        "From": str(data["From"]),
        "StatusCallback": str(data.get("StatusCallback") or ""),
        "ConferenceName": name,
        "ConferenceSid": conf.sid,
        "Timeout": str(data.get("Timeout") or "60"),
    }
    connection.rpush(rest.CALLS, json.dumps(record))
    connection.set(rest.CALL + call_sid, json.dumps(record), ex=4 * 3600)
    body = conf.participant_resource(conf.participants[call_sid])
    body["status"] = "queued"
    return 201, body
