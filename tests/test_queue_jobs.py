"""RQ jobs: dispatch runs when the queue changes, and the sweep keeps itself scheduled."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rq import Queue
from rq.registry import ScheduledJobRegistry

from interphone import jobs
from interphone.accounts import add_user
from interphone.jobqueue import enqueue_dispatch
from interphone.queue.clock import ManualClock
from interphone.runtime import Runtime
from interphone.sites import ensure_site
from interphone.worker import Worker

from .conftest import SITE


@pytest.fixture
def live(settings, clock: ManualClock, redis_client) -> Iterator[Runtime]:
    """A runtime whose triggers enqueue real RQ jobs, run here by the product's Worker."""
    rt = Runtime(settings, clock=clock)
    from .conftest import _empty_tables

    _empty_tables(rt)
    ensure_site(rt.sessions, SITE)
    jobs.use_runtime(rt)
    yield rt
    jobs.use_runtime(None)
    rt.close()


def _work(rt: Runtime) -> None:
    Worker([rt.rq_queue], connection=rt.redis).work(burst=True)


def test_new_contact_and_free_agent_trigger_a_dispatch_job(live: Runtime) -> None:
    agent = add_user(live.sessions, "x@example.org", "long enough pw", site_code=SITE)
    live.queue.set_presence(agent.id, "available")
    contact = live.queue.enqueue_live(SITE, language="fr").contact_id
    assert live.rq_queue.count >= 1
    _work(live)
    assert live.store.agent(agent.id)["offer"] == f"{contact:012d}"
    assert live.rq_queue.count == 0


def test_contact_queued_while_every_agent_is_busy_costs_no_dispatch_job(live: Runtime) -> None:
    busy = add_user(live.sessions, "busy@example.org", "long enough pw", site_code=SITE)
    live.queue.set_presence(busy.id, "paused")
    for _ in range(3):
        live.queue.enqueue_live(SITE, language="fr")
    live.queue.request_callback(SITE, phone="+33612345678", language="fr")
    assert live.rq_queue.count == 0  # a dispatch could offer them to nobody


def test_agent_freed_after_contacts_queued_without_a_job_is_offered_the_first(
    live: Runtime,
) -> None:
    agent = add_user(live.sessions, "late@example.org", "long enough pw", site_code=SITE)
    first = live.queue.enqueue_live(SITE, language="fr").contact_id
    live.queue.enqueue_live(SITE, language="fr")
    assert live.rq_queue.count == 0
    live.queue.set_presence(agent.id, "available")  # its own trigger sees both contacts
    _work(live)
    assert live.store.agent(agent.id)["offer"] == f"{first:012d}"


def test_burst_of_triggers_for_one_site_collapses_into_one_job(live: Runtime) -> None:
    agent = add_user(live.sessions, "z@example.org", "long enough pw", site_code=SITE)
    live.queue.set_presence(agent.id, "available")  # else no contact triggers a dispatch
    for _ in range(5):
        live.queue.enqueue_live(SITE, language="fr")
    assert live.rq_queue.job_ids == [f"dispatch-{SITE}"]


def test_sweep_expires_offers_and_schedules_its_next_run(live: Runtime, clock: ManualClock) -> None:
    agent = add_user(live.sessions, "y@example.org", "long enough pw", site_code=SITE)
    live.queue.set_presence(agent.id, "available")
    contact = live.queue.enqueue_live(SITE, language="fr").contact_id
    _work(live)
    clock.advance(live.settings.queue.offer_timeout_s + 1)
    assert jobs.ensure_sweep(live.rq_queue, 0.5) is True
    assert jobs.ensure_sweep(live.rq_queue, 0.5) is False  # the chain is alive: no second
    counts = jobs.sweep()
    assert counts["expired"] == 1 and counts["offers"] == 1  # offered again at once
    assert live.store.agent(agent.id)["offer"] == f"{contact:012d}"
    scheduled = ScheduledJobRegistry(queue=Queue(live.rq_queue.name, connection=live.redis))
    assert any(job_id.startswith(jobs.SWEEP_JOB_ID) for job_id in scheduled.get_job_ids())


def test_failed_dispatch_job_does_not_block_later_triggers(live: Runtime) -> None:
    from rq.job import Job

    failed = Job.create(
        jobs.dispatch_site, args=("nowhere",), id=f"dispatch-{SITE}", connection=live.redis
    )
    failed.save()
    failed.set_status("failed")
    enqueue_dispatch(live.rq_queue, SITE)
    assert live.rq_queue.job_ids == [f"dispatch-{SITE}"]
