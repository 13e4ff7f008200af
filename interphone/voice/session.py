"""Per-call state of the IVR, in Redis, keyed by Twilio's CallSid (never in URLs).

Also the idempotency of webhooks: every TwiML document a call receives carries a
sequence number ``n`` in its action URLs; the answer to ``(CallSid, n)`` is stored, so a
webhook that Twilio retries gets the same answer and changes nothing a second time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import redis

TTL_S = 4 * 3600
PREFIX = "ip:call:"


@dataclass
class CallState:
    sid: str
    site: str = ""
    caller: str = ""  # E.164 of the caller when known (personal data: Redis only, with TTL)
    channel: str = "phone"
    lang: str = ""
    step: str = ""
    tries: int = 0
    status_failures: int = 0
    file_number: str = ""
    callback_phone: str = ""
    callback_file: str = ""
    contact_id: int = 0
    started_ms: int = 0
    seq: int = 0
    extra: dict[str, str] = field(default_factory=dict)

    def as_mapping(self) -> dict[str, str]:
        out = {f.name: str(getattr(self, f.name)) for f in fields(self) if f.name != "extra"}
        out.update({f"x_{k}": v for k, v in self.extra.items()})
        return out

    @classmethod
    def from_mapping(cls, sid: str, raw: dict[str, str]) -> CallState:
        state = cls(sid=sid)
        for f in fields(cls):
            if f.name in ("sid", "extra") or f.name not in raw:
                continue
            value: Any = raw[f.name]
            if f.type in ("int", int):
                value = int(value or 0)
            setattr(state, f.name, value)
        state.extra = {k[2:]: v for k, v in raw.items() if k.startswith("x_")}
        return state


@dataclass(frozen=True)
class Turn:
    """One webhook of a call: its stored answer if it was handled already, whether this
    request may handle it, and the call's state, all read in one round trip."""

    sid: str
    n: str
    cached: str | None
    acquired: bool
    state: CallState | None


class CallStore:
    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection

    def _key(self, sid: str) -> str:
        return f"{PREFIX}{sid}"

    def load(self, sid: str) -> CallState | None:
        raw = self.redis.hgetall(self._key(sid))
        if not raw:
            return None
        return CallState.from_mapping(sid, {_text(k): _text(v) for k, v in raw.items()})

    def save(self, state: CallState) -> None:
        key = self._key(state.sid)
        pipe = self.redis.pipeline()
        mapping: dict[Any, Any] = dict(state.as_mapping())
        pipe.hset(key, mapping=mapping)
        pipe.expire(key, TTL_S)
        pipe.execute()

    def create(self, state: CallState) -> bool:
        """Store a new call; False when this CallSid is already known (a retried webhook)."""
        key = self._key(state.sid)
        if not self.redis.hsetnx(key, "sid", state.sid):
            return False
        self.save(state)
        return True

    def once(self, sid: str, n: str, produce: Callable[[], str]) -> str:
        """Run ``produce`` once per (call, sequence number); replay its answer after."""
        key = f"{PREFIX}{sid}:r:{n}"
        lock = f"{key}:lock"
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(key)
        pipe.set(lock, "1", nx=True, ex=30)
        cached, acquired = pipe.execute()
        if cached is not None:
            return _text(cached)
        if not acquired:
            # the same webhook is being handled right now: wait for its answer
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                cached = self.redis.get(key)
                if cached is not None:
                    return _text(cached)
                time.sleep(0.02)
        body = produce()
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(key, body, ex=TTL_S)
        pipe.delete(lock)
        pipe.execute()
        return body

    def begin(self, sid: str, n: str) -> Turn:
        key = f"{PREFIX}{sid}:r:{n}"
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(key)
        pipe.set(f"{key}:lock", "1", nx=True, ex=30)
        pipe.hgetall(self._key(sid))
        cached, acquired, raw = pipe.execute()
        state = (
            CallState.from_mapping(sid, {_text(k): _text(v) for k, v in raw.items()})
            if raw
            else None
        )
        return Turn(sid, n, None if cached is None else _text(cached), bool(acquired), state)

    def wait_for_answer(self, turn: Turn, timeout_s: float = 10.0) -> str | None:
        """Another request is handling this webhook right now: wait for its answer."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            cached = self.redis.get(f"{PREFIX}{turn.sid}:r:{turn.n}")
            if cached is not None:
                return _text(cached)
            time.sleep(0.02)
        return None

    def finish(self, turn: Turn, body: str) -> None:
        """Store the answer and the state it left, and release the turn: one round trip."""
        key = f"{PREFIX}{turn.sid}:r:{turn.n}"
        pipe = self.redis.pipeline(transaction=False)
        if turn.state is not None:
            mapping: dict[Any, Any] = dict(turn.state.as_mapping())
            pipe.hset(self._key(turn.sid), mapping=mapping)
            pipe.expire(self._key(turn.sid), TTL_S)
        pipe.set(key, body, ex=TTL_S)
        pipe.delete(f"{key}:lock")
        pipe.execute()

    def next_sequence(self, sid: str) -> int:
        pipe = self.redis.pipeline(transaction=False)
        pipe.incr(f"{PREFIX}{sid}:seq")
        pipe.expire(f"{PREFIX}{sid}:seq", TTL_S)
        return int(pipe.execute()[0])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
