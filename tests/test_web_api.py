"""The case API for the préfecture's systems: bearer tokens, validation, OpenAPI."""

from __future__ import annotations

import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from urllib.parse import quote

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from sqlalchemy import event, select

from interphone.models import Case
from interphone.privacy import check_birth_date
from interphone.runtime import Runtime
from interphone.web.context import runtime_of

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
        ({**NEW, "secret": "x"}, "unknown"),
        ({**NEW, "status": 3}, "string"),
        (["not", "an", "object"], "JSON object"),
    ],
)
def test_a_body_that_is_not_an_object_of_strings_gets_a_clear_400(api, body, message) -> None:
    response = _put(api.test_client(), "6300000002", body)
    assert response.status_code == 400
    assert message in response.json["message"] + str(response.json.get("details"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"status": "under_review"}, "birth_date"),  # a new case needs its birth date
        ({**NEW, "status": "<script>x</script>"}, "status"),
        ({**NEW, "birth_date": "12/04/1990"}, "birth_date"),
        ({**NEW, "phone": "12"}, "phone"),
    ],
)
def test_a_value_refused_gets_a_422_naming_the_field(api, body, message: str) -> None:
    response = _put(api.test_client(), "6300000002", body)
    assert response.status_code == 422 and response.json["error_id"] == "invalid-value"
    assert message in response.json["message"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"status_changed_at": "0001-01-01T00:00:00+14:00"}, "status_changed_at"),
        ({"status_changed_at": "9999-12-31T23:59:59-14:00"}, "status_changed_at"),
        ({"status_changed_at": "2999-01-01T00:00:00+00:00"}, "status_changed_at"),
        ({"status_changed_at": "1900-01-01"}, "status_changed_at"),
        ({"birth_date": "9999-12-31"}, "birth_date"),
        ({"status": "api_issued", "api_valid_until": "9999-12-31"}, "api_valid_until"),
        ({"status": "api_issued", "api_valid_until": "0001-01-01"}, "api_valid_until"),
    ],
)
def test_a_date_outside_a_sane_range_is_refused_with_a_422(
    api, voice_runtime: Runtime, changes: dict[str, str], field: str
) -> None:
    response = _put(api.test_client(), "6300000004", {**NEW, **changes})
    assert response.status_code == 422 and field in response.json["message"]
    with voice_runtime.sessions() as s:
        assert s.scalars(select(Case)).all() == []


def test_a_file_number_in_other_digits_than_0_to_9_is_refused_with_a_422(
    api, voice_runtime: Runtime
) -> None:
    """Full-width digits (or Arabic-Indic ones) make a case no keypad can reach."""
    for number in ("６３００００００１", "٦٣٠٠٠٠٠٠٠١"):
        response = _put(api.test_client(), quote(number), NEW)
        assert response.status_code == 422 and "file_number" in response.json["message"]
    with voice_runtime.sessions() as s:
        assert s.scalars(select(Case)).all() == []


def test_a_body_nested_too_deep_is_malformed_json_with_or_without_the_token(api) -> None:
    """Nested 1,000 deep, the body raised RecursionError (a 500) before the token was
    even read; now it is malformed JSON, in the API's error shape."""
    client = api.test_client()
    body = "[" * 1000 + "]" * 1000
    for token, status in ((None, 401), (TOKEN, 400)):
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        response = client.put("/api/cases/6300000005", data=body, headers=headers)
        assert response.status_code == status and set(response.json) == {
            "error_id",
            "message",
            "details",
        }
    nested = _put(client, "6300000005", {**NEW, "x": [[[[[[]]]]]]})
    assert nested.status_code == 400 and nested.json["details"]["fields"] == ["x"]  # read


def test_a_chunked_body_over_the_limit_is_refused_without_its_length(api) -> None:
    """A body sent without Content-Length is bounded too."""
    body = json.dumps({**NEW, "language": "x" * 20_000}).encode()
    response = api.test_client().put(
        "/api/cases/6300000006",
        input_stream=io.BytesIO(body),
        headers={
            "Authorization": f"Bearer {TOKEN}",
            "Content-Type": "application/json",
            "Transfer-Encoding": "chunked",
        },
        environ_overrides={"wsgi.input_terminated": True},  # as gunicorn sets it
    )
    assert response.status_code == 413 and response.json["error_id"] == "too-large"


def test_one_case_created_by_eight_requests_at_once_gives_one_201_and_never_a_500(
    api, voice_runtime: Runtime
) -> None:
    """Eight PUTs of a new case, each held after its read until all have read: all see
    no case, one creates it, the others apply their change to it (200), on SQLite and
    PostgreSQL alike."""
    requests = 8
    all_read = threading.Barrier(requests)
    first_read = threading.local()

    def hold_after_the_first_read(conn, cursor, statement: str, *args) -> None:
        reads_cases = statement.lstrip().startswith("SELECT") and " cases" in statement
        if reads_cases and not getattr(first_read, "done", False):
            first_read.done = True
            all_read.wait(timeout=30)

    engine = runtime_of(api).engine
    event.listen(engine, "after_cursor_execute", hold_after_the_first_read)
    try:
        with ThreadPoolExecutor(max_workers=requests) as pool:
            codes = list(
                pool.map(lambda _: _put(api.test_client(), "6300000007", NEW).status_code, range(8))
            )
    finally:
        event.remove(engine, "after_cursor_execute", hold_after_the_first_read)
    assert sorted(codes) == [200] * 7 + [201]
    with voice_runtime.sessions() as s:
        assert len(s.scalars(select(Case)).all()) == 1


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
    assert set(operation["responses"]) >= {"200", "201", "400", "401", "409", "413", "422"}
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
    assert len(calls) >= 50 and all(code in (200, 201, 400, 401, 413, 422) for code in calls)
