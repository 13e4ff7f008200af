"""Rate limits on the real Redis: per IP (forged webhooks, failed sign-ins, the API) and
per calling number (calls, IVR turns, SMS), where the caller hears a polite sentence and
never a 429 (Twilio would play an error)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from interphone import metrics
from interphone.accounts import add_user
from interphone.config import ConfigError, RateLimits, load_settings
from interphone.devtools.devphone.phone import DevPhone, wsgi_transport
from interphone.models import Contact
from interphone.privacy import WITHHELD_PLACEHOLDERS, is_withheld
from interphone.runtime import Runtime
from interphone.web import create_app

from .conftest import SITE

CALLER = "+33612345678"
LIMITS = RateLimits(
    enabled=True,
    login="2/hour",
    api="3/hour",
    webhooks="3/hour",
    caller_calls="2/hour",
    caller_turns="4/hour",
    caller_sms="1/hour",
    withheld_calls="3/hour",
)
OTHER_IP = {"REMOTE_ADDR": "198.51.100.7"}


@pytest.fixture
def limited(voice_runtime: Runtime) -> Iterator[tuple[Any, DevPhone, Runtime]]:
    rt = Runtime(
        voice_runtime.settings.with_overrides(limits=LIMITS, api_tokens=("t" * 40,)),
        clock=voice_runtime.clock,
        trigger=lambda site: None,
        inline_jobs=True,
    )
    app = create_app(runtime=rt)
    settings = rt.settings
    phone = DevPhone(
        wsgi_transport(app),
        public_base_url=settings.public_base_url,
        auth_token=settings.twilio_auth_token or "",
        account_sid=settings.twilio_account_sid or "",
        connection=rt.redis,
    )
    yield app, phone, rt
    rt.close()


def _contacts(rt: Runtime) -> int:
    with rt.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(Contact)) or 0)


def _form(sid: str = "CA" + "1" * 32, caller: str = CALLER) -> dict[str, str]:
    return {"CallSid": sid, "From": caller, "To": "+33473000000", "CallStatus": "ringing"}


def test_an_address_forging_signatures_is_cut_off_but_twilio_never_is(limited) -> None:
    app, phone, _ = limited
    client = app.test_client()
    codes = [
        client.post("/voice/incoming", data=_form(), environ_base=OTHER_IP).status_code
        for _ in range(5)
    ]
    assert codes == [403, 403, 403, 429, 429]
    # signed requests (the dev phone, from its own address) are never counted
    for n in range(8):
        call = phone.call(f"+3361000{n:04d}")
        assert call.heard, "a signed call was refused"


def test_an_address_cut_off_for_forging_still_gets_signed_requests_through(limited) -> None:
    """Only a valid signature proves Twilio: such a request skips the per-IP check (no
    Redis round trip for Twilio's traffic), whatever else came from that address."""
    app, phone, _ = limited
    client = app.test_client()
    for _ in range(3):
        assert client.post("/voice/incoming", data=_form()).status_code == 403
    assert client.post("/voice/incoming", data=_form()).status_code == 429
    form = _form()
    signed = {"X-Twilio-Signature": phone.signature("/voice/incoming", form)}
    assert client.post("/voice/incoming", data=form, headers=signed).status_code == 200


def test_a_number_calling_too_often_hears_a_polite_goodbye_and_nothing_is_recorded(
    limited,
) -> None:
    app, phone, rt = limited
    for _ in range(2):
        assert "Bonjour" in phone.call(CALLER).transcript()
    third = phone.call(CALLER)
    assert "trop d'appels de ce numéro" in third.transcript()
    assert third.status == "completed"
    root = ET.fromstring(third.documents[-1])
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert rt.calls.load(third.sid) is None  # no call state: the IVR never ran
    assert "Bonjour" in phone.call("+33699999999").transcript()  # others still get in


def test_too_many_turns_end_the_call_politely_in_the_callers_language(limited) -> None:
    app, phone, rt = limited
    call = phone.call(CALLER).press("2")  # English (turn 1)
    call.press("9").press("9").press("9")  # repeat the menu (turns 2-4)
    assert "too many calls from this number" not in call.transcript()
    call.press("9")
    assert call.last_said().startswith("We have received too many calls from this number")
    assert _contacts(rt) == 0


def test_the_door_is_not_limited_by_number(limited) -> None:
    app, phone, rt = limited
    for caller in ["client:borne-1"] * 4:
        call = phone.call(caller)
        assert "trop d'appels" not in call.transcript(), caller


def test_withheld_placeholders_are_withheld(limited) -> None:
    """Twilio's placeholders (ANONYMOUS, RESTRICTED... spelt on a keypad), its words and
    an empty or non-numeric From name nobody: one shared allowance, and the IVR asks
    for a number to call back."""
    app, phone, rt = limited
    withheld = [*WITHHELD_PLACEHOLDERS, "anonymous", "Restricted", "", "  ", "abc", "+12"]
    for raw in withheld:
        assert is_withheld(raw), raw
        take = rt.caller_limits.take("caller_calls", raw)
        assert take is not None and take.label == "withheld_calls", raw
        assert take.keys == rt.caller_limits.take("caller_calls", "anonymous").keys, raw
    for raw in (CALLER, "client:borne-1", "sip:porte@example.org"):
        assert not is_withheld(raw), raw
    assert rt.caller_limits.take("caller_calls", "client:borne-1") is None
    call = phone.call("+266696687").press("1").press("2")  # français, rappel
    assert call.waiting_for == "/voice/step/callback_number"


def test_withheld_callers_share_one_budget(limited) -> None:
    app, phone, rt = limited
    for caller in ("anonymous", "+266696687", "+7378742833"):  # withheld_calls: 3/hour
        assert "Bonjour" in phone.call(caller).transcript(), caller
    fourth = phone.call("+8656696")
    assert "trop d'appels" in fourth.transcript()
    assert "Bonjour" in phone.call(CALLER).transcript()  # a number has its own
    metrics.recorder_for(rt.redis).flush()
    limited_calls = [
        s.value
        for s in metrics.read(rt.redis)
        if s.name == "interphone_rate_limited_total" and s.labels == {"limit": "withheld_calls"}
    ]
    assert limited_calls == [1.0]


def test_a_forged_request_does_not_use_up_a_real_callers_allowance(limited) -> None:
    app, phone, _ = limited
    client = app.test_client()
    for n in range(3):
        form = _form(sid="CA" + f"{n}" * 32)
        headers = {"X-Twilio-Signature": "forged"}
        response = client.post("/voice/incoming", data=form, headers=headers, environ_base=OTHER_IP)
        assert response.status_code == 403
    for _ in range(2):  # the whole allowance of the number is still there
        assert "Bonjour" in phone.call(CALLER).transcript()


def test_sms_over_the_limit_get_no_answer_rather_than_an_error(limited) -> None:
    app, phone, _ = limited
    client = app.test_client()

    def sms(n: int) -> Any:
        form = {"MessageSid": "SM" + f"{n}" * 32, "From": CALLER, "Body": "STATUT"}
        headers = {"X-Twilio-Signature": phone.signature("/sms/incoming", form)}
        return client.post("/sms/incoming", data=form, headers=headers)

    first, second = sms(1), sms(2)
    assert first.status_code == 200 and "<Message>" in first.get_data(as_text=True)
    assert second.status_code == 200
    assert ET.fromstring(second.get_data(as_text=True)).findall("Message") == []


def test_no_redis_key_holds_a_calling_number(limited) -> None:
    app, phone, rt = limited
    phone.call(CALLER).press("2")
    keys = [k.decode() for k in rt.redis.keys("ip:limit*")]
    assert keys and not any("612345678" in key for key in keys)


def test_failed_sign_ins_are_limited_per_address_successful_ones_are_not(limited) -> None:
    app, _, rt = limited
    add_user(rt.sessions, "a@example.org", "a-long-password", site_code=SITE)

    def sign_in(password: str, environ: dict[str, str] | None = None) -> int:
        client = app.test_client()
        page = client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        form = {"email": "a@example.org", "password": password, "csrf_token": token}
        return client.post("/login", data=form, environ_base=environ or {}).status_code

    assert [sign_in("a-long-password") for _ in range(4)] == [302] * 4
    assert [sign_in("wrong") for _ in range(3)] == [401, 401, 429]
    assert sign_in("a-long-password", OTHER_IP) == 302


def test_api_requests_are_limited_per_address_with_a_json_429(limited) -> None:
    app, _, _ = limited
    client = app.test_client()
    headers = {"Authorization": "Bearer " + "t" * 40}
    codes = [
        client.put("/api/cases/1", json={"x": 1}, headers=headers).status_code for _ in range(4)
    ]
    assert codes == [400, 400, 400, 429]
    last = client.put("/api/cases/1", json={}, headers=headers)
    assert last.json["error_id"] == "too-many-requests"


def test_flask_limiter_hooks_run_for_the_limited_blueprints_only(limited) -> None:
    """Its hooks would cost every webhook CPU for nothing (webhooks are limited in the
    signature check): they run on the blueprint that has limits, the API's,
    where the test above shows they still apply (sign-in has its own throttle)."""
    app, _, _ = limited
    limiter = next(e for e in app.extensions["limiter"])
    registries = (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs)

    def held(hooks: list[Any]) -> int:
        return sum(
            getattr(h, "__self__", None) is limiter or limiter in getattr(h, "args", ())
            for h in hooks
        )

    assert [held(r.get(None, [])) for r in registries] == [0, 0, 0]
    assert [held(r.get("api", [])) for r in registries] == [1, 1, 1]
    assert "voice" not in app.before_request_funcs or not held(app.before_request_funcs["voice"])


def test_rate_limits_are_on_outside_tests_and_strictly_parsed() -> None:
    assert load_settings({}).limits.enabled
    assert not load_settings({"INTERPHONE_ENV": "test"}).limits.enabled
    assert load_settings({"RATE_LIMIT_API": "5/second"}).limits.api == "5/second"
    with pytest.raises(ConfigError, match="RATE_LIMIT_CALLER_TURNS"):
        load_settings({"RATE_LIMIT_CALLER_TURNS": "lots"})


def test_behind_a_trusted_proxy_each_client_address_is_limited_on_its_own(
    voice_runtime: Runtime,
) -> None:
    rt = Runtime(
        voice_runtime.settings.with_overrides(limits=LIMITS, trusted_proxies=1),
        clock=voice_runtime.clock,
    )
    try:
        client = create_app(runtime=rt).test_client()

        def forged(client_ip: str) -> int:
            headers = {"X-Forwarded-For": client_ip}
            return client.post("/voice/incoming", data=_form(), headers=headers).status_code

        assert [forged("203.0.113.1") for _ in range(4)] == [403, 403, 403, 429]
        assert forged("203.0.113.2") == 403  # another client behind the same proxy
        # and /metrics, reached through the proxy, is not served without a token
        assert client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 403
    finally:
        rt.close()


def test_a_webhook_twilio_retries_is_not_counted_twice_against_the_caller(limited) -> None:
    """The allowance is counted inside the turn's own script, after its stored answer:
    a retried key press (same CallSid, same step) is answered again, not counted."""
    app, phone, rt = limited
    call = phone.call(CALLER).press("2")  # turn 1 of 4
    client = app.test_client()
    form = {**_form(sid=call.sid), "Digits": "9"}
    path = call.waiting_for + "?n=2"
    headers = {"X-Twilio-Signature": phone.signature(path, form)}
    answers = {
        client.post(path, data=form, headers=headers).get_data(as_text=True) for _ in range(6)
    }
    assert len(answers) == 1 and "too many calls" not in answers.pop()  # turn 2, six times
    call.press("9").press("9")  # turns 3 and 4: still within the allowance
    assert "too many calls from this number" not in call.transcript()


def test_the_callers_allowance_comes_back_as_the_window_slides(limited) -> None:
    app, phone, rt = limited
    for _ in range(2):
        assert "Bonjour" in phone.call(CALLER).transcript()
    assert "trop d'appels" in phone.call(CALLER).transcript()
    rt.clock.advance(30 * 60)  # half an hour: both calls still count (about one by now)
    assert "trop d'appels" in phone.call(CALLER).transcript()
    rt.clock.advance(2 * 3600)
    assert "Bonjour" in phone.call(CALLER).transcript()


def test_lookups_are_limited_even_with_rate_limits_off(voice_runtime: Runtime) -> None:
    """Guessing birth dates is not a load problem: RATE_LIMITS=off keeps that limit."""
    rt = voice_runtime
    assert not rt.settings.limits.enabled
    limits = rt.caller_limits
    assert limits.take("caller_turns", CALLER) is None
    allowed = [limits.allow("caller_lookups", CALLER) for _ in range(12)]
    assert allowed == [True] * 10 + [False] * 2
    # withheld callers share one allowance of lookups, however many calls they make
    sids = ["CA" + f"{n:032d}" for n in range(31)]
    allowed = [limits.allow("caller_lookups", "anonymous", sid) for sid in sids]
    assert allowed == [True] * 30 + [False]
    # the door's lookups are counted per call: a guesser has to stand at the door
    assert limits.allow("caller_lookups", "client:borne-1", sids[0])
