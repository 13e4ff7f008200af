"""The figures of a simulated day, by hour and in total, and their renderings:
one JSON object, a plain-text report with a chart of the line, a CSV timeline, a PNG."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from ..queue.clock import from_ms
from ..queue.estimate import average_speed_of_answer, erlang_c, service_level
from .arrivals import Arrival
from .audit import AgentSpan, Audit, Record
from .engine import Sample
from .plan import DayPlan

PLOT_HINT = "the PNG chart needs matplotlib: pip install 'interphone[sim]'"


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


@dataclass
class HourFigures:
    hour: str  # local start time, HH:MM
    agents: int
    arrivals: int = 0
    self_served: int = 0
    queued_live: int = 0
    answered_live: int = 0
    abandoned: int = 0
    callbacks_requested: int = 0
    callbacks_completed: int = 0
    p_wait: float | None = None
    asa_s: float | None = None
    service_level: float | None = None
    max_wait_s: float | None = None
    occupancy: float | None = None


@dataclass
class Report:
    """What applicants and agents lived through. Shares are 0..1, times in seconds.

    ``p_wait``: share of queued live calls that did not get an agent at once;
    ``asa_s``: mean time from joining the queue to an agent taking the call (answered
    live calls); ``service_level``: share of queued live calls answered within
    ``sl_threshold_s`` (calls that hung up or still wait count as not answered in time);
    ``max_callback_delay_s``: longest time from a callback request to the first call
    back; ``agent_occupancy``: time on calls and in wrap-up over time signed in.
    """

    arrivals: int = 0
    self_served: int = 0
    closed_turned_away: int = 0
    refused_by_queue: int = 0  # the queue could not record the request (see problems)
    queued_live: int = 0
    answered_live: int = 0
    abandoned: int = 0
    callbacks_requested: int = 0
    callbacks_completed: int = 0
    callbacks_unreachable: int = 0
    callbacks_waiting_at_end: int = 0
    p_wait: float | None = None
    asa_s: float | None = None
    service_level: float | None = None
    sl_threshold_s: float = 20.0
    max_wait_s: float | None = None
    max_callback_delay_s: float | None = None
    agent_occupancy: float | None = None
    waiting_at_end: int = 0
    lost: int = 0
    duplicated: int = 0
    order_violations: int = 0
    callback_order_violations: int = 0
    early_offers: int = 0
    erlang_c: dict[str, float] | None = None
    by_hour: list[HourFigures] = field(default_factory=list)
    seed: int = 0
    period_hours: float = 0.0
    simulated_until: str = ""
    wall_time_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """Plain data for ``json.dumps``: an infinite figure (Erlang C's ASA when the
        traffic exceeds the agents) becomes null, which JSON can carry."""
        finite: dict[str, Any] = _finite(asdict(self))
        return finite


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


@dataclass
class Day:
    """A simulated day: the plan, its callers, the records' audit and the report."""

    plan: DayPlan
    arrivals: list[Arrival]
    fate: dict[int, str]
    contact_of: dict[int, int]
    audit: Audit
    samples: list[Sample]
    staff: list[int]
    report: Report


def build_report(
    plan: DayPlan,
    arrivals: list[Arrival],
    fate: dict[int, str],
    contact_of: dict[int, int],
    audit: Audit,
    staff: list[int],
    end_ms: int,
    wall_s: float,
) -> Report:
    start_ms = int(round(plan.start_epoch * 1000))
    threshold_ms = plan.sl_threshold_s * 1000
    hours = [
        HourFigures(plan.hour_label(h), staff[h] if h < len(staff) else 0)
        for h in range(plan.hour_count)
    ]
    total = Report(sl_threshold_s=plan.sl_threshold_s, seed=plan.seed, period_hours=plan.hours)
    live_waits: list[list[int]] = [[] for _ in hours]
    waited = [0 for _ in hours]
    callback_delays: list[int] = []
    for a in arrivals:
        h = min(len(hours) - 1, int(a.at // 3600))
        row = hours[h]
        row.arrivals += 1
        total.arrivals += 1
        what = fate.get(a.index)
        if what == "self_served":
            row.self_served += 1
            total.self_served += 1
            continue
        if what == "closed":
            total.closed_turned_away += 1
            continue
        if what == "refused":
            total.refused_by_queue += 1
            continue
        cid = contact_of.get(a.index)
        rec = audit.records.get(cid) if cid is not None else None
        if rec is None:
            continue
        if rec.kind == "live":
            row.queued_live += 1
            total.queued_live += 1
            if rec.first_offer_ms is None or rec.first_offer_ms > rec.created_ms:
                waited[h] += 1
            if rec.wait_ms is not None:
                row.answered_live += 1
                total.answered_live += 1
                live_waits[h].append(rec.wait_ms)
            if rec.outcome == "abandoned":
                row.abandoned += 1
                total.abandoned += 1
        else:
            row.callbacks_requested += 1
            total.callbacks_requested += 1
            if rec.outcome == "completed":
                row.callbacks_completed += 1
                total.callbacks_completed += 1
            elif rec.outcome == "unreachable":
                total.callbacks_unreachable += 1
            elif rec.outcome in ("waiting", "offered", "on_call"):
                total.callbacks_waiting_at_end += 1
            if rec.answered_ms is not None:
                callback_delays.append(rec.answered_ms - rec.created_ms)
    all_waits = [w for ws in live_waits for w in ws]
    for h, row in enumerate(hours):
        if row.queued_live:
            row.p_wait = round(waited[h] / row.queued_live, 4)
            within = sum(1 for w in live_waits[h] if w <= threshold_ms)
            row.service_level = round(within / row.queued_live, 4)
        if live_waits[h]:
            row.asa_s = round(sum(live_waits[h]) / len(live_waits[h]) / 1000, 2)
            row.max_wait_s = round(max(live_waits[h]) / 1000, 1)
    if total.queued_live:
        total.p_wait = round(sum(waited) / total.queued_live, 4)
        within = sum(1 for w in all_waits if w <= threshold_ms)
        total.service_level = round(within / total.queued_live, 4)
    if all_waits:
        total.asa_s = round(sum(all_waits) / len(all_waits) / 1000, 2)
        total.max_wait_s = round(max(all_waits) / 1000, 1)
    if callback_delays:
        total.max_callback_delay_s = round(max(callback_delays) / 1000, 1)
    busy, staffed = _occupancy(audit.spans, start_ms, len(hours), end_ms)
    for h, row in enumerate(hours):
        if staffed[h] > 0:
            row.occupancy = round(busy[h] / staffed[h], 4)
    if sum(staffed) > 0:
        total.agent_occupancy = round(sum(busy) / sum(staffed), 4)
    total.by_hour = hours
    total.waiting_at_end = audit.waiting_at_end
    total.lost = audit.lost
    total.duplicated = audit.duplicated
    total.order_violations = audit.order_violations
    total.callback_order_violations = audit.callback_order_violations
    total.early_offers = audit.early_offers
    total.problems = list(audit.problems)
    total.erlang_c = erlang_c_reference(plan)
    total.simulated_until = from_ms(end_ms).astimezone(plan.zone).isoformat(timespec="seconds")
    total.wall_time_s = round(wall_s, 2)
    return total


def _occupancy(
    spans: Iterable[AgentSpan], start_ms: int, hours: int, end_ms: int
) -> tuple[list[float], list[float]]:
    """Busy (on a call or in wrap-up) and signed-in time per hour; time after the last
    hour (finishing the line) counts in the last hour."""
    busy = [0.0] * hours
    staffed = [0.0] * hours
    for span in spans:
        a, b = span.start_ms - start_ms, span.end_ms - start_ms
        for h in range(hours):
            lo = h * 3_600_000
            hi = (h + 1) * 3_600_000 if h < hours - 1 else max(b, lo)
            overlap = min(b, hi) - max(a, lo)
            if overlap > 0:
                staffed[h] += overlap
                if span.state in ("on_call", "wrap_up"):
                    busy[h] += overlap
    return busy, staffed


def erlang_c_reference(plan: DayPlan) -> dict[str, float] | None:
    """What Erlang C predicts for the live calls, when the plan is one rate and one
    staffing all day (M/M/N: it knows nothing of hang-ups, callbacks or languages)."""
    if len(set(plan.rates())) != 1 or len(set(plan.agents_by_hour())) != 1:
        return None
    if plan.callback_share > 0 or plan.opening is not None:
        return None  # callbacks share the agents; closed hours change the traffic
    rate = plan.rates()[0] * (1 - plan.self_service) * (1 - plan.callback_share)
    handle = plan.agent_load_s()
    agents = plan.agents_by_hour()[0]
    traffic = rate * handle / 3600
    if agents <= 0 or traffic <= 0:
        return None
    return {
        "traffic_erlangs": round(traffic, 3),
        "p_wait": round(erlang_c(agents, traffic), 4),
        "service_level": round(service_level(agents, traffic, handle, plan.sl_threshold_s), 4),
        "asa_s": round(average_speed_of_answer(agents, traffic, handle), 2),
    }


# -- renderings ---------------------------------------------------------------------------
def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f} %"


def _secs(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 3600:
        return f"{value / 3600:.1f} h"
    if value >= 120:
        return f"{value / 60:.0f} min"
    return f"{value:.0f} s"


def render_text(day: Day) -> str:
    r = day.report
    plan = day.plan
    lines = [
        f"Simulated day: {plan.day.isoformat()} from {plan.start:%H:%M}, {plan.hours:g} h "
        f"(seed {plan.seed}), line until {r.simulated_until[11:16]}",
        "",
        f"{'hour':<6}{'agents':>7}{'calls':>7}{'self':>6}{'live':>6}{'answ.':>7}"
        f"{'aband.':>7}{'cb.req':>7}{'cb.done':>8}{'waited':>8}{'ASA':>8}{'SL':>6}"
        f"{'max wait':>9}{'occup.':>8}",
    ]
    for h in r.by_hour:
        lines.append(
            f"{h.hour:<6}{h.agents:>7}{h.arrivals:>7}{h.self_served:>6}{h.queued_live:>6}"
            f"{h.answered_live:>7}{h.abandoned:>7}{h.callbacks_requested:>7}"
            f"{h.callbacks_completed:>8}{_pct(h.p_wait):>8}{_secs(h.asa_s):>8}"
            f"{_pct(h.service_level):>6}{_secs(h.max_wait_s):>9}{_pct(h.occupancy):>8}"
        )
    lines += [
        "",
        f"Calls and rings: {r.arrivals}, of which {r.self_served} answered by the IVR "
        f"(self-service) and {r.closed_turned_away} turned away (line closed)"
        + (
            f"; {r.refused_by_queue} refused by the queue (technical error)."
            if r.refused_by_queue
            else "."
        ),
        f"Live calls queued: {r.queued_live}; answered {r.answered_live}, hung up while "
        f"waiting {r.abandoned}.",
        f"Waited for an agent: {_pct(r.p_wait)}; average speed of answer {_secs(r.asa_s)}; "
        f"longest wait {_secs(r.max_wait_s)}; answered within {r.sl_threshold_s:g} s: "
        f"{_pct(r.service_level)}.",
        f"Callbacks requested: {r.callbacks_requested}; completed {r.callbacks_completed}, "
        f"unreachable after every attempt {r.callbacks_unreachable}, still to call "
        f"{r.callbacks_waiting_at_end}; longest delay to the first call back "
        f"{_secs(r.max_callback_delay_s)}.",
        f"Agent occupancy: {_pct(r.agent_occupancy)} of signed-in time on calls or in wrap-up.",
        f"Checks from the records: lost {r.lost}, duplicated {r.duplicated}, served out of "
        f"order {r.order_violations}; still in line at the end {r.waiting_at_end}.",
    ]
    if r.erlang_c:
        e = r.erlang_c
        lines.append(
            f"Erlang C for the same live traffic ({e['traffic_erlangs']:.2f} erlangs): waited "
            f"{_pct(e['p_wait'])}, ASA {_secs(e['asa_s'])}, SL {_pct(e['service_level'])} "
            "(the formula assumes nobody hangs up and one skill)."
        )
    lines += ["", "Contacts waiting in line (ready now; callbacks held back not counted):"]
    lines += terminal_chart(day.samples, plan)
    lines.append(f"Simulated in {r.wall_time_s:.1f} s.")
    for problem in r.problems:
        lines.append(f"! {problem}")
    return "\n".join(lines)


BLOCKS = " ▁▂▃▄▅▆▇█"


def terminal_chart(
    samples: list[Sample], plan: DayPlan, *, width: int = 72, height: int = 8
) -> list[str]:
    """A bar chart of the line over the day, one column per time slice (its maximum)."""
    if not samples:
        return ["(no samples)"]
    end = max(s.at_s for s in samples) or 1.0
    columns = [0] * width
    for s in samples:
        col = min(width - 1, int(s.at_s / end * (width - 1)))
        columns[col] = max(columns[col], s.waiting)
    # a slice without a sample keeps the level of the one before it
    seen = [False] * width
    for s in samples:
        seen[min(width - 1, int(s.at_s / end * (width - 1)))] = True
    for i in range(1, width):
        if not seen[i]:
            columns[i] = columns[i - 1]
    top = max(columns)
    if top == 0:
        return ["(nobody ever waited)"]
    rows = []
    for level in range(height, 0, -1):
        line = ""
        for value in columns:
            filled = value / top * height - (level - 1)
            line += BLOCKS[max(0, min(8, int(round(filled * 8))))] if filled < 1 else "█"
        label = f"{round(top * level / height):>4} " if level in (height, 1) else "     "
        rows.append(label + "│" + line)
    rows.append("     └" + "─" * width)
    ticks = [" "] * width
    hours_shown = int(end // 3600) + 1
    step = max(1, hours_shown // 8)
    for h in range(0, hours_shown, step):
        col = int(h * 3600 / end * (width - 1))
        label = plan.hour_label(h)
        if col + len(label) <= width:
            ticks[col : col + len(label)] = list(label)
    rows.append("      " + "".join(ticks))
    return rows


CSV_FIELDS = (
    "arrival",
    "called_at",
    "fate",
    "contact_id",
    "kind",
    "channel",
    "language",
    "urgent",
    "joined_at",
    "first_offer_at",
    "answered_at",
    "wait_s",
    "attempts",
    "outcome",
    "closed_at",
    "agents",
    "promoted_at",
    "out_of_order",
)


def write_csv(day: Day, stream: IO[str]) -> int:
    """One row per caller, in order of arrival; returns the number of rows."""
    zone = day.plan.zone

    def when(ms: int | None) -> str:
        return "" if ms is None else from_ms(ms).astimezone(zone).isoformat(timespec="milliseconds")

    writer = csv.writer(stream)
    writer.writerow(CSV_FIELDS)
    start = day.plan.start_at
    for a in day.arrivals:
        called = datetime.fromtimestamp(start.timestamp() + a.at, zone)
        cid = day.contact_of.get(a.index)
        rec: Record | None = day.audit.records.get(cid) if cid is not None else None
        fate = day.fate.get(a.index, "queued" if rec is not None else "in_ivr")
        if rec is None:
            writer.writerow(
                [
                    a.index,
                    called.isoformat(timespec="milliseconds"),
                    fate,
                    "",
                    "",
                    a.channel,
                    a.language,
                ]
                + [""] * (len(CSV_FIELDS) - 7)
            )
            continue
        writer.writerow(
            [
                a.index,
                called.isoformat(timespec="milliseconds"),
                fate,
                rec.id,
                rec.kind,
                rec.channel,
                rec.language,
                int(rec.urgent),
                when(rec.created_ms),
                when(rec.first_offer_ms),
                when(rec.answered_ms),
                "" if rec.wait_ms is None else f"{rec.wait_ms / 1000:.3f}",
                rec.attempts,
                rec.outcome,
                when(rec.closed_ms),
                ";".join(str(aid) for _, aid in rec.accepts),
                when(rec.promoted_ms),
                int(rec.out_of_order),
            ]
        )
    return len(day.arrivals)


def write_plot(day: Day, path: Path) -> None:
    """Two panels: the line and the agents over the day; service level by hour."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable(PLOT_HINT) from None
    plan, r = day.plan, day.report
    hours = [s.at_s / 3600 for s in day.samples]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=False)
    top.step(hours, [s.waiting for s in day.samples], where="post", label="waiting (ready)")
    top.step(hours, [s.held for s in day.samples], where="post", label="callbacks held back")
    top.step(
        hours,
        [s.on_duty for s in day.samples],
        where="post",
        label="agents signed in",
        linestyle="--",
    )
    top.set_ylabel("contacts / agents")
    top.set_xlabel(f"hours after {plan.start:%H:%M}")
    top.set_title(f"Simulated day {plan.day.isoformat()} (seed {plan.seed})")
    top.legend(loc="upper right")
    labels = [h.hour for h in r.by_hour]
    levels = [(h.service_level or 0) * 100 for h in r.by_hour]
    bottom.bar(labels, levels, color="#1d4ed8")
    bottom.axhline(80, color="#b45309", linestyle=":", label="80 %")
    bottom.set_ylim(0, 100)
    bottom.set_ylabel(f"answered within {plan.sl_threshold_s:g} s (%)")
    bottom.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
