"""Per calling number limits: new calls, IVR turns and SMS (``RATE_LIMIT_CALLER_*``).

A number calling in a loop (a stuck autodialer, someone hammering the status line) is
answered politely and hung up on; see :mod:`interphone.web.ratelimit` for the per-IP
limits. Withheld callers (no number, ``anonymous``, Twilio's keypad placeholders: see
:func:`interphone.privacy.is_withheld`) have no number to be told apart by: they share
one allowance per kind (``RATE_LIMIT_WITHHELD_*``), sized for their share of the line,
so that a withheld caller gains nothing by calling again. Failed birth dates are also
counted per file number, whoever types them (``RATE_LIMIT_FILE_FAILURES``): a guesser
who rotates numbers still meets that limit.

The counters live in Redis under a keyed hash of the number or file number (never the
number itself) and are counted by a Lua fragment, :data:`TAKE_LUA`, that the IVR's
turn-opening script embeds: checking a caller's allowance costs a webhook no round trip of its own,
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
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

import redis
from limits import parse_many

from ..config import RateLimits
from ..privacy import is_device, is_withheld

PREFIX = "ip:limit:caller:"
FILE_PREFIX = "ip:limit:file:"
KINDS = ("caller_calls", "caller_turns", "caller_sms", "caller_lookups")
ALWAYS = frozenset({"caller_lookups"})  # a guard against guessing, not a load limit
# the setting of the withheld callers' shared allowance, by kind (an SMS always comes
# from a number: one that does not gets the allowance of one number)
WITHHELD = {
    "caller_calls": "withheld_calls",
    "caller_turns": "withheld_turns",
    "caller_sms": "caller_sms",
    "caller_lookups": "withheld_lookups",
}
WITHHELD_GROUP = "withheld"

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


class Room(IntEnum):
    """The reply of :data:`TAKE_SCRIPT`, the counters of one ``take`` on their own."""

    NONE = 0  # a limit had no room: nothing taken
    TAKEN = 1  # every counter taken


TAKE_SCRIPT = TAKE_LUA + "return take(1, 1) and 1 or 0"


# give back one of each counter ``take`` incremented (a counter expired meanwhile stays
# gone: never below zero)
GIVE_BACK_LUA = """
for _, key in ipairs(KEYS) do
  if tonumber(redis.call('get', key) or '0') > 0 then redis.call('decr', key) end
end
return 1
"""


@dataclass(frozen=True)
class Window:
    amount: int
    seconds: int


@dataclass(frozen=True)
class Take:
    """One caller's counters for one kind of limit: the keys and arguments of
    :data:`TAKE_LUA`'s ``take``. ``label``: the limit as the metrics name it (the kind,
    or ``withheld_…`` for the withheld callers' shared allowance)."""

    kind: str
    keys: list[str]
    args: list[int]
    label: str = ""


def _windows(rates: str) -> list[Window]:
    return [Window(item.amount, item.get_expiry()) for item in parse_many(rates)]


class CallerLimits:
    def __init__(
        self,
        connection: redis.Redis,
        settings: RateLimits,
        secret_key: str,
        now: Callable[[], float],
    ) -> None:
        self.enabled = settings.enabled
        self.windows = {kind: _windows(getattr(settings, kind)) for kind in KINDS}
        self.withheld = {kind: _windows(getattr(settings, WITHHELD[kind])) for kind in KINDS}
        self.file_windows = _windows(settings.file_failures)
        self.redis = connection
        self._key = hmac.new(secret_key.encode(), b"rate-limit", hashlib.sha256).digest()
        self._now = now
        self._take = connection.register_script(TAKE_SCRIPT)
        self._give_back = connection.register_script(GIVE_BACK_LUA)

    def take(self, kind: str, number: str, call_sid: str = "") -> Take | None:
        """The counters to take for ``number`` (Twilio's ``From``), or None when it is
        not limited: limits off, or a device (the door intercom, a browser; their
        lookups are counted per call, ``call_sid``). Withheld callers share one
        allowance. Lookups are limited even with the limits off."""
        if kind not in ALWAYS and not self.enabled:
            return None
        text = number.strip()
        if is_device(text):
            if kind in ALWAYS and call_sid:
                return self._counters(kind, f"call:{call_sid}", self.windows[kind], kind)
            return None
        if is_withheld(text):
            label = "withheld_" + kind.removeprefix("caller_")
            return self._counters(kind, WITHHELD_GROUP, self.withheld[kind], label)
        return self._counters(kind, text, self.windows[kind], kind)

    def allow_per_call(self, kind: str, call_sid: str) -> bool:
        """Take one from a device's call (the door: a guesser has to stand at it), on its
        own: one round trip."""
        if kind not in ALWAYS and not self.enabled:
            return True
        take = self._counters(kind, f"call:{call_sid}", self.windows[kind], kind)
        return bool(self._take(keys=take.keys, args=take.args) == Room.TAKEN)

    def _counters(
        self, kind: str, who: str, windows: list[Window], label: str, prefix: str = ""
    ) -> Take:
        """The counters of ``who`` (hashed) for ``windows``: under ``prefix``, or the
        callers' ``PREFIX`` and ``kind``."""
        caller = self._hashed(who)
        now_ms = int(self._now() * 1000)
        keys: list[str] = []
        args = [now_ms, len(windows)]
        for window in windows:
            window_ms = window.seconds * 1000
            slot = now_ms // window_ms
            base = f"{prefix or PREFIX + kind + ':'}{window.seconds}:{caller}:"
            keys += [f"{base}{slot}", f"{base}{slot - 1}"]
            args += [window.amount, window_ms]
        return Take(kind, keys, args, label)

    def _hashed(self, who: str) -> str:
        return hmac.new(self._key, who.encode(), hashlib.sha256).hexdigest()[:32]

    def allow(self, kind: str, number: str, call_sid: str = "") -> bool:
        """Take one from ``number``'s allowance on its own (a request that opens no IVR
        turn, such as an SMS): one round trip."""
        take = self.take(kind, number, call_sid)
        if take is None:
            return True
        return bool(self._take(keys=take.keys, args=take.args) == Room.TAKEN)

    # -- failed birth dates, per file number ------------------------------------------------
    def file_take(self, file_number: str) -> list[str] | None:
        """Take one of ``file_number``'s birth-date tries before comparing a date, from
        whoever types it and whether or not the file exists: the counters taken, to give
        back on a match (:meth:`file_give_back`), or None when it has none left. Taken
        atomically, so calls comparing at once can never pass the allowance. One round
        trip."""
        take = self._counters(
            "file_failures", f"file:{file_number}", self.file_windows, "file_failures", FILE_PREFIX
        )
        if self._take(keys=take.keys, args=take.args) != Room.TAKEN:
            return None
        return take.keys[0::2]

    def file_give_back(self, taken: list[str]) -> None:
        """A try that matched (or was never compared) is no failure: give it back."""
        if taken:
            self._give_back(keys=taken)
