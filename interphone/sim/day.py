"""Simulate one day end to end: sandbox, engine, audit of the records, report."""

from __future__ import annotations

import time as wallclock

from .audit import audit
from .engine import SITE, Engine
from .plan import DayPlan
from .report import Day, build_report
from .sandbox import Sandbox


def simulate_day(
    plan: DayPlan, *, sandbox: Sandbox | None = None, exhaustive_sweeps: bool = False
) -> Day:
    """Run ``plan`` in ``sandbox`` (a private one, opened and closed here, if None)."""
    own = sandbox is None
    box = sandbox if sandbox is not None else Sandbox()
    if own:
        box.open()
    try:
        engine = Engine(plan, box, exhaustive_sweeps=exhaustive_sweeps)
        try:
            engine.run()
            return conclude(engine)
        finally:
            engine.close()
    finally:
        if own:
            box.close()


def conclude(engine: Engine) -> Day:
    """Audit what the engine's run left in the records and build the day's report."""
    started = wallclock.perf_counter()
    st = engine.state
    end_ms = engine.now_ms
    checked = audit(
        engine.runtime,
        SITE,
        expected=list(st.contact_of.values()),
        not_before=st.not_before,
        relax_ms=engine.relax_ms,
        retry_ms=engine.retry_ms,
        end_ms=end_ms,
    )
    for note in st.notes:
        checked.problem(note)
    wall = engine.wall_s + (wallclock.perf_counter() - started)
    report = build_report(
        engine.plan,
        engine.arrivals,
        st.fate,
        st.contact_of,
        checked,
        st.staff,
        end_ms,
        wall,
    )
    return Day(
        plan=engine.plan,
        arrivals=engine.arrivals,
        fate=dict(st.fate),
        contact_of=dict(st.contact_of),
        audit=checked,
        samples=list(st.samples),
        staff=list(st.staff),
        report=report,
    )
