"""A simulated day's plan and its callers: parsing, the Monday profile, and callers that
do not depend on the staffing (so that staffings are compared on the same day)."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import time

import pytest

from interphone.sim import DayPlan, PlanError
from interphone.sim.arrivals import generate
from interphone.sim.plan import parse_spans, plan_from_options


def test_monday_profile_keeps_the_days_mean_rate_and_peaks_in_the_morning() -> None:
    plan = DayPlan(hours=8, start=time(8, 0), profile="monday", arrivals_per_hour=(100.0,))
    rates = plan.rates()
    assert math.isclose(sum(rates) / len(rates), 100.0)
    assert max(rates) == rates[1]  # 09:00-10:00
    assert rates[4] < 60  # lunch


def test_rates_and_agents_given_per_hour_must_cover_every_hour() -> None:
    with pytest.raises(PlanError, match="--arrivals-per-hour"):
        plan_from_options(hours=3, arrivals_per_hour="10,20")
    with pytest.raises(PlanError, match="--agents"):
        plan_from_options(hours=3, agents="1,2")
    plan = plan_from_options(hours=2.5, arrivals_per_hour="10,20,30", agents="1,2,3")
    assert plan.rates() == [10.0, 20.0, 30.0] and plan.agents_by_hour() == [1, 2, 3]


def test_hours_that_end_before_they_start_or_do_not_parse_are_refused() -> None:
    with pytest.raises(PlanError, match="ends before it starts"):
        plan_from_options(open="12:00-09:00")
    with pytest.raises(PlanError, match="HH:MM-HH:MM"):
        parse_spans("--open", "9h-12h")
    assert parse_spans("--open", "always") is None
    assert plan_from_options(patience="inf").patience_s == math.inf


def test_the_callers_of_a_seed_do_not_depend_on_the_staffing() -> None:
    plan = DayPlan(hours=2, seed=11)
    assert generate(plan) == generate(replace(plan, agents=(20,), wrap_up_s=0.0))
    assert generate(plan) != generate(replace(plan, seed=12))


def test_arrivals_come_at_the_planned_rate_and_handle_times_have_the_planned_mean() -> None:
    plan = DayPlan.textbook(hours=400, seed=2)
    calls = generate(plan)
    # Poisson: 50,000 expected, standard deviation 224
    assert abs(len(calls) - 50_000) < 4 * 224
    mean = sum(c.handle_s[0] for c in calls) / len(calls)
    assert abs(mean - 180.0) < 4 * 180.0 / math.sqrt(len(calls))
    lognormal = generate(replace(plan, handle="lognormal", handle_cv=0.5, hours=100))
    mean = sum(c.handle_s[0] for c in lognormal) / len(lognormal)
    assert abs(mean - 180.0) < 4 * 0.5 * 180.0 / math.sqrt(len(lognormal))
