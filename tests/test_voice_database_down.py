"""The IVR with the database unreachable: every call answered, callbacks taken later."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from interphone import db as dbmod
from interphone.devtools.devphone.phone import DevPhone
from interphone.devtools.devphone.rest import sent_messages
from interphone.models import Contact
from interphone.runtime import Runtime

from .conftest import SITE

DEFERRED = "We will call you back as soon as possible"


def test_database_down_ivr_takes_callbacks_and_the_sweep_enters_them_at_their_place(
    devphone: DevPhone, voice_runtime: Runtime, tmp_path: Path
) -> None:
    rt = voice_runtime
    devphone.call("+33611111111").press("2")  # the IVR has read its sites
    unreachable = dbmod.make_engine(f"sqlite:///{tmp_path / 'missing' / 'db.sqlite3'}")
    rt.sessions.configure(bind=unreachable)  # from now on every SQL statement fails
    reads, rt.case_lookup.reads = rt.case_lookup.reads, unreachable  # the webhooks' own reads too
    rt.directory.read()  # a read fails: the IVR keeps the sites read last
    try:
        callback = devphone.call("+33612345678")
        callback.press("2").press("2").press("1").press("#").press("3")
        lookup = devphone.call("+33698765432")
        lookup.press("2").press("1").press("123456#").press("01011990")
        assert DEFERRED in lookup.transcript()  # a callback is offered instead
        lookup.press("1").press("3")  # the file number is not asked again: the reason
        live = devphone.call("+33687654321")
        live.press("2").press("3")  # the live queue needs SQL: a callback is offered
        assert DEFERRED in live.transcript() and live.waiting_for == "/voice/step/callback"
        live.hang_up()
    finally:
        rt.sessions.configure(bind=rt.engine)
        rt.case_lookup.reads = reads
        unreachable.dispose()
    for call in (callback, lookup):
        assert call.status == "completed" and call.transcript().count(DEFERRED) >= 1
    assert rt.ivr.deferred.pending() == 2
    assert rt.ivr.deferred.apply(notify=rt.jobs.notify) == 2
    assert rt.ivr.deferred.apply(notify=rt.jobs.notify) == 0  # nothing applied twice
    with rt.sessions() as s:
        contacts = s.scalars(select(Contact).order_by(Contact.id)).all()
    assert [(c.kind, c.state, c.phone) for c in contacts] == [
        ("callback", "waiting", "+33612345678"),
        ("callback", "waiting", "+33698765432"),
    ]
    assert [c.call_sid for c in contacts] == [callback.sid, lookup.sid]
    texted = [m["To"] for m in sent_messages(rt.redis)]
    assert texted == ["+33612345678", "+33698765432"]


def test_a_caller_on_hold_hanging_up_while_the_database_is_down_is_abandoned_later(
    devphone: DevPhone, voice_runtime: Runtime, tmp_path: Path
) -> None:
    """The hang-up of a live caller reaches the queue in Redis first; its database write
    failing must not fail Twilio's status callback nor lose the hang-up."""
    rt = voice_runtime
    waiting = devphone.call("+33611111111").press("2").press("3")
    assert waiting.waiting_for == "/voice/queue"
    contact_id = rt.calls.load(waiting.sid).contact_id
    unreachable = dbmod.make_engine(f"sqlite:///{tmp_path / 'missing' / 'db.sqlite3'}")
    rt.sessions.configure(bind=unreachable)
    try:
        waiting.hang_up()  # the final status callback, answered without the database
    finally:
        rt.sessions.configure(bind=rt.engine)
        unreachable.dispose()
    assert rt.ivr.deferred.pending() == 1
    assert rt.ivr.deferred.apply(notify=rt.jobs.notify) == 1
    with rt.sessions() as s:
        assert s.get(Contact, contact_id).state == "abandoned"
    assert rt.queue.kind_in_queue(contact_id) is None  # out of the line in Redis too


def _database_lost(rt: Runtime, tmp_path: Path) -> tuple[Engine, Engine]:
    """Every SQL statement fails from now on, the webhooks' own reads too; the
    unreachable engine and the reads' engine to put back."""
    unreachable = dbmod.make_engine(f"sqlite:///{tmp_path / 'missing' / 'db.sqlite3'}")
    rt.sessions.configure(bind=unreachable)
    reads, rt.case_lookup.reads = rt.case_lookup.reads, unreachable
    return unreachable, reads


def test_web_process_started_while_the_database_is_down_answers_from_the_sites_snapshot(
    devphone: DevPhone, voice_runtime: Runtime, tmp_path: Path
) -> None:
    """A web process started during an outage had no sites and answered every call with
    a 500: it now starts from the copy the last read left in Redis."""
    from interphone.voice import directory

    rt = voice_runtime
    devphone.call("+33611111111").press("2")  # a process read the sites: a copy is kept
    assert rt.redis.get(directory.KEY) is not None
    rt.directory._cache = {}  # a web process (re)started meanwhile: nothing read yet
    unreachable, reads = _database_lost(rt, tmp_path)
    try:
        call = devphone.call("+33612345678")
        call.press("2").press("2").press("1").press("#").press("3")
    finally:
        rt.sessions.configure(bind=rt.engine)
        rt.case_lookup.reads = reads
        unreachable.dispose()
    assert call.transcript().startswith("Bonjour, vous êtes au service des étrangers")
    assert DEFERRED in call.transcript() and call.status == "completed"
    assert rt.ivr.deferred.apply(notify=rt.jobs.notify) == 1
    with rt.sessions() as s:
        [contact] = s.scalars(select(Contact)).all()
    assert (contact.kind, contact.phone, contact.call_sid) == ("callback", "+33612345678", call.sid)


@pytest.mark.parametrize("snapshot", [None, "not json", '[{"code": 3, "no such column": 1}]'])
def test_no_site_known_and_database_down_the_caller_hears_a_polite_sentence_not_an_error(
    devphone: DevPhone, voice_runtime: Runtime, tmp_path: Path, snapshot: str | None
) -> None:
    """No snapshot, or one that cannot be read: the call is not failed either."""
    from interphone.voice import directory

    rt = voice_runtime
    rt.directory._cache = {}
    rt.redis.delete(directory.KEY)
    if snapshot is not None:
        rt.redis.set(directory.KEY, snapshot)
    unreachable, reads = _database_lost(rt, tmp_path)
    try:
        call = devphone.call("+33612345678")
    finally:
        rt.sessions.configure(bind=rt.engine)
        rt.case_lookup.reads = reads
        unreachable.dispose()
    assert "momentanément indisponible" in call.transcript()
    assert call.status == "completed"  # the IVR hung up politely: no error played


def test_dispatch_applies_a_hang_up_taken_while_the_database_was_down_before_offering(
    devphone: DevPhone, voice_runtime: Runtime, tmp_path: Path
) -> None:
    """Once the database is back, the first dispatch must not offer a caller whose
    hang-up still waits among the deferred records: the agent would call nobody."""
    from interphone import jobs
    from interphone.accounts import add_user

    rt = voice_runtime
    waiting = devphone.call("+33611111111").press("2").press("3")
    contact_id = rt.calls.load(waiting.sid).contact_id
    unreachable = dbmod.make_engine(f"sqlite:///{tmp_path / 'missing' / 'db.sqlite3'}")
    rt.sessions.configure(bind=unreachable)
    try:
        waiting.hang_up()
    finally:
        rt.sessions.configure(bind=rt.engine)
        unreachable.dispose()
    assert rt.ivr.deferred.pending() == 1
    agent = add_user(
        rt.sessions, "a@example.org", "long enough pw", site_code=SITE, languages=["fr", "en"]
    )
    rt.queue.set_presence(agent.id, "available")
    jobs.use_runtime(rt)
    try:
        offers = jobs.dispatch_site(SITE)
    finally:
        jobs.use_runtime(None)
    assert offers == 0
    assert rt.ivr.deferred.pending() == 0
    with rt.sessions() as s:
        assert s.get(Contact, contact_id).state == "abandoned"
    assert rt.store.agent(agent.id).get("state") == "available"


def test_a_deferred_request_that_fails_for_its_own_data_is_set_aside_counted_and_replayed(
    voice_runtime: Runtime,
) -> None:
    """A record the database refuses for what it says (on PostgreSQL, a site code given as
    a number: a ProgrammingError) must not stop the list, and every callback behind it,
    for ever: it is set aside, counted in the metrics, and put back in line on demand."""
    from click.testing import CliRunner

    from interphone.cli import main
    from interphone.voice.deferred import KEY
    from interphone.web import create_app

    rt = voice_runtime
    deferred = rt.ivr.deferred
    good = dict(
        site=SITE,
        language="fr",
        channel="phone",
        reason="other",
        file_number=None,
        arrived_ms=1,
        not_before_ms=0,
    )
    bad = json.dumps(
        {
            "type": "callback",
            **good,
            "site": 12345,
            "phone": "+33611111111",
            "call_sid": "CA" + "1" * 32,
        }
    )
    rt.redis.rpush(KEY, bad)
    deferred.callback(phone="+33622222222", call_sid="CA" + "2" * 32, **good)

    assert deferred.apply() == 1  # the one behind it is entered; the bad one set aside
    assert (deferred.pending(), deferred.rejected()) == (0, 1)
    with rt.sessions() as s:
        assert s.scalars(select(Contact.phone)).all() == ["+33622222222"]
    metrics = create_app(runtime=rt).test_client().get("/metrics").get_data(as_text=True)
    assert 'interphone_deferred_records{list="rejected"} 1.0' in metrics

    replayed = CliRunner().invoke(main, ["journal", "replay", "--json"], obj=rt)
    assert replayed.exit_code == 0, replayed.output
    assert json.loads(replayed.output)["deferred_requeued"] == 1
    assert (deferred.pending(), deferred.rejected()) == (1, 0)
    assert deferred.apply() == 0  # still refused: set aside again, nothing entered twice
    assert (deferred.pending(), deferred.rejected()) == (0, 1)
