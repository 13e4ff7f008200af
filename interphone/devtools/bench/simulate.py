"""``interphone bench simulate``: the simulator against Erlang C, and its speed.

1. The textbook case (M/M/N: live calls only, one language, constant arrival rate,
   exponential handle time, no wrap-up, no self-service, nobody hangs up) over many
   calls, pushed through the real queue: simulated ``p_wait``, ``service_level`` and
   ``asa_s`` beside the Erlang C formula, with relative differences. The calls are split
   into seeded runs executed by parallel processes, each with its own private Redis
   server and database; each run drops its first ``warmup_s`` of calls (the line starts
   empty, which flatters the first minutes).
2. The wall time of a 2,000-call day with 8 agents (callbacks, hang-ups, wrap-up, two
   languages), and where the time goes: Redis round trips and SQL transactions.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from interphone.queue.estimate import average_speed_of_answer, erlang_c, service_level
from interphone.sim.day import simulate_day
from interphone.sim.plan import DayPlan

CALLS_PER_RUN = 50_000


@dataclass(frozen=True)
class Textbook:
    agents: int = 8
    arrivals_per_hour: float = 125.0
    aht_s: float = 180.0
    threshold_s: float = 20.0
    warmup_s: float = 1800.0

    @property
    def traffic(self) -> float:
        return self.arrivals_per_hour * self.aht_s / 3600

    def formula(self) -> dict[str, float]:
        a, n, h = self.traffic, self.agents, self.aht_s
        return {
            "p_wait": erlang_c(n, a),
            "service_level": service_level(n, a, h, self.threshold_s),
            "asa_s": average_speed_of_answer(n, a, h),
        }


def textbook_run(case: Textbook, calls: int, seed: int) -> dict[str, Any]:
    """One seeded run of about ``calls`` measured calls (plus the warm-up)."""
    hours = (calls / case.arrivals_per_hour) + case.warmup_s / 3600
    plan = DayPlan.textbook(
        hours=round(hours, 4),
        arrivals_per_hour=(case.arrivals_per_hour,),
        agents=(case.agents,),
        aht_s=case.aht_s,
        sl_threshold_s=case.threshold_s,
        seed=seed,
        sample_s=3600.0,
    )
    started = time.perf_counter()
    day = simulate_day(plan)
    wall = time.perf_counter() - started
    start_ms = int(round(plan.start_epoch * 1000))
    cutoff = start_ms + int(case.warmup_s * 1000)
    measured = waited = within = answered = 0
    wait_sum = 0
    for rec in day.audit.records.values():
        if rec.kind != "live" or rec.created_ms < cutoff:
            continue
        measured += 1
        if rec.first_offer_ms is None or rec.first_offer_ms > rec.created_ms:
            waited += 1
        if rec.wait_ms is not None:
            answered += 1
            wait_sum += rec.wait_ms
            if rec.wait_ms <= case.threshold_s * 1000:
                within += 1
    r = day.report
    return {
        "seed": seed,
        "contacts": len(day.audit.records),
        "measured": measured,
        "waited": waited,
        "within": within,
        "answered": answered,
        "wait_ms_sum": wait_sum,
        "refused": r.refused_by_queue,
        "lost": r.lost,
        "duplicated": r.duplicated,
        "order_violations": r.order_violations,
        "problems": r.problems[:3],
        "wall_s": round(wall, 1),
    }


def _run_packed(args: tuple[Textbook, int, int]) -> dict[str, Any]:
    """One run in a worker process; a failure is reported, not lost with the others."""
    case, calls, seed = args
    try:
        return textbook_run(case, calls, seed)
    except Exception as exc:  # carried back to the report
        return {"seed": seed, "error": f"{type(exc).__name__}: {exc}"}


def erlang_comparison(
    calls: int = 400_000,
    *,
    workers: int = 2,
    runs: int | None = None,
    seed: int = 1,
    case: Textbook | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    case = case or Textbook()
    runs = runs or max(workers, math.ceil(calls / CALLS_PER_RUN))
    per_run = math.ceil(calls / runs)
    jobs = [(case, per_run, seed + i) for i in range(runs)]
    started = time.perf_counter()
    done: list[dict[str, Any]] = []

    def finished(result: dict[str, Any]) -> None:
        done.append(result)
        if progress is not None:
            progress(f"run {len(done)}/{runs}: {result}")

    if workers <= 1:
        for job in jobs:
            finished(_run_packed(job))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for future in as_completed([pool.submit(_run_packed, job) for job in jobs]):
                finished(future.result())
    wall = time.perf_counter() - started
    failed = [r for r in done if "error" in r]
    results = sorted((r for r in done if "error" not in r), key=lambda r: int(r["seed"]))
    if not results:
        raise RuntimeError(f"every run failed: {failed}")
    measured = sum(r["measured"] for r in results)
    answered = sum(r["answered"] for r in results)
    simulated = {
        "p_wait": sum(r["waited"] for r in results) / measured,
        "service_level": sum(r["within"] for r in results) / measured,
        "asa_s": sum(r["wait_ms_sum"] for r in results) / answered / 1000,
    }
    formula = case.formula()
    relative = {k: (simulated[k] - formula[k]) / formula[k] for k in formula}
    tolerance = {"p_wait": 0.05, "service_level": 0.05, "asa_s": 0.10}
    contacts = sum(r["contacts"] for r in results)
    return {
        "case": {
            "agents": case.agents,
            "arrivals_per_hour": case.arrivals_per_hour,
            "aht_s": case.aht_s,
            "traffic_erlangs": round(case.traffic, 3),
            "occupancy": round(case.traffic / case.agents, 4),
            "sl_threshold_s": case.threshold_s,
            "warmup_s_per_run": case.warmup_s,
        },
        "calls_measured": measured,
        "contacts_simulated": contacts,
        "runs": runs,
        "workers": workers,
        "erlang_c": {k: round(v, 4) for k, v in formula.items()},
        "simulated": {k: round(v, 4) for k, v in simulated.items()},
        "relative_difference": {k: round(v, 4) for k, v in relative.items()},
        "tolerance": tolerance,
        "within_tolerance": all(abs(relative[k]) <= tolerance[k] for k in tolerance),
        "failed_runs": failed,
        "refused_by_queue": sum(r["refused"] for r in results),
        "lost": sum(r["lost"] for r in results),
        "duplicated": sum(r["duplicated"] for r in results),
        "order_violations": sum(r["order_violations"] for r in results),
        "wall_time_s": round(wall, 1),
        "run_wall_times_s": [round(r["wall_s"], 1) for r in results],
        "ms_per_contact_per_process": round(
            sum(r["wall_s"] for r in results) / max(1, contacts) * 1000, 2
        ),
    }


def busy_day_plan(seed: int = 1) -> DayPlan:
    """2,000 calls in 8 hours (250 an hour), 8 agents; everybody reaches the queue."""
    return DayPlan(
        hours=8.0,
        arrivals_per_hour=(250.0,),
        agents=(8,),
        aht_s=90.0,
        wrap_up_s=15.0,
        patience_s=300.0,
        self_service=0.0,
        callback_share=0.2,
        languages=(("fr", 0.8), ("en", 0.2)),
        agent_languages=(("fr", "en"), ("fr",)),
        seed=seed,
    ).checked()


def day_speed(seed: int = 1) -> dict[str, Any]:
    """Simulate the busy day and count the round trips that the production code made."""
    plan = busy_day_plan(seed)
    started = time.perf_counter()
    cpu = time.process_time()
    day = simulate_day(plan)
    wall = time.perf_counter() - started
    r = day.report
    return {
        "arrivals": r.arrivals,
        "contacts": len(day.audit.records),
        "agents": 8,
        "wall_time_s": round(wall, 1),
        "process_cpu_s": round(time.process_time() - cpu, 1),
        "ms_per_contact": round(wall / max(1, len(day.audit.records)) * 1000, 1),
        "lost": r.lost,
        "duplicated": r.duplicated,
        "service_level": r.service_level,
        "cpus": os.cpu_count(),
    }
