"""Wait estimates: live throughput when there is history, Erlang C when there is none."""

from __future__ import annotations

import math


def erlang_c(agents: int, traffic: float) -> float:
    """Probability that an arriving call waits (Erlang C), for ``traffic`` erlangs.

    Computed with the numerically stable Erlang B recursion.
    """
    if agents <= 0:
        return 1.0
    if traffic <= 0:
        return 0.0
    if traffic >= agents:
        return 1.0
    b = 1.0
    for k in range(1, agents + 1):
        b = traffic * b / (k + traffic * b)
    rho = traffic / agents
    return b / (1 - rho + rho * b)


def average_speed_of_answer(agents: int, traffic: float, handle_time_s: float) -> float:
    """Mean wait of all calls (ASA) in an M/M/N queue; ``inf`` when overloaded."""
    if agents <= 0 or traffic >= agents:
        return math.inf
    return erlang_c(agents, traffic) * handle_time_s / (agents - traffic)


def service_level(agents: int, traffic: float, handle_time_s: float, threshold_s: float) -> float:
    """Share of calls answered within ``threshold_s`` seconds (M/M/N)."""
    if agents <= 0 or traffic >= agents:
        return 0.0
    pw = erlang_c(agents, traffic)
    return 1.0 - pw * math.exp(-(agents - traffic) * threshold_s / handle_time_s)


def agents_needed(
    traffic: float, handle_time_s: float, target_sl: float, threshold_s: float
) -> int:
    """Fewest agents that reach the target service level."""
    n = max(1, math.ceil(traffic))
    while service_level(n, traffic, handle_time_s, threshold_s) < target_sl:
        n += 1
    return n


def wait_for_position(
    position: int,
    *,
    staffed_agents: int,
    completions: int,
    window_s: float,
    default_handle_time_s: float,
) -> float | None:
    """Expected seconds until the contact at ``position`` (1-based) is served.

    With at least five completions in the recent window, the observed throughput is
    used; otherwise each staffed agent is assumed to serve one contact per default
    handle time. ``None`` when nobody is staffed: no honest estimate exists.
    """
    if position <= 0:
        return 0.0
    if completions >= 5 and window_s > 0:
        rate = completions / window_s
        return position / rate
    if staffed_agents <= 0:
        return None
    return position * default_handle_time_s / staffed_agents
