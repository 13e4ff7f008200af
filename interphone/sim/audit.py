"""What the records say happened: contacts and events from SQL, the line from Redis.

The figures of a simulated day and its safety checks are computed here, from what the
production code wrote, not from the simulator's own bookkeeping. The simulator's list of
the contacts it created is used only to find any that the records do not know (lost).

- **lost**: a contact that is neither completed, abandoned, unreachable, nor still held
  consistently at the end (waiting, offered or on a call in SQL *and* in Redis).
- **duplicated**: a contact created twice, offered while already offered or on a call,
  accepted without an open offer, closed twice, held by two indexes of the line at once,
  still in Redis after being closed; or an agent offered a contact while holding another.
- **order violations**: an offer made to one contact while a contact ahead of it in line
  (a higher class, or the same class and an earlier arrival) was ready and could have been
  given to that agent (it speaks the agent's language, or has waited past the
  language-relax age); **early offers**: a contact offered before its retry delay or the
  callback hours allowed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from ..models import Agent, Contact, Event
from ..queue.clock import to_ms
from ..queue.store import member
from ..redis_text import as_text
from ..runtime import Runtime

CLOSING = {
    "contact.completed": "completed",
    "contact.abandoned": "abandoned",
    "callback.unreachable": "unreachable",
    "contact.cancelled": "cancelled",
}
RELEASES = ("contact.abandoned", "contact.cancelled")
RETURNS = ("offer.expired", "offer.declined", "offer.withdrawn")
ACCOUNTED = ("completed", "abandoned", "unreachable")
ACTIVE = ("waiting", "offered", "on_call")
MAX_PROBLEMS = 20


@dataclass
class Record:
    """One contact's life, as the records tell it (times in ms since the epoch)."""

    id: int
    kind: str
    channel: str
    language: str
    urgent: bool
    arrived_ms: int
    created_ms: int = 0
    state: str = ""  # SQL state at the end
    attempts: int = 0
    offers: list[tuple[int, int]] = field(default_factory=list)  # (ms, agent)
    accepts: list[tuple[int, int]] = field(default_factory=list)  # (ms, agent)
    closed_ms: int | None = None
    outcome: str = ""  # completed, abandoned, unreachable, or the state held at the end
    promoted_ms: int | None = None
    lost: bool = False
    duplicated: bool = False
    out_of_order: bool = False

    @property
    def first_offer_ms(self) -> int | None:
        return self.offers[0][0] if self.offers else None

    @property
    def answered_ms(self) -> int | None:
        return self.accepts[0][0] if self.accepts else None

    @property
    def wait_ms(self) -> int | None:
        """From joining the queue to the agent taking the call (first attempt)."""
        return None if self.answered_ms is None else self.answered_ms - self.created_ms


@dataclass
class AgentSpan:
    agent_id: int
    state: str  # available | offered | on_call | wrap_up (offline and paused not kept)
    start_ms: int
    end_ms: int


@dataclass
class Audit:
    records: dict[int, Record]
    spans: list[AgentSpan]
    lost: int = 0
    duplicated: int = 0
    order_violations: int = 0
    callback_order_violations: int = 0
    early_offers: int = 0  # offered before a retry delay or callback hours allowed it
    waiting_at_end: int = 0
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)


def audit(
    rt: Runtime,
    site: str,
    *,
    expected: list[int],
    not_before: dict[int, int],
    relax_ms: int,
    retry_ms: int,
    end_ms: int,
) -> Audit:
    """Read everything back and check it. ``expected``: ids the simulator was given."""
    with rt.sessions() as s:
        rows = s.execute(
            select(
                Contact.id,
                Contact.kind,
                Contact.channel,
                Contact.language,
                Contact.arrived_ms,
                Contact.state,
                Contact.attempts,
                Contact.priority_class,
            ).order_by(Contact.id)
        ).all()
        events = s.execute(
            select(Event.kind, Event.at, Event.contact_id, Event.agent_id, Event.data).order_by(
                Event.id
            )
        ).all()
        languages = {aid: set(langs) for aid, langs in s.execute(select(Agent.id, Agent.languages))}
    promoted = {cid for kind, _, cid, _, _ in events if kind == "contact.promoted"}
    records: dict[int, Record] = {}
    for cid, kind, channel, language, arrived, state, attempts, cls in rows:
        records[cid] = Record(
            id=cid,
            kind=kind,
            channel=channel,
            language=language,
            urgent=cls == 0 and cid not in promoted,  # urgent from the start
            arrived_ms=arrived,
            state=state,
            attempts=attempts,
        )
    result = Audit(records, [])
    replay(result, events, languages, not_before, relax_ms, retry_ms, end_ms)
    _check_redis(result, rt, site)
    for cid in expected:
        if cid not in records:
            result.problem(f"contact {cid} was acknowledged but has no record")
            result.lost += 1
    result.lost += sum(1 for r in records.values() if r.lost)
    result.duplicated = sum(1 for r in records.values() if r.duplicated)
    result.waiting_at_end = sum(1 for r in records.values() if r.outcome in ACTIVE and not r.lost)
    return result


def replay(
    result: Audit,
    events: Any,
    languages: dict[int, set[str]],
    not_before: dict[int, int],
    relax_ms: int,
    retry_ms: int,
    end_ms: int,
) -> None:
    """Replay the event log in order: each contact's and each agent's life, and checks."""
    records = result.records
    state: dict[int, str] = {}  # contact -> waiting | offered | on_call | held | closed
    cls = {cid: 0 for cid, rec in records.items() if rec.urgent}
    ready: dict[int, int] = {}  # contacts in line -> ms from which they may be offered
    holding: dict[int, int | None] = {}  # agent -> contact offered or on call
    agent_state: dict[int, tuple[str, int]] = {}  # agent -> (state, since ms)

    def agent_to(aid: int, new: str, ms: int) -> None:
        old, since = agent_state.get(aid, ("offline", ms))
        if old not in ("offline", "paused") and ms > since:
            result.spans.append(AgentSpan(aid, old, since, ms))
        agent_state[aid] = (new, ms)

    for kind, at, cid, aid, data in events:
        ms = to_ms(at.timestamp())
        rec = records.get(cid) if cid is not None else None
        if kind == "contact.created" and rec is not None:
            if state.get(cid) is not None:
                rec.duplicated = True
                result.problem(f"contact {cid} created twice")
            rec.created_ms = ms
            rec.kind = str((data or {}).get("kind", rec.kind))
            state[cid] = "waiting"
            ready[cid] = not_before.get(cid, 0)
        elif kind == "contact.promoted" and rec is not None:
            cls[cid] = 0
            rec.promoted_ms = ms
        elif kind == "offer.made" and rec is not None and aid is not None:
            if state.get(cid) not in ("waiting", "held"):
                rec.duplicated = True
                result.problem(f"contact {cid} offered while {state.get(cid)}")
            elif ready.get(cid, 0) > ms:
                result.early_offers += 1
                result.problem(f"contact {cid} offered before its not-before time")
            if holding.get(aid) is not None:
                rec.duplicated = True
                result.problem(f"agent {aid} offered contact {cid} while holding {holding[aid]}")
            _check_order(result, rec, aid, ms, ready, cls, languages, relax_ms)
            ready.pop(cid, None)
            state[cid] = "offered"
            holding[aid] = cid
            rec.offers.append((ms, aid))
            agent_to(aid, "offered", ms)
        elif kind == "offer.accepted" and rec is not None and aid is not None:
            if state.get(cid) != "offered" or holding.get(aid) != cid:
                rec.duplicated = True
                result.problem(f"contact {cid} accepted without an open offer")
            state[cid] = "on_call"
            rec.accepts.append((ms, aid))
            agent_to(aid, "on_call", ms)
        elif kind in RETURNS and rec is not None:
            if aid is not None and holding.get(aid) == cid:
                holding[aid] = None
                if agent_state.get(aid, ("", 0))[0] == "offered":
                    agent_to(aid, "available", ms)
            if state.get(cid) == "offered":
                state[cid] = "waiting"
                ready[cid] = 0
        elif kind == "callback.retry" and rec is not None:
            if state.get(cid) != "on_call":
                rec.duplicated = True
                result.problem(f"contact {cid} finished while {state.get(cid)}")
            state[cid] = "held"
            ready[cid] = ms + retry_ms
            if aid is not None and holding.get(aid) == cid:
                holding[aid] = None
        elif kind in CLOSING and rec is not None:
            if state.get(cid) == "closed":
                rec.duplicated = True
                result.problem(f"contact {cid} closed twice")
            elif (kind in RELEASES and not (data or {}).get("before_bridge")) == (
                state.get(cid) == "on_call"
            ):
                # hanging up or a cancellation ends a wait, the rest end a call; a live
                # caller who hangs up before being put through ends an accepted call
                rec.duplicated = True
                result.problem(f"contact {cid}: {kind} while {state.get(cid)}")
            state[cid] = "closed"
            ready.pop(cid, None)
            rec.closed_ms = ms
            rec.outcome = CLOSING[kind]
            if aid is not None and holding.get(aid) == cid:
                holding[aid] = None
        elif kind == "agent.leg_missed" and rec is not None and aid is not None:
            # the agent's leg went unanswered: the contact back at its place, the agent free
            if state.get(cid) == "on_call":
                state[cid] = "waiting"
                ready[cid] = 0
            if holding.get(aid) == cid:
                holding[aid] = None
            agent_to(aid, str((data or {}).get("state") or "available"), ms)
        elif kind == "agent.presence" and aid is not None:
            new = str((data or {}).get("state", ""))
            if new in ("offline", "paused", "available", "wrap_up"):
                agent_to(aid, new, ms)
                if new in ("offline", "paused", "available") and holding.get(aid) is not None:
                    held = holding[aid]
                    if held is not None and state.get(held) == "on_call":
                        rec2 = records.get(held)
                        if rec2 is not None:
                            rec2.duplicated = True
                        result.problem(f"agent {aid} went {new} during a call")
    for aid, (old, since) in agent_state.items():
        if old not in ("offline", "paused") and end_ms > since:
            result.spans.append(AgentSpan(aid, old, since, end_ms))
    for rec in records.values():
        if not rec.outcome:
            rec.outcome = rec.state


def _check_order(
    result: Audit,
    rec: Record,
    aid: int,
    ms: int,
    ready: dict[int, int],
    cls: dict[int, int],
    languages: dict[int, set[str]],
    relax_ms: int,
) -> None:
    """Nobody ahead in line (a higher class, or the same class and an earlier arrival)
    whom this agent could have taken may still be waiting when this contact gets an
    offer. "Could have taken": the agent speaks their language, or they have waited past
    the language-relax age, after which any agent may take them."""
    records = result.records
    mine = (cls.get(rec.id, 1), rec.arrived_ms, rec.id)
    speaks = languages.get(aid, set())
    for other_id, due in ready.items():
        if other_id == rec.id or due > ms:
            continue
        other = records[other_id]
        if (cls.get(other_id, 1), other.arrived_ms, other_id) >= mine:
            continue
        if other.language not in speaks and ms - other.arrived_ms < relax_ms:
            continue
        result.order_violations += 1
        rec.out_of_order = True
        result.problem(f"contact {rec.id} offered at {ms} while contact {other_id} was ahead")
        if rec.kind == "callback" and cls.get(other_id, 1) == mine[0]:
            result.callback_order_violations += 1


def _check_redis(result: Audit, rt: Runtime, site: str) -> None:
    """Every contact still active in SQL is held the same way in Redis, exactly once;
    nothing closed is left in Redis."""
    store = rt.queue.store
    prefix = store.prefix
    waiting = set(store.waiting_ids(site))
    delayed = set(store.delayed_ids(site))
    offers = {int(as_text(m)) for m in rt.redis.zrange(f"{prefix}offers", 0, -1)}
    in_redis = {
        int(as_text(key).rsplit(":", 1)[1])
        for key in rt.redis.scan_iter(match=f"{prefix}contact:*", count=1000)
    }
    calls: dict[int, int] = defaultdict(int)
    for key in rt.redis.scan_iter(match=f"{prefix}agent:*", count=1000):
        call = rt.redis.hget(key, "call")
        if call:
            calls[int(as_text(call))] += 1
    for cid, rec in result.records.items():
        places = (cid in waiting) + (cid in delayed) + (cid in offers)
        if places > 1 or calls.get(cid, 0) > 1:
            rec.duplicated = True
            result.problem(f"contact {cid} held {places + calls.get(cid, 0)} times in Redis")
        if rec.state in ACCOUNTED:
            if rec.outcome != rec.state:
                rec.lost = True
                result.problem(f"contact {cid} is {rec.state} in SQL but its events disagree")
            if cid in in_redis or places:
                rec.duplicated = True
                result.problem(f"contact {cid} is {rec.state} but still in Redis")
            continue
        if rec.state not in ACTIVE:
            rec.lost = True
            result.problem(f"contact {cid} ended as {rec.state}")
            continue
        held = store.contact(cid).get("state") if cid in in_redis else None
        consistent = held == rec.state and (
            (rec.state == "waiting" and places == 1)
            or (rec.state == "offered" and cid in offers)
            or (rec.state == "on_call" and calls.get(cid, 0) == 1)
        )
        if not consistent:
            rec.lost = True
            result.problem(
                f"contact {cid} is {rec.state} in SQL but {held or 'absent'} in Redis "
                f"({member(cid)})"
            )
