"""The whole load test: its site, cases and agents, the Procfile's processes, the callers
and the screens, then the figures."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from interphone import db
from interphone.accounts import add_user
from interphone.cases import ImportReport, demo_records, import_records
from interphone.models import Agent, Contact
from interphone.runtime import Runtime
from interphone.sites import ensure_site

from ..harness import procfile_stack
from .callers import LINE, MIX, SITE, Callers, plan_calls
from .figures import HostProbe, feed_figures, figures, host_figures
from .screens import AGENT_PASSWORD, agent_screens


def _option(words: list[str], name: str) -> str:
    return words[words.index(name) + 1] if name in words else ""


def prepare(rt: Runtime, screens: int, cases: int = 40) -> tuple[list[tuple[str, date]], list[str]]:
    """The load test's site, demo cases and agents (idempotent)."""
    db.upgrade(rt.database_url)
    site = ensure_site(rt.sessions, SITE, "Charge", phone_numbers=[LINE], always_open=True)
    # statuses that changed lately: the retention job purges older cases' birth dates
    recent = datetime.now(UTC) - timedelta(days=1)
    records = [
        replace(record, status_changed_at=recent - timedelta(days=i % 30))
        for i, record in enumerate(demo_records(cases, seed=20260))
    ]
    import_records(rt.sessions, records, rt.settings.birthdate_key, ImportReport())
    emails = [f"load-agent-{i:03d}@interphone.local" for i in range(screens)]
    with rt.sessions() as s:
        known = set(s.scalars(select(Agent.email).where(Agent.email.in_(emails))))
    for email in emails:
        if email not in known:
            add_user(rt.sessions, email, AGENT_PASSWORD, site_code=site.code)
    return [(r.file_number, r.birth_date) for r in records], emails


def _contacts_of(rt: Runtime, sids: list[str]) -> dict[str, tuple[int, str]]:
    """The contacts these calls created: call sid → (contact id, state)."""
    found: dict[str, tuple[int, str]] = {}
    with rt.sessions() as s:
        for first in range(0, len(sids), 500):
            query = select(Contact.call_sid, Contact.id, Contact.state).where(
                Contact.call_sid.in_(sids[first : first + 500])
            )
            found.update({str(sid): (int(cid), str(state)) for sid, cid, state in s.execute(query)})
    return found


def _tidy(rt: Runtime, contact_ids: list[int]) -> int:
    """Cancel what the run left waiting (callbacks nobody will make, callers cut off at
    the end), so that runs do not pile up in the load test's queue."""
    return sum(rt.queue.cancel(cid, "load test over", actor="bench") for cid in contact_ids)


def run(
    rt: Runtime,
    *,
    rate: float,
    seconds: float,
    warmup: float,
    screens: int,
    clients: int,
    seed: int | None = None,
) -> dict[str, Any]:
    cases, emails = prepare(rt, screens)
    # a server without autovacuum (this project's machines) is first tidied as autovacuum
    # keeps a production one: dead rows of earlier runs, statistics of grown tables
    upkeep = db.vacuum_if_unattended(rt.database_url)
    callers = plan_calls(rate, warmup + seconds, cases, seed=seed)
    stack = procfile_stack(rt, {})  # WEB_CONCURRENCY, WEB_THREADS: as for the Procfile
    with stack as (port, web, server_cpu), agent_screens(port, emails) as collect:
        load = Callers(
            port,
            public_base_url=rt.settings.public_base_url,
            auth_token=rt.settings.twilio_auth_token or "",
            account_sid=rt.settings.twilio_account_sid or "",
            clients=clients,
        )
        started, cpu, server_before = time.perf_counter(), time.process_time(), server_cpu()
        with HostProbe() as probe:
            result = load.run(callers, end_s=warmup + seconds)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        server_used = {k: v - server_before.get(k, 0.0) for k, v in server_cpu().items()}
        time.sleep(1.0)  # the last events reach the screens
        seen = collect()
    in_window = {
        sid: sent
        for sid, sent in result.contacts.items()
        if warmup <= sent - result.start < warmup + seconds
    }
    contacts = _contacts_of(rt, [caller.sid for _, caller in callers])
    sent_at = {contacts[sid][0]: sent for sid, sent in in_window.items() if sid in contacts}
    tidied = _tidy(rt, [cid for cid, state in contacts.values() if state == "waiting"])
    out = {
        "rate_per_s": rate,
        "seconds": seconds,
        "warmup_s": warmup,
        "wall_s": round(wall, 1),
        "server": {
            "procfile_web": " ".join(Path(web[0]).name if i == 0 else w for i, w in enumerate(web)),
            "workers": int(_option(web, "--workers") or 1),
            "threads": int(_option(web, "--threads") or 1),
            "rq_worker": True,
            # CPU the processes used during the run (the web also serves the feeds)
            "cpu_percent": {k: round(100 * v / wall, 1) for k, v in server_used.items()},
            "web_cpu_us_per_request": round(1e6 * server_used["web"] / max(1, len(result.samples))),
            "database": rt.database_url.split(":", 1)[0],
            "database_upkeep": upkeep,
        },
        "client_threads": clients,
        "client_cpu_percent": round(100 * cpu / wall, 1),  # the callers' side (not the screens)
        "calls": result.calls_started,
        "mix": MIX,
        "webhooks": figures(result, start_s=warmup, seconds=seconds),
        "unexpected_answers": result.unexpected,
        "feed": feed_figures(seen, sent_at, screens),
        # the host's own speed during the run: a VM slowed by its neighbours shows here
        "host": host_figures(probe.samples),
        "contacts_left_waiting_cancelled": tidied,
    }
    return out
