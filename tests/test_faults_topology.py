"""Fault scenarios on the multi-process topology (docs/topology.md), marked ``slow``.

Each drives calls through the dev phone while the fault happens (real processes killed
with SIGKILL, a real Redis or PostgreSQL restarted, a real Sentinel fail-over), then
checks every contact (:meth:`Campaign.audit`) and prints the counts it checked:
created, completed, abandoned, waiting, lost (0), duplicated (0). ``make test-faults``.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rq import Queue
from rq.registry import FailedJobRegistry
from sqlalchemy import select

from interphone import journal
from interphone.devtools.devphone.phone import SimCall
from interphone.devtools.devphone.rest import placed_calls, sent_messages
from interphone.failpoints import MARK
from interphone.jobs import SWEEP_JOB_ID
from interphone.models import Call
from interphone.queue.exceptions import QueueError
from interphone.runtime import RQ_QUEUE
from interphone.voice.messaging import SENDING, SENT_PREFIX

from .campaign import DEFERRED_TEXT, Campaign, Counts
from .topology import MASTER, HttpTransport, PostgresCluster, Topology, running, wait_until

pytestmark = pytest.mark.slow


def _report(name: str, counts: Counts, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print("\n" + counts.line(name))
    assert counts.problems == [], counts.problems
    assert (counts.lost, counts.duplicated, counts.stuck) == (0, 0, 0)
    assert counts.agents_inconsistent == 0 and counts.sms_missing == 0


def _reached(topology: Topology, point: str) -> bool:
    assert topology.runtime is not None
    return bool(topology.runtime.redis.exists(MARK + point))


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[Topology]:
    with running(tmp_path, database_url=os.environ.get("TEST_DATABASE_URL")) as topo:
        yield topo


@pytest.fixture
def sentinel_topology(tmp_path: Path) -> Iterator[Topology]:
    with running(tmp_path, database_url=os.environ.get("TEST_DATABASE_URL"), sentinel=True) as topo:
        yield topo


@pytest.fixture
def postgres_topology(tmp_path: Path) -> Iterator[tuple[Topology, PostgresCluster]]:
    cluster = PostgresCluster()
    try:
        cluster.start()
        with running(tmp_path, database_url=cluster.url) as topo:
            yield topo, cluster
    finally:
        cluster.destroy()


def _end_to_end(topology: Topology, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    campaign = Campaign(topology)
    for _ in range(3):
        campaign.ring_callback()
        campaign.ring_live()
    campaign.serve()
    counts = campaign.audit()
    _report(name, counts, capsys)
    assert counts.created == 6 and counts.completed == 6


def test_end_to_end_calls_on_two_web_and_two_worker_processes_lose_nothing(
    topology: Topology, capsys: pytest.CaptureFixture[str]
) -> None:
    _end_to_end(topology, "baseline", capsys)


def test_end_to_end_calls_through_sentinel_lose_nothing(
    sentinel_topology: Topology, capsys: pytest.CaptureFixture[str]
) -> None:
    _end_to_end(sentinel_topology, "sentinel baseline", capsys)


def test_worker_killed_mid_dispatch_neither_loses_nor_doubles_the_offer(
    topology: Topology, capsys: pytest.CaptureFixture[str]
) -> None:
    topology.workers[1].kill()
    topology.restart_worker(0, {"INTERPHONE_FAILPOINTS": "queue.dispatch.offered"})
    campaign = Campaign(topology)
    campaign.ring_callback()
    campaign.ring_live()
    # the offer is made in Redis, the worker dies before writing it to SQL
    wait_until(lambda: _reached(topology, "queue.dispatch.offered"), 60, "a dispatch")
    topology.workers[0].kill()
    topology.restart_worker(0)
    topology.restart_worker(1)
    campaign.ring_callback()
    campaign.serve()
    counts = campaign.audit()
    _report("worker killed mid-dispatch", counts, capsys)
    assert counts.created == 3 and counts.completed == 3


def test_worker_killed_while_placing_callback_legs_places_each_leg_once(
    topology: Topology, capsys: pytest.CaptureFixture[str]
) -> None:
    assert topology.runtime is not None
    redis = topology.runtime.redis
    topology.workers[1].kill()
    topology.restart_worker(0, {"INTERPHONE_FAILPOINTS": "bridge.agent_leg.recorded"})
    campaign = Campaign(topology)
    campaign.ring_callback()
    # 1. killed after recording the agent's leg, before asking Twilio: never placed
    campaign.serve_until(lambda: _reached(topology, "bridge.agent_leg.recorded"), "agent leg")
    topology.workers[0].kill()
    assert placed_calls(redis) == []
    # 2. the sweep places it again; the worker dies after placing the applicant's leg,
    #    before recording it: the leg rings, and must not be placed a second time
    topology.restart_worker(0, {"INTERPHONE_FAILPOINTS": "bridge.applicant_leg.placed"})
    campaign.serve_until(
        lambda: _reached(topology, "bridge.applicant_leg.placed"), "applicant leg placed"
    )
    topology.workers[0].kill()
    topology.restart_worker(0)
    topology.restart_worker(1)
    campaign.ring_live()
    campaign.serve()
    counts = campaign.audit()
    _report("worker killed placing a callback", counts, capsys)
    assert counts.created == 2 and counts.completed == 2
    assert len(placed_calls(redis)) == 3  # agent + applicant legs, agent leg of the live call


def test_worker_killed_after_sending_an_sms_neither_loses_nor_doubles_it(
    topology: Topology, capsys: pytest.CaptureFixture[str]
) -> None:
    """Killed between Twilio's answer and the end of the job: RQ retries the abandoned
    job (about 90 s later, when its heartbeat expires), which must find the message
    already sent instead of sending it again."""
    assert topology.runtime is not None
    redis = topology.runtime.redis
    topology.workers[1].kill()
    topology.restart_worker(0, {"INTERPHONE_FAILPOINTS": "sms.sent"})
    campaign = Campaign(topology)
    campaign.ring_callback()
    wait_until(lambda: _reached(topology, "sms.sent"), 60, "an SMS sent")
    topology.workers[0].kill()
    assert len(sent_messages(redis)) == 1  # Twilio has it; the job never ended
    topology.restart_worker(0)
    topology.restart_worker(1)
    # agents go on answering meanwhile (an offer nobody takes pauses its agent)
    campaign.serve_until(lambda: not _sms_pending(redis), "the abandoned SMS job retried", 240)
    campaign.ring_callback()
    campaign.serve()
    counts = campaign.audit()
    _report("worker killed sending an SMS", counts, capsys)
    assert counts.created == 2 and counts.completed == 2


def _sms_pending(redis: Any) -> bool:
    """An SMS mark still saying "being sent": its job has not been retried yet."""
    return any(redis.get(key) == SENDING.encode() for key in redis.scan_iter(SENT_PREFIX + "*"))


def test_web_process_killed_during_a_webhook_answers_once_from_the_other(
    topology: Topology, capsys: pytest.CaptureFixture[str]
) -> None:
    points = ("ivr.queued", "ivr.callback_registered")
    topology.restart_web(0, {"INTERPHONE_FAILPOINTS": ",".join(points)})
    killed = threading.Event()

    def killer() -> None:
        wait_until(lambda: any(_reached(topology, p) for p in points), 120, "a webhook")
        topology.webs[0].kill()  # in the middle of the webhook: SIGKILL
        killed.set()

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    campaign = Campaign(topology)
    for _ in range(6):
        campaign.ring_live()
        campaign.ring_callback()
        if killed.is_set():
            break
    thread.join(timeout=120)
    assert killed.is_set(), "no webhook reached the armed web process"
    assert topology.webhooks.retries >= 1  # the delivery cut by the kill was retried
    topology.restart_web(0)
    campaign.ring_live()
    campaign.serve()
    counts = campaign.audit()
    _report("web killed during a webhook", counts, capsys)
    assert counts.created == len(campaign.callers) == counts.completed


def test_redis_restart_keeps_waiting_contacts_in_place_and_answers_calls_after(
    topology: Topology, capsys: pytest.CaptureFixture[str]
) -> None:
    rt = topology.runtime
    assert rt is not None
    for agent in topology.agents:
        rt.queue.set_presence(agent.id, "paused", "break")
    campaign = Campaign(topology)
    for _ in range(2):
        campaign.ring_callback()
        campaign.ring_live()
    before = {w.id: w.position for w in rt.queue.list_waiting("prefecture")}
    assert len(before) == 4
    redis = topology.redis[0]
    redis.kill()  # SIGKILL: the append-only file is all that is left
    during = threading.Thread(target=campaign.ring_callback, daemon=True)
    during.start()  # a caller rings while Redis is down: the web process waits for it
    assert topology.proxy is not None
    wait_until(lambda: topology.proxy.in_flight(), 60, "a webhook in flight, Redis down")
    redis.start()
    redis.wait_ready()
    during.join(timeout=120)
    assert not during.is_alive() and len(campaign.callers) == 5
    after = {w.id: w.position for w in rt.queue.list_waiting("prefecture")}
    assert {k: after[k] for k in before} == before  # same contacts, same places
    for agent in topology.agents:
        rt.queue.set_presence(agent.id, "available")
    campaign.serve()
    counts = campaign.audit()
    _report("redis restart (AOF)", counts, capsys)
    assert counts.created == 5 and counts.completed == 5


def test_sentinel_failover_mid_scenario_loses_nothing(
    sentinel_topology: Topology, capsys: pytest.CaptureFixture[str]
) -> None:
    topology = sentinel_topology
    campaign = Campaign(topology)
    for _ in range(2):
        campaign.ring_callback()
        campaign.ring_live()
    old = topology.primary()
    campaign.serve_until(lambda: campaign.audit().completed >= 1, "a first call served")
    topology.sentinels[0].client().execute_command("SENTINEL", "FAILOVER", MASTER)
    campaign.ring_callback()  # while the fail-over happens
    wait_until(lambda: topology.primary().port != old.port, 60, "a new primary")
    campaign.ring_live()
    campaign.ring_callback()
    campaign.serve()
    counts = campaign.audit()
    _report("sentinel fail-over", counts, capsys)
    assert topology.primary().port != old.port
    assert counts.created == 7 and counts.completed == 7


def test_postgres_restart_ivr_answers_every_call_with_a_callback_taken_later(
    postgres_topology: tuple[Topology, PostgresCluster], capsys: pytest.CaptureFixture[str]
) -> None:
    topology, cluster = postgres_topology
    rt = topology.runtime
    assert rt is not None
    for agent in topology.agents:
        rt.queue.set_presence(agent.id, "paused", "break")
    campaign = Campaign(topology)
    campaign.ring_callback()
    on_hold = campaign.ring_live()
    leaving = campaign.ring_live()
    cluster.stop("immediate")  # the database dies
    during = [campaign.ring_callback(), campaign.ring_live(), campaign.ring_status_lookup()]
    assert all(c.told == "deferred" for c in during), [c.told for c in during]
    on_hold.call.wait()  # the hold loop goes on without the database
    assert on_hold.call.waiting_for == "/voice/queue"
    leaving.call.hang_up()  # a caller on hold gives up while the database is down
    assert rt.redis.llen("ip:deferred") == 4  # three callbacks and one hang-up wait
    cluster.start()
    for agent in topology.agents:
        rt.queue.set_presence(agent.id, "available")
    campaign.serve()
    counts = campaign.audit()
    _report("postgresql restart", counts, capsys)
    assert counts.created == 6 and counts.abandoned == 1 and counts.completed == 5
    assert 500 not in topology.webhooks.statuses  # the IVR never failed a caller


def test_postgres_away_for_many_sweeps_every_call_record_reaches_sql_once_it_is_back(
    postgres_topology: tuple[Topology, PostgresCluster], capsys: pytest.CaptureFixture[str]
) -> None:
    """PostgreSQL stopped while callers go on calling, until six sweeps have failed on
    it: the journal keeps their records (none set aside), and once it is back every
    call is in SQL with its final status."""
    topology, cluster = postgres_topology
    rt = topology.runtime
    assert rt is not None
    phone = topology.devphone()
    failed = FailedJobRegistry(queue=rt.rq_queue)

    def sweeps_failed() -> int:
        return sum(1 for job_id in failed.get_job_ids() if job_id.startswith(SWEEP_JOB_ID))

    def ring() -> SimCall:
        call = phone.call(f"+336444{len(calls):05d}", "+33473000000").press("2")
        assert call.status == "in-progress", call.transcript()[-300:]
        return call.hang_up()

    calls: list[SimCall] = []
    for _ in range(2):  # each web process has read its sites
        calls.append(ring())
    before = sweeps_failed()
    cluster.stop("immediate")
    for n in range(1, 7):  # a call, then a sweep failing on SQL, six times
        calls.append(ring())
        wait_until(lambda n=n: sweeps_failed() >= before + n, 60, f"failed sweep {n}")
    assert rt.redis.llen(journal.REJECTED) == 0
    assert rt.redis.llen(journal.KEY) >= 2 * 6  # the start and end of each call since
    cluster.start()
    wait_until(lambda: rt.redis.llen(journal.KEY) == 0, 60, "the journal applied")
    with rt.sessions() as s:
        statuses = {sid: status for sid, status in s.execute(select(Call.sid, Call.status))}
    with capsys.disabled():
        print(f"\nfaults[postgresql away for many sweeps]: calls={len(calls)} set_aside=0")
    assert all(statuses.get(call.sid) == "completed" for call in calls), statuses
    assert rt.redis.llen(journal.REJECTED) == 0
    assert 500 not in topology.webhooks.statuses


class ReplayingTransport:
    """Delivers every webhook twice, and after each one an earlier webhook of the same
    call again (late, out of order), as Twilio's retries and proxies may."""

    def __init__(self, inner: HttpTransport) -> None:
        self.inner = inner
        self.history: list[tuple[str, dict[str, str], dict[str, str]]] = []
        self.mismatches: list[str] = []
        self.failures: list[tuple[str, int]] = []
        self.random = random.Random(7)

    def __call__(self, path: str, form: dict[str, str], headers: dict[str, str]) -> tuple[int, str]:
        first = self.inner(path, form, headers)
        second = self.inner(path, form, headers)
        if second != first and not path.startswith(("/voice/status", "/voice/leg")):
            self.mismatches.append(path)
        earlier = [h for h in self.history if h[1].get("CallSid") == form.get("CallSid")]
        if earlier:
            self._check(*self.random.choice(earlier))
        self.history.append((path, form, headers))
        return first

    def _check(self, path: str, form: dict[str, str], headers: dict[str, str]) -> None:
        status, _ = self.inner(path, form, headers)
        if status >= 400:
            self.failures.append((path, status))

    def replay_all_reversed(self) -> None:
        for item in reversed(list(self.history)):
            self._check(*item)


def test_every_webhook_twice_and_out_of_order_changes_nothing_twice(
    topology: Topology, capsys: pytest.CaptureFixture[str]
) -> None:
    transport = ReplayingTransport(HttpTransport(topology.proxy_port, topology.webhooks))
    campaign = Campaign(topology, topology.devphone(transport))
    for _ in range(2):
        campaign.ring_callback()
        campaign.ring_live()
    campaign.serve()
    first = campaign.audit()
    transport.replay_all_reversed()  # every webhook again, last first
    counts = campaign.audit()
    _report("webhooks twice and out of order", counts, capsys)
    assert transport.mismatches == [] and transport.failures == []
    assert (counts.created, counts.completed, counts.abandoned) == (4, 4, 0)
    assert (first.created, first.completed) == (4, 4)
    assert len(transport.history) > 30


def test_live_caller_hanging_up_while_the_agents_phone_rings_is_abandoned_and_frees_the_agent(
    topology: Topology, capsys: pytest.CaptureFixture[str]
) -> None:
    """Accepted, the agent's leg placed by a worker, and the caller hangs up before
    following the redirect into the conference: nobody is left on a call."""
    rt = topology.runtime
    assert rt is not None
    campaign = Campaign(topology)
    gone = campaign.ring_live()

    def accepted() -> bool:
        for agent in topology.agents:
            state = rt.store.agent(agent.id)
            if state.get("state") == "offered" and state.get("offer"):
                with contextlib.suppress(QueueError):
                    rt.bridge.accept(agent.id, int(state["offer"]))
        return bool(placed_calls(rt.redis))  # a worker ran the connect job

    wait_until(accepted, 60, "an agent's leg placed for the live caller")
    gone.call.hang_up()  # never follows the redirect
    campaign.ring_live()
    campaign.ring_callback()
    campaign.serve()
    counts = campaign.audit()
    _report("live caller gone before the bridge", counts, capsys)
    assert (counts.created, counts.completed, counts.abandoned) == (3, 2, 1)


def test_rest_side_unreachable_for_a_while_places_every_call_once_after(
    topology: Topology, capsys: pytest.CaptureFixture[str]
) -> None:
    rt = topology.runtime
    assert rt is not None and topology.rest_proxy is not None
    failed = FailedJobRegistry(queue=Queue(RQ_QUEUE, connection=rt.redis))
    topology.rest_proxy.block()
    campaign = Campaign(topology)
    campaign.ring_callback()
    campaign.ring_live()
    campaign.ring_callback()
    # agents accept; placing their legs fails while the network is down
    campaign.serve_until(lambda: failed.count >= 1, "a call that could not be placed")
    assert placed_calls(rt.redis) == []
    topology.rest_proxy.unblock()
    campaign.serve()
    counts = campaign.audit()
    _report("REST side unreachable", counts, capsys)
    assert counts.created == 3 and counts.completed == 3
    assert DEFERRED_TEXT not in "".join(c.call.transcript() for c in campaign.callers)


def test_sentinel_primary_killed_mid_scenario_fails_over_and_loses_nothing(
    sentinel_topology: Topology, capsys: pytest.CaptureFixture[str]
) -> None:
    topology = sentinel_topology
    campaign = Campaign(topology)
    for _ in range(2):
        campaign.ring_callback()
        campaign.ring_live()
    old = topology.primary()
    campaign.serve_until(lambda: campaign.audit().completed >= 1, "a first call served")
    old.kill()  # SIGKILL: the sentinels elect the replica
    wait_until(lambda: topology.primary().port != old.port, 60, "a new primary")
    campaign.ring_live()
    campaign.ring_callback()
    campaign.serve()
    counts = campaign.audit()
    _report("sentinel primary killed", counts, capsys)
    assert counts.created == 6 and counts.completed == 6
