"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

from alembic import command
from alembic.util.exc import CommandError

from interphone.db import alembic_config, upgrade


def test_migrations_match_the_models(database_url: str) -> None:
    try:
        command.check(alembic_config(database_url))
    except CommandError as exc:  # pragma: no cover - the message is the diagnosis
        raise AssertionError(f"models and migrations differ: {exc}") from None


def test_upgrade_twice_is_harmless(database_url: str) -> None:
    upgrade(database_url)
    upgrade(database_url)
