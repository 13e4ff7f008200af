"""Supervisor dashboard: roles, live figures, actions, CSV export, staffing advice."""

from __future__ import annotations

import csv
import io
import re

import pytest

from interphone.accounts import add_user
from interphone.devtools.devphone.phone import DevPhone
from interphone.runtime import Runtime

from .conftest import SITE

PASSWORD = "long enough password"


def _token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def _signed_in(app, rt: Runtime, email: str, role: str):
    add_user(rt.sessions, email, PASSWORD, site_code=SITE, role=role, languages=["fr"])
    client = app.test_client()
    token = _token(client.get("/login").get_data(as_text=True))
    client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token})
    return client


@pytest.fixture
def supervisor(app, voice_runtime: Runtime):
    return _signed_in(app, voice_runtime, "chef@example.org", "supervisor")


def _post(client, path: str, **form: str):
    token = _token(client.get("/supervisor").get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, **form})


SUPERVISOR_ROUTES = [
    ("get", "/supervisor"),
    ("get", "/supervisor/panel"),
    ("get", "/supervisor/feed"),
    ("get", "/supervisor/export.csv?from=2027-01-01&to=2027-01-31"),
    ("post", "/supervisor/agents/1/presence"),
    ("post", "/supervisor/contacts/1/priority"),
    ("post", "/supervisor/contacts/1/cancel"),
]


@pytest.mark.parametrize(("method", "path"), SUPERVISOR_ROUTES)
def test_supervisor_routes_refuse_agents_and_anonymous_users(
    app, voice_runtime: Runtime, method: str, path: str
) -> None:
    anonymous = getattr(app.test_client(), method)(path)
    assert anonymous.status_code in (302, 400)  # to /login (or CSRF refusal before it)
    agent = _signed_in(app, voice_runtime, "agent@example.org", "agent")
    token = _token(agent.get("/agent").get_data(as_text=True))
    response = getattr(agent, method)(
        path, data={"csrf_token": token} if method == "post" else None
    )
    assert response.status_code == 403


def test_supervisor_lands_on_the_dashboard_after_sign_in(app, voice_runtime) -> None:
    add_user(
        voice_runtime.sessions, "boss@example.org", PASSWORD, site_code=SITE, role="supervisor"
    )
    client = app.test_client()
    token = _token(client.get("/login").get_data(as_text=True))
    response = client.post(
        "/login", data={"email": "boss@example.org", "password": PASSWORD, "csrf_token": token}
    )
    assert response.location.endswith("/supervisor")


def test_tiles_count_the_day(supervisor, devphone: DevPhone, voice_runtime: Runtime, clock) -> None:
    from datetime import UTC, date, datetime

    from interphone.cases import CaseRecord, ImportReport, import_records

    import_records(
        voice_runtime.sessions,
        [CaseRecord("631", date(1990, 1, 1), "filed", datetime(2026, 1, 1, tzinfo=UTC))],
        voice_runtime.settings.birthdate_key,
        ImportReport(),
    )
    devphone.call("+33611111111").press("1").press("1").press("631#").press("01011990")
    waiting = devphone.call("+33622222222")
    waiting.press("1").press("3")
    devphone.call("+33633333333").press("1").press("3").hang_up()
    clock.advance(125)
    voice_runtime.journal.drain()  # what the sweep does every couple of seconds
    html = supervisor.get("/supervisor/panel").get_data(as_text=True)

    def tile(name: str) -> str:
        return re.search(rf'id="tile-{name}">.*?<strong>(.*?)</strong>', html, re.S).group(1)

    assert tile("waiting") == "1" and tile("longest") == "2 min"
    assert tile("arrivals") == "2" and tile("abandoned") == "1" and tile("self") == "1"


def test_supervisor_pauses_an_agent_and_cancels_a_contact_with_a_reason(
    supervisor, voice_runtime: Runtime
) -> None:
    agent = add_user(voice_runtime.sessions, "a@example.org", PASSWORD, site_code=SITE)
    voice_runtime.queue.set_presence(agent.id, "available")
    _post(supervisor, f"/supervisor/agents/{agent.id}/presence", state="paused")
    assert voice_runtime.store.agent(agent.id)["state"] == "paused"
    contact = voice_runtime.queue.enqueue_live(SITE, language="fr").contact_id
    _post(supervisor, f"/supervisor/contacts/{contact}/priority", urgent="1")
    assert voice_runtime.store.contact(contact)["cls"] == "0"
    _post(supervisor, f"/supervisor/contacts/{contact}/cancel", reason="")
    assert voice_runtime.queue.ticket(contact).state == "waiting"  # a reason is required
    _post(supervisor, f"/supervisor/contacts/{contact}/cancel", reason="doublon")
    assert voice_runtime.queue.ticket(contact).state == "cancelled"


def test_csv_export_parses_masks_numbers_and_defuses_formulas(
    supervisor, voice_runtime: Runtime
) -> None:
    from datetime import datetime

    contact = voice_runtime.queue.request_callback(SITE, phone="+33612345678", language="ar")
    voice_runtime.queue.cancel(contact.contact_id, '=HYPERLINK("x")')
    today = datetime.fromtimestamp(voice_runtime.clock.now()).date().isoformat()
    response = supervisor.get(f"/supervisor/export.csv?from={today}&to={today}")
    assert response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [r["id"] for r in rows] == [str(contact.contact_id)]
    assert rows[0]["phone"].endswith("78") and "612345678" not in response.get_data(as_text=True)
    assert rows[0]["outcome"].startswith("'=")
    events = supervisor.get(f"/supervisor/export.csv?from={today}&to={today}&what=events")
    kinds = [r["kind"] for r in csv.DictReader(io.StringIO(events.get_data(as_text=True)))]
    assert kinds[:2] == ["contact.created", "contact.cancelled"]


@pytest.mark.parametrize(
    "query",
    [
        "from=x&to=2027-01-01",
        "from=2027-02-01&to=2027-01-01",
        "from=2020-01-01&to=2027-01-01",
        "what=secrets&from=2027-01-01&to=2027-01-02",
    ],
)
def test_bad_export_ranges_get_a_clear_400(supervisor, query: str) -> None:
    assert supervisor.get(f"/supervisor/export.csv?{query}").status_code == 400


def test_staffing_advice_follows_erlang_c(supervisor, voice_runtime: Runtime) -> None:
    from interphone.queue.estimate import agents_needed

    for n in range(30):
        voice_runtime.queue.enqueue_live(SITE, language="fr", phone=f"+336{n:08d}")
    html = supervisor.get("/supervisor/panel").get_data(as_text=True)
    rows = re.findall(r"<tr><td>(\d\d:\d\d)</td><td>([\d.]+)</td><td>(\d+)</td>", html)
    assert len(rows) == 3
    rate = float(rows[0][1])
    expected = agents_needed(rate * 300 / 3600, 300, 0.8, 20)
    assert int(rows[0][2]) == expected and expected > 0


def test_supervisor_reassigns_a_waiting_caller_to_a_chosen_agent(
    supervisor, voice_runtime: Runtime
) -> None:
    agent = add_user(voice_runtime.sessions, "ar@example.org", PASSWORD, site_code=SITE)
    voice_runtime.queue.set_presence(agent.id, "available")
    contact = voice_runtime.queue.enqueue_live(SITE, language="ar").contact_id
    html = supervisor.get("/supervisor/panel").get_data(as_text=True)
    assert f'for="to-{contact}"' in html  # the free agent is offered in the row's menu
    _post(supervisor, f"/supervisor/contacts/{contact}/reassign", agent_id="x")
    assert voice_runtime.queue.ticket(contact).state == "waiting"  # no agent: nothing done
    response = _post(supervisor, f"/supervisor/contacts/{contact}/reassign", agent_id=str(agent.id))
    assert response.status_code == 302
    assert voice_runtime.store.agent(agent.id)["state"] == "offered"
    again = _post(supervisor, f"/supervisor/contacts/{contact}/reassign", agent_id=str(agent.id))
    assert again.status_code == 302  # a second click: a clear message, not a 500
    flashed = supervisor.get("/supervisor").get_data(as_text=True)
    assert "n&#39;attend plus" in flashed


def test_hourly_chart_counts_arrivals_answers_abandons_and_waits(
    supervisor, devphone: DevPhone, voice_runtime: Runtime, clock
) -> None:
    rt = voice_runtime
    agent = add_user(rt.sessions, "a@example.org", PASSWORD, site_code=SITE)
    answered = rt.queue.enqueue_live(SITE, language="fr").contact_id
    rt.queue.enqueue_live(SITE, language="fr")
    gone = rt.queue.enqueue_live(SITE, language="fr").contact_id
    clock.advance(42)
    rt.queue.abandon(gone)
    rt.queue.set_presence(agent.id, "available")
    [offer] = rt.queue.dispatch(SITE)
    rt.queue.accept(agent.id, offer.contact_id)
    assert offer.contact_id == answered
    html = supervisor.get("/supervisor/panel").get_data(as_text=True)
    table = re.search(r'<table id="hours-table">(.*?)</table>', html, re.S).group(1)
    local_hour = 9  # the test clock: 08:00 UTC, 09:00 in Paris
    row = re.search(rf"<th scope=\"row\">{local_hour:02d} h</th>(.*?)</tr>", table, re.S).group(1)
    cells = re.findall(r"<td>(.*?)</td>", row)
    assert cells == ["3", "1", "1", "42 s", "42 s"]
    assert "<svg" in html and f"{local_hour:02d} h : 3 arrivées" in html
