"""The supervisor's planning screen: a form, a bounded simulation on a private Redis
server and database, and the same figures as ``interphone simulate day``."""

from __future__ import annotations

import re
from typing import Any

import pytest

from interphone.accounts import add_user
from interphone.models import Contact, Event
from interphone.runtime import Runtime

from .conftest import SITE

PASSWORD = "long enough password"
SMALL = {
    "arrivals_per_hour": "40",
    "hours": "0.5",
    "agents": "2",
    "aht": "180",
    "patience": "inf",
    "self_service": "0.3",
    "callback_share": "0.25",
}


def _token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match is not None
    return match.group(1)


def _signed_in(app: Any, rt: Runtime, role: str) -> Any:
    email = f"{role}@example.org"
    add_user(rt.sessions, email, PASSWORD, site_code=SITE, role=role)
    client = app.test_client()
    token = _token(client.get("/login").get_data(as_text=True))
    client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token})
    return client


@pytest.fixture
def supervisor(app: Any, voice_runtime: Runtime) -> Any:
    return _signed_in(app, voice_runtime, "supervisor")


def _post(client: Any, **form: str) -> Any:
    token = _token(client.get("/supervisor/plan").get_data(as_text=True))
    return client.post("/supervisor/plan", data={"csrf_token": token, **form})


def test_an_agent_may_not_plan_a_day(app: Any, voice_runtime: Runtime) -> None:
    agent = _signed_in(app, voice_runtime, "agent")
    assert agent.get("/supervisor/plan").status_code == 403
    token = _token(agent.get("/agent").get_data(as_text=True))
    response = agent.post("/supervisor/plan", data={"csrf_token": token, **SMALL})
    assert response.status_code == 403


def test_the_plan_form_names_every_control_and_carries_a_csrf_token(supervisor: Any) -> None:
    page = supervisor.get("/supervisor/plan").get_data(as_text=True)
    inputs = re.findall(r'<input id="([^"]+)" name="([^"]+)"', page)
    assert {name for _, name in inputs} == set(SMALL)
    for control_id, _ in inputs:
        assert f'<label for="{control_id}">' in page
    assert 'name="csrf_token"' in page
    assert "Appels et sonneries par heure" in page  # French by default


def test_a_planned_day_shows_the_figures_and_leaves_the_live_queue_alone(
    supervisor: Any, voice_runtime: Runtime
) -> None:
    live = voice_runtime.redis
    keys_before = set(live.keys("*"))
    feed = live.pubsub()
    feed.psubscribe("ip:feed:*")  # what the agents' screens listen to
    feed.get_message(timeout=1)  # the subscription's confirmation
    response = _post(supervisor, **SMALL)
    page = response.get_data(as_text=True)
    assert response.status_code == 200, page[:500]
    assert 'id="plan-result"' in page
    for tile in ("plan-arrivals", "plan-sl", "plan-asa", "plan-occupancy", "plan-callbacks"):
        assert f'id="{tile}"' in page
    assert re.search(r'id="plan-checks">[^<]*<strong>0 / 0</strong>', page)
    flat = re.sub(r"\s+", " ", page)
    assert re.search(r'<th scope="row">09:00</th> ?<td>2</td>', flat)
    # nothing of the simulated day reached the live queue: records, Redis, screens
    with voice_runtime.sessions() as s:
        assert s.query(Contact).count() == 0
        assert s.query(Event).filter(Event.contact_id.is_not(None)).count() == 0
    new_keys = set(live.keys("*")) - keys_before
    assert not [k for k in new_keys if k.startswith((b"ip:contact", b"ip:site", b"ip:agent"))]
    assert feed.get_message(timeout=0.2) is None
    feed.close()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("agents", "0"),
        ("agents", "2.5"),
        ("patience", "soon"),
        ("self_service", "2"),
        ("hours", ""),
    ],
)
def test_bad_plan_values_are_refused_with_a_message_next_to_the_field(
    supervisor: Any, field: str, value: str
) -> None:
    response = _post(supervisor, **{**SMALL, field: value})
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert f'id="plan-{field}-error"' in page
    assert 'aria-invalid="true"' in page
    assert 'id="plan-result"' not in page


def test_a_day_too_big_for_the_screen_points_to_the_command_line(supervisor: Any) -> None:
    response = _post(supervisor, **{**SMALL, "arrivals_per_hour": "400", "hours": "10"})
    assert response.status_code == 400
    assert "interphone simulate day" in response.get_data(as_text=True)
