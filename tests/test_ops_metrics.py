"""Operations: /readyz knows about the RQ workers, /metrics tells the figures of the whole
deployment (any web process answers the same), and only to whom it should."""

from __future__ import annotations

import copy
import re
import threading
import time
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from interphone import jobs, metrics
from interphone.devtools.devphone.phone import DevPhone
from interphone.devtools.harness import gunicorn
from interphone.jobqueue import enqueue_dispatch
from interphone.runtime import Runtime
from interphone.voice.speech.models import ModelRegistry
from interphone.voice.speech.results import SpeechResults
from interphone.voice.speech.stream import SpeechStreams
from interphone.web import create_app
from interphone.worker import Worker

from .conftest import SITE


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _scrape(app: Any, **kwargs: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = app.test_client().get("/metrics", **kwargs)
    assert response.status_code == 200, response.data[:200]
    assert response.mimetype == "text/plain"
    return _samples(response.get_data(as_text=True))


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# -- readiness --------------------------------------------------------------------------------
def test_readyz_is_not_ready_with_a_clear_reason_when_no_worker_is_alive(app) -> None:
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.json
    assert body["status"] == "not-ready" and body["redis"]["ok"] and body["database"]["ok"]
    assert body["workers"]["ok"] is False and body["workers"]["count"] == 0
    assert "no RQ worker" in body["workers"]["error"]


def test_readyz_is_ready_while_a_worker_lives_and_not_after_it_died(
    app, voice_runtime: Runtime
) -> None:
    worker = Worker([voice_runtime.rq_queue], connection=voice_runtime.redis)
    worker.register_birth()
    try:
        response = app.test_client().get("/readyz")
        assert response.status_code == 200, response.json
        assert response.json["workers"]["count"] == 1
    finally:
        worker.register_death()
    assert app.test_client().get("/readyz").status_code == 503


def test_readyz_ignores_a_worker_of_another_queue(app, voice_runtime: Runtime) -> None:
    from rq import Queue

    other = Queue("someone-else", connection=voice_runtime.redis)
    worker = Worker([other], connection=voice_runtime.redis)
    worker.register_birth()
    try:
        assert app.test_client().get("/readyz").status_code == 503
    finally:
        worker.register_death()


# -- access -------------------------------------------------------------------------------------
def test_metrics_are_refused_to_a_request_forwarded_by_a_proxy(app) -> None:
    client = app.test_client()
    assert client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 403
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 403
    assert client.get("/metrics").status_code == 200  # loopback, no proxy


def test_metrics_token_is_required_from_anywhere_when_set(voice_runtime: Runtime) -> None:
    token = "m" * 40
    rt = Runtime(
        voice_runtime.settings.with_overrides(metrics_token=token), clock=voice_runtime.clock
    )
    try:
        client = create_app(runtime=rt).test_client()
        assert client.get("/metrics").status_code == 403  # loopback is not enough
        assert client.get("/metrics", headers={"Authorization": "Bearer x"}).status_code == 403
        remote = {"REMOTE_ADDR": "203.0.113.9"}
        ok = client.get(
            "/metrics", headers={"Authorization": f"Bearer {token}"}, environ_base=remote
        )
        assert ok.status_code == 200 and b"interphone_queue_waiting" in ok.data
    finally:
        rt.close()


# -- figures ------------------------------------------------------------------------------------
def test_calls_queue_and_webhook_latency_appear_after_real_calls(
    app, devphone: DevPhone, voice_runtime: Runtime, clock
) -> None:
    devphone.call("+33622222222").press("1").press("3")  # French, then an agent: waits
    clock.advance(90)
    status = devphone.call("+33633333333").press("1").press("1")
    status.hang_up()
    voice_runtime.journal.drain()  # the sweep's work: call records into SQL
    samples = _scrape(app)
    assert _value(samples, "interphone_queue_waiting", site=SITE) == 1
    assert _value(samples, "interphone_queue_oldest_wait_seconds", site=SITE) == 90
    assert _value(samples, "interphone_contacts", site=SITE, kind="live", state="waiting") == 1
    assert _value(samples, "interphone_calls", direction="inbound", status="completed") == 1
    route = "/voice/step/<step>"
    count = _value(samples, "interphone_http_request_duration_seconds_count", route=route)
    assert count >= 3
    assert (
        _value(samples, "interphone_http_request_duration_seconds_bucket", route=route, le="+Inf")
        == count
    )
    assert _value(samples, "interphone_http_responses_total", route=route, code="200") == count
    assert _value(samples, "interphone_scrape_failed", part="database") == 0


def test_two_web_processes_report_the_same_figures(
    app, devphone: DevPhone, voice_runtime: Runtime
) -> None:
    """Each runtime has its own Redis client and recorder, as a gunicorn worker has.
    The figures of a process reach Redis within a second, or at once when it is scraped."""
    other_rt = Runtime(voice_runtime.settings, clock=voice_runtime.clock)
    try:
        other = create_app(runtime=other_rt)
        for _ in range(3):
            other.test_client().get("/ping")
        devphone.call("+33644444444").press("2")
        _scrape(other)  # a process's figures reach Redis within a second, or at its scrape
        first, second = _scrape(app), _scrape(other)
        ping = {"route": "/ping", "code": "200"}
        assert _value(first, "interphone_http_responses_total", **ping) == 3
        assert _value(second, "interphone_http_responses_total", **ping) == 3
        incoming = {"route": "/voice/incoming", "code": "200"}
        assert _value(first, "interphone_http_responses_total", **incoming) == 1
        assert _value(second, "interphone_http_responses_total", **incoming) == 1
    finally:
        other_rt.close()


def _poll(read: Any, done: Any, timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    value = read()
    while not done(value) and time.monotonic() < deadline:
        threading.Event().wait(0.1)
        value = read()
    return value


def test_two_gunicorn_workers_answer_the_same_figures_even_one_left_idle(
    voice_runtime: Runtime,
) -> None:
    """A real gunicorn with two worker processes: whichever answers the scrape, the
    figures agree once each process has flushed (every scrape flushes its process)."""
    with gunicorn(voice_runtime, workers=2) as port:
        base = f"http://127.0.0.1:{port}"
        for _ in range(40):
            with urllib.request.urlopen(base + "/ping") as response:
                assert response.status == 200

        def pings() -> float:
            with urllib.request.urlopen(base + "/metrics") as response:
                text = response.read().decode()
            samples = _samples(text)
            return _value(samples, "interphone_http_responses_total", route="/ping", code="200")

        # whichever worker answers (the scrape may never reach the other one, which sits
        # idle after its pings): each flushes on its own within a second
        assert _poll(pings, lambda value: value == 40.0) == 40.0
        assert [pings() for _ in range(10)] == [40.0] * 10


def test_dispatch_latency_is_recorded_by_the_worker_that_dispatched(
    app, voice_runtime: Runtime, devphone: DevPhone
) -> None:
    from interphone.accounts import add_user

    agent = add_user(
        voice_runtime.sessions, "a@example.org", "a-long-password", site_code=SITE, languages=["fr"]
    )
    devphone.call("+33655555555").press("1").press("3")
    voice_runtime.queue.set_presence(agent.id, "available")
    enqueue_dispatch(voice_runtime.rq_queue, SITE)
    jobs.use_runtime(voice_runtime)
    try:
        Worker([voice_runtime.rq_queue], connection=voice_runtime.redis).work(burst=True)
    finally:
        jobs.use_runtime(None)
    samples = _scrape(app)
    assert _value(samples, "interphone_dispatch_latency_seconds_count", site=SITE) == 1
    assert _value(samples, "interphone_dispatch_offers_total", site=SITE) == 1
    assert _value(samples, "interphone_rq_workers") == 0  # the burst worker has gone


def test_speech_real_time_factor_comes_from_the_stream_process(app, voice_runtime: Runtime) -> None:
    streams = SpeechStreams(ModelRegistry(None), SpeechResults(voice_runtime.redis))
    streams._account(cpu_s=0.3, audio_s=10.0)
    streams._account(cpu_s=0.0, audio_s=0.0)  # a stream that heard nothing: not counted
    samples = _scrape(app)
    assert _value(samples, "interphone_speech_audio_seconds_total") == 10.0
    assert abs(_value(samples, "interphone_speech_cpu_seconds_total") - 0.3) < 1e-9
    assert _value(samples, "interphone_speech_real_time_factor_bucket", le="0.05") == 1
    assert _value(samples, "interphone_speech_real_time_factor_bucket", le="0.02") == 0


def test_scrape_says_which_part_failed_instead_of_a_500(voice_runtime: Runtime) -> None:
    broken = Runtime(
        voice_runtime.settings.with_overrides(database_url="postgresql://nobody@127.0.0.1:1/x"),
        clock=voice_runtime.clock,
    )
    try:
        response = create_app(runtime=broken).test_client().get("/metrics")
        assert response.status_code == 200
        samples = _samples(response.get_data(as_text=True))
        assert _value(samples, "interphone_scrape_failed", part="database") == 1
        assert _value(samples, "interphone_scrape_failed", part="queue") == 0
    finally:
        broken.close()


def test_recorder_drops_figures_rather_than_failing_when_redis_is_gone() -> None:
    import redis

    recorder = metrics.Recorder(redis.Redis.from_url("redis://127.0.0.1:1/0"))
    recorder.inc("interphone_dispatch_offers", SITE)
    recorder.flush()  # logged, not raised
    assert recorder._pending == {}


def test_every_response_carries_a_request_id(app) -> None:
    response = app.test_client().get("/ping", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    generated = app.test_client().get("/ping", headers={"X-Request-ID": "<script>"})
    assert re.fullmatch(r"[0-9a-f]{16}", generated.headers["X-Request-ID"])


def test_a_process_idle_after_a_burst_still_flushes_its_figures(voice_runtime: Runtime) -> None:
    """Flushing only on the next observation left an idle process's last second unseen."""
    recorder = metrics.Recorder(voice_runtime.redis, flush_every_s=0.2)
    recorder.inc("interphone_rate_limited", "ip")  # the first one flushes at once or soon
    recorder.inc("interphone_rate_limited", "ip")  # buffered: no more work follows

    def recorded() -> float:
        return sum(
            sample.value
            for sample in metrics.read(voice_runtime.redis)
            if sample.name == "interphone_rate_limited_total" and sample.labels == {"limit": "ip"}
        )

    assert _poll(recorded, lambda value: value == 2.0) == 2.0


def test_observing_never_writes_to_redis_on_the_callers_thread(voice_runtime: Runtime) -> None:
    """Only the process's flusher thread writes the figures: a request never pays for
    the round trip carrying every figure of its process."""
    recorder = metrics.Recorder(voice_runtime.redis, flush_every_s=0.05)
    writers: set[str] = set()
    pipeline = recorder.redis.pipeline

    def watched_pipeline(*args: Any, **kwargs: Any) -> Any:
        writers.add(threading.current_thread().name)
        return pipeline(*args, **kwargs)

    recorder.redis = copy.copy(recorder.redis)  # the runtime's client stays as it is
    recorder.redis.pipeline = watched_pipeline  # type: ignore[method-assign]
    observed = 0
    deadline = time.monotonic() + 10
    while len(writers) == 0 and time.monotonic() < deadline:  # until the flusher wrote
        for _ in range(50):
            recorder.observe("interphone_http_request_duration_seconds", 0.002, "/only-this-test")
            observed += 1
        threading.Event().wait(0.01)
    assert writers == {"metrics-flush"}
    recorder.flush()  # the rest (a scrape flushes what its process holds)

    def counts() -> list[float]:  # the flusher may be writing its last batch still
        return [
            s.value
            for s in metrics.read(voice_runtime.redis)
            if s.name == "interphone_http_request_duration_seconds_count"
            and s.labels == {"route": "/only-this-test"}
        ]

    assert _poll(counts, lambda found: found == [observed]) == [observed]


def test_closing_a_runtime_writes_its_last_figures_and_stops_its_flusher(
    voice_runtime: Runtime,
) -> None:
    """A flusher left running used a closed client: a flush racing the close failed
    inside redis-py and the thread died with an unhandled exception (an error in
    whichever test was running), and the next flush reconnected the closed client."""
    rt = Runtime(voice_runtime.settings, clock=voice_runtime.clock, trigger=lambda site: None)
    recorder = metrics.recorder_for(rt.redis)
    recorder.flush_every_s = 60.0  # nothing would be written for a minute
    recorder.inc("interphone_rate_limited", "api")
    flusher = recorder._flusher
    assert flusher is not None and flusher.is_alive()
    rt.close()
    assert not flusher.is_alive()
    written = [
        s.value
        for s in metrics.read(voice_runtime.redis)
        if s.name == "interphone_rate_limited_total" and s.labels == {"limit": "api"}
    ]
    assert written == [1.0]
