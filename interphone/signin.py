"""Sign-in to the screens: the password check and the throttle in front of it.

- Constant work: an unknown e-mail or a deactivated account is checked against a dummy
  hash of the same algorithm and cost, so that the answer's time says nothing about
  which e-mails have an account.
- Throttle, in Redis counters with expiry: failed attempts per (account, client
  address), :data:`PER_ACCOUNT_AND_ADDRESS`, and per client address,
  ``RATE_LIMIT_LOGIN`` (an IPv6 client: its /64). Nothing counts per account alone, so
  guesses from one address never lock the owner out from another. Every attempt takes
  one from its counters before the password is checked (parallel guesses cannot all
  pass a check made before the first failure is counted); a successful one gives them
  back, so an office signing in at 9:00 behind one address uses none of its allowance.

Both hold even with ``RATE_LIMITS=off``: they guard against guessing, not load. The
counters are keyed by a keyed hash of the address and the e-mail, never the e-mail
itself. Redis down: attempts go through unthrottled (as the other limits do), since the
screens cannot work without Redis anyway.

A throttled attempt counts in ``interphone_rate_limited`` (limit ``sign_in``); a
successful one is audited as ``user.signed_in``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from dataclasses import dataclass
from enum import IntEnum

import redis
from limits import parse_many
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from . import events, metrics
from .accounts import verify_password
from .models import Agent

log = logging.getLogger(__name__)

PREFIX = "ip:limit:sign-in:"


@dataclass(frozen=True)
class Window:
    """At most ``amount`` failed attempts, counted from the first for ``seconds``."""

    amount: int
    seconds: int


# 5 wrong passwords in 15 minutes from one address for one account: enough for a person
# who mistypes, far too few to guess a password of MIN_PASSWORD characters
PER_ACCOUNT_AND_ADDRESS = Window(5, 15 * 60)


class Room(IntEnum):
    """The reply of :data:`_TAKE`."""

    NONE = 0  # a counter is full: none taken
    TAKEN = 1  # every counter taken (a new one expiring after its window)


# KEYS: counters; ARGV: per counter its amount and window (ms). A :class:`Room`.
_TAKE = """
for i, key in ipairs(KEYS) do
  if tonumber(redis.call('get', key) or '0') >= tonumber(ARGV[2 * i - 1]) then return 0 end
end
for i, key in ipairs(KEYS) do
  if redis.call('incr', key) == 1 then redis.call('pexpire', key, ARGV[2 * i]) end
end
return 1
"""
# KEYS[1]: the (account, address) counter, cleared; the others: given one back
_GIVE_BACK = """
redis.call('del', KEYS[1])
for i = 2, #KEYS do
  if tonumber(redis.call('get', KEYS[i]) or '0') > 0 then redis.call('decr', KEYS[i]) end
end
return 1
"""


class SignInError(Exception):
    """Refused: :class:`WrongCredentials` or :class:`Throttled`."""


class WrongCredentials(SignInError):
    """Unknown address, deactivated account or wrong password (one answer for all)."""


class Throttled(SignInError):
    """Too many failed attempts from this address (for this account, or in all)."""


class SignIn:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        connection: redis.Redis,
        *,
        secret_key: str,
        per_address: str,
    ) -> None:
        self.sessions = sessions
        self.redis = connection
        self.per_address = [
            Window(item.amount, item.get_expiry()) for item in parse_many(per_address)
        ]
        self._key = hmac.new(secret_key.encode(), b"sign-in", hashlib.sha256).digest()
        self._take = connection.register_script(_TAKE)
        self._give_back = connection.register_script(_GIVE_BACK)

    def attempt(self, email: str, password: str, address: str) -> Agent:
        """The active account ``email`` whose password is ``password``, asked from the
        client ``address``; :class:`Throttled` (the password unchecked) or
        :class:`WrongCredentials`. A success is recorded as ``user.signed_in``."""
        email = email.strip().lower()
        keys, windows = self._counters(email, address)
        args = [n for w in windows for n in (w.amount, w.seconds * 1000)]
        try:
            taken = bool(self._take(keys=keys, args=args) == Room.TAKEN)
        except redis.RedisError as exc:
            log.warning("sign-in throttle not checked (%s)", type(exc).__name__)
            taken = None
        if taken is False:
            metrics.recorder_for(self.redis).inc("interphone_rate_limited", "sign_in")
            raise Throttled
        with self.sessions() as s:
            agent = s.scalar(select(Agent).where(Agent.email == email, Agent.active.is_(True)))
        if not verify_password(agent, password) or agent is None:
            raise WrongCredentials
        if taken:
            try:
                self._give_back(keys=keys)
            except redis.RedisError as exc:  # the attempt stays counted, until it expires
                log.warning("sign-in throttle not given back (%s)", type(exc).__name__)
        with self.sessions.begin() as s:
            events.record(
                s,
                "user.signed_in",
                site_id=agent.site_id,
                agent_id=agent.id,
                actor=f"agent:{agent.id}",
            )
        return agent

    def _counters(self, email: str, address: str) -> tuple[list[str], list[Window]]:
        """The counters of an attempt, the (account, address) one first."""
        address = _client(address)
        pair = self._hash(f"{email}\n{address}")
        keys = [f"{PREFIX}account:{pair}"]
        windows = [PER_ACCOUNT_AND_ADDRESS]
        client = self._hash(address)
        for window in self.per_address:
            keys.append(f"{PREFIX}address:{window.seconds}:{client}")
            windows.append(window)
        return keys, windows

    def _hash(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()[:32]


def _client(address: str) -> str:
    """The client an address stands for: an IPv6 address by its /64, the smallest
    network a subscriber gets (rotating addresses within it gains nothing), an IPv4
    address (mapped into IPv6 or not) as itself."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
