"""Sign-in: the same work whether an address has an account or not, a throttle per
(account, address) and per address that never locks the owner out from elsewhere, and
sessions that end in every copy of their cookie."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import argon2
import pytest
import redis
from flask import Flask
from redis.backoff import NoBackoff
from redis.retry import Retry

from interphone import metrics
from interphone.accounts import add_user, deactivate_agent, reactivate_agent, reset_password
from interphone.config import RateLimits
from interphone.runtime import Runtime
from interphone.signin import PER_ACCOUNT_AND_ADDRESS, SignIn, WrongCredentials
from interphone.web import create_app

from .conftest import SITE

EMAIL, PASSWORD = "agent@example.org", "long enough password"
HOME = {"REMOTE_ADDR": "192.0.2.10"}
ELSEWHERE = {"REMOTE_ADDR": "198.51.100.7"}


def _token(client: Any) -> str:
    page = client.get("/login").get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token on the sign-in page"
    return match.group(1)


def _sign_in(
    client: Any, email: str, password: str, environ: dict[str, str] | None = None, **form: str
) -> Any:
    data = {"email": email, "password": password, "csrf_token": _token(client), **form}
    return client.post("/login", data=data, environ_base=environ or HOME)


@pytest.fixture
def agent(voice_runtime: Runtime) -> Any:
    return add_user(voice_runtime.sessions, EMAIL, PASSWORD, site_code=SITE)


def test_an_unknown_email_costs_as_much_as_a_known_one(
    app: Flask, agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[argon2.Parameters] = []
    verify = argon2.PasswordHasher.verify

    def counted(self: argon2.PasswordHasher, hashed: str, password: str | bytes) -> bool:
        checks.append(argon2.extract_parameters(hashed))
        return verify(self, hashed, password)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", counted)
    client = app.test_client()
    for _ in range(3):
        for email in (EMAIL, "nobody@example.org"):
            assert _sign_in(client, email, "wrong password").status_code == 401
    known, unknown = checks[0::2], checks[1::2]
    assert len(known) == len(unknown) == 3  # one hash check each, account or not
    assert unknown == known  # of the same algorithm and cost


def test_wrong_passwords_from_one_address_never_lock_the_owner_out(app: Flask, agent: Any) -> None:
    guesser = app.test_client()
    for _ in range(PER_ACCOUNT_AND_ADDRESS.amount * 2):
        _sign_in(guesser, EMAIL, "a wrong guess")
    # the guesser's address is held back, even with the right password...
    assert _sign_in(guesser, EMAIL, PASSWORD).status_code == 429
    # ...the owner, elsewhere, is not
    owner = app.test_client()
    response = _sign_in(owner, EMAIL, PASSWORD, ELSEWHERE)
    assert response.status_code == 302 and response.location.endswith("/agent")


def test_a_successful_sign_in_uses_none_of_the_address_allowance(app: Flask, agent: Any) -> None:
    client = app.test_client()
    for _ in range(PER_ACCOUNT_AND_ADDRESS.amount + 1):
        assert _sign_in(client, EMAIL, PASSWORD).status_code == 302
    for _ in range(PER_ACCOUNT_AND_ADDRESS.amount - 1):
        assert _sign_in(client, EMAIL, "a typo").status_code == 401
    assert _sign_in(client, EMAIL, PASSWORD).status_code == 302  # and forgets the typos
    assert _sign_in(client, EMAIL, "a typo").status_code == 401


@pytest.fixture
def strict(voice_runtime: Runtime) -> Iterator[Flask]:
    """The app with 3 failed sign-ins an hour per address."""
    rt = Runtime(
        voice_runtime.settings.with_overrides(limits=RateLimits(enabled=False, login="3/hour")),
        clock=voice_runtime.clock,
        trigger=lambda site: None,
    )
    yield create_app(runtime=rt)
    rt.close()


def test_an_address_guessing_across_accounts_is_throttled(strict: Flask, agent: Any) -> None:
    client = strict.test_client()
    codes = [_sign_in(client, f"guess{n}@example.org", "a guess").status_code for n in range(4)]
    assert codes == [401, 401, 401, 429]  # even with RATE_LIMITS=off
    assert _sign_in(client, EMAIL, PASSWORD).status_code == 429
    assert _sign_in(client, EMAIL, PASSWORD, ELSEWHERE).status_code == 302
    connection = strict.extensions["interphone"].redis
    metrics.recorder_for(connection).flush()
    refused = [
        s.value
        for s in metrics.read(connection)
        if s.name == "interphone_rate_limited_total" and s.labels == {"limit": "sign_in"}
    ]
    assert refused == [2.0]


def test_addresses_of_one_ipv6_network_count_as_one_client(strict: Flask, agent: Any) -> None:
    client = strict.test_client()
    rotating = [{"REMOTE_ADDR": f"2001:db8:1:2::{n + 1:x}"} for n in range(4)]
    codes = [
        _sign_in(client, f"guess{n}@example.org", "x", rotating[n]).status_code for n in range(4)
    ]
    assert codes == [401, 401, 401, 429]
    assert _sign_in(client, EMAIL, PASSWORD, {"REMOTE_ADDR": "2001:db8:1:3::1"}).status_code == 302


def _page_text(response: Any) -> str:
    page = response.get_data(as_text=True)
    return html.unescape(re.sub(r'name="csrf_token" value="[^"]+"', "", page))


def test_a_throttled_sign_in_answers_the_same_page_whether_the_account_exists_or_not(
    strict: Flask, agent: Any
) -> None:
    client = strict.test_client()
    for n in range(3):
        _sign_in(client, f"guess{n}@example.org", "a guess")
    known = _sign_in(client, EMAIL, "a guess")
    unknown = _sign_in(client, "nobody@example.org", "a guess")
    assert known.status_code == unknown.status_code == 429
    assert known.mimetype == "text/html"
    assert _page_text(known) == _page_text(unknown)
    assert "Trop d'essais depuis cette adresse" in _page_text(known)
    client.post("/lang", data={"lang": "en", "csrf_token": _token(client)})
    english = _sign_in(client, EMAIL, "a guess")
    assert english.status_code == 429
    assert "Too many attempts from this address" in _page_text(english)


def test_signing_in_goes_back_to_the_page_asked_for(app: Flask, voice_runtime: Runtime) -> None:
    add_user(voice_runtime.sessions, EMAIL, PASSWORD, site_code=SITE, role="supervisor")
    client = app.test_client()
    asked = client.get("/supervisor/plan")
    assert asked.status_code == 302
    form = client.get(asked.location).get_data(as_text=True)
    # the last "next": the language switch above the form has its own
    target = re.findall(r'name="next" value="([^"]+)"', form)[-1]
    assert target == "/supervisor/plan"
    response = _sign_in(client, EMAIL, PASSWORD, next=target)
    assert response.status_code == 302 and response.location == "/supervisor/plan"
    elsewhere = _sign_in(app.test_client(), EMAIL, PASSWORD, next="/\t/evil.com")
    assert elsewhere.location == "/supervisor"


def _copied_cookie(app: Flask) -> tuple[Any, str]:
    client = app.test_client()
    assert _sign_in(client, EMAIL, PASSWORD).status_code == 302
    cookie = client.get_cookie("session")
    assert cookie is not None
    return client, cookie.value


def _works(app: Flask, cookie: str) -> bool:
    other = app.test_client()
    other.set_cookie("session", cookie)
    return bool(other.get("/agent").status_code == 200)


def test_a_cookie_copied_before_sign_out_no_longer_works(app: Flask, agent: Any) -> None:
    client, copy = _copied_cookie(app)
    assert _works(app, copy)
    page = client.get("/agent").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    assert client.post("/logout", data={"csrf_token": token.group(1)}).status_code == 302
    assert not _works(app, copy)
    _, fresh = _copied_cookie(app)  # signing in again works
    assert _works(app, fresh)


def test_a_cookie_copied_before_a_password_reset_no_longer_works(
    app: Flask, agent: Any, voice_runtime: Runtime
) -> None:
    _, copy = _copied_cookie(app)
    reset_password(voice_runtime.sessions, agent.id, "another long password", actor="admin")
    assert not _works(app, copy)


def test_a_cookie_copied_before_a_deactivation_no_longer_works_after_reactivation(
    app: Flask, agent: Any, voice_runtime: Runtime
) -> None:
    _, copy = _copied_cookie(app)
    deactivate_agent(voice_runtime.sessions, voice_runtime.queue, agent.id, actor="admin")
    assert not _works(app, copy)
    reactivate_agent(voice_runtime.sessions, agent.id, actor="admin")
    assert not _works(app, copy)


def test_with_redis_down_sign_in_still_checks_the_password(
    voice_runtime: Runtime, agent: Any
) -> None:
    """The throttle lets attempts through, as the other limits do; the password still
    decides, and nothing answers a 500."""
    down = redis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    sign_in = SignIn(voice_runtime.sessions, down, secret_key="k" * 32, per_address="1/hour")
    for _ in range(3):
        assert sign_in.attempt(EMAIL, PASSWORD, "192.0.2.1").id == agent.id
        with pytest.raises(WrongCredentials):
            sign_in.attempt(EMAIL, "a wrong guess", "192.0.2.1")
    down.close()


def _sign_out(client: Any) -> None:
    page = client.get("/agent").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    assert client.post("/logout", data={"csrf_token": token.group(1)}).status_code == 302


def test_an_agent_who_signs_out_leaves_the_queue_and_is_offered_nothing_more(
    app: Flask, agent: Any, voice_runtime: Runtime
) -> None:
    rt = voice_runtime
    client = app.test_client()
    _sign_in(client, EMAIL, PASSWORD)
    rt.queue.set_presence(agent.id, "available")
    _sign_out(client)
    assert rt.store.agent(agent.id)["state"] == "offline"
    rt.queue.enqueue_live(SITE, language="fr", call_sid="CA" + "1" * 32)
    assert rt.queue.dispatch(SITE) == []  # nobody left to see an offer


def test_an_agent_who_signs_out_on_a_call_stays_on_it(
    app: Flask, agent: Any, voice_runtime: Runtime
) -> None:
    rt = voice_runtime
    client = app.test_client()
    _sign_in(client, EMAIL, PASSWORD)
    rt.queue.set_presence(agent.id, "available")
    rt.queue.enqueue_live(SITE, language="fr", call_sid="CA" + "2" * 32)
    [offer] = rt.queue.dispatch(SITE)
    rt.queue.accept(agent.id, offer.contact_id)
    _sign_out(client)
    assert rt.store.agent(agent.id)["state"] == "on_call"  # the call ends with its outcome
