"""NUL characters (U+0000), which PostgreSQL's text columns cannot hold.

Found by the hostile-input test on PostgreSQL: a sign-in with a NUL in its address was
a 500 there (SQLite stores it). Screens and the API refuse such a request with a 400;
Twilio's webhooks drop the character and answer as usual."""

from __future__ import annotations

from sqlalchemy import func, select

from interphone.devtools.devphone.phone import DevPhone
from interphone.models import Call, Case
from interphone.runtime import Runtime

from .conftest import API_TOKEN, SITE


def test_sign_in_with_a_nul_in_the_address_is_a_clear_400_not_a_server_error(
    app, voice_runtime: Runtime
) -> None:
    app.config["WTF_CSRF_ENABLED"] = False
    client = app.test_client()
    response = client.post("/login", data={"email": "a\x00@example.org", "password": "x" * 12})
    assert response.status_code == 400
    assert b"NUL characters are not accepted" in response.data
    assert voice_runtime.redis.keys("*fail*") == []  # refused before the view counted it


def test_nul_in_a_query_string_is_a_clear_400(app) -> None:
    response = app.test_client().get("/login?next=%00")
    assert response.status_code == 400


def test_api_body_with_a_nul_is_refused_and_nothing_written(api, voice_runtime: Runtime) -> None:
    body = {"birth_date": "1990-04-12", "status": "under_review", "language": "e\x00"}
    response = api.test_client().put(
        "/api/cases/6300000001", json=body, headers={"Authorization": f"Bearer {API_TOKEN}"}
    )
    assert response.status_code == 400
    assert "NUL" in response.json["message"]  # refused before any field's own check
    with voice_runtime.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Case)) == 0


def test_webhook_field_with_a_nul_is_answered_and_its_journal_record_is_stored(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    """A NUL in ``To`` went into the call's journal record: on PostgreSQL the record
    could never be applied. The webhook drops the character."""
    rt = voice_runtime
    sid = "CA" + "7" * 32
    body = devphone.post(
        "/voice/incoming",
        {
            "CallSid": sid,
            "From": "+336\x0012345678",
            "To": "+33473\x00000000",
            "CallStatus": "ringing",
            "AccountSid": "AC" + "0" * 32,
        },
    )
    assert body.startswith("<?xml") and "<Gather" in body
    assert rt.journal.drain() == 1
    with rt.sessions() as s:
        row = s.scalars(select(Call).where(Call.sid == sid)).one()
    assert row.to_number == "+33473000000"
    assert rt.calls.load(sid).site == SITE


def test_nul_sent_to_no_such_route_gets_its_404_not_a_400(app) -> None:
    """Found by the webhook fuzz test: an unsigned ``/voice/step/../admin`` with a NUL
    must be refused as no such route, as every unknown URL is."""
    response = app.test_client().post("/voice/admin?n=0", data={"Digits": "\x00"})
    assert response.status_code == 404
