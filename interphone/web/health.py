"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from .context import runtime_of

bp = Blueprint("health", __name__)


def _check_redis() -> dict[str, Any]:
    try:
        runtime_of(current_app).redis.ping()
        return {"ok": True}
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}


def _check_database() -> dict[str, Any]:
    try:
        with runtime_of(current_app).engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"ok": True}
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}


def _check_workers() -> dict[str, Any]:
    """RQ workers registered on the interphone queue whose heartbeat key is still alive
    (rq lets a worker's key expire when it stops beating); dispatch, callbacks and SMS
    all run in them."""
    from rq import Worker

    from ..jobs import SWEEP_HEARTBEAT

    rt = runtime_of(current_app)
    try:
        workers = Worker.all(queue=rt.rq_queue)
        sweep_alive = bool(rt.redis.exists(SWEEP_HEARTBEAT))
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}
    body: dict[str, Any] = {
        "ok": bool(workers),
        "count": len(workers),
        "states": sorted(str(w.get_state()) for w in workers),
        "sweep": sweep_alive,
    }
    if not workers:
        body["error"] = "no RQ worker is alive on the interphone queue"
    return body


@bp.get("/ping")
def ping() -> Any:
    """No I/O at all: the framework's floor, for benchmarks and load balancers."""
    return "pong", 200, {"Content-Type": "text/plain"}


@bp.get("/healthz")
def healthz() -> Any:
    """The process is alive; Redis and database status are reported, not required."""
    return jsonify(status="ok", redis=_check_redis(), database=_check_database())


@bp.get("/readyz")
def readyz() -> Any:
    redis_status, db_status = _check_redis(), _check_database()
    workers = _check_workers() if redis_status["ok"] else {"ok": False, "error": "no Redis"}
    ready = redis_status["ok"] and db_status["ok"] and workers["ok"]
    body = {
        "status": "ready" if ready else "not-ready",
        "redis": redis_status,
        "database": db_status,
        "workers": workers,
    }
    return jsonify(body), 200 if ready else 503
