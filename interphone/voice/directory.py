"""The sites as last read from the database, kept in Redis for a web process that
starts while the database is down.

Every webhook needs the sites (the called number's site, its languages, its hours). A
running web process keeps its last read through a database outage, but one started
during the outage had nothing and answered every call with a 500. Each successful read
leaves a copy here; a process with no read of its own starts from it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis

from ..models import Site

log = logging.getLogger(__name__)

KEY = "ip:sites:snapshot"
_COLUMNS = tuple(column.key for column in Site.__table__.columns)


def encode(sites: dict[str, Site]) -> str:
    """The sites as JSON; empty if they cannot be (a snapshot never fails a call)."""
    rows = [{name: getattr(site, name) for name in _COLUMNS} for _, site in sorted(sites.items())]
    try:
        return json.dumps(rows, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        log.warning("sites snapshot not made (%s)", exc)
        return ""


def save(connection: redis.Redis, snapshot: str) -> bool:
    """Keep ``snapshot`` (:func:`encode`); False when Redis could not be reached."""
    try:
        connection.set(KEY, snapshot)
    except redis.RedisError as exc:
        log.warning("sites snapshot not saved (%s)", type(exc).__name__)
        return False
    return True


def load(connection: redis.Redis) -> dict[str, Site]:
    """The sites of the last snapshot, by code (detached, read-only); empty when there
    is none or it cannot be read."""
    try:
        raw = connection.get(KEY)
    except redis.RedisError as exc:
        log.warning("sites snapshot not read (%s)", type(exc).__name__)
        return {}
    if raw is None:
        return {}
    try:
        rows: list[dict[str, Any]] = json.loads(raw)
        sites = [Site(**{k: v for k, v in row.items() if k in _COLUMNS}) for row in rows]
        if not all(isinstance(s.id, int) and isinstance(s.code, str) for s in sites):
            raise ValueError("a site without its id or code")
    except (ValueError, TypeError, AttributeError) as exc:
        log.warning("sites snapshot unreadable (%s)", type(exc).__name__)
        return {}
    return {site.code: site for site in sites}
