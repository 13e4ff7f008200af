"""The simulator on the textbook case (M/M/N: live calls only, one language, constant
arrival rate, exponential handle times, no wrap-up, no self-service, nobody hangs up),
where queueing theory knows the answer.

Two checks on one seeded run through the real queue:

1. Caller by caller, the wait equals the wait in an ideal first-come-first-served queue
   with the same arrivals and handle times (the Kiefer-Wolfowitz recursion: with handle
   times attached to callers, FCFS waits do not depend on which free agent takes the
   call). This is exact, up to the queue's millisecond clock, and needs no statistics.
2. The day's p_wait, service level and ASA agree with the Erlang C formula within the
   run's sampling error. The tolerances are four standard deviations of each estimate
   for this many calls, from 300 replications of the M/M/2 model (a = 1 erlang,
   AHT 120 s, 20 s threshold) at 2,000 calls: relative SD 6.3 % (p_wait),
   2.9 % (service level) and 14.7 % (ASA), scaled by sqrt(2000 / n). ASA is the
   noisiest: it averages long waits that come in bursts. The tight comparison (400,000
   calls: 5 % and 10 %) is ``interphone bench simulate``, too long for the test suite.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator

import pytest

from interphone.queue.estimate import average_speed_of_answer, erlang_c, service_level
from interphone.sim import Day, DayPlan, Sandbox, simulate_day

AGENTS, RATE, AHT, THRESHOLD = 2, 30.0, 120.0, 20.0  # a = 1 erlang, 50 % occupancy
CALLS = 1_500
RELATIVE_SD_AT_2000 = {"p_wait": 0.063, "service_level": 0.029, "asa_s": 0.147}


@pytest.fixture(scope="module")
def textbook_day() -> Iterator[Day]:
    plan = DayPlan.textbook(
        hours=CALLS / RATE,
        arrivals_per_hour=(RATE,),
        agents=(AGENTS,),
        aht_s=AHT,
        sl_threshold_s=THRESHOLD,
        seed=20,
        sample_s=3600.0,
    )
    with Sandbox() as box:
        yield simulate_day(plan, sandbox=box)


def test_each_caller_waits_exactly_as_in_an_ideal_first_come_first_served_queue(
    textbook_day: Day,
) -> None:
    free = [0.0] * AGENTS
    worst = 0.0
    for a in textbook_day.arrivals:
        start = max(a.at, heapq.heappop(free))
        heapq.heappush(free, start + a.handle_s[0])
        rec = textbook_day.audit.records[textbook_day.contact_of[a.index]]
        assert rec.wait_ms is not None, f"caller {a.index} was never answered"
        worst = max(worst, abs(rec.wait_ms / 1000 - (start - a.at)))
    # millisecond rounding of each event, accumulated over a busy period
    assert worst < 0.05, f"a caller's wait differs from FCFS by {worst:.3f} s"


def test_seeded_textbook_day_agrees_with_erlang_c_within_its_sampling_error(
    textbook_day: Day,
) -> None:
    r = textbook_day.report
    traffic = RATE * AHT / 3600
    expected = {
        "p_wait": erlang_c(AGENTS, traffic),
        "service_level": service_level(AGENTS, traffic, AHT, THRESHOLD),
        "asa_s": average_speed_of_answer(AGENTS, traffic, AHT),
    }
    simulated = {"p_wait": r.p_wait, "service_level": r.service_level, "asa_s": r.asa_s}
    assert r.queued_live > 0.9 * CALLS
    for key, value in expected.items():
        tolerance = 4 * RELATIVE_SD_AT_2000[key] * math.sqrt(2000 / r.queued_live)
        got = simulated[key]
        assert got is not None
        assert abs(got - value) / value <= tolerance, (key, got, value, tolerance)


def test_textbook_day_loses_and_duplicates_nobody_and_keeps_arrival_order(
    textbook_day: Day,
) -> None:
    r = textbook_day.report
    assert (r.lost, r.duplicated, r.order_violations, r.problems) == (0, 0, 0, [])
    assert r.answered_live == r.queued_live == r.arrivals
    assert r.abandoned == r.self_served == r.callbacks_requested == 0
