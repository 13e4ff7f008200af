"""The case API for the préfecture's systems: bearer tokens, validation, OpenAPI."""

from __future__ import annotations

from datetime import date

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from sqlalchemy import select

from interphone.models import Case
from interphone.privacy import check_birth_date
from interphone.runtime import Runtime

from .conftest import API_TOKEN as TOKEN


def _put(client, file_number: str, body, token: str | None = TOKEN):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.put(f"/api/cases/{file_number}", json=body, headers=headers)


NEW = {"birth_date": "1990-04-12", "status": "under_review", "status_changed_at": "2026-10-01"}


@pytest.mark.parametrize("token", [None, "wrong" * 10, TOKEN[:-1]])
def test_missing_or_wrong_token_is_refused_and_nothing_written(api, voice_runtime, token) -> None:
    response = _put(api.test_client(), "6300000001", NEW, token)
    assert response.status_code == 401 and response.json["error_id"] == "unauthorized"
    with voice_runtime.sessions() as s:
        assert s.scalars(select(Case)).all() == []


def test_case_is_created_then_updated_and_never_shows_the_birth_date(
    api, voice_runtime: Runtime
) -> None:
    client = api.test_client()
    created = _put(client, "63 0000 0001", NEW)
    assert created.status_code == 201 and created.json["file_number"] == "6300000001"
    assert "birth_date" not in created.json and "1990" not in created.get_data(as_text=True)
    updated = _put(client, "6300000001", {"status": "api_issued", "api_valid_until": "2027-03-31"})
    assert updated.status_code == 200 and updated.json["api_valid_until"] == "2027-03-31"
    with voice_runtime.sessions() as s:
        case = s.scalar(select(Case))
    assert case.status == "api_issued"
    assert check_birth_date(
        voice_runtime.settings.birthdate_key, "6300000001", date(1990, 4, 12), case.birth_date_hash
    )  # kept on update


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"status": "under_review"}, "birth_date"),  # a new case needs its birth date
        ({**NEW, "status": "<script>x</script>"}, "status"),
        ({**NEW, "birth_date": "12/04/1990"}, "birth_date"),
        ({**NEW, "phone": "12"}, "phone"),
        ({**NEW, "secret": "x"}, "unknown"),
        ({**NEW, "status": 3}, "string"),
        (["not", "an", "object"], "JSON object"),
    ],
)
def test_bad_bodies_get_a_clear_400(api, body, message: str) -> None:
    response = _put(api.test_client(), "6300000002", body)
    assert response.status_code == 400
    assert message in response.json["message"] + str(response.json.get("details"))


def test_oversized_body_is_refused(api) -> None:
    response = api.test_client().put(
        "/api/cases/6300000003",
        data="x" * 20_000,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    assert response.status_code == 413


def test_openapi_document_describes_the_put(api) -> None:
    doc = api.test_client().get("/api/openapi.json").json
    operation = doc["paths"]["/api/cases/{file_number}"]["put"]
    assert set(operation["responses"]) >= {"200", "201", "400", "401"}
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_schemathesis_finds_no_server_error(api) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", api)
    operation = schema["/api/cases/{file_number}"]["PUT"]
    calls = []

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def run(case) -> None:
        response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
        calls.append(response.status_code)
        assert response.status_code < 500, response.text

    run()
    assert len(calls) >= 50 and all(code in (200, 201, 400, 401, 413) for code in calls)
