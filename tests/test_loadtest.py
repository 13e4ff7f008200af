"""The load generator (``interphone bench load``) against a real HTTP server: it must
count every request it sends and every error it gets, or its figures mean nothing."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select
from werkzeug.serving import make_server

from interphone.models import Contact
from interphone.runtime import Runtime
from interphone.voice import loadtest

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


class Counting:
    """WSGI middleware: counts the requests that reach the server, by path, and answers
    503 to the paths listed in ``fail`` (without reaching the app)."""

    def __init__(self, app: Any, fail: tuple[str, ...] = ()) -> None:
        self.app, self.fail = app, fail
        self.seen: dict[str, int] = {}
        self.lock = threading.Lock()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        with self.lock:
            self.seen[path] = self.seen.get(path, 0) + 1
        if path in self.fail:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"injected failure"]
        return self.app(environ, start_response)  # type: ignore[no-any-return]

    def total(self) -> int:
        return sum(self.seen.values())


@contextmanager
def serving(app: Any) -> Iterator[int]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        thread.join(timeout=10)


def _callers(rt: Runtime, port: int, token: str | None = None) -> loadtest.Callers:
    settings = rt.settings
    return loadtest.Callers(
        port,
        public_base_url=settings.public_base_url,
        auth_token=token or settings.twilio_auth_token or "",
        account_sid=settings.twilio_account_sid or "",
        clients=4,
        think_s=0.05,
    )


def test_load_generator_counts_every_request_and_every_injected_server_error(
    app: Any, voice_runtime: Runtime
) -> None:
    cases, _ = loadtest.prepare(voice_runtime, screens=0, cases=6)
    server = Counting(app, fail=("/voice/status",))  # Twilio's status callbacks fail
    calls = loadtest.plan_calls(40, 2.0, cases, seed=11)
    with serving(server) as port:
        result = _callers(voice_runtime, port).run(calls, end_s=30.0)

    sent = len(result.samples)
    assert sent == server.total() > len(calls)  # nothing sent uncounted, nothing made up
    assert result.cut == 0
    errors = [s for s in result.samples if s.error]
    assert {s.error for s in errors} == {"http_5xx"}
    assert len(errors) == server.seen["/voice/status"] == len(calls)  # one per call
    assert all(s.kind == "status_callback" for s in errors)
    report = loadtest.figures(result, start_s=0.0, seconds=30.0)
    assert report["requests"] == sent
    assert report["errors"] == report["errors_by_type"]["http_5xx"] == len(calls)
    kinds = report["by_kind"]
    assert kinds["status_callback"]["errors"] == kinds["status_callback"]["requests"]
    assert sum(k["requests"] for k in kinds.values()) == sent
    assert all(k["errors"] == 0 for name, k in kinds.items() if name != "status_callback")
    # the callers that queued themselves did: one contact per call that says so
    with voice_runtime.sessions() as s:
        queued = set(s.scalars(select(Contact.call_sid).where(Contact.call_sid.isnot(None))))
    assert set(result.contacts) == queued
    assert queued  # the seed's mix has callbacks and live callers


def test_load_generator_counts_requests_refused_for_their_signature_as_errors(
    app: Any, voice_runtime: Runtime
) -> None:
    cases, _ = loadtest.prepare(voice_runtime, screens=0, cases=6)
    server = Counting(app)
    calls = loadtest.plan_calls(20, 1.0, cases, seed=3)
    with serving(server) as port:
        result = _callers(voice_runtime, port, token="not-the-auth-token").run(calls, end_s=30.0)

    # each call: its first webhook refused (403), then the caller hangs up (refused too)
    assert len(result.samples) == server.total() == 2 * len(calls)
    assert [s.error for s in result.samples] == ["http_4xx"] * len(result.samples)
    assert loadtest.figures(result, start_s=0.0, seconds=30.0)["errors"] == 2 * len(calls)


def test_load_generator_stops_sending_at_the_end_of_the_run(
    app: Any, voice_runtime: Runtime
) -> None:
    cases, _ = loadtest.prepare(voice_runtime, screens=0, cases=6)
    server = Counting(app)
    calls = loadtest.plan_calls(40, 2.0, cases, seed=5)
    with serving(server) as port:
        result = _callers(voice_runtime, port).run(calls, end_s=0.5)

    assert result.cut > 0  # callers still on the line when the run ended
    assert len(result.samples) == server.total()
    assert all(s.due < 0.5 for s in result.samples)


def test_procfile_web_line_is_what_the_load_test_runs(tmp_path: Path) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text(
        "web: gunicorn --bind ${HOST:-0.0.0.0}:${PORT:-5000} --workers ${WEB_CONCURRENCY:-2}"
        ' --threads ${WEB_THREADS:-32} "interphone.web:create_app()"\n'
    )
    words = loadtest.procfile_command("web", {"PORT": "18123", "WEB_THREADS": "8"}, procfile)
    assert Path(words[0]).name == "gunicorn" and Path(words[0]).is_absolute()
    assert words[1:] == [
        "--bind",
        "0.0.0.0:18123",
        "--workers",
        "2",
        "--threads",
        "8",
        "interphone.web:create_app()",
    ]


def test_load_test_database_without_autovacuum_is_vacuumed_first_not_left_bloated(
    runtime: Runtime,
) -> None:
    """Dead rows of an earlier run doubled the next run's p99 on a PostgreSQL whose
    autovacuum is off (this project's machines): the load test vacuums it first."""
    from sqlalchemy import text

    from interphone import db

    upkeep = db.vacuum_if_unattended(runtime.database_url)
    if runtime.engine.dialect.name != "postgresql":
        assert upkeep == {"autovacuum": None, "vacuumed": False}
        return
    with runtime.engine.connect() as connection:
        setting = connection.execute(text("SHOW autovacuum")).scalar()
        vacuumed = connection.execute(
            text(
                "SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'contacts'"
            )
        ).scalar()
    assert upkeep == {"autovacuum": setting, "vacuumed": setting != "on"}
    assert vacuumed or setting == "on"
