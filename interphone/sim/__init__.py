"""Simulated days: callers pushed through the real queue on a virtual clock.

See ``docs/simulation.md``. The command line is ``interphone simulate day|staff`` and
``interphone bench simulate``; the supervisor's planning screen is ``/supervisor/plan``.
"""

from __future__ import annotations

from .day import simulate_day
from .plan import DayPlan, PlanError
from .report import Day, PlotUnavailable, Report, render_text, write_csv, write_plot
from .sandbox import Sandbox

__all__ = [
    "Day",
    "DayPlan",
    "PlanError",
    "PlotUnavailable",
    "Report",
    "Sandbox",
    "render_text",
    "simulate_day",
    "write_csv",
    "write_plot",
]
