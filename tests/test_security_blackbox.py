"""The black-box security suite (issue 18): the Procfile's web process in production
mode, attacked over HTTP alone as a caller, an agent of another site and an anonymous
client would (the harness: tests/blackbox.py). One test per attack, named after the rule
it checks; the server's data is read back only to see what an attack changed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest

from interphone.models import Contact

from .blackbox import (
    SITE_A,
    TIMEOUT_S,
    Browser,
    Caller,
    Client,
    Server,
    next_number,
    production_server,
)

pytestmark = pytest.mark.security

STATUS_TEXT = "certificate of extension"  # what the seeded cases' status says (English)


@pytest.fixture(scope="module")
def server(
    redis_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    with production_server(redis_url, database_url, tmp_path_factory.mktemp("blackbox")) as s:
        yield s


# -- callers ---------------------------------------------------------------------------------
def look_up(caller: Caller, file_number: str, birth: str) -> Caller:
    """A status lookup: English, main menu 1, the file number, the date of birth."""
    return caller.call().press("2").press("1").press(file_number).press(birth)


def test_a_status_lookup_with_the_right_birth_date_tells_the_status(server: Server) -> None:
    own = server.seeded.files["status"]
    caller = look_up(Caller(server, next_number()), own.number, own.birth_digits)
    assert STATUS_TEXT in caller.words()


def test_an_unknown_file_and_a_wrong_birth_date_get_the_same_answer(server: Server) -> None:
    known = server.seeded.files["status"]
    wrong = look_up(Caller(server, next_number()), known.number, known.wrong_birth_digits)
    unknown = look_up(Caller(server, next_number()), "ZZ40404", known.birth_digits)
    assert wrong.said == unknown.said
    assert wrong.last is not None and unknown.last is not None
    assert len(wrong.last.body) == len(unknown.last.body)
    assert STATUS_TEXT not in wrong.words()


@pytest.mark.parametrize("placeholder", ["+266696687", "+86282452253", "+7378742833"])
def test_twilios_placeholders_for_a_withheld_number_are_taken_as_withheld(
    server: Server, placeholder: str
) -> None:
    caller = Caller(server, placeholder).call().press("2").press("2")
    assert caller.step == "callback_number"  # a number to call back is asked, not confirmed


# -- an agent (or supervisor) of another site ------------------------------------------------
def signed_in(server: Server, email: str, address: str = "192.0.2.20") -> Browser:
    browser = Browser(server, address)
    answer = browser.sign_in(email)
    assert answer.status == 302, answer.text[:300]
    return browser


def a_waiting_callback_of_site_a(server: Server) -> int:
    ticket = server.runtime.queue.request_callback(
        SITE_A, phone=next_number(), language="fr", reason="other"
    )
    return ticket.contact_id


def state_of(server: Server, contact_id: int) -> tuple[str, int, int | None]:
    with server.runtime.sessions() as s:
        row = s.get(Contact, contact_id)
        assert row is not None
        return row.state, row.priority_class, row.agent_id


@pytest.mark.parametrize(
    ("action", "form"),
    [
        ("cancel", {"reason": "not yours"}),
        ("priority", {"urgent": "1"}),
        ("reassign", {"agent_id": ""}),  # filled with site B's agent below
    ],
)
def test_a_supervisor_cannot_act_on_another_sites_contact(
    server: Server, action: str, form: dict[str, str]
) -> None:
    victim = a_waiting_callback_of_site_a(server)
    before = state_of(server, victim)
    if action == "reassign":
        form = {"agent_id": str(server.seeded.staff["agent@site-b.test"])}
    intruder = signed_in(server, "supervisor@site-b.test")
    answer = intruder.submit(f"/supervisor/contacts/{victim}/{action}", form)
    assert answer.status == 404
    assert state_of(server, victim) == before


def test_a_supervisor_cannot_pause_another_sites_agent(server: Server) -> None:
    target = server.seeded.staff["agent@site-a.test"]
    store = server.runtime.store
    server.runtime.queue.set_presence(target, "available")
    try:
        intruder = signed_in(server, "supervisor@site-b.test")
        answer = intruder.submit(f"/supervisor/agents/{target}/presence", {"state": "paused"})
        assert answer.status == 404
        assert store.agent(target).get("state") == "available"
    finally:
        server.runtime.queue.set_presence(target, "offline")


def test_a_signed_in_user_cannot_read_another_sites_queue(server: Server) -> None:
    intruder = signed_in(server, "agent@site-b.test")
    assert intruder.get(f"/?site={SITE_A}").status == 404


def test_a_supervisor_cannot_tell_another_sites_voicemail_from_none(server: Server) -> None:
    intruder = signed_in(server, "supervisor@site-b.test")
    theirs = intruder.get(f"/agent/voicemail/{server.seeded.voicemail_a}/audio")
    nobodys = intruder.get("/agent/voicemail/987654/audio")
    assert (theirs.status, nobodys.status) == (404, 404)


def test_a_supervisor_exports_only_their_own_site(server: Server) -> None:
    victim = a_waiting_callback_of_site_a(server)
    with server.runtime.sessions() as s:
        reference = s.get(Contact, victim).reference  # type: ignore[union-attr]
    today = datetime.now(UTC).date()
    span = f"from={today - timedelta(days=1)}&to={today + timedelta(days=1)}"
    intruder = signed_in(server, "supervisor@site-b.test")
    for query in (span, f"{span}&site={SITE_A}"):
        answer = intruder.get(f"/supervisor/export.csv?{query}")
        assert answer.status in (200, 404)
        assert reference not in answer.text


# -- an anonymous client -----------------------------------------------------------------------
def test_the_api_answers_deeply_nested_json_with_a_client_error(server: Server) -> None:
    deep = b"[" * 1000 + b"]" * 1000
    anonymous = Client(server).put_json("/api/cases/X1", deep)
    assert anonymous.status in (400, 401)
    authorized = Client(server).put_json("/api/cases/X1", deep, server.api_token)
    assert authorized.status == 400


@pytest.mark.parametrize(
    ("file_number", "changes"),
    [
        ("X2", {"status_changed_at": "0001-01-01T00:00:00+14:00"}),
        ("X3", {"status_changed_at": "9999-12-31T00:00:00+00:00"}),
        ("X4", {"birth_date": "9999-01-01"}),
        ("\uff11\uff12\uff13", {}),  # full-width digits: no keypad can type them
    ],
)
def test_the_api_refuses_values_out_of_range_with_a_client_error(
    server: Server, file_number: str, changes: dict[str, str]
) -> None:
    body = {"birth_date": "1990-01-01", "status": "filed", **changes}
    body.setdefault("status_changed_at", "2026-01-02T10:00:00+01:00")
    answer = Client(server).put_json(
        f"/api/cases/{quote(file_number)}", _json(body), server.api_token
    )
    assert answer.status in (400, 422), (answer.status, answer.text[:200])


def test_creating_one_case_concurrently_never_fails(server: Server) -> None:
    body = _json(
        {"birth_date": "1990-01-01", "status": "filed", "status_changed_at": "2026-01-02T10:00:00Z"}
    )
    start = threading.Barrier(8)
    statuses: list[int] = []

    def put() -> None:
        start.wait()
        statuses.append(Client(server).put_json("/api/cases/RACE1", body, server.api_token).status)

    threads = [threading.Thread(target=put) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=2 * TIMEOUT_S)
    assert sorted(statuses).count(201) == 1, statuses
    assert set(statuses) <= {200, 201, 409}, statuses


def _json(body: dict[str, str]) -> bytes:
    return json.dumps(body).encode()
