"""Per-call state of the IVR, in Redis, keyed by Twilio's CallSid (never in URLs).

Also the idempotency of webhooks: every TwiML document a call receives carries a
sequence number ``n`` in its action URLs; the answer to ``(CallSid, n)`` is stored, so a
webhook that Twilio retries gets the same answer and changes nothing a second time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import IntEnum

import redis

from ..journal import KEY as JOURNAL_KEY
from ..redis_text import as_text
from .limits import TAKE_LUA, Take

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
        out = {name: str(getattr(self, name)) for name, _ in _FIELDS}
        out.update({f"x_{k}": v for k, v in self.extra.items()})
        return out

    @classmethod
    def from_mapping(cls, sid: str, raw: dict[str, str]) -> CallState:
        state = cls(sid=sid)
        for name, is_int in _FIELDS:
            if name in raw:
                setattr(state, name, int(raw[name] or 0) if is_int else raw[name])
        state.extra = {k[2:]: v for k, v in raw.items() if k.startswith("x_")}
        return state


# (name, is an int) of the stored fields, in order: read once, every webhook uses them
_FIELDS = [(f.name, f.type in ("int", int)) for f in fields(CallState) if f.name != "extra"]


@dataclass(frozen=True)
class Turn:
    """One webhook of a call: its stored answer if it was handled already, whether this
    request may handle it, and the call's state, all read in one round trip."""

    sid: str
    n: str
    cached: str | None
    acquired: bool
    state: CallState | None
    limited: bool = False  # the calling number is over its limit: a polite goodbye
    raw: Mapping[str, str] = field(default_factory=dict)  # the state as stored, to diff
    over: frozenset[str] = frozenset()  # other limits without room (voice.limits kinds)


class Opened(IntEnum):
    """How :data:`_BEGIN` opened a turn (its reply's first word)."""

    ANSWERED = 1  # answered already: the stored answer is replayed
    CLAIMED = 2  # claimed by this request
    BUSY = 3  # being handled by another request right now
    OVER_LIMIT = 4  # claimed, but the calling number is over the turn's limit


# One round trip to open a webhook's turn: its stored answer if any, else the claim on
# it, the calling number's allowances (interphone.voice.limits) and the call's state.
# ARGV: number of takes, 1 when the first take is the turn's own limit, then each
# take's arguments (its keys follow the three fixed ones). Returns {code, answer,
# refused, state words...}: code an :class:`Opened`; ``refused``: bit t-1 set when
# take t had no room. A retry is never counted against the caller.
_BEGIN = (
    TAKE_LUA
    + """
local answer = redis.call('get', KEYS[1])
if answer then return {1, answer, 0} end
local code, refused = 3, 0
if redis.call('set', KEYS[2], '1', 'NX', 'EX', 30) then
  code = 2
  local k, a = 4, 3
  for t = 1, tonumber(ARGV[1]) do
    local count = tonumber(ARGV[a + 1])
    if not take(k, a) then
      if t == 1 and ARGV[2] == '1' then
        code = 4
        break
      end
      refused = refused + 2 ^ (t - 1)
    end
    k = k + 2 * count
    a = a + 2 + 2 * count
  end
end
local out = {code, '', refused}
local words = redis.call('hgetall', KEYS[3])
for i = 1, #words do out[#out + 1] = words[i] end
return out
"""
)

# One atomic round trip to close it: the call's new state, the journal records, the
# answer (kept for retries), the claim released.
# ARGV: ttl, answer, number of state words, state words..., records...
_FINISH = """
local ttl = tonumber(ARGV[1])
local words, gone = tonumber(ARGV[3]), tonumber(ARGV[4])
if words > 0 then
  redis.call('hset', KEYS[3], unpack(ARGV, 5, 4 + words))
end
if gone > 0 then
  redis.call('hdel', KEYS[3], unpack(ARGV, 5 + words, 4 + words + gone))
end
if words + gone > 0 then redis.call('expire', KEYS[3], ttl) end
if #ARGV > 4 + words + gone then
  redis.call('rpush', KEYS[4], unpack(ARGV, 5 + words + gone, #ARGV))
end
redis.call('set', KEYS[1], ARGV[2], 'EX', ttl)
redis.call('del', KEYS[2])
return 1
"""


class Remembered(IntEnum):
    GONE = 0  # the call is no longer there: nothing written
    KEPT = 1


# One field of a call still going on (a call ended or expired is not brought back).
# Returns a :class:`Remembered`.
_REMEMBER = """
if redis.call('exists', KEYS[1]) == 0 then return 0 end
redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


class CallStore:
    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection
        self._begin = connection.register_script(_BEGIN)
        self._finish = connection.register_script(_FINISH)
        self._remember = connection.register_script(_REMEMBER)

    def remember(self, sid: str, name: str, value: str) -> bool:
        """Add ``extra[name]`` to the state of call ``sid`` between two of its turns
        (read by the next one); False when the call is no longer there."""
        kept = self._remember(keys=[self._key(sid)], args=[f"x_{name}", value])
        return bool(kept == Remembered.KEPT)

    def _key(self, sid: str) -> str:
        return f"{PREFIX}{sid}"

    def load(self, sid: str) -> CallState | None:
        raw = self.redis.hgetall(self._key(sid))
        if not raw:
            return None
        return CallState.from_mapping(sid, {as_text(k): as_text(v) for k, v in raw.items()})

    def once(self, sid: str, n: str, produce: Callable[[], str]) -> str:
        """Run ``produce`` once per (call, sequence number); replay its answer after."""
        key = f"{PREFIX}{sid}:r:{n}"
        lock = f"{key}:lock"
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(key)
        pipe.set(lock, "1", nx=True, ex=30)
        cached, acquired = pipe.execute()
        if cached is not None:
            return as_text(cached)
        if not acquired:  # the same webhook is being handled right now
            answer = self._await_answer(key)
            if answer is not None:
                return answer
        body = produce()
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(key, body, ex=TTL_S)
        pipe.delete(lock)
        pipe.execute()
        return body

    def begin(
        self, sid: str, n: str, limit: Take | None = None, counts: Sequence[Take] = ()
    ) -> Turn:
        """Open the webhook ``n`` of call ``sid``. ``limit``: the calling number's
        allowance this turn is refused without (:meth:`CallerLimits.take`); ``counts``:
        other allowances it uses, those without room listed in :attr:`Turn.over`."""
        key = f"{PREFIX}{sid}:r:{n}"
        takes = [limit, *counts] if limit else list(counts)
        keys = [key, f"{key}:lock", self._key(sid)]
        args: list[int] = [len(takes), 1 if limit else 0]
        for take in takes:
            keys += take.keys
            args += take.args
        code, answer, refused, *words = self._begin(keys=keys, args=args)
        code = int(code)
        if code == Opened.ANSWERED:
            return Turn(sid, n, as_text(answer), False, None)
        raw = {as_text(words[i]): as_text(words[i + 1]) for i in range(0, len(words) - 1, 2)}
        state = CallState.from_mapping(sid, raw) if raw else None
        first = 1 if limit else 0  # the bit of counts[0]
        over = frozenset(
            take.kind for i, take in enumerate(counts) if int(refused) >> (first + i) & 1
        )
        acquired = code == Opened.CLAIMED or code == Opened.OVER_LIMIT
        limited = code == Opened.OVER_LIMIT
        return Turn(sid, n, None, acquired, state, limited=limited, over=over, raw=raw)

    def wait_for_answer(self, turn: Turn, timeout_s: float = 10.0) -> str | None:
        """Another request is handling this webhook right now: wait for its answer."""
        return self._await_answer(f"{PREFIX}{turn.sid}:r:{turn.n}", timeout_s)

    def _await_answer(self, key: str, timeout_s: float = 10.0) -> str | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            cached = self.redis.get(key)
            if cached is not None:
                return as_text(cached)
            time.sleep(0.02)
        return None

    def finish(
        self, turn: Turn, body: str, state: CallState | None, records: Sequence[str] = ()
    ) -> None:
        """Store the answer, the state it left (the fields it changed) and its journal
        records, and release the turn: one atomic write (a script), one round trip. A
        retried webhook finds the answer, so its records are never journaled twice."""
        key = f"{PREFIX}{turn.sid}:r:{turn.n}"
        words: list[str] = []
        gone: list[str] = []
        if state is not None:  # only what this turn changed is written
            stored = turn.raw
            now = state.as_mapping()
            for name, value in now.items():
                if stored.get(name) != value:
                    words += (name, value)
            gone = [name for name in stored if name not in now]  # extras dropped
        self._finish(
            keys=[key, f"{key}:lock", self._key(turn.sid), JOURNAL_KEY],
            args=[TTL_S, body, len(words), len(gone), *words, *gone, *records],
        )

    def next_sequence(self, sid: str) -> int:
        pipe = self.redis.pipeline(transaction=False)
        pipe.incr(f"{PREFIX}{sid}:seq")
        pipe.expire(f"{PREFIX}{sid}:seq", TTL_S)
        return int(pipe.execute()[0])
