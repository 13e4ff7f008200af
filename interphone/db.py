"""Database engine, sessions and migrations."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Executable, create_engine, event
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from .config import Settings

T = TypeVar("T")

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def database_url(settings: Settings) -> str:
    """The configured URL, normalized; SQLite in the instance folder when unset."""
    url = settings.database_url
    if url is None:
        settings.instance_path.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{settings.instance_path / 'interphone.sqlite3'}"
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str, *, pre_ping: bool = True, **kwargs: Any) -> Engine:
    """``pre_ping``: each connection taken from the pool is tested first (one more
    round trip), so a server restarted meanwhile costs no failed query; without it, the
    caller retries a query whose connection turns out dead (see :func:`read_once`)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=pre_ping, **kwargs)


def read_once(
    engine: Engine, statement: Executable, params: dict[str, Any]
) -> tuple[Any, ...] | None:
    """One row (or none), for reads on a webhook's path, on an engine made with
    ``isolation_level="AUTOCOMMIT"`` (:attr:`Runtime.read_engine`): outside any
    transaction, so no BEGIN and ROLLBACK round trips. On an engine without pre-ping,
    a connection found dead (the server restarted since it was pooled) is replaced and
    the read tried once more; SQLAlchemy drops the pool's other old connections
    meanwhile. (SQLite's driver opens no transaction for a read.)"""

    def read(connection: Connection) -> tuple[Any, ...] | None:
        row = connection.execute(statement, params).one_or_none()
        return None if row is None else tuple(row)

    return _on_a_live_connection(engine, read)


def write_once(engine: Engine, statement: Executable, params: dict[str, Any]) -> int:
    """One statement that changes nothing when applied twice (say, raising a version
    to at least a value), on :attr:`Runtime.read_engine` like :func:`read_once`: a single
    statement is atomic on its own, so it needs no BEGIN and COMMIT round trips, and a
    connection found dead is replaced and the statement tried once more. Returns the
    rows it changed. (On SQLite, whose engine this is too, the commit ends the write.)"""

    def write(connection: Connection) -> int:
        changed = connection.execute(statement, params).rowcount
        connection.commit()
        return int(changed)

    return _on_a_live_connection(engine, write)


def _on_a_live_connection(engine: Engine, work: Callable[[Connection], T]) -> T:
    """``work`` on a pooled connection, done again on a fresh one when the first
    turns out dead (only then: any other error is the caller's)."""
    for attempt in (1, 2):
        try:
            with engine.connect() as connection:
                return work(connection)
        except DBAPIError as exc:
            if attempt == 2 or not exc.connection_invalidated:
                raise
    raise AssertionError("unreachable")


# SQLSTATE classes that say the server did not do the work, whatever the statement: a
# connection exception, insufficient resources, operator intervention (shutting down, a
# statement cancelled), and the rollbacks a retry resolves (serialization, deadlock)
_NOT_THE_WORKS_FAULT = ("08", "53", "57", "40")


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database did not answer (unreachable, connection lost,
    pool exhausted, locked, shutting down, a deadlock or timeout) rather than refused a
    statement for its data: work that meets it waits in place and is tried again later,
    where a refusal (``IntegrityError``, ``DataError``, a program limit exceeded…) is the
    work's own fault. An ``OperationalError`` with a SQLSTATE counts by its class; one
    without (SQLite, a server never reached) is the database not answering."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError):
        state = getattr(exc.orig, "sqlstate", None)
        return not state or str(state)[:2] in _NOT_THE_WORKS_FAULT
    return isinstance(exc, InterfaceError | DisconnectionError | PoolTimeout)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with factory() as session, session.begin():
        yield session


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def vacuum_if_unattended(url: str) -> dict[str, Any]:
    """On a PostgreSQL server whose autovacuum is off, ``VACUUM (ANALYZE)`` the app's
    tables, as autovacuum keeps them on a production server; what was found and done.

    With autovacuum off, every run of a benchmark leaves thousands of dead rows behind
    and the planner's statistics of tables that grew from nothing, which slow the next
    run (docs/performance.md). Production must run autovacuum (docs/operations.md); a
    benchmark calls this to measure the state autovacuum keeps."""
    if not url.startswith("postgresql"):
        return {"autovacuum": None, "vacuumed": False}
    from sqlalchemy import text

    from .models import Base

    engine = make_engine(url, isolation_level="AUTOCOMMIT")  # VACUUM refuses a transaction
    try:
        with engine.connect() as connection:
            setting = str(connection.execute(text("SHOW autovacuum")).scalar())
            if setting == "on":
                return {"autovacuum": setting, "vacuumed": False}
            preparer = engine.dialect.identifier_preparer
            names = ", ".join(preparer.format_table(t) for t in Base.metadata.sorted_tables)
            connection.execute(text(f"VACUUM (ANALYZE) {names}"))
            return {"autovacuum": setting, "vacuumed": True}
    finally:
        engine.dispose()
