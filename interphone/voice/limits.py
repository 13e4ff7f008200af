"""Per calling number limits: new calls, IVR turns and SMS (``RATE_LIMIT_CALLER_*``).

A number calling in a loop (a stuck autodialer, someone hammering the status line) is
answered politely and hung up on; see :mod:`interphone.web.ratelimit` for the per-IP
limits. The counters live in Redis under a keyed hash of the number (never the number
itself) and are counted by a Lua fragment, :data:`TAKE_LUA`, that the IVR's turn-opening
script embeds: checking a caller's allowance costs a webhook no round trip of its own,
and a webhook Twilio retries is answered from its stored answer without being counted
twice.

Each limit ("60/minute") is a sliding window, estimated from two fixed windows: the
current one's count plus the previous one's, weighted by how much of it the sliding
window still covers. Close to exact for a limit, two small keys per limit, and no list
of timestamps per caller; a burst at a window's edge cannot pass twice the limit, as it
would with fixed windows alone.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass

import redis
from limits import parse_many

from ..config import RateLimits

PREFIX = "ip:limit:caller:"
_E164 = re.compile(r"^\+[1-9][0-9]{5,14}$")
KINDS = ("caller_calls", "caller_turns", "caller_sms", "caller_lookups")
ALWAYS = frozenset({"caller_lookups"})  # a guard against guessing, not a load limit

# ``take(k, a)``: the limits whose keys start at KEYS[k] (two per limit: the current
# window's counter, then the previous one's) and whose arguments start at ARGV[a]
# (``now_ms``, the number of limits, then per limit its amount and window in ms). True,
# and every counter taken, when each limit has room for one more; else nothing taken.
TAKE_LUA = """
local function take(k, a)
  local now = tonumber(ARGV[a])
  local count = tonumber(ARGV[a + 1])
  for i = 0, count - 1 do
    local amount = tonumber(ARGV[a + 2 + 2 * i])
    local window = tonumber(ARGV[a + 3 + 2 * i])
    local current = tonumber(redis.call('get', KEYS[k + 2 * i]) or '0')
    local previous = tonumber(redis.call('get', KEYS[k + 1 + 2 * i]) or '0')
    local overlap = (window - now % window) / window
    if previous * overlap + current + 1 > amount then return false end
  end
  for i = 0, count - 1 do
    local window = tonumber(ARGV[a + 3 + 2 * i])
    redis.call('incr', KEYS[k + 2 * i])
    redis.call('pexpire', KEYS[k + 2 * i], 2 * window)
  end
  return true
end
"""


@dataclass(frozen=True)
class Window:
    amount: int
    seconds: int


@dataclass(frozen=True)
class Take:
    """One caller's counters for one kind of limit: the keys and arguments of
    :data:`TAKE_LUA`'s ``take``."""

    kind: str
    keys: list[str]
    args: list[int]


class CallerLimits:
    def __init__(
        self,
        connection: redis.Redis,
        settings: RateLimits,
        secret_key: str,
        now: Callable[[], float],
    ) -> None:
        self.enabled = settings.enabled
        self.windows = {
            kind: [
                Window(item.amount, item.get_expiry())
                for item in parse_many(getattr(settings, kind))
            ]
            for kind in KINDS
        }
        self._key = hmac.new(secret_key.encode(), b"rate-limit", hashlib.sha256).digest()
        self._now = now
        self._take = connection.register_script(TAKE_LUA + "return take(1, 1) and 1 or 0")

    def take(self, kind: str, number: str, call_sid: str = "") -> Take | None:
        """The counters to take for ``number`` (as Twilio sends it, E.164), or None when
        it is not limited: limits off, a browser, the door intercom, a withheld number.
        Lookups are always limited: per number, else per call (``call_sid``)."""
        if kind not in ALWAYS and not self.enabled:
            return None
        if _E164.match(number):
            who = number
        elif kind in ALWAYS and call_sid:
            who = f"call:{call_sid}"
        else:
            return None
        caller = hmac.new(self._key, who.encode(), hashlib.sha256).hexdigest()[:32]
        now_ms = int(self._now() * 1000)
        keys: list[str] = []
        args = [now_ms, len(self.windows[kind])]
        for window in self.windows[kind]:
            window_ms = window.seconds * 1000
            slot = now_ms // window_ms
            base = f"{PREFIX}{kind}:{window.seconds}:{caller}:"
            keys += [f"{base}{slot}", f"{base}{slot - 1}"]
            args += [window.amount, window_ms]
        return Take(kind, keys, args)

    def allow(self, kind: str, number: str, call_sid: str = "") -> bool:
        """Take one from ``number``'s allowance on its own (a request that opens no IVR
        turn, such as an SMS): one round trip."""
        take = self.take(kind, number, call_sid)
        if take is None:
            return True
        return bool(self._take(keys=take.keys, args=take.args))
