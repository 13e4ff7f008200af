"""The journal: call records and IVR events written behind the webhooks, applied by the
sweep, in order, exactly once, whatever crashes between the commit and the trim."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import event, func, select

from interphone import journal
from interphone.cases import CaseRecord, ImportReport, import_records
from interphone.models import Call, Event, Site
from interphone.queue import jobs
from interphone.queue.stats import Statistics
from interphone.runtime import Runtime
from interphone.voice.devphone.phone import DevPhone

from .conftest import SITE

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
