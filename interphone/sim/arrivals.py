"""The day's callers, drawn once from the seed before anything is simulated.

Each arrival carries every random draw it may need (its patience, a handle time and an
answer for each callback attempt...), always drawn in the same order. So the same seed
gives the same callers whatever the staffing: two staffings are compared on the same
day (common random numbers), which makes the staffing search far less noisy.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .plan import DayPlan


@dataclass(frozen=True, slots=True)
class Arrival:
    index: int
    at: float  # seconds after the start of the period: the call begins
    self_served: bool  # the IVR answers them (case status): they never reach the queue
    wants_callback: bool  # asks to be called back rather than wait on the line
    closed_callback: bool  # if the line is closed when they ask, takes a callback
    language: str
    channel: str  # phone or intercom
    urgent: bool  # permit expiring soon: the queue puts them in the urgent class
    patience_s: float  # how long they hold before hanging up (inf: never)
    ivr_s: float  # time in the menus before joining the queue
    handle_s: tuple[float, ...]  # talk time of each attempt
    answers: tuple[bool, ...]  # callbacks: does the applicant pick up, per attempt


def handle_sampler(plan: DayPlan, rng: random.Random) -> float:
    if plan.handle == "lognormal":
        sigma2 = math.log(1 + plan.handle_cv**2)
        mu = math.log(plan.aht_s) - sigma2 / 2
        return rng.lognormvariate(mu, math.sqrt(sigma2))
    return rng.expovariate(1 / plan.aht_s)


def generate(plan: DayPlan) -> list[Arrival]:
    """Poisson arrivals, hour by hour at that hour's rate, with their draws."""
    rng = random.Random(plan.seed)
    names = [code for code, _ in plan.languages]
    weights = [w for _, w in plan.languages]
    attempts = max(1, plan.queue.callback_max_attempts)
    out: list[Arrival] = []
    for hour, rate in enumerate(plan.rates()):
        begin, end = hour * 3600.0, min((hour + 1) * 3600.0, plan.period_s)
        if rate <= 0:
            continue
        t = begin
        while True:
            t += rng.expovariate(rate / 3600.0)
            if t >= end:
                break
            patience = (
                math.inf if math.isinf(plan.patience_s) else rng.expovariate(1 / plan.patience_s)
            )
            out.append(
                Arrival(
                    index=len(out),
                    at=t,
                    self_served=rng.random() < plan.self_service,
                    wants_callback=rng.random() < plan.callback_share,
                    closed_callback=rng.random() < plan.closed_callback_share,
                    language=rng.choices(names, weights)[0],
                    channel="intercom" if rng.random() < plan.intercom_share else "phone",
                    urgent=rng.random() < plan.urgent_share,
                    patience_s=patience,
                    ivr_s=plan.ivr_s * rng.uniform(0.5, 1.5),
                    handle_s=tuple(handle_sampler(plan, rng) for _ in range(attempts)),
                    answers=tuple(rng.random() < plan.callback_answer for _ in range(attempts)),
                )
            )
    return out
