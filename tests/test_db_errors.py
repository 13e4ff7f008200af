"""Which database errors keep work waiting (the journal's batch, the sweep) and which set
a record aside: the database not answering, against a statement it refuses."""

from __future__ import annotations

import socket

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from interphone import db
from interphone.runtime import Runtime


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_database_that_does_not_answer_keeps_work_waiting() -> None:
    engine = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/none")
    with pytest.raises(OperationalError) as refused, engine.connect():
        pass
    assert db.unavailable(refused.value)


def test_a_statement_refused_for_its_own_sake_does_not_keep_work_waiting(
    runtime: Runtime,
) -> None:
    """PostgreSQL reports a program limit exceeded (SQLSTATE 54000) as an
    OperationalError: a record that meets one would wait in place for ever. (SQLite's
    OperationalErrors carry no SQLSTATE: locked, unreadable, not migrated yet, all of
    them the database not ready, so they keep work waiting.)"""
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("a SQLSTATE is PostgreSQL's: run with TEST_DATABASE_URL (make test-pg)")
    with pytest.raises(OperationalError) as refused, runtime.engine.connect() as connection:
        connection.execute(text("SELECT array_fill(1, ARRAY[1000000000])"))
    assert refused.value.orig.sqlstate == "54000"
    assert not db.unavailable(refused.value)
