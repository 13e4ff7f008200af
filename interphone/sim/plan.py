"""What a simulated day is made of: its parameters, checked once, in one frozen object.

Every duration is in seconds of virtual time. Shares are between 0 and 1. A value given
per hour is a tuple with one entry (the same every hour) or one entry per hour of the
simulated period.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..config import QueueSettings
from ..sites import ALWAYS

HANDLE_DISTRIBUTIONS = ("exponential", "lognormal")
PROFILES = ("flat", "monday")
# Relative call volume by local clock hour on a Monday at a préfecture's foreigners'
# service: people call as the line opens, after a weekend of worry; a lull at lunch.
# Only the shape matters: the weights are rescaled so that the day's mean rate is the
# ``arrivals_per_hour`` given.
MONDAY_WEIGHTS = {
    7: 0.6,
    8: 1.5,
    9: 2.0,
    10: 1.6,
    11: 1.2,
    12: 0.6,
    13: 0.8,
    14: 1.0,
    15: 0.8,
    16: 0.6,
    17: 0.4,
}
OFF_HOURS_WEIGHT = 0.2
MAX_HOURS = 24 * 200  # long benchmark runs; a day is usually 8 to 12 hours
MAX_AGENTS = 500


class PlanError(ValueError):
    """A plan that cannot be simulated; the message says which option and why."""


@dataclass(frozen=True)
class DayPlan:
    """A day to simulate. Defaults describe an ordinary préfecture day, not the textbook
    Erlang C case (see :meth:`textbook`)."""

    hours: float = 8.0
    day: date = date(2027, 3, 1)  # a Monday, not a public holiday
    start: time = time(9, 0)
    timezone: str = "Europe/Paris"
    arrivals_per_hour: tuple[float, ...] = (120.0,)
    profile: str = "flat"
    agents: tuple[int, ...] = (6,)
    agent_languages: tuple[tuple[str, ...], ...] = (("fr",),)
    languages: tuple[tuple[str, float], ...] = (("fr", 1.0),)
    intercom_share: float = 0.15
    self_service: float = 0.3
    callback_share: float = 0.25
    closed_callback_share: float = 0.5
    urgent_share: float = 0.0
    patience_s: float = 300.0
    aht_s: float = 300.0
    handle: str = "exponential"
    handle_cv: float = 0.8
    wrap_up_s: float = 30.0
    ivr_s: float = 30.0
    accept_delay_s: float = 0.0
    callback_answer: float = 0.7
    ring_s: float = 30.0
    sl_threshold_s: float = 20.0
    opening: tuple[tuple[time, time], ...] | None = None  # None: open throughout
    callback_hours: tuple[tuple[time, time], ...] | None = None
    drain_s: float = 7200.0
    sample_s: float = 300.0
    seed: int = 1
    queue: QueueSettings = field(default_factory=QueueSettings)

    @classmethod
    def textbook(cls, **changes: Any) -> DayPlan:
        """The M/M/N case Erlang C describes: live calls only, one language, constant
        arrival rate, exponential handle time, no wrap-up, no self-service, nobody hangs up."""
        base = cls(
            arrivals_per_hour=(125.0,),
            agents=(8,),
            aht_s=180.0,
            handle="exponential",
            wrap_up_s=0.0,
            patience_s=math.inf,
            self_service=0.0,
            callback_share=0.0,
            intercom_share=0.0,
            ivr_s=0.0,
            accept_delay_s=0.0,
            hours=8.0,
            sample_s=900.0,
        )
        return replace(base, **changes).checked()

    # -- derived ------------------------------------------------------------------------
    @property
    def hour_count(self) -> int:
        return max(1, math.ceil(self.hours - 1e-9))

    @property
    def period_s(self) -> float:
        return self.hours * 3600.0

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def start_at(self) -> datetime:
        return datetime.combine(self.day, self.start, self.zone)

    @property
    def start_epoch(self) -> float:
        return self.start_at.timestamp()

    def hour_label(self, hour: int) -> str:
        return (self.start_at + timedelta(hours=hour)).strftime("%H:%M")

    def queue_settings(self) -> QueueSettings:
        return replace(self.queue, wrap_up_s=self.wrap_up_s)

    def rates(self) -> list[float]:
        """Arrival rate (calls per hour) for each hour of the period."""
        n = self.hour_count
        base = list(self.arrivals_per_hour) * n if len(self.arrivals_per_hour) == 1 else []
        if not base:
            base = list(self.arrivals_per_hour)
        if self.profile == "flat":
            return base[:n]
        weights = [
            MONDAY_WEIGHTS.get((self.start_at + timedelta(hours=h)).hour, OFF_HOURS_WEIGHT)
            for h in range(n)
        ]
        # the last hour may be partial: weight the mean by how much of it is simulated
        spans = [min(1.0, self.hours - h) for h in range(n)]
        mean = sum(w * s for w, s in zip(weights, spans, strict=True)) / sum(spans)
        return [base[h] * weights[h] / mean for h in range(n)]

    def agents_by_hour(self) -> list[int]:
        n = self.hour_count
        return list(self.agents) * n if len(self.agents) == 1 else list(self.agents)

    def pool_size(self) -> int:
        return max(self.agents_by_hour())

    def languages_of_agent(self, index: int) -> tuple[str, ...]:
        return self.agent_languages[index % len(self.agent_languages)]

    def agent_load_s(self) -> float:
        """Mean agent time per answered contact (talk + wrap-up), for Erlang C."""
        return self.aht_s + self.wrap_up_s

    # -- validation ---------------------------------------------------------------------
    def checked(self) -> DayPlan:
        """Return self, or raise :class:`PlanError` naming the first bad parameter."""
        _range("--hours", self.hours, 1 / 60, MAX_HOURS)
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise PlanError(f"--timezone: unknown time zone {self.timezone!r}") from None
        n = self.hour_count
        if len(self.arrivals_per_hour) not in (1, n):
            raise PlanError(
                f"--arrivals-per-hour: give one rate or one per hour ({n} for --hours "
                f"{self.hours:g}), not {len(self.arrivals_per_hour)}"
            )
        for rate in self.arrivals_per_hour:
            _range("--arrivals-per-hour", rate, 0, 100_000)
        if self.profile not in PROFILES:
            raise PlanError(f"--profile: one of {', '.join(PROFILES)}")
        if self.profile != "flat" and len(self.arrivals_per_hour) != 1:
            raise PlanError("--profile: a profile shapes one mean rate, not a list of rates")
        if len(self.agents) not in (1, n):
            raise PlanError(
                f"--agents: give one number or one per hour ({n} for --hours {self.hours:g}), "
                f"not {len(self.agents)}"
            )
        for count in self.agents:
            if not 0 <= count <= MAX_AGENTS:
                raise PlanError(f"--agents: each count must be between 0 and {MAX_AGENTS}")
        if self.pool_size() == 0:
            raise PlanError("--agents: at least one agent must work at some hour")
        if not self.agent_languages or any(not langs for langs in self.agent_languages):
            raise PlanError("--agent-languages: every agent speaks at least one language")
        for langs in self.agent_languages:
            for code in langs:
                _language_code("--agent-languages", code)
        if not self.languages:
            raise PlanError("--languages: give at least one language")
        for code, weight in self.languages:
            _language_code("--languages", code)
            _range("--languages", weight, 0, 1e6)
        if sum(w for _, w in self.languages) <= 0:
            raise PlanError("--languages: the shares must not all be zero")
        for name, share in (
            ("--intercom-share", self.intercom_share),
            ("--self-service", self.self_service),
            ("--callback-share", self.callback_share),
            ("--closed-callback-share", self.closed_callback_share),
            ("--urgent-share", self.urgent_share),
            ("--callback-answer", self.callback_answer),
        ):
            _range(name, share, 0, 1)
        if not (self.patience_s > 0):  # also refuses NaN; inf is allowed
            raise PlanError("--patience: seconds > 0, or inf for callers who never hang up")
        _range("--aht", self.aht_s, 1, 86_400)
        if self.handle not in HANDLE_DISTRIBUTIONS:
            raise PlanError(f"--handle: one of {', '.join(HANDLE_DISTRIBUTIONS)}")
        _range("--handle-cv", self.handle_cv, 0.01, 10)
        _range("--wrap-up", self.wrap_up_s, 0, 3600)
        _range("--ivr-time", self.ivr_s, 0, 3600)
        _range("--ring-time", self.ring_s, 1, 600)
        _range("--sl-threshold", self.sl_threshold_s, 0, 86_400)
        _range("--drain", self.drain_s, 0, 7 * 86_400)
        _range("--sample", self.sample_s, 1, 86_400)
        if not 0 <= self.accept_delay_s < self.queue.offer_timeout_s:
            raise PlanError(
                f"--accept-delay: from 0 to less than the offer timeout "
                f"({self.queue.offer_timeout_s:g} s), or every offer would expire"
            )
        for name, spans in (("--open", self.opening), ("--callback-hours", self.callback_hours)):
            for begin, end in spans or ():
                if begin >= end:
                    raise PlanError(f"{name}: {begin:%H:%M}-{end:%H:%M} ends before it starts")
        return self


def _range(name: str, value: float, low: float, high: float) -> None:
    if not (low <= value <= high):  # NaN fails too
        raise PlanError(f"{name}: {value!r} is not between {low:g} and {high:g}")


def _language_code(name: str, code: str) -> None:
    if not code or len(code) > 8 or not code.isalpha() or code != code.lower():
        raise PlanError(f"{name}: {code!r} is not a short lower-case code such as fr or ar")


# -- parsing of command-line and form values ------------------------------------------------
def parse_numbers(name: str, text: str, kind: type[float] | type[int] = float) -> tuple[Any, ...]:
    """``"120"`` or ``"80,120,150"`` → a tuple (one value, or one per hour)."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise PlanError(f"{name}: give a number, or numbers separated by commas")
    try:
        values = tuple(kind(p) for p in parts)
    except ValueError:
        what = "whole numbers" if kind is int else "numbers"
        raise PlanError(f"{name}: {text!r} is not a list of {what}") from None
    return values


def parse_seconds(name: str, text: str, *, allow_inf: bool = False) -> float:
    raw = str(text).strip().lower()
    if allow_inf and raw in ("inf", "infinite", "infinity", "never"):
        return math.inf
    try:
        value = float(raw)
    except ValueError:
        hint = " or inf" if allow_inf else ""
        raise PlanError(f"{name}: {text!r} is not a number of seconds{hint}") from None
    if math.isinf(value) and not allow_inf:
        raise PlanError(f"{name}: must be finite")
    return value


def parse_mix(name: str, text: str) -> tuple[tuple[str, float], ...]:
    """``"fr=0.7,en=0.1,ar=0.2"`` → shares (rescaled later); a bare ``"fr"`` means 1."""
    mix: list[tuple[str, float]] = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        code, _, weight = part.partition("=")
        try:
            share = float(weight) if weight else 1.0
        except ValueError:
            raise PlanError(f"{name}: {part!r} is not code=share") from None
        mix.append((code.strip(), share))
    if not mix:
        raise PlanError(f"{name}: give languages such as fr=0.7,en=0.3")
    return tuple(mix)


def parse_agent_languages(name: str, text: str) -> tuple[tuple[str, ...], ...]:
    """``"fr+en,fr,fr+ar"``: what each agent speaks, assigned to agents in turn."""
    groups = []
    for part in (p.strip() for p in str(text).split(",")):
        if part:
            groups.append(tuple(code.strip() for code in part.split("+") if code.strip()))
    if not groups:
        raise PlanError(f"{name}: give languages such as fr+en,fr")
    return tuple(groups)


def parse_spans(name: str, text: str | None) -> tuple[tuple[time, time], ...] | None:
    """``"08:30-12:00,13:30-16:30"`` → periods; empty or ``always`` → None (always open)."""
    if text is None or str(text).strip().lower() in ("", "always"):
        return None
    spans = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        begin, sep, end = part.partition("-")
        try:
            if not sep:
                raise ValueError
            spans.append((time.fromisoformat(begin.strip()), time.fromisoformat(end.strip())))
        except ValueError:
            raise PlanError(f"{name}: {part!r} is not HH:MM-HH:MM") from None
    return tuple(sorted(spans))


def hours_mapping(spans: tuple[tuple[time, time], ...] | None) -> dict[str, Any]:
    """The site's hours format (every day the same), as the admin screen stores them."""
    if spans is None:
        return dict(ALWAYS)
    periods = [[a.strftime("%H:%M"), b.strftime("%H:%M")] for a, b in spans]
    return {day: periods for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def plan_from_options(**options: Any) -> DayPlan:
    """A checked plan from command-line or form values (strings where a list or ``inf``
    may be given); an option left out or ``None`` keeps its default."""
    o = {k: v for k, v in options.items() if v is not None}
    base = DayPlan()
    changes: dict[str, Any] = {}
    if "arrivals_per_hour" in o:
        changes["arrivals_per_hour"] = parse_numbers("--arrivals-per-hour", o["arrivals_per_hour"])
    if "agents" in o:
        changes["agents"] = parse_numbers("--agents", o["agents"], int)
    if "agent_languages" in o:
        changes["agent_languages"] = parse_agent_languages(
            "--agent-languages", o["agent_languages"]
        )
    if "languages" in o:
        changes["languages"] = parse_mix("--languages", o["languages"])
    if "patience" in o:
        changes["patience_s"] = parse_seconds("--patience", o["patience"], allow_inf=True)
    if "open" in o:
        changes["opening"] = parse_spans("--open", o["open"])
    if "callback_hours" in o:
        changes["callback_hours"] = parse_spans("--callback-hours", o["callback_hours"])
    if "start" in o:
        try:
            changes["start"] = time.fromisoformat(str(o["start"]))
        except ValueError:
            raise PlanError(f"--start: {o['start']!r} is not HH:MM") from None
    if "day" in o:
        try:
            changes["day"] = date.fromisoformat(str(o["day"]))
        except ValueError:
            raise PlanError(f"--date: {o['day']!r} is not YYYY-MM-DD") from None
    plain = {
        "hours": "hours",
        "profile": "profile",
        "timezone": "timezone",
        "intercom_share": "intercom_share",
        "self_service": "self_service",
        "callback_share": "callback_share",
        "closed_callback_share": "closed_callback_share",
        "urgent_share": "urgent_share",
        "aht": "aht_s",
        "handle": "handle",
        "handle_cv": "handle_cv",
        "wrap_up": "wrap_up_s",
        "ivr_time": "ivr_s",
        "accept_delay": "accept_delay_s",
        "callback_answer": "callback_answer",
        "ring_time": "ring_s",
        "sl_threshold": "sl_threshold_s",
        "drain": "drain_s",
        "sample": "sample_s",
        "seed": "seed",
    }
    for option, name in plain.items():
        if option in o:
            changes[name] = o[option]
    queue_changes: dict[str, Any] = {}
    if "retry_delay" in o:
        _range("--retry-delay", float(o["retry_delay"]), 0, 86_400)
        queue_changes["callback_retry_delay_s"] = float(o["retry_delay"])
    if "max_attempts" in o:
        if not 1 <= int(o["max_attempts"]) <= 20:
            raise PlanError("--max-attempts: between 1 and 20")
        queue_changes["callback_max_attempts"] = int(o["max_attempts"])
    if "offer_timeout" in o:
        _range("--offer-timeout", float(o["offer_timeout"]), 1, 3600)
        queue_changes["offer_timeout_s"] = float(o["offer_timeout"])
    if queue_changes:
        changes["queue"] = replace(base.queue, **queue_changes)
    unknown = (
        set(o)
        - set(plain)
        - {
            "arrivals_per_hour",
            "agents",
            "agent_languages",
            "languages",
            "patience",
            "open",
            "callback_hours",
            "start",
            "day",
            "retry_delay",
            "max_attempts",
            "offer_timeout",
        }
    )
    if unknown:
        raise PlanError(f"unknown options: {', '.join(sorted(unknown))}")
    return replace(base, **changes).checked()
