"""The IVR webhook's hot path kept cheap without changing what Twilio sees: the
signature check, the action URLs, and no cookie session on Twilio's routes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import request
from flask.globals import request_ctx
from flask.sessions import NullSession
from twilio.request_validator import RequestValidator

from interphone.runtime import Runtime

SID = "CA" + "2" * 32


def _form(**extra: str) -> dict[str, str]:
    return {
        "CallSid": SID,
        "From": "+33612345678",
        "To": "+33473000000",
        "CallStatus": "ringing",
        "AccountSid": "AC" + "0" * 32,
        **extra,
    }


def _signed(rt: Runtime, url: str, form: dict[str, str]) -> dict[str, str]:
    token = rt.settings.twilio_auth_token or ""
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(url, form)}


def test_signature_over_the_url_without_its_port_is_still_accepted(
    app: Any, voice_runtime: Runtime
) -> None:
    # Twilio signs with or without the port (twilio's validator accepts both)
    base = voice_runtime.settings.public_base_url  # http://127.0.0.1:5000
    parts = urlsplit(base)
    assert parts.port is not None
    without_port = f"{parts.scheme}://{parts.hostname}/voice/incoming"
    form = _form()
    response = app.test_client().post(
        "/voice/incoming", data=form, headers=_signed(voice_runtime, without_port, form)
    )
    assert response.status_code == 200
    forged = _signed(voice_runtime, without_port + "?x=1", form)
    refused = app.test_client().post("/voice/incoming", data=form, headers=forged)
    assert refused.status_code == 403


def test_action_urls_follow_the_mount_point_and_reach_the_step_routes(
    app: Any, voice_runtime: Runtime
) -> None:
    # behind a prefix (SCRIPT_NAME), the action URLs carry it, as url_for's would
    form = _form()
    url = voice_runtime.settings.public_base_url + "/ivr/voice/incoming"
    response = app.test_client().post(
        "/voice/incoming",
        data=form,
        headers=_signed(voice_runtime, url, form),
        environ_overrides={"SCRIPT_NAME": "/ivr", "RAW_URI": "/ivr/voice/incoming"},
    )
    assert response.status_code == 200
    actions = [
        el.get("action", "") for el in ET.fromstring(response.data).iter() if el.get("action")
    ]
    assert actions
    adapter = app.url_map.bind("localhost", script_name="/ivr")
    with app.test_request_context("/", environ_overrides={"SCRIPT_NAME": "/ivr"}):
        from flask import url_for

        for action in actions:
            path, _, query = action.partition("?")
            assert path.startswith("/ivr/voice/")
            endpoint, values = adapter.match(path.removeprefix("/ivr"), method="POST")
            n = query.removeprefix("n=")
            assert url_for(endpoint, **values, n=int(n)) == action


def test_webhooks_open_no_cookie_session_and_screens_still_do(
    app: Any, voice_runtime: Runtime
) -> None:
    null_sessions: dict[str, bool] = {}

    def note(response: Any) -> Any:
        null_sessions[request.path] = isinstance(request_ctx.session, NullSession)
        return response

    app.after_request(note)

    form = _form()
    url = voice_runtime.settings.public_base_url + "/voice/incoming"
    client = app.test_client()
    client.set_cookie("session", "not-a-valid-session")
    response = client.post("/voice/incoming", data=form, headers=_signed(voice_runtime, url, form))
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    page = app.test_client().get("/login")  # the people's screens keep their sessions
    assert page.status_code == 200 and "session=" in page.headers.get("Set-Cookie", "")
    assert null_sessions == {"/voice/incoming": True, "/login": False}


def test_the_sites_are_read_again_behind_the_webhooks_not_on_their_path(
    voice_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sites are read again every few seconds by a thread of the process, never on
    a caller's webhook (its tail latency): webhooks go on with the last read."""
    from interphone.models import Site
    from interphone.voice import directory as directory_module

    monkeypatch.setattr(directory_module, "REFRESH_S", 0.05)
    directory = voice_runtime.ivr.directory
    before = directory.sites()
    site = next(iter(before.values()))
    reads: list[str] = []
    read = directory.read

    def counted() -> None:
        reads.append(threading.current_thread().name)
        read()

    monkeypatch.setattr(directory, "read", counted)
    with voice_runtime.sessions() as s, s.begin():
        s.get(Site, site.id).languages = ["es", "fr"]
    deadline = time.monotonic() + 10
    while directory.sites()[site.code].languages != ["es", "fr"] and time.monotonic() < deadline:
        threading.Event().wait(0.02)
    assert directory.sites()[site.code].languages == ["es", "fr"]
    assert reads and set(reads) == {"sites"}  # never on the webhook's own thread


def test_a_case_lookup_survives_its_pooled_connection_dying(voice_runtime: Runtime) -> None:
    """The webhooks' reads skip the pre-ping round trip: a connection the server closed
    meanwhile (a PostgreSQL restart) is replaced and the read tried again, unseen."""
    from sqlalchemy import text

    from interphone import db
    from interphone.cases import CaseRecord, ImportReport, import_records
    from interphone.voice.lookup import CASE_BY_FILE

    rt = voice_runtime
    born = date(1990, 4, 12)
    record = CaseRecord("7100000001", born, "ready", datetime(2026, 1, 1, tzinfo=UTC))
    import_records(rt.sessions, [record], rt.settings.birthdate_key, ImportReport())
    engine = rt.read_engine
    assert db.read_once(engine, CASE_BY_FILE, {"file_number": "7100000001"}) is not None
    if engine.dialect.name == "postgresql":
        assert not engine.pool._pre_ping  # the round trip saved
        with engine.connect() as c:  # no BEGIN, no ROLLBACK, no isolation level to reset
            assert c.connection.dbapi_connection.autocommit  # type: ignore[union-attr]
        with engine.connect() as c:  # the pooled connection, killed by the server
            pid = c.execute(text("select pg_backend_pid()")).scalar_one()
        with rt.engine.connect() as admin:
            admin.execute(text("select pg_terminate_backend(:pid)"), {"pid": pid})
    else:  # SQLite: no server to lose; the connection is closed under the pool instead
        with engine.connect() as c:
            c.connection.dbapi_connection.close()  # type: ignore[union-attr]
    row = db.read_once(engine, CASE_BY_FILE, {"file_number": "7100000001"})
    assert row is not None and row[1] == "ready"


def test_a_turn_writes_back_only_what_it_changed_and_forgets_dropped_extras(
    voice_runtime: Runtime,
) -> None:
    from interphone.voice.session import CallState, CallStore

    store = CallStore(voice_runtime.redis)
    sid = "CA" + "5" * 32
    first = store.begin(sid, "0")
    state = CallState(sid=sid, site="x", caller="+33612345678", lang="fr", seq=1)
    state.extra.update(pending="12345", path="greeting")
    store.finish(first, "<Response/>", state)
    turn = store.begin(sid, "1")
    assert turn.state is not None and turn.state.extra == {"pending": "12345", "path": "greeting"}
    turn.state.lang, turn.state.seq = "en", 2
    turn.state.extra.pop("pending")
    store.finish(turn, "<Response/>", turn.state)
    stored = store.load(sid)
    assert stored is not None
    assert (stored.lang, stored.seq, stored.caller, stored.site) == ("en", 2, "+33612345678", "x")
    assert stored.extra == {"path": "greeting"}  # the dropped extra no longer comes back
    assert voice_runtime.redis.ttl(f"ip:call:{sid}") > 0


def test_the_web_entry_point_freezes_the_app_out_of_the_garbage_collectors_walks(
    redis_url: str, database_url: str, tmp_path: Any
) -> None:
    """Full collections walking the whole app stop a web process for tens to hundreds of
    milliseconds under load (docs/performance.md): the Procfile's entry point freezes
    what it built."""
    env = {
        **os.environ,
        "INTERPHONE_ENV": "test",
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "SECRET_KEY": "test-secret-key-0123456789abcdef0123",
        "INTERPHONE_INSTANCE": str(tmp_path / "instance"),
    }
    probe = (
        "import gc, interphone.web.wsgi as w; "
        "print(type(w.app).__name__, gc.get_freeze_count() > 100_000)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["Flask", "True"]
    procfile = (Path(__file__).resolve().parents[1] / "Procfile").read_text()
    assert '"interphone.web.wsgi:app"' in procfile.splitlines()[0]


def test_gunicorn_heartbeats_go_to_memory_not_to_a_disk_inode() -> None:
    """Each gunicorn worker touches its heartbeat file on every loop, hundreds of times a
    second under load: in /tmp on the disk, each touch dirtied an inode for the journal
    and writeback to flush. The Procfile's gunicorn lines keep it in /dev/shm."""
    procfile = (Path(__file__).resolve().parents[1] / "Procfile").read_text()
    lines = [line for line in procfile.splitlines() if " gunicorn " in f" {line} "]
    assert len(lines) == 2  # web and stream
    for line in lines:
        assert "--worker-tmp-dir /dev/shm" in line, line


def test_unicode_digits_such_as_superscripts_get_an_answer_not_a_server_error(
    app: Any, voice_runtime: Runtime
) -> None:
    """``"²".isdigit()`` is true and ``int("²")`` fails: an unsigned request with
    ``?c=²`` must get an answer, not a 500 from the request logger."""
    client = app.test_client()
    base = voice_runtime.settings.public_base_url
    assert client.post("/sms/incoming?c=%C2%B2", data=_form()).status_code == 403
    incoming = _form()
    response = client.post(
        "/voice/incoming",
        data=incoming,
        headers=_signed(voice_runtime, base + "/voice/incoming", incoming),
    )
    assert response.status_code == 200
    for path, digits in (
        ("/voice/step/language?n=1", "²"),
        ("/voice/step/status_birth?n=2", "²" * 8),
    ):
        form = _form(Digits=digits)
        answer = client.post(path, data=form, headers=_signed(voice_runtime, base + path, form))
        assert answer.status_code == 200, (path, answer.data[:300])
    ended = _form(CallStatus="completed", CallDuration="²")
    status = client.post(
        "/voice/status", data=ended, headers=_signed(voice_runtime, base + "/voice/status", ended)
    )
    assert status.status_code == 204


def _kill_pooled_connection(rt: Runtime) -> None:
    """The autocommit pool's connection dies under it (a PostgreSQL restart)."""
    from sqlalchemy import text

    engine = rt.read_engine
    if engine.dialect.name == "postgresql":
        with engine.connect() as c:
            pid = c.execute(text("select pg_backend_pid()")).scalar_one()
        with rt.engine.connect() as admin:
            admin.execute(text("select pg_terminate_backend(:pid)"), {"pid": pid})
    else:  # SQLite: no server to lose; the connection is closed under the pool instead
        with engine.connect() as c:
            c.connection.dbapi_connection.close()  # type: ignore[union-attr]


def _version(rt: Runtime, contact_id: int) -> tuple[int, int]:
    """(the row's version, the contact's version in Redis)"""
    from interphone.models import Contact

    with rt.sessions() as s:
        row = s.get(Contact, contact_id)
        assert row is not None
        return row.version, int(rt.store.contact(contact_id)["v"])


def test_a_new_contact_commits_once_and_records_its_redis_version_without_a_second_transaction(
    voice_runtime: Runtime,
) -> None:
    from sqlalchemy import event

    from .conftest import SITE

    rt = voice_runtime
    commits: list[object] = []
    listener = lambda connection: commits.append(connection)  # noqa: E731
    event.listen(rt.engine, "commit", listener)
    try:
        ticket = rt.queue.request_callback(SITE, phone="+33612345601", language="fr")
    finally:
        event.remove(rt.engine, "commit", listener)
    assert ticket.created
    row_version, redis_version = _version(rt, ticket.contact_id)
    assert row_version == redis_version >= 1  # not 0: the sweep would think it lost
    if rt.read_engine is not rt.engine:  # PostgreSQL: the version is one statement, apart
        assert len(commits) == 1


def test_a_new_contacts_version_is_recorded_though_its_pooled_connection_died(
    voice_runtime: Runtime,
) -> None:
    from .conftest import SITE

    rt = voice_runtime
    rt.queue.request_callback(SITE, phone="+33612345602", language="fr")  # pools warm
    _kill_pooled_connection(rt)
    ticket = rt.queue.request_callback(SITE, phone="+33612345603", language="fr")
    row_version, redis_version = _version(rt, ticket.contact_id)
    assert row_version == redis_version >= 1


def test_an_intake_reads_the_site_id_and_the_permit_date_without_loading_whole_rows(
    voice_runtime: Runtime,
) -> None:
    """A whole Site decodes six JSON columns and a whole Case eight columns, on every
    callback request and every caller joining the queue; the intake needs one value of
    each. The urgent class still comes from the case's permit date."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import event

    from interphone.models import Case, Contact, Site

    from .conftest import SITE

    rt = voice_runtime
    today = datetime.fromtimestamp(rt.clock.now(), UTC)  # the runtime's clock, not the wall's
    with rt.sessions() as s, s.begin():
        s.add(
            Case(
                file_number="HOTPATH1",
                birth_date_hash="x" * 64,
                status="received",
                status_changed_at=today,
                api_valid_until=(today + timedelta(days=3)).date(),
            )
        )
    loaded: list[object] = []
    listener = lambda target, _context: loaded.append(target)  # noqa: E731
    event.listen(Site, "load", listener)
    event.listen(Case, "load", listener)
    try:
        live = rt.queue.enqueue_live(
            SITE, language="fr", file_number="HOTPATH1", file_verified=True
        )
        callback = rt.queue.request_callback(SITE, phone="+33612345604", language="fr")
    finally:
        event.remove(Site, "load", listener)
        event.remove(Case, "load", listener)
    assert live.created and callback.created
    assert loaded == []
    with rt.sessions() as s:
        assert s.get(Contact, live.contact_id).priority_class == 0  # urgent: permit in 3 days
        assert s.get(Contact, callback.contact_id).priority_class == 1


def test_a_caller_hanging_up_on_hold_is_released_on_one_read_without_loading_the_contact(
    voice_runtime: Runtime,
) -> None:
    """Twilio's status callback of a caller gone from the queue: the contact's state and
    site are read in one statement, not as a whole row, and the event still names its
    site. Released twice (a retried callback), it is done once."""
    from sqlalchemy import event, select

    from interphone.models import Contact, Event, Site

    from .conftest import SITE

    rt = voice_runtime
    contact_id = rt.queue.enqueue_live(SITE, language="fr").contact_id
    loaded: list[object] = []
    listener = lambda target, _context: loaded.append(target)  # noqa: E731
    event.listen(Contact, "load", listener)
    try:
        first = rt.queue.abandon(contact_id)
        again = rt.queue.abandon(contact_id)
    finally:
        event.remove(Contact, "load", listener)
    assert (first, again) == (True, False)
    assert loaded == []
    with rt.sessions() as s:
        site_id = s.scalar(select(Site.id).where(Site.code == SITE))
        abandoned = s.scalars(
            select(Event).where(Event.contact_id == contact_id, Event.kind == "contact.abandoned")
        ).all()
        assert [e.site_id for e in abandoned] == [site_id]
        assert s.get(Contact, contact_id).state == "abandoned"
