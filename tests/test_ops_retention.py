"""Retention: personal data of contacts closed more than RETENTION_DAYS ago is cleared,
once, and the anonymous figures (by hour, by outcome) come out the same afterwards."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from interphone import jobs, journal, retention
from interphone.accounts import add_user
from interphone.cases import CaseRecord, ImportReport, import_records
from interphone.cli import main
from interphone.models import Call, Case, Contact, Event, Voicemail
from interphone.privacy import check_birth_date
from interphone.queue.service import SMS_CANCELLATION
from interphone.queue.stats import Statistics, hourly
from interphone.runtime import Runtime
from interphone.worker import Worker

from .conftest import SITE, phone

DAYS = 30


def _now(clock) -> datetime:
    return datetime.fromtimestamp(clock.now(), tz=UTC)


@pytest.fixture
def day(runtime: Runtime, queue, make_agent, clock) -> dict[str, int]:
    """A small day: a live call answered with a note, a callback cancelled, a callback
    still waiting, a call record, a closed case and an open one."""
    agent = make_agent(["fr"])
    live = queue.enqueue_live(SITE, language="fr", phone=phone(1), call_sid="CA" + "1" * 32)
    done = queue.request_callback(
        SITE, phone=phone(2), language="fr", file_number="6300000001", reason="file"
    )
    waiting = queue.request_callback(SITE, phone=phone(3), language="fr", reason="other")
    clock.advance(45)
    offer = queue.dispatch(SITE)[0]
    assert offer.contact_id == live.contact_id
    queue.accept(agent.id, live.contact_id)
    clock.advance(120)
    queue.finish(agent.id, live.contact_id, "resolved", note="rappeler au 06 11 22 33 44")
    queue.cancel(done.contact_id, "sms_cancel")
    with runtime.sessions() as s:
        site_id = s.scalar(select(Contact.site_id).where(Contact.id == live.contact_id))
    rec = journal.call_started(
        "CA" + "1" * 32,
        site_id=site_id,
        channel="phone",
        from_number=phone(1),
        to_number="+33473000000",
        at_ms=int(clock.now() * 1000) - 200_000,
    )
    runtime.journal.append(rec)
    runtime.journal.append(
        journal.call_ended(
            "CA" + "1" * 32, status="completed", at_ms=int(clock.now() * 1000), duration_s=200
        )
    )
    runtime.journal.drain()
    closed_at = _now(clock) - timedelta(days=400)
    import_records(
        runtime.sessions,
        [
            CaseRecord("6300000001", date(1990, 4, 12), "closed", closed_at, phone="0612345678"),
            CaseRecord(
                "6300000002", date(1985, 1, 2), "under_review", closed_at, phone="0698765432"
            ),
        ],
        runtime.settings.birthdate_key,
        ImportReport(),
    )
    return {"live": live.contact_id, "cancelled": done.contact_id, "waiting": waiting.contact_id}


def _figures(runtime: Runtime, clock) -> tuple[object, object]:
    stats = Statistics(runtime.store, runtime.sessions, clock)
    figures = stats.figures(SITE).as_json()
    return [asdict(row) for row in hourly(runtime.sessions, clock, SITE)], figures


def test_purge_clears_personal_data_of_old_contacts_and_keeps_the_figures(
    runtime: Runtime, day, clock
) -> None:
    before = _figures(runtime, clock)
    events_before = _events(runtime)
    report = retention.purge(runtime.sessions, _now(clock) + timedelta(days=DAYS + 1), DAYS)
    assert report.counts == {"contacts": 2, "events": 1, "calls": 1, "voicemails": 0, "cases": 1}
    with runtime.sessions() as s:
        live, cancelled, waiting = (
            s.get(Contact, day[k]) for k in ("live", "cancelled", "waiting")
        )
        assert (live.phone, live.note, live.file_number) == (None, None, None)
        assert (cancelled.phone, cancelled.file_number) == (None, None)
        assert live.state == "completed" and live.outcome == "resolved" and live.kind == "live"
        assert cancelled.reason == "file" and cancelled.state == "cancelled"
        assert waiting.phone == phone(3)  # still waiting: nothing to purge
        call = s.scalar(select(Call))
        assert call.from_number is None and call.to_number == "+33473000000"
        closed, open_case = s.scalars(select(Case).order_by(Case.file_number)).all()
    assert closed.phone is None and closed.birth_date_hash == retention.PURGED_HASH
    assert not check_birth_date(
        runtime.settings.birthdate_key, "6300000001", date(1990, 4, 12), closed.birth_date_hash
    )
    assert open_case.phone == "0698765432"  # an open case is the préfecture's business
    assert _figures(runtime, clock) == before
    assert _events(runtime) == events_before


def _events(runtime: Runtime) -> list[tuple[str, int | None]]:
    with runtime.sessions() as s:
        return [(e.kind, e.contact_id) for e in s.scalars(select(Event).order_by(Event.id))]


def test_purge_clears_the_text_people_typed_with_the_rest_and_so_from_the_export(
    runtime: Runtime, queue, clock
) -> None:
    """A cancellation's reason is free text (a name, a number...): cleared from the
    contact and its event, which stay for the figures (with the reason's code), and so
    from the CSV export."""
    typed = "Mme Dupont, 06 11 22 33 44"
    ticket = queue.request_callback(SITE, phone=phone(4), language="fr")
    queue.cancel(ticket.contact_id, typed, actor="supervisor:1")
    report = retention.purge(runtime.sessions, _now(clock) + timedelta(days=DAYS + 1), DAYS)
    assert report.counts["contacts"] == 1 and report.counts["events"] == 1
    with runtime.sessions() as s:
        contact = s.get(Contact, ticket.contact_id)
        assert (contact.state, contact.outcome) == ("cancelled", None)
        event = s.scalar(select(Event).where(Event.kind == "contact.cancelled"))
        assert (event.contact_id, event.actor, event.data) == (
            ticket.contact_id,
            "supervisor:1",
            {"code": "other"},
        )
    supervisor = _signed_in_supervisor(runtime)
    today = datetime.fromtimestamp(clock.now()).date().isoformat()
    export = supervisor.get(f"/supervisor/export.csv?from={today}&to={today}")
    rows = list(csv.DictReader(io.StringIO(export.get_data(as_text=True))))
    assert [(r["id"], r["state"], r["outcome"]) for r in rows] == [
        (str(ticket.contact_id), "cancelled", "")
    ]
    assert "Dupont" not in export.get_data(as_text=True)


def test_purge_keeps_the_reasons_the_system_wrote_for_the_figures(
    runtime: Runtime, queue, clock
) -> None:
    """ "cancelled by SMS reply" is a code the system writes, not text a person typed:
    the figures still tell cancellations by SMS from the others after the purge."""
    ticket = queue.request_callback(SITE, phone=phone(5), language="fr")
    queue.cancel(ticket.contact_id, SMS_CANCELLATION, code="sms", actor="sms")
    report = retention.purge(runtime.sessions, _now(clock) + timedelta(days=DAYS + 1), DAYS)
    assert report.counts["contacts"] == 1 and report.counts["events"] == 0
    with runtime.sessions() as s:
        contact = s.get(Contact, ticket.contact_id)
        assert (contact.phone, contact.outcome) == (None, SMS_CANCELLATION)
        event = s.scalar(select(Event).where(Event.kind == "contact.cancelled"))
        assert event.data == {"reason": SMS_CANCELLATION, "code": "sms"}


def _signed_in_supervisor(runtime: Runtime):
    from interphone.web import create_app

    add_user(
        runtime.sessions, "chef@example.org", "a-long-password", role="supervisor", site_code=SITE
    )
    client = create_app(runtime=runtime).test_client()
    login = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
    client.post(
        "/login",
        data={"email": "chef@example.org", "password": "a-long-password", "csrf_token": token},
    )
    return client


def test_contacts_closed_within_the_retention_period_are_kept(runtime: Runtime, day, clock) -> None:
    report = retention.purge(runtime.sessions, _now(clock) + timedelta(days=DAYS - 1), DAYS)
    assert report.counts["contacts"] == 0 and report.counts["calls"] == 0
    with runtime.sessions() as s:
        assert s.get(Contact, day["live"]).phone == phone(1)


def test_purge_twice_changes_nothing_the_second_time(runtime: Runtime, day, clock) -> None:
    later = _now(clock) + timedelta(days=DAYS + 1)
    first = retention.purge(runtime.sessions, later, DAYS, batch=1)  # one row per batch
    assert sum(first.counts.values()) == 5
    assert retention.purge(runtime.sessions, later, DAYS).counts == {
        "contacts": 0,
        "events": 0,
        "calls": 0,
        "voicemails": 0,
        "cases": 0,
    }


def test_dry_run_counts_without_changing_anything(runtime: Runtime, day, clock) -> None:
    later = _now(clock) + timedelta(days=DAYS + 1)
    dry = retention.purge(runtime.sessions, later, DAYS, dry_run=True)
    assert dry.dry_run and dry.counts == {
        "contacts": 2,
        "events": 1,
        "calls": 1,
        "voicemails": 0,
        "cases": 1,
    }
    with runtime.sessions() as s:
        assert s.get(Contact, day["live"]).phone == phone(1)
    assert retention.purge(runtime.sessions, later, DAYS).counts == dry.counts


def test_cli_dry_run_prints_counts_as_json(runtime: Runtime, day, monkeypatch) -> None:
    settings = runtime.settings
    monkeypatch.setenv("REDIS_URL", settings.redis_url or "")
    monkeypatch.setenv("DATABASE_URL", settings.database_url or "")
    monkeypatch.setenv("INTERPHONE_ENV", "test")
    result = CliRunner().invoke(main, ["retention", "purge", "--dry-run", "--days", "1"])
    assert result.exit_code == 0, result.output
    # the day happened at the test clock's time (2027), far after the CLI's "now" minus a day
    assert '"dry_run": true' in result.output and '"contacts": 0' in result.output
    refused = CliRunner().invoke(main, ["retention", "purge", "--days", "0"])
    assert refused.exit_code != 0 and "--days" in refused.output


def test_the_sweep_queues_the_purge_once_an_hour_and_a_worker_runs_it(
    runtime: Runtime, day, clock
) -> None:
    jobs.use_runtime(runtime)
    try:
        assert jobs.sweep()["retention_queued"] == 1
        assert jobs.sweep()["retention_queued"] == 0  # already queued this hour
        assert jobs.schedule_retention(runtime) is False
        clock.advance((runtime.settings.retention_days + 1) * 86400)
        Worker([runtime.rq_queue], connection=runtime.redis).work(burst=True)
    finally:
        jobs.use_runtime(None)
    with runtime.sessions() as s:
        assert s.get(Contact, day["live"]).phone is None


def test_voicemail_audio_and_transcript_go_with_their_closed_contact_not_before(
    runtime: Runtime, day, clock
) -> None:
    with runtime.sessions.begin() as s:
        site_id = s.scalar(select(Contact.site_id).where(Contact.id == day["cancelled"]))
        for n, contact in enumerate(("cancelled", "waiting")):
            s.add(
                Voicemail(
                    recording_sid=f"RE{n:032x}",
                    call_sid=f"CA{n:032x}",
                    site_id=site_id,
                    contact_id=day[contact],
                    language="fr",
                    state="transcribed",
                    transcript="mon numéro est le 06 11 22 33 44",
                    audio_type="audio/wav",
                    audio=b"RIFF....WAVE",
                    duration_s=12,
                    created_at=_now(clock),
                )
            )
    later = _now(clock) + timedelta(days=DAYS + 1)
    report = retention.purge(runtime.sessions, later, DAYS)
    assert report.counts["voicemails"] == 1
    with runtime.sessions() as s:
        gone, kept = s.scalars(select(Voicemail).order_by(Voicemail.id)).all()
        assert (gone.audio, gone.transcript, gone.audio_type) == (None, None, None)
        assert (gone.language, gone.duration_s) == ("fr", 12)  # the figures stay
        assert kept.audio == b"RIFF....WAVE" and kept.transcript  # caller still waiting
    assert retention.purge(runtime.sessions, later, DAYS).counts["voicemails"] == 0
