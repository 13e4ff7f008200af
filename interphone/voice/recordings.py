"""Recordings kept at Twilio: fetched once into our database, then deleted there.

A voicemail's audio is downloaded with the account's credentials (the twilio client's),
from the URL the recording's SID names: never a URL taken from a request, so nothing
can make the server fetch another address. In development the dev phone's REST side
(the client's ``http_client``) serves the recordings it made. After the audio is stored,
the recording is deleted at Twilio so that it lives only on the préfecture's servers.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

log = logging.getLogger(__name__)

API = "https://api.twilio.com/2010-04-01"
RECORDING_SID = re.compile(r"RE[0-9a-f]{32}")  # matched whole: no trailing newline
MAX_BYTES = 64 * 1024 * 1024  # a WAV of an hour at 8 kHz is 58 MB
TIMEOUT_S = 30.0


class RecordingError(RuntimeError):
    """The recording could not be fetched (yet): the job will try again."""


@dataclass(frozen=True)
class Media:
    content: bytes
    content_type: str


def media_url(account_sid: str, recording_sid: str) -> str:
    """Where Twilio serves a recording as WAV (16-bit PCM)."""
    if not RECORDING_SID.fullmatch(recording_sid):
        raise RecordingError("not a recording SID")
    return f"{API}/Accounts/{account_sid}/Recordings/{recording_sid}.wav"


def download(client: Client, recording_sid: str) -> Media:
    url = media_url(str(client.account_sid), recording_sid)
    fetch: Any = getattr(client.http_client, "fetch_media", None)
    if fetch is not None:  # the dev phone's REST side serves its own recordings
        found = fetch(url)
        if found is None:
            raise RecordingError(f"recording {recording_sid} not found")
        content, content_type = found
        return Media(bytes(content), str(content_type))
    import requests

    try:
        response = requests.get(
            url,
            auth=(str(client.username), str(client.password)),
            timeout=TIMEOUT_S,
            stream=True,
        )
    except requests.RequestException as exc:
        raise RecordingError(f"recording {recording_sid}: {type(exc).__name__}") from None
    with response:
        if response.status_code != 200:
            raise RecordingError(f"recording {recording_sid}: HTTP {response.status_code}")
        content = bytearray()  # grown in place: no copy of the whole per chunk
        for chunk in response.iter_content(64 * 1024):
            content += chunk
            if len(content) > MAX_BYTES:
                raise RecordingError(f"recording {recording_sid} is too large")
        content_type = response.headers.get("Content-Type", "audio/wav").split(";")[0]
        return Media(bytes(content), content_type)


def delete(client: Client, recording_sid: str) -> None:
    """Delete the recording at Twilio (already gone counts as deleted)."""
    try:
        client.recordings(recording_sid).delete()
    except TwilioRestException as exc:
        if exc.status != 404:
            raise
    log.info("recording %s deleted at Twilio", recording_sid)
