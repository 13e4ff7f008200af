"""The load generator (``interphone bench load``) against a real HTTP server: it must
count every request it sends and every error it gets, or its figures mean nothing."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from interphone.devtools import harness, loadtest
from interphone.devtools.bench.feed import stream_lines
from interphone.models import Contact
from interphone.runtime import Runtime

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
    words = harness.procfile_command("web", {"PORT": "18123", "WEB_THREADS": "8"}, procfile)
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
    """On a PostgreSQL whose autovacuum is off, an earlier run's dead rows slow the next
    run (docs/performance.md): the load test vacuums such a database first."""
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


@contextmanager
def canned(answers: list[bytes]) -> Iterator[int]:
    """A server on loopback answering each request it reads with the next canned bytes
    (all on one connection); an empty answer closes the connection instead."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            for answer in answers:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(4096)
                head, _, body = request.partition(b"\r\n\r\n")
                size = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                while len(body) < size:
                    body += conn.recv(4096)
                if not answer:
                    return
                conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        thread.join(timeout=5)


def test_client_reads_answers_by_length_by_chunks_and_a_204_without_waiting_for_the_close() -> None:
    answers = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n<ok/>",
        b"HTTP/1.1 503 SERVICE UNAVAILABLE\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\ninje\r\n6;x=1\r\ncted f\r\n0\r\n\r\n",
        b"HTTP/1.1 204 NO CONTENT\r\nContent-Type: text/html\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    ]
    with canned(answers) as port:
        client = loadtest.KeepAliveClient(port, timeout_s=5)
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        assert client.post("/a", b"x=1", form) == (200, b"<ok/>")
        assert client.post("/b", b"x=2", form) == (503, b"injected f")
        # a 204 has no body: not read until the connection closes (the status callback's)
        assert client.post("/c", b"", form) == (204, b"")
        assert client.post("/d", b"", form) == (200, b"ok")
        assert client._sock is None  # the server said close: the next request reconnects


def test_client_reports_a_connection_closed_before_the_answer_as_an_error() -> None:
    with canned([b""]) as port:
        client = loadtest.KeepAliveClient(port, timeout_s=5)
        with pytest.raises(loadtest.UnreadableAnswer):
            client.post("/a", b"x=1", {})
        assert client._sock is None


def test_planned_callers_have_valid_numbers_or_the_ivr_takes_them_for_withheld() -> None:
    import phonenumbers

    cases = [("6310125148", date(1978, 3, 2))]
    for seed in range(40):
        for _, caller in loadtest.plan_calls(300, 10.0, cases, seed=seed):
            assert phonenumbers.is_valid_number(phonenumbers.parse(caller.number)), caller.number


def _fragments(*parts: bytes) -> Callable[[int], bytes]:
    """A recv() that hands over the given fragments one by one, then the close."""
    pending = list(parts)
    return lambda _size: pending.pop(0) if pending else b""


def test_feed_reader_finds_lines_split_across_chunks_and_stops_at_the_last_chunk() -> None:
    body = b"event: hello\ndata: {}\n\nevent: change\r\ndata: " + b'{"contact_id": 7}\n\n'
    chunks = b"c;ext=1\r\n" + body[:12] + b"\r\n" + f"{len(body) - 12:x}".encode() + b"\r\n"
    chunks += body[12:] + b"\r\n0\r\n\r\n" + b"never read"
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks
    cut = [answer[i : i + 7] for i in range(0, len(answer), 7)]  # recv()s of 7 bytes
    lines = list(stream_lines(_fragments(*cut)))
    assert lines == [
        b"event: hello",
        b"data: {}",
        b"",
        b"event: change",
        b'data: {"contact_id": 7}',
        b"",
    ]


def test_feed_reader_reads_a_body_ended_by_the_close_and_refuses_an_answer_other_than_200() -> None:
    plain = b"HTTP/1.0 200 OK\r\n\r\nevent: hello\ndata: {}\n"
    assert list(stream_lines(_fragments(plain[:25], plain[25:]))) == [b"event: hello", b"data: {}"]
    with pytest.raises(ValueError, match="302"):
        list(stream_lines(_fragments(b"HTTP/1.1 302 FOUND\r\nLocation: /login\r\n\r\n")))


def test_feed_reader_says_a_chunked_body_cut_short_is_cut_short() -> None:
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n20\r\nevent: hel"
    with pytest.raises(ConnectionResetError):
        list(stream_lines(_fragments(answer)))


def test_host_figures_tell_how_often_the_host_ran_the_same_work_slower() -> None:
    samples = [0.001, 0.0011, 0.00124, 0.00125, 0.002]  # seconds of CPU for one probe
    figures = loadtest.host_figures(samples)
    assert figures["probes"] == 5
    assert (figures["work_us_min"], figures["work_us_max"]) == (1000, 2000)
    assert figures["work_us_p50"] == 1240
    assert figures["slow_share"] == 0.4  # 1.25 ms and 2 ms: at least 25 % slower
    assert loadtest.host_figures([]) == {"probes": 0}


def test_host_probe_times_its_work_while_the_run_goes_on_and_stops_with_it() -> None:
    deadline = time.monotonic() + 10
    with loadtest.HostProbe(every_s=0.01) as probe:
        while len(probe.samples) < 3 and time.monotonic() < deadline:
            threading.Event().wait(0.01)
    assert len(probe.samples) >= 3 and all(t > 0 for t in probe.samples)
    assert not probe._thread.is_alive()  # stopped with the run
