"""Twilio's SIDs are taken whole: a SID followed by a newline (which a pattern anchored
with ``$`` lets through) is refused like any other malformed SID, before it can reach a
voicemail row, an SMS idempotency key, a Twilio URL or an RQ job id."""

from __future__ import annotations

from typing import Any

import pytest

from interphone.devtools.devphone.phone import DevPhone
from interphone.voice.recordings import RecordingError, media_url

CALL_SID, RECORDING_SID = "CA" + "1" * 32, "RE" + "2" * 32


def _post(app: Any, devphone: DevPhone, path: str, form: dict[str, str]) -> Any:
    signature = devphone.signature(path, form)
    return app.test_client().post(path, data=form, headers={"X-Twilio-Signature": signature})


@pytest.mark.parametrize(
    ("path", "form"),
    [
        ("/voice/incoming", {"CallSid": CALL_SID + "\n", "From": "+33612345678"}),
        (
            "/voice/recording",
            {
                "CallSid": CALL_SID,
                "RecordingSid": RECORDING_SID + "\n",
                "RecordingStatus": "completed",
            },
        ),
        ("/sms/incoming", {"MessageSid": "SM" + "3" * 32 + "\n", "From": "+33612345678"}),
    ],
)
def test_a_sid_with_a_trailing_newline_is_refused(
    app: Any, devphone: DevPhone, path: str, form: dict[str, str]
) -> None:
    answer = _post(app, devphone, path, form)
    assert answer.status_code == 400
    assert b"malformed" in answer.data


def test_a_recording_sid_with_a_trailing_newline_names_no_twilio_url() -> None:
    assert media_url("AC" + "0" * 32, RECORDING_SID).endswith(f"/{RECORDING_SID}.wav")
    with pytest.raises(RecordingError):
        media_url("AC" + "0" * 32, RECORDING_SID + "\n")
