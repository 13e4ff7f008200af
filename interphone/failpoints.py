"""Named fail points: where a fault test stops a process to kill it at a precise moment.

A fail point listed in ``INTERPHONE_FAILPOINTS`` (refused in production) makes the
process that reaches it leave a mark in Redis (``ip:failpoint:<name>`` = its pid) and
wait there until it is killed. The fault tests (``tests/test_faults_*.py``) use them to
SIGKILL a worker in the middle of a dispatch or of placing a call, or a web process
in the middle of a webhook; a process started without them runs the same code with one
set lookup per point.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable

import redis

log = logging.getLogger(__name__)

MARK = "ip:failpoint:"
_active: frozenset[str] = frozenset()


def configure(names: Iterable[str]) -> None:
    global _active
    _active = frozenset(names)


def active() -> frozenset[str]:
    return _active


def hit(name: str, connection: redis.Redis) -> None:
    """Stop here for good if ``name`` is armed in this process (a test kills it)."""
    if name not in _active:
        return
    log.warning("fail point %s reached by pid %s: waiting to be killed", name, os.getpid())
    connection.set(MARK + name, str(os.getpid()), ex=3600)
    while True:  # the test that armed the point kills this process
        time.sleep(0.05)
