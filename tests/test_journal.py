"""The journal: call records and IVR events written behind the webhooks, applied by the
sweep, in order, exactly once, whatever crashes between the commit and the trim."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import event, func, insert, select
from sqlalchemy.exc import IntegrityError, OperationalError

from interphone import db as dbmod
from interphone import jobs, journal, metrics
from interphone.cases import CaseRecord, ImportReport, import_records
from interphone.cli import main
from interphone.devtools.devphone.phone import DevPhone
from interphone.models import Call, Event, Site
from interphone.queue.stats import Statistics
from interphone.runtime import Runtime

from .conftest import SITE
from .test_web_admin import _signed_in

CALLER = "+33612345678"
FILE, BORN = "6300000099", date(1979, 5, 4)


def _site_id(rt: Runtime) -> int:
    with rt.sessions() as s:
        site_id = s.scalar(select(Site.id).where(Site.code == SITE))
    assert site_id is not None
    return site_id


def _count(rt: Runtime, model: type) -> int:
    with rt.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def _started(rt: Runtime, sid: str) -> journal.Record:
    return journal.call_started(
        sid, site_id=_site_id(rt), channel="phone", from_number=CALLER, to_number=None, at_ms=1
    )


def test_status_served_by_the_ivr_is_counted_once_per_call_after_the_sweep(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    rt = voice_runtime
    import_records(
        rt.sessions,
        [CaseRecord(FILE, BORN, "under_review", datetime(2026, 9, 1, tzinfo=UTC))],
        rt.settings.birthdate_key,
        ImportReport(),
    )
    call = devphone.call(CALLER).press("2").press("1")
    call.press(FILE + "#").press("04051979")
    call.press("1")  # repeat: the same call, still one caller served
    assert "under review" in call.transcript()
    stats = Statistics(rt.store, rt.sessions, rt.clock)
    assert stats.figures(SITE).self_served_today == 0  # not applied yet
    jobs.use_runtime(rt)
    try:
        counts = jobs.sweep()  # what the worker runs every couple of seconds
    finally:
        jobs.use_runtime(None)
    assert counts["journal"] == 2  # the call's start and its one self-service event
    assert stats.figures(SITE).self_served_today == 1
    assert rt.journal.pending() == 0


def test_batch_applied_by_a_worker_killed_before_its_trim_is_not_applied_twice(
    voice_runtime: Runtime,
) -> None:
    rt = voice_runtime
    site_id = _site_id(rt)
    rt.journal.append(
        _started(rt, "CA" + "1" * 32),
        journal.call_ended("CA" + "1" * 32, status="completed", at_ms=5000, duration_s=4),
        journal.event("CA1:status_served", "ivr.status_served", site_id=site_id, at_ms=2, data={}),
    )
    # the killed worker: its transaction committed, the list was never trimmed
    rt.journal._apply_batch(rt.redis.lrange(journal.KEY, 0, -1))
    assert rt.journal.drain() == 3  # the next worker applies the same records again
    assert (_count(rt, Call), _count(rt, Event)) == (1, 1)
    with rt.sessions() as s:
        [row] = s.scalars(select(Call)).all()
    assert (row.status, row.duration_s) == ("completed", 4)


def test_late_call_end_before_its_start_is_applied_in_order_start_then_end(
    voice_runtime: Runtime,
) -> None:
    rt = voice_runtime
    sid = "CA" + "2" * 32
    rt.journal.append(_started(rt, sid))
    rt.journal.append(journal.call_ended(sid, status="no-answer", at_ms=9000, duration_s=None))
    rt.journal.append(journal.call_ended(sid, status="completed", at_ms=9999, duration_s=7))
    assert rt.journal.drain(batch=1) == 3  # one record per batch: order across batches
    with rt.sessions() as s:
        [row] = s.scalars(select(Call)).all()
    assert row.status == "no-answer"  # the first final status wins; a replay changes nothing


def test_record_refused_by_the_database_is_set_aside_without_blocking_the_others(
    voice_runtime: Runtime,
) -> None:
    rt = voice_runtime
    orphan = journal.call_started(
        "CA" + "3" * 32, site_id=987654, channel="phone", from_number=None, to_number=None, at_ms=1
    )
    rt.journal.append(orphan, _started(rt, "CA" + "4" * 32))
    rt.redis.rpush(journal.KEY, "not json at all")
    assert rt.journal.drain() == 3
    assert rt.journal.pending() == 0 and rt.journal.rejected() == 2
    with rt.sessions() as s:
        assert s.scalars(select(Call.sid)).all() == ["CA" + "4" * 32]


def test_two_workers_never_drain_at_once_nor_trim_each_others_batch(
    voice_runtime: Runtime,
) -> None:
    rt = voice_runtime
    rt.journal.append(_started(rt, "CA" + "5" * 32))
    rt.redis.set(journal.LOCK, "another-worker", ex=60)
    assert rt.journal.drain() == 0
    assert rt.journal.pending() == 1 and _count(rt, Call) == 0
    assert rt.redis.get(journal.LOCK) == b"another-worker"  # its lock is left alone
    rt.redis.delete(journal.LOCK)
    assert rt.journal.drain() == 1 and _count(rt, Call) == 1


def test_webhook_retried_after_its_answer_journals_its_records_once(
    devphone: DevPhone, voice_runtime: Runtime
) -> None:
    call = devphone.call(CALLER)
    for _ in range(3):  # Twilio retrying /voice/incoming after a timeout
        devphone.post("/voice/incoming", call._params({"CallStatus": "ringing"}))
    assert voice_runtime.journal.pending() == 1


def test_batch_of_many_calls_is_not_written_one_statement_per_record(
    voice_runtime: Runtime,
) -> None:
    """The sweep keeps up with a busy line: a batch is a few statements, however many
    records it holds (a statement per record took about half of the worker's time
    under load)."""
    rt = voice_runtime
    site_id = _site_id(rt)
    old = "CA" + "6" * 32
    rt.journal.append(_started(rt, old))
    assert rt.journal.drain() == 1
    records = [journal.call_ended(old, status="busy", at_ms=50, duration_s=0)]
    for i in range(40):
        sid = f"CA{i:032x}"
        records += [
            _started(rt, sid),
            journal.event(f"{sid}:menu", "ivr.menu", site_id=site_id, at_ms=2, data={"i": i}),
            journal.call_ended(sid, status="completed", at_ms=60_000, duration_s=i),
            journal.call_ended(sid, status="failed", at_ms=61_000, duration_s=None),  # replayed
        ]
    rt.journal.append(*records)
    statements: list[str] = []

    def count(_conn: object, _cursor: object, sql: str, *_args: object) -> None:
        statements.append(sql)

    event.listen(rt.engine, "before_cursor_execute", count)
    try:
        assert rt.journal.drain() == len(records)
    finally:
        event.remove(rt.engine, "before_cursor_execute", count)
    writes = [q for q in statements if q.lstrip().upper().startswith(("INSERT", "UPDATE"))]
    assert len(writes) <= 3, writes
    with rt.sessions() as s:
        rows = {c.sid: (c.status, c.duration_s) for c in s.scalars(select(Call))}
        kinds = s.scalars(select(Event.kind)).all()
    assert rows[old] == ("busy", 0)
    assert all(rows[f"CA{i:032x}"] == ("completed", i) for i in range(40))
    assert kinds.count("ivr.menu") == 40


def test_call_end_journaled_before_its_start_in_one_batch_still_ends_the_call(
    voice_runtime: Runtime,
) -> None:
    """Webhooks out of order: the final status was journaled first. In one batch the
    ends are written after the new calls, so the call is not left in progress."""
    rt = voice_runtime
    sid = "CA" + "7" * 32
    rt.journal.append(
        journal.call_ended(sid, status="completed", at_ms=9000, duration_s=8),
        _started(rt, sid),
    )
    assert rt.journal.drain() == 2
    with rt.sessions() as s:
        [row] = s.scalars(select(Call)).all()
    assert (row.status, row.duration_s) == ("completed", 8)


# -- a database blip, a bad record --------------------------------------------------------
@contextmanager
def _database_away(rt: Runtime, tmp_path: Path) -> Iterator[None]:
    """Every SQL statement fails inside (an unreachable SQLite file, as the connection
    error of a server gone): the sessions, the webhooks' reads and the queue's own
    autocommit statements."""
    unreachable = dbmod.make_engine(f"sqlite:///{tmp_path / 'missing' / 'db.sqlite3'}")
    rt.sessions.configure(bind=unreachable)
    reads, rt.case_lookup.reads = rt.case_lookup.reads, unreachable
    autocommit, rt.queue.autocommit = rt.queue.autocommit, unreachable
    try:
        yield
    finally:
        rt.sessions.configure(bind=rt.engine)
        rt.case_lookup.reads, rt.queue.autocommit = reads, autocommit
        unreachable.dispose()


def test_a_database_outage_keeps_the_batch_in_place(voice_runtime: Runtime, tmp_path: Path) -> None:
    rt = voice_runtime
    sids = [f"CA{i:032x}" for i in range(5)]
    rt.journal.append(*(_started(rt, sid) for sid in sids))
    with _database_away(rt, tmp_path):
        assert rt.journal.drain() == 0
    assert (rt.journal.pending(), rt.journal.rejected()) == (5, 0)  # waiting, not set aside
    assert rt.redis.get(journal.LOCK) is None  # the next sweep may go on
    assert rt.journal.drain() == 5  # the database is back
    with rt.sessions() as s:
        assert sorted(s.scalars(select(Call.sid))) == sids
    assert (rt.journal.pending(), rt.journal.rejected()) == (0, 0)


def test_a_malformed_record_is_set_aside_and_the_rest_applied(voice_runtime: Runtime) -> None:
    rt = voice_runtime
    first, last = "CA" + "a" * 32, "CA" + "b" * 32
    no_site = {"type": "call.start", "sid": "CA" + "c" * 32}  # site_id missing: KeyError
    bad_time = {**_started(rt, "CA" + "d" * 32), "at_ms": "yesterday"}  # TypeError
    rt.journal.append(_started(rt, first), no_site, bad_time, _started(rt, last))
    assert rt.journal.drain() == 4
    assert (rt.journal.pending(), rt.journal.rejected()) == (0, 2)
    with rt.sessions() as s:
        assert sorted(s.scalars(select(Call.sid))) == [first, last]
    errors = [entry.error for entry in rt.journal.set_aside()]
    assert errors[0] == "KeyError: 'site_id'" and errors[1].startswith("TypeError")
    rt.journal.append(_started(rt, "CA" + "e" * 32))
    assert rt.journal.drain() == 1  # the next sweeps are not blocked either
    assert _count(rt, Call) == 3


def test_a_set_aside_error_keeps_its_type_and_message_without_parameters_or_numbers() -> None:
    refused = IntegrityError(
        "INSERT INTO calls (sid, from_number) VALUES (?, ?)",
        ("CA1", CALLER),
        Exception("UNIQUE constraint failed: calls.sid\nDETAIL: more"),
    )
    assert journal.describe(refused) == "IntegrityError: UNIQUE constraint failed: calls.sid"
    assert journal.describe(ValueError(f"no such number {CALLER}")) == (
        "ValueError: no such number +•••••••••78"
    )
    assert journal.describe(KeyError("site_id")) == "KeyError: 'site_id'"


def test_set_aside_records_are_counted_listed_and_replayed(
    app: Any, voice_runtime: Runtime
) -> None:
    rt = voice_runtime
    orphan_sid, applied_sid = "CA" + "f" * 32, "CA" + "9" * 32
    orphan = journal.call_started(
        orphan_sid, site_id=987654, channel="phone", from_number=CALLER, to_number=None, at_ms=1
    )
    rt.journal.append(orphan, _started(rt, applied_sid), {"type": "event", "ref": "x"})
    assert rt.journal.drain() == 3
    # an entry set aside by an earlier version (the record alone), already in SQL
    rt.redis.rpush(journal.REJECTED, json.dumps(_started(rt, applied_sid)))
    assert rt.journal.rejected() == 3

    # counted
    recorded = {
        (s.name, s.labels.get("error")): s.value
        for s in metrics.read(rt.redis)
        if s.name == "interphone_journal_set_aside_total"
    }
    assert recorded == {
        ("interphone_journal_set_aside_total", "IntegrityError"): 1,
        ("interphone_journal_set_aside_total", "KeyError"): 1,
    }
    scraped = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'interphone_journal_records{list="rejected"} 3.0' in scraped
    assert 'interphone_journal_set_aside_total{error="IntegrityError"} 1.0' in scraped

    # listed, for the command and the admin, the caller's number masked
    listed = CliRunner().invoke(main, ["journal", "list", "--json"], obj=rt)
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert [(r["position"], r["type"], r["call"], r["site_id"]) for r in rows] == [
        (1, "call.start", orphan_sid, 987654),
        (2, "event", "x", None),
        (3, "call.start", applied_sid, rt.journal.set_aside()[2].summary()["site_id"]),
    ]
    assert rows[0]["from"] == "+33 •••••••78" and rows[0]["error"].startswith("IntegrityError")
    assert rows[1]["error"] == "KeyError: 'at_ms'" and rows[2]["error"] is None
    page = _signed_in(app, rt, "admin@example.org", "admin").get("/admin/journal")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and orphan_sid in text and "•••••••78" in text
    assert CALLER[1:] not in text and CALLER[1:] not in listed.output
    supervisor = _signed_in(app, rt, "supervisor@example.org", "supervisor")
    assert supervisor.get("/admin/journal").status_code == 403

    # replayed once its cause is fixed: the site exists again
    with rt.engine.begin() as connection:
        connection.execute(insert(Site).values(id=987654, code="restored", name="Restaurée"))
    replayed = CliRunner().invoke(main, ["journal", "replay", "--json"], obj=rt)
    assert replayed.exit_code == 0, replayed.output
    assert json.loads(replayed.output) == {
        "applied": 2,
        "failed": 1,
        "waiting": 0,
        "deferred_requeued": 0,
    }
    with rt.sessions() as s:
        assert sorted(s.scalars(select(Call.sid))) == [applied_sid, orphan_sid]  # none twice
    [still] = rt.journal.set_aside()
    assert still.error == "KeyError: 'at_ms'" and still.at_ms == int(rt.clock.now() * 1000)
    assert rt.journal.replay() == journal.Replay(applied=0, failed=1, waiting=0)
    assert _count(rt, Call) == 2


def test_a_replay_stops_while_the_database_does_not_answer(
    voice_runtime: Runtime, tmp_path: Path
) -> None:
    rt = voice_runtime
    rt.redis.rpush(journal.REJECTED, json.dumps(_started(rt, "CA" + "8" * 32)))
    with _database_away(rt, tmp_path):
        result = CliRunner().invoke(main, ["journal", "replay"], obj=rt)
    assert result.exit_code == 1 and "1 records not tried" in result.output
    assert [entry.error for entry in rt.journal.set_aside()] == [""]  # untouched
    assert rt.journal.replay() == journal.Replay(applied=1, failed=0, waiting=0)


def test_calls_go_on_through_an_outage_longer_than_several_sweeps_and_all_reach_sql(
    devphone: DevPhone, voice_runtime: Runtime, tmp_path: Path
) -> None:
    """The fault: the database gone for six sweeps while callers go on calling and
    hanging up; once it is back, one sweep writes every call, nothing set aside."""
    rt = voice_runtime
    devphone.call("+33611111111").press("2").hang_up()  # the IVR has read its sites
    calls = []
    jobs.use_runtime(rt)
    try:
        with _database_away(rt, tmp_path):
            for n in range(6):
                calls.append(devphone.call(f"+336222222{n:02d}").press("2").hang_up())
                calls.append(devphone.call(f"+336333333{n:02d}").press("1"))  # still on
                rt.clock.advance(rt.settings.queue.sweep_interval_s)
                with pytest.raises(OperationalError):
                    jobs.sweep()  # the queue's step finds the database gone
                assert rt.journal.rejected() == 0
        assert rt.journal.pending() >= 12
        counts = jobs.sweep()
    finally:
        jobs.use_runtime(None)
    assert counts["journal"] >= 18 and rt.journal.pending() == 0
    assert rt.journal.rejected() == 0
    with rt.sessions() as s:
        rows = {sid: status for sid, status in s.execute(select(Call.sid, Call.status))}
    assert all(rows.get(call.sid) == call.status for call in calls[0::2])  # ended
    assert all(rows.get(call.sid) == "in-progress" for call in calls[1::2])
