"""The black-box security suite (issue 18): the Procfile's web process in production
mode, attacked over HTTP alone as a caller, an agent of another site and an anonymous
client would (the harness: tests/blackbox.py). One test per attack, named after the rule
it checks; the server's data is read back only to see what an attack changed."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

import pytest
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from interphone.cli.dev import DEMO_AGENT, DEMO_PASSWORD
from interphone.config import DEV_AUTH_TOKEN, DEV_BIRTHDATE_KEY
from interphone.models import Contact
from interphone.queue.store import URGENT

from .blackbox import (
    LINE_B,
    PUBLIC_BASE_URL,
    PUBLIC_HOST,
    SITE_A,
    SITE_B,
    TIMEOUT_S,
    Browser,
    Caller,
    Client,
    Server,
    interphone,
    next_number,
    production_server,
    start_refused,
)

pytestmark = pytest.mark.security

NOBODYS_BIRTH = "01011970"
STATUS_TEXT = "certificate of extension"  # what the seeded cases' status says (English)
POSITION = re.compile(r"You are number (\d+) in line")


@pytest.fixture(scope="module")
def server(
    redis_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    with production_server(redis_url, database_url, tmp_path_factory.mktemp("blackbox")) as s:
        yield s


def ask_for_callback(
    caller: Caller, *, file_number: str = "", birth: str = NOBODYS_BIRTH, number: str = ""
) -> Caller:
    """English, main menu 2, then the callback's questions (:func:`answer_callback`)."""
    caller.call().press("2").press("2")
    return answer_callback(caller, file_number=file_number, birth=birth, number=number)


def answer_callback(
    caller: Caller, *, file_number: str = "", birth: str = NOBODYS_BIRTH, number: str = ""
) -> Caller:
    """Whatever the IVR asks on the way to a callback: this line's number confirmed (or
    ``number`` typed), ``file_number``, ``birth`` if a date of birth is asked, reason 3
    ("other"); until the call ends."""
    answers = {
        "callback": "1",
        "callback_number": number,
        "callback_file": file_number,
        "callback_reason": "3",
    }
    for _ in range(10):
        if caller.ended:
            return caller
        step = caller.step
        if step in answers:
            caller.press(answers[step])
        elif "birth" in step:
            caller.press(birth)
        else:
            raise AssertionError(f"unexpected step {step!r} after {caller.heard}")
    raise AssertionError(f"the callback menu never ended: {caller.heard}")


def look_up(caller: Caller, file_number: str, birth: str) -> Caller:
    """A status lookup: English, main menu 1, the file number, the date of birth."""
    return caller.call().press("2").press("1").press(file_number).press(birth)


def position(caller: Caller) -> int:
    found = POSITION.search(" ".join(caller.heard))
    assert found is not None, caller.heard
    return int(found.group(1))


def without_figures(words: str) -> str:
    return re.sub(r"\d+", "#", words)


def contact_of(server: Server, call_sid: str) -> Contact:
    with server.runtime.sessions() as s:
        found = s.scalar(select(Contact).where(Contact.call_sid == call_sid))
    assert found is not None, f"no contact for call {call_sid}"
    return found


def signed_in(server: Server, email: str, address: str = "192.0.2.20") -> Browser:
    """A person signed in at a screen, from ``address``."""
    browser = Browser(server, address)
    answer = browser.sign_in(email)
    assert answer.status == 302, answer.text[:300]
    return browser


# -- callers ---------------------------------------------------------------------------------
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


def test_an_unverified_file_number_gives_no_priority(server: Server) -> None:
    urgent = server.seeded.files["urgent"]  # its permit runs out within the urgent window
    stranger = ask_for_callback(Caller(server, next_number()), file_number=urgent.number)
    assert position(stranger) > 1  # the callback seeded on site A stays ahead
    assert contact_of(server, stranger.sid).priority_class != URGENT


def test_a_proven_file_number_keeps_its_priority(server: Server) -> None:
    own = server.seeded.files["proven"]
    caller = Caller(server, next_number())
    look_up(caller, own.number, own.birth_digits).press("2")  # then: call me back
    answer_callback(caller, file_number=own.number, birth=own.birth_digits)
    assert position(caller) == 1
    assert contact_of(server, caller.sid).priority_class == URGENT


def test_a_callback_answer_does_not_depend_on_whether_the_typed_file_exists(
    server: Server,
) -> None:
    urgent = server.seeded.files["urgent"]
    before = ask_for_callback(Caller(server, next_number()), file_number="ZZ10001")
    existing = ask_for_callback(Caller(server, next_number()), file_number=urgent.number)
    after = ask_for_callback(Caller(server, next_number()), file_number="ZZ10002")
    assert [position(before) + 1, position(before) + 2] == [position(existing), position(after)]
    assert without_figures(existing.words()) == without_figures(after.words())


def test_an_unverified_file_number_is_never_told_it_already_has_a_request(
    server: Server,
) -> None:
    squatted = server.seeded.files["squatted"]
    ask_for_callback(Caller(server, next_number()), file_number=squatted.number)
    owner = ask_for_callback(Caller(server, next_number()), file_number=squatted.number)
    assert "already have a callback request" not in owner.words()
    assert "is recorded" in owner.words()


def test_a_typed_phone_number_does_not_reveal_a_pending_callback(server: Server) -> None:
    pending = server.seeded.pending_phone.replace("+33", "0")
    theirs = ask_for_callback(Caller(server, "anonymous"), number=pending)
    nobodys = ask_for_callback(Caller(server, "anonymous"), number="0698765432")
    assert without_figures(theirs.words()) == without_figures(nobodys.words())


def test_an_agent_sees_an_unverified_file_number_marked_without_its_case(server: Server) -> None:
    typed = server.seeded.files["carded"]
    stranger = Caller(server, next_number(), line=LINE_B)
    ask_for_callback(stranger, file_number=typed.number)
    contact_id = contact_of(server, stranger.sid).id
    agent = signed_in(server, "agent@site-b.test", "192.0.2.50")
    agent.submit("/agent/presence", {"state": "available"})
    try:
        offers = server.runtime.queue.dispatch(SITE_B)  # what the worker would do
        assert [offer.contact_id for offer in offers] == [contact_id]
        panel = agent.get("/agent/panel").text
        assert typed.number in panel and "non vérifié" in panel
        assert "API valable" not in panel  # the case's status and dates stay hidden
    finally:
        agent.submit(f"/agent/offer/{contact_id}/decline")
        agent.submit("/agent/presence", {"state": "offline"})
        server.runtime.queue.cancel(contact_id, "test over", actor="test")


@pytest.mark.parametrize(
    ("token", "base"),
    [
        pytest.param("0" * 32, PUBLIC_BASE_URL, id="another-accounts-token"),
        pytest.param("", "http://127.0.0.1:5000", id="signed-for-the-internal-url"),
    ],
)
def test_a_webhook_not_signed_by_twilio_for_the_public_url_is_refused(
    server: Server, token: str, base: str
) -> None:
    caller = Caller(server, next_number())
    form = caller.params({"CallStatus": "ringing"})
    validator = RequestValidator(token or server.auth_token)
    signature = validator.compute_signature(base + "/voice/incoming", form)
    answer = caller.client.request(
        "POST",
        "/voice/incoming",
        urlencode(form).encode(),
        {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
        cookies=False,
    )
    assert answer.status == 403
    assert server.runtime.calls.load(caller.sid) is None


@pytest.mark.parametrize("placeholder", ["+266696687", "+86282452253", "+7378742833"])
def test_twilios_placeholders_for_a_withheld_number_are_taken_as_withheld(
    server: Server, placeholder: str
) -> None:
    caller = Caller(server, placeholder).call().press("2").press("2")
    assert caller.step == "callback_number"  # a number to call back is asked, not confirmed


def test_birth_date_guesses_on_one_file_are_limited_across_numbers(server: Server) -> None:
    guessed = server.seeded.files["guessed"]
    for day in range(1, 7):  # one guess from each of six numbers
        look_up(Caller(server, next_number()), guessed.number, f"{day:02d}011970")
    owner = look_up(Caller(server, next_number()), guessed.number, guessed.birth_digits)
    assert STATUS_TEXT not in owner.words()


def test_withheld_callers_share_one_limited_budget(server: Server) -> None:
    limited = ("Too many lookups", "too many calls")
    files = (f"ZW{n:05d}" for n in range(1000))
    for _ in range(40):  # 3 lookups a call: well past a hundred lookups at the end
        caller = Caller(server, "anonymous").call().press("2").press("1")
        while caller.step == "status_file":
            caller.press(next(files)).press(NOBODYS_BIRTH)
        if any(words in " ".join(caller.heard) for words in limited):
            return
    raise AssertionError("120 lookups from withheld numbers and no limit said")


def test_the_limits_met_by_these_callers_show_in_the_metrics(server: Server) -> None:
    answer = Client(server).get(
        "/metrics", headers={"Authorization": f"Bearer {server.metrics_token}"}
    )
    assert answer.status == 200
    limited = {
        name: float(value)
        for name, value in re.findall(
            r'^interphone_rate_limited_total\{[^}]*"(\w+)"\} ([0-9.e+]+)$', answer.text, re.M
        )
    }
    assert limited.get("file_failures", 0) >= 1, limited
    assert sum(n for name, n in limited.items() if name.startswith("withheld")) >= 1, limited


@pytest.mark.parametrize("route", ["/voice/agent/join", "/voice/applicant/join", "/voice/bridge"])
def test_bridge_webhooks_answer_twiml_for_an_unknown_contact(server: Server, route: str) -> None:
    caller = Caller(server, next_number())
    for query in ("?c=999999", "?c=unknown", ""):
        answer = caller.post(route + query, caller.params())
        assert answer.status < 500
        assert answer.header("Content-Type").startswith(("application/xml", "text/xml")), (
            route + query,
            answer.status,
            answer.text[:200],
        )


# -- an agent (or supervisor) of another site ------------------------------------------------
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


@pytest.mark.parametrize("action", ["cancel", "priority", "reassign"])
def test_a_supervisor_cannot_act_on_another_sites_contact(server: Server, action: str) -> None:
    victim = a_waiting_callback_of_site_a(server)
    before = state_of(server, victim)
    form = {
        "cancel": {"reason": "not yours"},
        "priority": {"urgent": "1"},
        "reassign": {"agent_id": str(server.seeded.staff["agent@site-b.test"])},
    }[action]
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


def test_a_form_without_its_csrf_token_is_refused(server: Server) -> None:
    victim = a_waiting_callback_of_site_a(server)
    before = state_of(server, victim)
    supervisor = signed_in(server, "supervisor@site-a.test", "192.0.2.21")
    answer = supervisor.post_form(f"/supervisor/contacts/{victim}/cancel", {"reason": "forged"})
    assert answer.status == 400
    assert state_of(server, victim) == before


# -- signing in --------------------------------------------------------------------------------
def wrong_sign_in(server: Server, email: str, address: str) -> tuple[int, float]:
    """A wrong password for ``email`` from ``address``: the answer's status, and the CPU
    seconds the web process spent on it (the page read, then the form posted)."""
    before = server.cpu()["web"]
    answer = Browser(server, address).sign_in(email, "not-the-password")
    return answer.status, server.cpu()["web"] - before


def test_wrong_passwords_from_one_address_never_lock_the_owner_out(server: Server) -> None:
    attempts = [wrong_sign_in(server, "agent@site-b.test", "203.0.113.66") for _ in range(6)]
    assert [status for status, _ in attempts] == [401] * 5 + [429]  # the guesser is throttled
    owner = Browser(server, "192.0.2.77")
    assert owner.sign_in("agent@site-b.test").status == 302


def test_one_address_trying_many_accounts_is_throttled(server: Server) -> None:
    for n in range(40):
        status, _ = wrong_sign_in(server, f"guess{n}@site-a.test", "203.0.113.77")
        if status == 429:
            return
        assert status == 401
    raise AssertionError("40 wrong sign-ins from one address and no throttle")


def test_an_unknown_email_costs_the_same_work_as_a_known_one(server: Server) -> None:
    known, unknown = [], []
    for n in range(5):  # distinct addresses: no throttle in the way
        known.append(wrong_sign_in(server, "supervisor@site-a.test", f"198.51.100.{n + 10}"))
        unknown.append(wrong_sign_in(server, "nobody@site-a.test", f"198.51.100.{n + 20}"))
    assert {status for status, _ in known + unknown} == {401}
    # the server's CPU, not the clock: the password hash is most of a known e-mail's
    # work, and an unknown one must cost as much (it cost a twentieth before)
    known_s, unknown_s = sum(s for _, s in known), sum(s for _, s in unknown)
    assert unknown_s > 0.5 * known_s, (known_s, unknown_s)


def test_a_session_cookie_copied_before_sign_out_is_dead_after_it(server: Server) -> None:
    agent = signed_in(server, "agent@site-a.test", "192.0.2.30")
    copied = dict(agent.cookies)
    assert agent.get("/agent").status == 200
    assert agent.submit("/logout").status == 302
    thief = Client(server, "203.0.113.99")
    thief.cookies = copied
    answer = thief.get("/agent")
    assert answer.status == 302
    assert urlsplit(answer.header("Location")).path == "/login"


def test_a_password_reset_ends_every_copy_of_the_session(server: Server) -> None:
    victim = signed_in(server, "reset@site-a.test", "192.0.2.31")
    thief = Client(server, "203.0.113.98")
    thief.cookies = dict(victim.cookies)
    assert thief.get("/agent").status == 200
    admin = signed_in(server, "admin@site-a.test", "192.0.2.32")
    agent_id = server.seeded.staff["reset@site-a.test"]
    new_password = {"password": "another-long-password-2026"}
    assert admin.submit(f"/admin/agents/{agent_id}/password", new_password).status == 303
    answer = thief.get("/agent")
    assert answer.status == 302
    assert urlsplit(answer.header("Location")).path == "/login"


# -- an anonymous client -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "target", ["/\t/evil.com", "//evil.com", "/\\evil.com", "https://evil.com/", "/%09/evil.com"]
)
def test_the_language_switch_redirects_only_within_the_site(server: Server, target: str) -> None:
    browser = Browser(server)
    answer = browser.submit("/lang", {"lang": "en", "next": target})
    assert answer.status in (302, 303)
    location = re.sub(r"[\t\r\n]", "", answer.header("Location"))  # as a browser reads it
    parts = urlsplit(location.replace("\\", "/"))
    assert parts.netloc in ("", PUBLIC_HOST), location


@pytest.mark.parametrize(
    ("path", "user"),
    [("/login", ""), ("/agent", "agent@site-a.test"), ("/supervisor", "supervisor@site-a.test")],
)
def test_every_page_carries_the_security_headers(server: Server, path: str, user: str) -> None:
    client = signed_in(server, user, "192.0.2.60") if user else Client(server)
    answer = client.get(path)
    assert answer.status == 200
    policy = answer.header("Content-Security-Policy")
    assert "frame-ancestors 'none'" in policy
    script = re.search(r"script-src([^;]*)", policy) or re.search(r"default-src([^;]*)", policy)
    assert script is not None and "'unsafe-inline'" not in script.group(1), policy
    assert answer.header("X-Content-Type-Options") == "nosniff"
    assert answer.header("Referrer-Policy") == "same-origin"
    assert "max-age=" in answer.header("Strict-Transport-Security")


def test_the_api_answers_deeply_nested_json_with_a_client_error(server: Server) -> None:
    deep = b"[" * 1000 + b"]" * 1000
    anonymous = Client(server).put_json("/api/cases/X1", deep)
    assert anonymous.status in (400, 401)
    authorized = Client(server).put_json("/api/cases/X1", deep, server.api_token)
    assert authorized.status == 400


@pytest.mark.parametrize(
    ("file_number", "changes"),
    [
        pytest.param("X2", {"status_changed_at": "0001-01-01T00:00:00+14:00"}, id="year-1"),
        pytest.param("X3", {"status_changed_at": "9999-12-31T00:00:00+00:00"}, id="year-9999"),
        pytest.param("X4", {"birth_date": "9999-01-01"}, id="born-in-9999"),
        # full-width digits: no keypad can type them
        pytest.param("\uff11\uff12\uff13", {}, id="full-width-digits"),
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


# -- the line before the screens (last: on failure its feeds hold the server's threads) --------
def test_agent_feeds_never_take_the_threads_that_answer_twilio(server: Server) -> None:
    agent = signed_in(server, "agent@site-b.test", "192.0.2.40")
    cookie = "; ".join(f"{k}={v}" for k, v in agent.cookies.items())
    request = (
        f"GET /agent/feed HTTP/1.1\r\nHost: {PUBLIC_HOST}\r\nCookie: {cookie}\r\n"
        f"X-Forwarded-For: 192.0.2.40\r\nX-Forwarded-Proto: https\r\n"
        f"Accept: text/event-stream\r\n\r\n"
    ).encode()
    feeds: list[socket.socket] = []
    try:
        for _ in range(70):
            feed = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT_S)
            feed.sendall(request)
            feeds.append(feed)
        for _ in range(4):  # Twilio's webhooks still answered, in time for a caller
            caller = Caller(server, next_number()).call()
            assert caller.step == "language"
    finally:
        for feed in feeds:
            feed.close()


def test_half_sent_requests_never_keep_twilio_from_being_answered(server: Server) -> None:
    half = f"POST /voice/incoming HTTP/1.1\r\nHost: {PUBLIC_HOST}\r\n".encode()
    stalls: list[socket.socket] = []
    try:
        for _ in range(50):  # no signature needed to send half a request
            stall = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT_S)
            stall.sendall(half)
            stalls.append(stall)
        for _ in range(4):
            assert Caller(server, next_number()).call().step == "language"
    finally:
        for stall in stalls:
            stall.close()


# -- production settings that would make the line guessable or forgeable ---------------------
@pytest.mark.parametrize(
    ("changes", "named"),
    [
        pytest.param({"BIRTHDATE_HASH_KEY": "k"}, "BIRTHDATE_HASH_KEY", id="short-birth-key"),
        pytest.param(
            {"BIRTHDATE_HASH_KEY": DEV_BIRTHDATE_KEY}, "BIRTHDATE_HASH_KEY", id="dev-birth-key"
        ),
        pytest.param(
            {"TWILIO_AUTH_TOKEN": DEV_AUTH_TOKEN}, "TWILIO_AUTH_TOKEN", id="dev-phone-token"
        ),
        pytest.param({"PUBLIC_BASE_URL": ""}, "PUBLIC_BASE_URL", id="no-public-url"),
        pytest.param(
            {"PUBLIC_BASE_URL": "http://interphone.test"}, "PUBLIC_BASE_URL", id="http-public-url"
        ),
        pytest.param(
            {"DEV_PHONE_REST_URL": "http://127.0.0.1:5999"}, "DEV_PHONE_REST_URL", id="test-only"
        ),
    ],
)
def test_production_refuses_to_start_on_settings_that_open_the_line(
    redis_url: str,
    database_url: str,
    tmp_path: Path,
    changes: dict[str, str],
    named: str,
) -> None:
    said = start_refused(redis_url, database_url, tmp_path, **changes)
    assert f"ConfigError: {named}" in said, said[-2000:]


def test_the_demo_seed_is_refused_in_production(
    server: Server, redis_url: str, database_url: str, tmp_path: Path
) -> None:
    said = interphone(redis_url, database_url, tmp_path, "dev", "seed")
    assert "refused in production" in said
    demo = Browser(server, "192.0.2.91").sign_in(DEMO_AGENT, DEMO_PASSWORD)
    assert demo.status == 401  # no account with the published password
