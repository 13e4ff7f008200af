"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from . import runtime_of

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
    ready = redis_status["ok"] and db_status["ok"]
    body = {
        "status": "ready" if ready else "not-ready",
        "redis": redis_status,
        "database": db_status,
    }
    return jsonify(body), 200 if ready else 503
