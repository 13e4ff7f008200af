"""The call queue in Redis: ordering, agent presence and dispatch, one Lua script per move.

Every state change is one script, so it is atomic: two dispatchers can never offer one
contact twice nor give one agent two offers. This module knows nothing of SQL; the
:class:`~interphone.queue.service.QueueService` records each change durably.

Keys (all under ``ip:``):

- ``contact:<cid>`` hash: site, kind, lang, cls, arrived, score, state, agent, attempts,
  not_before, deadline, v (version, bumped by every change), missed_legs (agent legs of
  its accepted calls that went unanswered)
- ``agent:<aid>`` hash: site, langs, state, since, offer, call, missed (offers missed in a
  row; missed_before: that count when the current call was accepted), reason, v, and the
  agent's live leg: leg (the contact it is for), leg_sid (its CallSid once known),
  bridged (the contact, once put through); done (a contact whose outcome was given while
  its leg was live), gone (the contact whose caller hung up before being put through)
- ``site:<site>:waiting`` zset of ready contacts, score = class * 10^13 + arrival ms
- ``site:<site>:delayed`` zset of callbacks held back by a retry delay, score = not-before ms
- ``site:<site>:avail`` and ``site:<site>:avail:<lang>`` zsets of free agents, score = idle since
- ``site:<site>:done`` zset of completions in the last hour (throughput)
- ``offers`` zset of open offers by deadline; ``wrapups`` zset of agents by wrap-up end
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, NamedTuple

import redis

from ..redis_text import as_text
from .clock import Clock, to_ms
from .exceptions import Conflict, InvalidInput

PREFIX = "ip:"
NORMAL_BASE = 10**13  # class offset in the score; arrival ms stay below it until year 2286
URGENT, NORMAL = 0, 1
KINDS = ("live", "callback")
AGENT_STATES = ("offline", "available", "offered", "on_call", "wrap_up", "paused")
SETTABLE_STATES = ("offline", "available", "paused")

_SCRIPTS = (
    "enqueue",
    "offer_to",
    "position",
    "dispatch",
    "accept",
    "decline",
    "finish",
    "release",
    "presence",
    "sweep",
    "reprioritize",
    "convert",
    "restore_call",
    "leg_placed",
    "leg_bridged",
    "leg_ended",
    "transfer",
    "leg_missed",
    "leg_sid",
)


def member(contact_id: int) -> str:
    """Zero-padded so that equal scores fall back to id order."""
    return f"{contact_id:012d}"


def score_for(priority_class: int, arrived_ms: int) -> int:
    if priority_class not in (URGENT, NORMAL):
        raise InvalidInput("priority class must be 0 (urgent) or 1 (normal)")
    return priority_class * NORMAL_BASE + arrived_ms


class Enqueued(NamedTuple):
    created: bool
    version: int  # the contact's version in Redis once added (0 when it was there)
    free_agents: int  # agents of the site free to take an offer right now


class PresenceChange(NamedTuple):
    """What :meth:`RedisQueue.set_presence` did."""

    version: int  # the agent's version afterwards
    returned: int | None  # the contact whose offer the agent held, now back in line
    contact_version: int  # that contact's version (0 without one)
    previous: str  # the agent's state before ("" for an agent Redis did not know)
    state: str  # the state asked

    @property
    def changed(self) -> bool:
        """False when the agent already was in that state (a new pause always changes:
        its reason and its start)."""
        return self.previous != self.state or self.state == "paused"


@dataclass(frozen=True)
class Offer:
    contact_id: int
    agent_id: int
    contact_version: int
    agent_version: int


@dataclass(frozen=True)
class DispatchResult:
    offer: Offer | None
    promoted: list[int]


@dataclass(frozen=True)
class Position:
    state: str
    position: int
    site: str
    kind: str
    not_before_ms: int
    agent_id: int | None
    # (staffed agents, calls completed since the time asked): when asked, and in line
    staffing: tuple[int, int] | None = None


@dataclass(frozen=True)
class Finish:
    state: str
    attempts: int
    contact_version: int
    agent_version: int
    agent_state: str  # "on_call": the agent's leg is live, the wrap-up waits for its end
    retry_at_ms: int
    agent_before: str = ""


class Release(NamedTuple):
    previous: str  # the contact's state before
    agent_id: int | None  # the agent who held it (offer or call)
    contact_version: int
    agent_version: int  # 0 when the agent was not changed
    agent_state: str  # the agent's state after ("" when not changed)
    agent_before: str  # the agent's state before ("" when not changed)


class LegEnd(NamedTuple):
    # the agent's move: "outcome_due" (in wrap_up, no timer), "wrap_up", "available";
    # "kept" (the leg cleared, the state unchanged); "" when nothing changed (a
    # repeated, late or foreign end)
    what: str
    agent_version: int
    agent_before: str


class LegMissed(NamedTuple):
    """An agent's leg that ended unanswered, its contact back in line
    (``contact_version`` 0: nothing changed)."""

    contact_version: int
    agent_version: int
    agent_state: str  # "available", or "paused" after too many misses in a row
    agent_before: str


@dataclass(frozen=True)
class SweepRecord:
    kind: Literal["expired", "wrapped"]
    agent_id: int | None
    contact_id: int | None = None
    agent_state: str = "available"
    contact_version: int = 0
    agent_version: int = 0


class RedisQueue:
    """All queue moves for every site, on one Redis connection."""

    def __init__(self, connection: redis.Redis, clock: Clock, *, prefix: str = PREFIX) -> None:
        self.redis = connection
        self.clock = clock
        self.prefix = prefix
        prelude = _read_lua("_prelude")
        self._scripts = {
            name: connection.register_script(prelude + "\n" + _read_lua(name)) for name in _SCRIPTS
        }

    # -- helpers ---------------------------------------------------------------------
    def _run(self, name: str, *args: Any) -> Any:
        try:
            return self._scripts[name](keys=[self.prefix], args=list(args))
        except redis.ResponseError as exc:
            reason = str(exc).strip()
            raise Conflict(_CONFLICTS.get(reason, reason), reason=reason) from None

    def now_ms(self) -> int:
        return to_ms(self.clock.now())

    # -- contacts --------------------------------------------------------------------
    def enqueue(
        self,
        contact_id: int,
        *,
        site: str,
        kind: str,
        language: str,
        priority_class: int,
        arrived_ms: int,
        not_before_ms: int = 0,
        attempts: int = 0,
    ) -> Enqueued:
        """Add a contact at the place its class and arrival time give it; a contact
        already in Redis is left unchanged (``created`` False)."""
        if kind not in KINDS:
            raise InvalidInput(f"kind must be one of {', '.join(KINDS)}")
        if "," in language or ":" in language:
            raise InvalidInput("language code may not contain ',' or ':'")
        result = self._run(
            "enqueue",
            member(contact_id),
            site,
            kind,
            language,
            priority_class,
            arrived_ms,
            score_for(priority_class, arrived_ms),
            not_before_ms,
            attempts,
            self.now_ms(),
        )
        return Enqueued(as_text(result[0]) == "new", int(result[2]), int(result[3]))

    def position(self, contact_id: int, staffing_since_ms: int | None = None) -> Position | None:
        """1-based position in the site's line, in O(log n). With ``staffing_since_ms``,
        a contact in line also gets its site's :meth:`staffing` since then, in the same
        round trip (a caller on hold asks where they stand and how long is left)."""
        since = "" if staffing_since_ms is None else str(int(staffing_since_ms))
        raw = self._run("position", member(contact_id), since)
        if raw is None:
            return None
        agent = as_text(raw[5])
        return Position(
            state=as_text(raw[0]),
            position=int(raw[1]),
            site=as_text(raw[2]),
            kind=as_text(raw[3]),
            not_before_ms=int(float(as_text(raw[4]) or 0)),
            agent_id=int(agent) if agent else None,
            staffing=(int(raw[6]), int(raw[7])) if len(raw) > 7 else None,
        )

    def waiting_ids(self, site: str, start: int = 0, stop: int = -1) -> list[int]:
        """Ready contacts of a site in dispatch order (delayed callbacks excluded)."""
        return [
            int(as_text(m))
            for m in self.redis.zrange(f"{self.prefix}site:{site}:waiting", start, stop)
        ]

    def delayed_ids(self, site: str) -> list[int]:
        return [
            int(as_text(m)) for m in self.redis.zrange(f"{self.prefix}site:{site}:delayed", 0, -1)
        ]

    def waiting_count(self, site: str) -> int:
        return int(self.redis.zcard(f"{self.prefix}site:{site}:waiting"))

    def contact(self, contact_id: int) -> dict[str, str]:
        raw = self.redis.hgetall(f"{self.prefix}contact:{member(contact_id)}")
        return {as_text(k): as_text(v) for k, v in raw.items()}

    def release(self, contact_id: int, new_state: str, *, on_call: bool = False) -> Release | None:
        """Remove a contact for good. A contact on a call is refused (``ON_CALL``) unless
        ``on_call``: its agent is then freed too (once their live leg ends, if any)."""
        raw = self._run(
            "release", member(contact_id), new_state, self.now_ms(), "1" if on_call else "0"
        )
        if raw is None:
            return None
        agent = as_text(raw[1])
        return Release(
            as_text(raw[0]),
            int(agent) if agent else None,
            int(raw[2]),
            int(raw[3]),
            as_text(raw[4]),
            as_text(raw[5]),
        )

    def reprioritize(self, contact_id: int, priority_class: int, arrived_ms: int) -> int | None:
        score = score_for(priority_class, arrived_ms)
        raw = self._run("reprioritize", member(contact_id), priority_class, score)
        return None if raw is None else int(raw)

    def restore_call(self, contact_id: int, agent_id: int) -> None:
        """``queue rebuild`` only: put back a call in progress found in SQL."""
        self._run("restore_call", member(contact_id), agent_id, self.now_ms())

    def convert_to_callback(self, contact_id: int) -> int:
        return int(self._run("convert", member(contact_id)))

    # -- agents ----------------------------------------------------------------------
    def set_presence(
        self, agent_id: int, *, site: str, languages: list[str], state: str, reason: str = ""
    ) -> PresenceChange:
        """Set the agent's presence; an offer in hand goes back to its place in line."""
        if state not in SETTABLE_STATES:
            raise InvalidInput(f"presence must be one of {', '.join(SETTABLE_STATES)}")
        langs = ",".join(sorted({lang.strip() for lang in languages if lang.strip()}))
        raw = self._run("presence", agent_id, site, langs, state, reason, self.now_ms())
        returned = as_text(raw[1])
        return PresenceChange(
            int(raw[0]), int(returned) if returned else None, int(raw[2]), as_text(raw[3]), state
        )

    def agent(self, agent_id: int) -> dict[str, str]:
        raw = self.redis.hgetall(f"{self.prefix}agent:{agent_id}")
        return {as_text(k): as_text(v) for k, v in raw.items()}

    def available_agents(self, site: str) -> list[int]:
        """Free agents, longest idle first."""
        return [
            int(as_text(m)) for m in self.redis.zrange(f"{self.prefix}site:{site}:avail", 0, -1)
        ]

    # -- dispatch --------------------------------------------------------------------
    def dispatch(
        self,
        site: str,
        *,
        offer_timeout_s: float,
        language_relax_s: float,
        promote_after_s: float,
        scan: int = 50,
    ) -> DispatchResult:
        now = self.now_ms()
        raw = self._run(
            "dispatch",
            site,
            now,
            int(language_relax_s * 1000),
            scan,
            now - int(promote_after_s * 1000),
            now + int(offer_timeout_s * 1000),
        )
        promoted = [int(as_text(x)) for x in raw[4:]]
        cid = as_text(raw[0])
        if not cid:
            return DispatchResult(None, promoted)
        return DispatchResult(
            Offer(int(cid), int(as_text(raw[1])), int(raw[2]), int(raw[3])), promoted
        )

    def offer_to(self, contact_id: int, agent_id: int, *, offer_timeout_s: float) -> Offer:
        now = self.now_ms()
        raw = self._run(
            "offer_to", member(contact_id), agent_id, now, now + int(offer_timeout_s * 1000)
        )
        return Offer(contact_id, agent_id, int(raw[0]), int(raw[1]))

    def accept(self, agent_id: int, contact_id: int) -> tuple[int, int]:
        raw = self._run("accept", agent_id, member(contact_id), self.now_ms())
        return int(raw[0]), int(raw[1])

    def decline(self, agent_id: int, contact_id: int) -> tuple[int, int]:
        raw = self._run("decline", agent_id, member(contact_id), self.now_ms())
        return int(raw[0]), int(raw[1])

    def finish(
        self,
        agent_id: int,
        contact_id: int,
        *,
        retry: bool,
        wrap_up_s: float,
        retry_delay_s: float,
        max_attempts: int,
        requeue: bool = False,
    ) -> Finish:
        """End the agent's call; ``requeue``: the contact goes back at its own place."""
        now = self.now_ms()
        raw = self._run(
            "finish",
            agent_id,
            member(contact_id),
            now,
            now + int(wrap_up_s * 1000),
            "requeue" if requeue else "retry" if retry else "completed",
            now + int(retry_delay_s * 1000),
            max_attempts,
        )
        return Finish(
            as_text(raw[0]),
            int(raw[1]),
            int(raw[2]),
            int(raw[3]),
            as_text(raw[4]),
            int(as_text(raw[5])),
            as_text(raw[6]),
        )

    def transfer(
        self, agent_id: int, contact_id: int, to_agent: int, *, wrap_up_s: float, mode: str
    ) -> tuple[Finish, str]:
        """Agent ``agent_id`` hands their call to ``to_agent`` (``transfer.lua``'s modes:
        cold, consult, complete, cancel). Returns the first agent's side and the
        receiving agent's state after."""
        now = self.now_ms()
        raw = self._run(
            "transfer",
            agent_id,
            member(contact_id),
            to_agent,
            now,
            now + int(wrap_up_s * 1000),
            mode,
        )
        first = Finish("on_call", 0, int(raw[0]), int(raw[1]), as_text(raw[2]), 0, as_text(raw[3]))
        return first, as_text(raw[5])

    # -- the agent's leg -------------------------------------------------------------
    def leg_placed(self, agent_id: int, contact_id: int) -> int:
        """Record the agent's leg for this call before it is placed (0: recorded already)."""
        return int(self._run("leg_placed", agent_id, member(contact_id)))

    def leg_sid(self, agent_id: int, contact_id: int, call_sid: str) -> bool:
        """The agent's leg was placed as ``call_sid``; False when nothing changed."""
        return bool(int(self._run("leg_sid", agent_id, member(contact_id), call_sid)))

    def leg_bridged(self, agent_id: int, contact_id: int, call_sid: str) -> int:
        """The agent's leg answered and is put through; 0 when nothing changed."""
        return int(self._run("leg_bridged", agent_id, member(contact_id), call_sid))

    def leg_ended(
        self, agent_id: int, contact_id: int, call_sid: str, *, wrap_up_s: float
    ) -> LegEnd:
        now = self.now_ms()
        raw = self._run(
            "leg_ended", agent_id, member(contact_id), call_sid, now, now + int(wrap_up_s * 1000)
        )
        return LegEnd(as_text(raw[0]), int(raw[1]), as_text(raw[2]))

    def leg_missed(
        self, agent_id: int, contact_id: int, call_sid: str, *, missed_limit: int
    ) -> LegMissed:
        raw = self._run(
            "leg_missed", agent_id, member(contact_id), call_sid, self.now_ms(), missed_limit
        )
        return LegMissed(int(raw[0]), int(raw[1]), as_text(raw[2]), as_text(raw[3]))

    def sweep(self, missed_limit: int) -> list[SweepRecord]:
        raw = [as_text(x) for x in self._run("sweep", self.now_ms(), missed_limit)]
        records: list[SweepRecord] = []
        i = 0
        while i < len(raw):
            if raw[i] == "expired":
                aid = raw[i + 2]
                records.append(
                    SweepRecord(
                        "expired",
                        int(aid) if aid else None,
                        int(raw[i + 1]),
                        raw[i + 3],
                        int(raw[i + 4]),
                        int(raw[i + 5]),
                    )
                )
                i += 6
            else:
                records.append(
                    SweepRecord("wrapped", int(raw[i + 1]), agent_version=int(raw[i + 2]))
                )
                i += 3
        return records

    def staffed_count(self, site: str) -> int:
        """Agents signed in and not paused (available, offered, on a call or in wrap-up)."""
        return int(self.redis.scard(self._staffed_key(site)))

    def _staffed_key(self, site: str) -> str:
        return f"{self.prefix}site:{site}:staffed"

    def sites(self) -> list[str]:
        return sorted(as_text(s) for s in self.redis.smembers(f"{self.prefix}sites"))

    def staffing(self, site: str, since_ms: int) -> tuple[int, int]:
        """:meth:`staffed_count` and the calls completed since ``since_ms``, in one round
        trip (a wait estimate, for every caller on hold every minute)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.scard(self._staffed_key(site))
        pipe.zcount(f"{self.prefix}site:{site}:done", since_ms, "+inf")
        staffed, done = pipe.execute()
        return int(staffed), int(done)

    def clear(self) -> int:
        """Delete every queue key (used by ``queue rebuild``). Returns how many went."""
        deleted = 0
        for batch in _batched(self.redis.scan_iter(match=f"{self.prefix}*", count=1000), 500):
            deleted += int(self.redis.delete(*batch))
        return deleted


_CONFLICTS = {
    "NO_OFFER": "this offer is no longer open (it expired or was taken back)",
    "NOT_ON_CALL": "this agent is not on a call with this contact",
    "ON_CALL": "the agent is on a call; finish it first",
    "OUTCOME_DUE": "the call has ended; give its outcome first",
    "OTHER_LEG": "the agent is still on another call",
    "NOT_WAITING": "the contact is not waiting in line",
    "OTHER_SITE": "the agent works for another site",
    "AGENT_NOT_FREE": "the agent is not available",
    "NO_TRANSFER": "no transfer of this call to this agent is under way",
    "UNKNOWN": "unknown contact",
}


def _read_lua(name: str) -> str:
    return resources.files("interphone.queue").joinpath("lua", f"{name}.lua").read_text("utf-8")


def _batched(items: Any, size: int) -> Any:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
