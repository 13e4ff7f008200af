"""``interphone bench speech``: what one core of the speech stream server sustains, beside
the floor of a bare Vosk loop over the same audio.

Both sides run pinned to the same core (the first; the benchmark's clients use the
others), take the same utterance (a committed fixture, then a quiet line until Vosk's
endpointing decides), the same grammar, and hand Vosk the audio in the same chunks:

- **endpoint**: the real server process (gunicorn, one guarded gthread worker, the ``stream``
  app of the Procfile) and real WebSocket clients speaking Twilio's protocol, one
  20 ms media message at a time at real-time pace, a new stream for every utterance;
- **bare**: a process that loads the model with ``vosk`` alone and feeds the same
  frames to ``KaldiRecognizer`` from one thread per stream, at the same pace: a frame
  every 20 ms, handed to Vosk ``Limits.chunk_ms`` (100 ms) at a time: it wakes as often
  as the server's stream does, so that both sides pay for the same pacing.

Figures: model load time; resident memory; real-time factor of one stream (CPU time
over audio time, the audio sent as fast as it is taken); simultaneous streams in real
time: the most streams for which the 95th percentile of the decision lag (from the
moment the decisive audio was due to the moment the decision is known) stays within
``LAG_LIMIT_MS``, every utterance decided. Each side's search starts from its
real-time factor's estimate and brackets the answer with trials of ``seconds`` each;
the two sides' trials take turns, so that a noisy neighbour hits both. Each paced trial
also measures the recognizing process's CPU time per utterance; the ratio of the two
sides' figures over all their trials (``ratio.cpu_per_utterance``) is the share of the
floor's capacity the endpoint keeps when the CPU is what limits, and varies much less
than the stream counts when the machine is shared.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from interphone.voice.speech import mulaw
from interphone.voice.speech import token as call_token
from interphone.voice.speech.models import rss_mb

from ..harness import free_port, percentile, server

FRAME_BYTES = 160  # 20 ms of 8 kHz µ-law
FRAME_S = 0.02
LAG_LIMIT_MS = 200.0
TAIL_S = 2.5  # quiet line after the word: Vosk's endpointing decides within it
STEP = "bench"
Summary = dict[str, Any]


# -- trials -------------------------------------------------------------------------------------
@dataclass
class Trial:
    streams: int
    utterances: int = 0
    wrong: int = 0  # decided, but not the expected meaning
    undecided: int = 0  # no decision (error, closed without result)
    lags_ms: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, lag_s: float | None, right: bool) -> None:
        with self._lock:
            self.utterances += 1
            if lag_s is None:
                self.undecided += 1
                return
            self.lags_ms.append(lag_s * 1000)
            self.wrong += 0 if right else 1

    def summary(self) -> Summary:
        p95 = _percentile(self.lags_ms, 0.95)
        return {
            "streams": self.streams,
            "utterances": self.utterances,
            "p50_lag_ms": round(_percentile(self.lags_ms, 0.5), 1),
            "p95_lag_ms": round(p95, 1),
            "max_lag_ms": round(max(self.lags_ms, default=math.inf), 1),
            "wrong": self.wrong,
            "undecided": self.undecided,
            "real_time": bool(self.lags_ms) and self.undecided == 0 and p95 <= LAG_LIMIT_MS,
        }


def _percentile(values: list[float], share: float) -> float:
    return percentile(sorted(values), share) if values else math.inf


def run_trial(
    n: int, seconds: float, length_s: float, utterance: Callable[[], tuple[float | None, bool]]
) -> Summary:
    """``n`` callers, each saying the utterance again and again for ``seconds``, their
    starts spread over one utterance; ``utterance()`` returns (lag or None, right)."""
    trial = Trial(n)
    begin = time.monotonic() + 0.2
    stop = begin + seconds

    def caller(index: int) -> None:
        time.sleep(max(0.0, begin + index * length_s / n - time.monotonic()))
        while time.monotonic() < stop:
            trial.record(*utterance())

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return trial.summary()


def bracket(estimate: int, ceiling: int = 400) -> Generator[int, bool, int]:
    """Yields stream counts to try and receives whether each ran in real time; returns
    the largest that did. Steps from the estimate until the answer changes, then bisects."""
    n = max(1, min(estimate, ceiling))
    step = max(1, n // 5)
    good, bad = 0, None
    if (yield n):
        good = n
        while bad is None and good < ceiling:
            k = min(good + step, ceiling)
            if (yield k):
                good = k
            else:
                bad = k
    else:
        bad = n
        while good == 0 and bad > 1:
            k = max(bad - step, 1)
            if (yield k):
                good = k
            else:
                bad = k
    while bad is not None and bad - good > 1:
        k = (good + bad) // 2
        if (yield k):
            good = k
        else:
            bad = k
    return good


def take_turns(
    sides: dict[str, tuple[int, Callable[[int], Summary]]],
) -> dict[str, tuple[int, list[Summary]]]:
    """Run each side's :func:`bracket` search, one trial of each side in turn."""
    searches = {name: bracket(estimate) for name, (estimate, _) in sides.items()}
    pending = {name: next(search) for name, search in searches.items()}
    done: dict[str, tuple[int, list[Summary]]] = {}
    trials: dict[str, list[Summary]] = {name: [] for name in sides}
    while pending:
        for name in list(pending):
            summary = sides[name][1](pending[name])
            trials[name].append(summary)
            try:
                pending[name] = searches[name].send(bool(summary["real_time"]))
            except StopIteration as finished:
                del pending[name]
                done[name] = (int(finished.value), sorted(trials[name], key=_streams))
    return done


def _streams(summary: Summary) -> int:
    return int(summary["streams"])


def utterance_audio(word: bytes, tail_s: float = TAIL_S) -> bytes:
    """The word then a quiet line (a faint seeded hiss, as a real line has)."""
    rng = np.random.default_rng(11)
    quiet = np.round(rng.normal(0.0, 20.0, int(tail_s * mulaw.RATE)))
    return word + mulaw.encode(quiet)


# -- processes ------------------------------------------------------------------------------------
def _cores() -> tuple[set[int], set[int]] | None:
    """(server core, client cores), or None when there is a single core to share."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None
    return {available[0]}, set(available[1:])


def _pin(cores: set[int] | None) -> Callable[[], None] | None:
    if cores is None:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, cores)

    return pin


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the floor: a bare Vosk loop, in its own process ----------------------------------------------
def floor_main(args: dict[str, Any], commands: IO[str], out: IO[str]) -> None:
    """The bare loop's process: loads the model, prints load time, memory and real-time
    factor, then runs one trial per stream count read from ``commands``."""
    import vosk

    vosk.SetLogLevel(-1)
    started = time.perf_counter()
    model = vosk.Model(args["model"])
    load_s = time.perf_counter() - started
    resident = rss_mb()
    grammar = args["grammar_json"]
    pcm = mulaw.to_pcm16(Path(args["audio"]).read_bytes())
    frames = [pcm[i : i + 2 * FRAME_BYTES] for i in range(0, len(pcm), 2 * FRAME_BYTES)]
    per_call = max(1, args["chunk_ms"] // 20)  # frames handed to Vosk at once, as the server

    def utterance(paced: bool) -> tuple[str, float, float]:
        """(text, audio seconds at the decision, lag in seconds)."""
        start = time.monotonic()
        rec = vosk.KaldiRecognizer(model, float(mulaw.RATE), grammar)
        try:
            first = 0  # first frame not yet handed to Vosk
            for k in range(len(frames)):
                due = start + (k + 1) * FRAME_S
                pause = due - time.monotonic()
                if paced and pause > 0:
                    time.sleep(pause)
                if k + 1 - first < per_call:
                    continue
                chunk = b"".join(frames[first : k + 1])
                first = k + 1
                if rec.AcceptWaveform(chunk):
                    lag = time.monotonic() - due if paced else 0.0
                    return json.loads(rec.Result())["text"], (k + 1) * FRAME_S, lag
            return json.loads(rec.FinalResult())["text"], len(frames) * FRAME_S, math.nan
        finally:
            del rec

    decided_s = utterance(False)[1]  # warm-up; where the endpoint falls
    cpu0, wall0, audio_s = time.process_time(), time.perf_counter(), 0.0
    for _ in range(args["rtf_runs"]):
        audio_s += utterance(False)[1]
    out.write(
        json.dumps(
            {
                "load_s": round(load_s, 2),
                "rss_mb": resident,
                "rtf": round((time.process_time() - cpu0) / audio_s, 4),
                "rtf_wall": round((time.perf_counter() - wall0) / audio_s, 4),
                "decided_at_s": round(decided_s, 2),
            }
        )
        + "\n"
    )
    out.flush()

    def paced() -> tuple[float | None, bool]:
        text, _, lag = utterance(True)
        return (None if math.isnan(lag) else lag), text == args["expected_text"]

    for line in commands:
        if not line.strip():
            break
        cpu0 = time.process_time()
        summary = run_trial(int(line), args["seconds"], len(frames) * FRAME_S, paced)
        summary["cpu_ms_per_utterance"] = _per_utterance(time.process_time() - cpu0, summary)
        out.write(json.dumps(summary) + "\n")
        out.flush()


@contextmanager
def floor_process(args: dict[str, Any], core: set[int] | None) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", __name__, "floor", json.dumps(args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_pin(core),  # affinity only, before exec
    )
    try:
        yield proc
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _per_utterance(cpu_s: float, summary: Summary) -> float | None:
    """CPU milliseconds per utterance in a paced trial (the recognizer's side only)."""
    return round(cpu_s * 1000 / summary["utterances"], 2) if summary["utterances"] else None


def _floor_trial(proc: subprocess.Popen[str], n: int) -> Summary:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{n}\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("the bare Vosk process stopped")
    summary: Summary = json.loads(line)
    return summary


# -- the endpoint: the real server ---------------------------------------------------------------
@contextmanager
def stream_server(
    *,
    models_dir: Path,
    vocabulary_dir: Path | None,
    redis_url: str,
    public_base_url: str,
    threads: int,
    core: set[int] | None,
    secret: str,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """gunicorn serving ``create_stream_app()`` as the Procfile's ``stream`` line does,
    with ``secret`` as its ``SECRET_KEY``; yields (port, health once the models are
    loaded)."""
    port = free_port()
    env = dict(os.environ)
    env.update(
        VOSK_MODELS_DIR=str(models_dir),
        REDIS_URL=redis_url,
        PUBLIC_BASE_URL=public_base_url,
        INTERPHONE_ENV="test",
        SECRET_KEY=secret,
    )
    factory = "interphone.voice.speech.app:create_stream_app("
    factory += f"vocabulary_dir={str(vocabulary_dir)!r})" if vocabulary_dir else ")"
    argv = [
        str(Path(sys.executable).parent / "gunicorn"),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        "--worker-class",
        "interphone.gunicorn_worker.GuardedThreadWorker",
        "--threads",
        str(threads),
        "--log-level",
        "warning",
        "--graceful-timeout",
        "2",
        factory,
    ]
    ready = server(
        argv,
        env,
        ready=lambda: _health(port),
        timeout_s=120,
        what="the speech stream server",
        preexec_fn=_pin(core),
    )
    with ready as health:
        yield port, health


def _health(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        data: dict[str, Any] = json.loads(response.read())
        return data


class Caller:
    """Twilio's side of one stream: start, then 20 ms media messages (at real-time pace
    or as fast as possible) until the server closes the stream. ``secret``: the server's
    ``SECRET_KEY``, to sign each stream's call token as the IVR does."""

    def __init__(
        self, url: str, signature: str, lang: str, grammar: str, audio: bytes, secret: str
    ) -> None:
        self.url = url
        self.secret = secret
        self.headers = {"X-Twilio-Signature": signature}
        self.start = {"step": STEP, "grammar": grammar, "lang": lang}
        self.media = [
            json.dumps(
                {
                    "event": "media",
                    "media": {
                        "track": "inbound",
                        "chunk": str(k + 1),
                        "timestamp": str(k * 20),
                        "payload": base64.b64encode(audio[i : i + FRAME_BYTES]).decode(),
                    },
                }
            )
            for k, i in enumerate(range(0, len(audio), FRAME_BYTES))
        ]

    def utterance(self, paced: bool, frames: int | None = None) -> tuple[str, float, float]:
        """(call sid, time of the first media message, time the server closed or NaN).
        ``frames``: send only that many media messages, then ``stop`` (as Twilio does when
        a stream ends)."""
        from simple_websocket import Client, ConnectionClosed

        sid = "CA" + uuid.uuid4().hex
        ws = Client.connect(self.url, headers=self.headers)
        closed_at = math.nan
        try:
            ws.send('{"event": "connected", "protocol": "Call", "version": "1.0.0"}')
            token = call_token.sign(self.secret, sid, STEP)
            parameters = {**self.start, call_token.PARAMETER: token}
            start = {"callSid": sid, "streamSid": "MZ" + sid[2:], "customParameters": parameters}
            ws.send(json.dumps({"event": "start", "start": start}))
            t0 = time.monotonic()
            try:
                for k, message in enumerate(self.media[:frames]):
                    wait = t0 + (k + 1) * FRAME_S - time.monotonic()
                    if paced and wait > 0:
                        ws.receive(timeout=wait)  # the server sends nothing: waits for a close
                    ws.send(message)
                ws.send('{"event": "stop"}')
                deadline = time.monotonic() + 15
                while ws.receive(timeout=0.5) is None and time.monotonic() < deadline:
                    pass
            except (ConnectionClosed, OSError):
                closed_at = time.monotonic()
            return sid, t0, closed_at
        finally:
            if ws.connected:
                with contextlib.suppress(ConnectionClosed, OSError):
                    ws.close()
            ws.thread.join(timeout=2)


# -- the run --------------------------------------------------------------------------------------
def run(
    *,
    redis_url: str,
    auth_token: str,
    public_base_url: str,
    model_path: Path,
    lang: str,
    grammar: str,
    word: bytes,
    audio_name: str,
    expected: str,
    vocabulary_dir: Path | None,
    seconds: float = 8.0,
    rtf_runs: int = 20,
    threads: int = 128,
) -> dict[str, Any]:
    from redis import Redis

    from interphone.voice.speech.models import ModelRegistry
    from interphone.voice.speech.recognizer import Limits
    from interphone.voice.speech.results import SpeechResults
    from interphone.voice.speech.stream import PATH

    cores = _cores()
    server_core, client_cores = cores if cores else (None, None)
    audio = utterance_audio(word)
    length_s = len(audio) / mulaw.RATE

    # The grammar exactly as the server builds it (vocabulary checked against the model).
    registry = ModelRegistry(None, paths={lang: model_path}, vocabulary_dir=vocabulary_dir)
    loaded = registry.get(lang)
    words = loaded.grammar(grammar)
    grammar_json = loaded.grammar_json(words)
    expected_text = next(w for w, m in words.meanings.items() if m == expected)
    del loaded, registry, words  # free this model: the floor and the server load their own

    previous = os.sched_getaffinity(0) if client_cores else None
    if client_cores:
        os.sched_setaffinity(0, client_cores)
    try:
        with tempfile.TemporaryDirectory(prefix="interphone-bench-") as scratch:
            audio_file = Path(scratch) / "utterance.ulaw"
            audio_file.write_bytes(audio)
            models_dir = Path(scratch) / "models"
            models_dir.mkdir()
            (models_dir / lang).symlink_to(model_path.resolve())
            floor_args = {
                "model": str(model_path),
                "grammar_json": grammar_json,
                "audio": str(audio_file),
                "expected_text": expected_text,
                "seconds": seconds,
                "rtf_runs": rtf_runs,
                "chunk_ms": Limits().chunk_ms,
            }
            results = SpeechResults(Redis.from_url(redis_url))
            secret = secrets.token_hex(32)
            with floor_process(floor_args, server_core) as floor:
                assert floor.stdout is not None
                bare: dict[str, Any] = json.loads(floor.stdout.readline())
                with stream_server(
                    models_dir=models_dir,
                    vocabulary_dir=vocabulary_dir,
                    redis_url=redis_url,
                    public_base_url=public_base_url,
                    threads=threads,
                    core=server_core,
                    secret=secret,
                ) as (port, health):
                    caller = Caller(
                        f"ws://127.0.0.1:{port}{PATH}",
                        _signature(auth_token, public_base_url),
                        lang,
                        grammar,
                        audio,
                        secret,
                    )
                    # the same audio as the floor's real-time factor: up to its endpoint
                    frames = math.ceil(bare.pop("decided_at_s") / FRAME_S)
                    endpoint = _endpoint_rtf(caller, frames, health, results, rtf_runs)

                    def endpoint_trial(n: int) -> Summary:
                        cpu0 = _cpu_s(int(health["pid"]))
                        summary = run_trial(
                            n, seconds, length_s, lambda: _paced(caller, results, expected)
                        )
                        cpu = _cpu_s(int(health["pid"])) - cpu0
                        summary["cpu_ms_per_utterance"] = _per_utterance(cpu, summary)
                        return summary

                    searched = take_turns(
                        {
                            "bare": (int(1 / bare["rtf"]), lambda n: _floor_trial(floor, n)),
                            "endpoint": (int(1 / endpoint["rtf"]), endpoint_trial),
                        }
                    )
                    after = _health(port)
    finally:
        if previous:
            os.sched_setaffinity(0, previous)

    bare["streams_per_core"], bare["trials"] = searched["bare"]
    endpoint["streams_per_core"], endpoint["trials"] = searched["endpoint"]
    endpoint["load_s"] = health["models"][lang]["load_s"]
    endpoint["rss_mb"] = health["rss_mb"]
    endpoint["rss_mb_after_trials"] = after["rss_mb"]
    endpoint["live_recognizers_after"] = after["live_recognizers"]
    ratio = (
        round(endpoint["streams_per_core"] / bare["streams_per_core"], 2)
        if bare["streams_per_core"]
        else None
    )
    for side in (bare, endpoint):
        side["cpu_ms_per_utterance"] = _weighted(side["trials"])
    cpu_ratio = (
        round(bare["cpu_ms_per_utterance"] / endpoint["cpu_ms_per_utterance"], 2)
        if bare["cpu_ms_per_utterance"] and endpoint["cpu_ms_per_utterance"]
        else None
    )
    return {
        "model": {
            "lang": lang,
            "path": str(model_path),
            "grammar": grammar,
            "grammar_words": json.loads(grammar_json),
            "audio": audio_name,
            "expected": expected,
            "utterance_s": round(length_s, 2),
            "vosk_chunk_ms": Limits().chunk_ms,
        },
        "cores": {
            "server": sorted(server_core) if server_core else None,
            "clients": sorted(client_cores) if client_cores else None,
            "pinned": cores is not None,
        },
        "real_time_criterion": f"p95 decision lag <= {LAG_LIMIT_MS:.0f} ms, all decided",
        "trial_seconds": seconds,
        "endpoint": endpoint,
        "bare": bare,
        "ratio": {
            "streams": ratio,
            "rtf": round(endpoint["rtf"] / bare["rtf"], 2) if bare["rtf"] else None,
            # bare / endpoint CPU per paced utterance (over all the trials): the
            # share of the floor's capacity the endpoint keeps when the CPU is the limit,
            # steadier than the stream counts on a machine shared with other work
            "cpu_per_utterance": cpu_ratio,
        },
        "targets": {
            "rtf_max": 0.1,
            "streams_per_core_min": 15,
            "streams_ratio_min": 0.8,
            "met": {
                "rtf": endpoint["rtf"] <= 0.1,
                "streams_per_core": endpoint["streams_per_core"] >= 15,
                "streams_ratio": ratio is not None and ratio >= 0.8,
            },
        },
    }


def _weighted(trials: list[Summary]) -> float | None:
    """CPU per utterance over all the trials (each weighs by its utterances, so the busy
    trials count most: an idle server's own background work is spread over few)."""
    measured = [t for t in trials if t.get("cpu_ms_per_utterance") and t["utterances"]]
    utterances = sum(int(t["utterances"]) for t in measured)
    if not utterances:
        return None
    cpu = sum(float(t["cpu_ms_per_utterance"]) * int(t["utterances"]) for t in measured)
    return round(cpu / utterances, 2)


def _endpoint_rtf(
    caller: Caller, frames: int, health: dict[str, Any], results: Any, runs: int
) -> dict[str, Any]:
    """Server CPU time over the audio it decided on, one stream at a time, the audio (up
    to where the floor's endpoint fell, then ``stop``) sent as fast as it is taken."""
    pid = int(health["pid"])
    _decision(results, caller.utterance(paced=False, frames=frames)[0])  # warm-up
    cpu0, wall, audio_s = _cpu_s(pid), 0.0, 0.0
    for _ in range(runs):
        sid, t0, closed = caller.utterance(paced=False, frames=frames)
        decided = _decision(results, sid)
        wall += closed - t0
        audio_s += decided[1] if decided else 0.0
    cpu = _cpu_s(pid) - cpu0
    return {
        "rtf": round(cpu / audio_s, 4) if audio_s else math.inf,
        "rtf_wall": round(wall / audio_s, 4) if audio_s else math.inf,
    }


def _signature(auth_token: str, public_base_url: str) -> str:
    """Twilio's signature of the stream URL, as the server checks it."""
    from twilio.request_validator import RequestValidator

    from interphone.voice.speech.stream import PATH

    base = public_base_url.rstrip("/")
    scheme, _, rest = base.partition("://")
    url = ("wss" if scheme == "https" else "ws") + "://" + rest + PATH
    return str(RequestValidator(auth_token).compute_signature(url, {}))


def _decision(results: Any, sid: str) -> tuple[str, float] | None:
    """(meaning, audio seconds at the decision) stored by the server, then forgotten."""
    result = results.get(sid, STEP)
    results.delete(sid, STEP)
    if result is None or result.status not in ("match", "no_match"):
        return None
    return str(result.meaning), result.audio_ms / 1000


def _paced(caller: Caller, results: Any, expected: str) -> tuple[float | None, bool]:
    sid, t0, closed = caller.utterance(paced=True)
    decided = _decision(results, sid)
    if decided is None or math.isnan(closed):
        return None, False
    meaning, audio_s = decided
    return closed - (t0 + audio_s), meaning == expected


if __name__ == "__main__":  # the bare loop's process
    if len(sys.argv) == 3 and sys.argv[1] == "floor":
        floor_main(json.loads(sys.argv[2]), sys.stdin, sys.stdout)
    else:  # pragma: no cover
        sys.exit("usage: python -m interphone.devtools.bench.speech floor ARGS_JSON")
