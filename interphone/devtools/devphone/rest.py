"""Twilio's REST side, played locally: twilio-python's ``http_client`` hook lands here.

Outgoing messages and calls are kept in Redis lists, where the dev-phone page and the
tests read them; the answers have the shape of Twilio's JSON.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from typing import Any
from urllib.parse import urlparse

import redis
from twilio.http import HttpClient
from twilio.http.response import Response

from interphone.digits import small_int
from interphone.voice.speech import mulaw
from interphone.voice.speech.dictation import write_wav

MESSAGES = "ip:devphone:messages"
CALLS = "ip:devphone:calls"  # calls the app placed, oldest first
CALL = "ip:devphone:call:"  # CALL + sid: the record of one placed call
UPDATES = "ip:devphone:update:"  # UPDATES + sid: redirects / hang-ups asked by the app
ENDED = "ip:devphone:ended:"  # ENDED + sid: that call is over; Twilio refuses to update it
RECORDINGS = "ip:devphone:recording:"  # RECORDINGS + sid: a message's WAV, as Twilio keeps it
API = "https://api.twilio.com/2010-04-01"
_RECORDING = re.compile(r"/Recordings/(RE[0-9a-f]{32})(\.wav|\.json)?$")


class DevPhoneHttpClient(HttpClient):  # type: ignore[misc]
    def __init__(self, connection: redis.Redis) -> None:
        super().__init__(logging.getLogger(__name__), is_async=False)
        self.redis = connection

    def request(
        self,
        method: str,
        uri: str,
        params: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        headers: dict[str, Any] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        path = urlparse(uri).path
        data = dict(data or {})
        recording = _RECORDING.search(path)
        if method.upper() == "DELETE" and recording:
            self.redis.delete(RECORDINGS + recording.group(1))
            return Response(204, "")
        if "/Conferences" in path:
            return self._conferences(method.upper(), path, dict(params or {}), data)
        if method.upper() == "POST" and path.endswith("/Messages.json"):
            return self._store(MESSAGES, "SM", data)
        if method.upper() == "GET" and path.endswith("/Messages.json"):
            return self._list_messages(dict(params or {}))
        if method.upper() == "POST" and path.endswith("/Calls.json"):
            return self._store(CALLS, "CA", data)
        if method.upper() == "POST" and "/Calls/" in path and path.endswith(".json"):
            sid = path.rsplit("/", 1)[1][: -len(".json")]
            if self.redis.exists(ENDED + sid):
                return _call_not_in_progress(sid)
            self.redis.rpush(UPDATES + sid, json.dumps({k: str(v) for k, v in data.items()}))
            self.redis.expire(UPDATES + sid, 4 * 3600)
            return Response(200, json.dumps({"sid": sid, "status": "in-progress"}))
        return Response(404, json.dumps({"code": 20404, "message": f"not simulated: {path}"}))

    def _conferences(
        self, method: str, path: str, params: dict[str, Any], data: dict[str, Any]
    ) -> Response:
        """The Conference and Participant resources (:mod:`.conference`)."""
        from .conference_rest import answer  # the conference module imports this one

        status, body = answer(self.redis, method, path, params, data)
        return Response(status, json.dumps(body) if body is not None else "")

    def fetch_media(self, url: str) -> tuple[bytes, str] | None:
        """A recording's audio (what Twilio serves at ``…/Recordings/<sid>.wav``)."""
        found = _RECORDING.search(urlparse(url).path)
        raw = self.redis.get(RECORDINGS + found.group(1)) if found else None
        return (bytes(raw), "audio/wav") if isinstance(raw, bytes) else None

    def _list_messages(self, params: dict[str, Any]) -> Response:
        """Messages sent, newest first, filtered by ``To`` and ``From`` as Twilio's
        list is; one page of ``PageSize``."""
        size = small_int(str(params.get("PageSize") or ""), 3) or 50
        wanted = {k: str(params[k]) for k in ("To", "From") if params.get(k)}
        found = []
        for raw in reversed(self.redis.lrange(MESSAGES, 0, -1)):
            record = json.loads(raw)
            if all(record.get(k) == v for k, v in wanted.items()):
                found.append({k.lower(): v for k, v in record.items()})
            if len(found) == size:
                break
        meta = {"key": "messages", "page": 0, "page_size": size, "next_page_url": None}
        return Response(200, json.dumps({"messages": found, "meta": meta}))

    def _store(self, key: str, prefix: str, data: dict[str, Any]) -> Response:
        record = {
            "sid": prefix + secrets.token_hex(16),
            "status": "queued",
            "date_created": time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()),
            **{k: str(v) for k, v in data.items()},
        }
        self.redis.rpush(key, json.dumps(record))
        self.redis.ltrim(key, -500, -1)
        if key == CALLS:
            self.redis.set(CALL + record["sid"], json.dumps(record), ex=4 * 3600)
        body = {k.lower(): v for k, v in record.items()}
        body.setdefault("to", str(data.get("To", "")))
        body.setdefault("from", str(data.get("From", "")))
        return Response(201, json.dumps(body))


def _call_not_in_progress(sid: str) -> Response:
    """Twilio's answer to redirecting, or hanging up, a call that has ended."""
    body = {
        "code": 21220,
        "message": f"Call {sid} is not in-progress. Cannot redirect.",
        "status": 400,
    }
    return Response(400, json.dumps(body))


def mark_ended(connection: redis.Redis, sid: str) -> None:
    connection.set(ENDED + sid, "1", ex=4 * 3600)


def sent_messages(connection: redis.Redis) -> list[dict[str, str]]:
    return [json.loads(raw) for raw in connection.lrange(MESSAGES, 0, -1)]


def placed_calls(connection: redis.Redis) -> list[dict[str, str]]:
    return [json.loads(raw) for raw in connection.lrange(CALLS, 0, -1)]


def hung_up_by_app(connection: redis.Redis, sid: str) -> bool:
    """Whether the app asked to hang up this call (the request waits for the phone)."""
    return any(
        json.loads(raw).get("Status") in ("completed", "canceled")
        for raw in connection.lrange(UPDATES + sid, 0, -1)
    )


def next_update(connection: redis.Redis, sid: str) -> dict[str, str] | None:
    raw: Any = connection.lpop(UPDATES + sid)
    return None if raw is None else dict(json.loads(raw))


def keep_recording(connection: redis.Redis, recording_sid: str, audio: bytes) -> None:
    """Keep what a caller said at a <Record> (8 kHz µ-law) as Twilio would: a WAV file
    (16-bit PCM, 8 kHz, mono) served under the recording's SID until deleted."""
    wav = write_wav(mulaw.decode(audio), mulaw.RATE)
    connection.set(RECORDINGS + recording_sid, wav, ex=7 * 24 * 3600)
