"""``interphone bench queue``: latency of the queue scripts against the configured Redis.

Runs under a private key prefix (removed afterwards), so it never touches live data.
Dispatch is measured with the line kept full: each offer is declined (untimed), which
puts the contact back at its place and the agent at the back of the idle order.
"""

from __future__ import annotations

import random
import statistics
import time
import uuid
from typing import Any

import redis

from interphone.queue.clock import SystemClock
from interphone.queue.store import NORMAL, URGENT, RedisQueue

from ..harness import percentile

LANGUAGES = ("fr", "fr", "fr", "en", "ar", "es")


def run(
    connection: redis.Redis,
    *,
    contacts: int = 100_000,
    agents: int = 200,
    samples: int = 5_000,
    seed: int = 7,
) -> dict[str, Any]:
    rng = random.Random(seed)
    prefix = f"ipbench:{uuid.uuid4().hex[:8]}:"
    store = RedisQueue(connection, SystemClock(), prefix=prefix)
    site = "bench"
    try:
        now_ms = store.now_ms()
        started = time.perf_counter()
        for cid in range(1, contacts + 1):
            store.enqueue(
                cid,
                site=site,
                kind="live" if cid % 3 else "callback",
                language=rng.choice(LANGUAGES),
                priority_class=URGENT if cid % 50 == 0 else NORMAL,
                arrived_ms=now_ms - (contacts - cid) * 10,
            )
        enqueue_s = time.perf_counter() - started

        for aid in range(1, agents + 1):
            langs = ["fr"] + ([rng.choice(("en", "ar", "es"))] if aid % 2 else [])
            store.set_presence(aid, site=site, languages=langs, state="available")

        eval_ms: list[float] = []
        dispatch_ms: list[float] = []
        trivial = connection.register_script("return 1")
        trivial(keys=[prefix], args=[])  # load it once, as the queue scripts are
        for _ in range(samples):
            t0 = time.perf_counter()
            trivial(keys=[prefix], args=[])
            t1 = time.perf_counter()
            result = store.dispatch(
                site, offer_timeout_s=60, language_relax_s=120, promote_after_s=10**6
            )
            t2 = time.perf_counter()
            eval_ms.append((t1 - t0) * 1000)
            dispatch_ms.append((t2 - t1) * 1000)
            if result.offer is None:
                raise RuntimeError("benchmark dispatch found no match")
            store.decline(result.offer.agent_id, result.offer.contact_id)

        position_ms: list[float] = []
        for _ in range(samples):
            cid = rng.randrange(1, contacts + 1)
            t0 = time.perf_counter()
            store.position(cid)
            position_ms.append((time.perf_counter() - t0) * 1000)

        dispatch_p99, position_p99, eval_p99 = (
            percentile(sorted(ms), 0.99) for ms in (dispatch_ms, position_ms, eval_ms)
        )
        return {
            "redis": _describe(connection),
            "contacts_waiting": store.waiting_count(site),
            "agents": agents,
            "samples": samples,
            "enqueue_per_s": round(contacts / enqueue_s, 1),
            "dispatch_per_s": round(samples / (sum(dispatch_ms) / 1000), 1),
            "dispatch_p50_ms": round(statistics.median(dispatch_ms), 4),
            "dispatch_p99_ms": round(dispatch_p99, 4),
            "position_p50_ms": round(statistics.median(position_ms), 4),
            "position_p99_ms": round(position_p99, 4),
            "baseline_eval_p50_ms": round(statistics.median(eval_ms), 4),
            "baseline_eval_p99_ms": round(eval_p99, 4),
            "dispatch_p99_over_baseline": round(dispatch_p99 / eval_p99, 2),
        }
    finally:
        for key in connection.scan_iter(match=f"{prefix}*", count=5000):
            connection.unlink(key)


def _describe(connection: redis.Redis) -> str:
    kwargs = connection.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
