"""``interphone dev``: the demo data and the local stack of ``make run`` (development
tooling)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from .helpers import domain_errors, fail_cleanly, get_runtime


@click.group()
def dev() -> None:
    """Development helpers used by ``make run``."""


DEMO_AGENT = "agent@demo.interphone.local"
DEMO_PASSWORD = "demo-password-2026"
DEMO_LINE = "+33473000000"  # the demo préfecture's number
DEMO_AGENT_PHONE = "+33600000001"  # rings on the dev phone's agent handset
# listens to the demo agent's calls from the dashboard; rings on the supervisor's handset
DEMO_SUPERVISOR = "chef@demo.interphone.local"
DEMO_SUPERVISOR_PHONE = "+33600000002"


@dev.command("seed")
@click.pass_context
@fail_cleanly(domain_errors())
def dev_seed(ctx: click.Context) -> None:
    """Demo site, demo cases and a demo agent (idempotent); never in production."""
    from sqlalchemy import select

    from ..accounts import add_user
    from ..cases import ImportReport, demo_records, import_records
    from ..models import Agent
    from ..sites import ensure_site

    rt = get_runtime(ctx)
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
    for email, name, phone in (
        (DEMO_AGENT, "Agent démo", DEMO_AGENT_PHONE),
        (DEMO_SUPERVISOR, "Superviseur démo", DEMO_SUPERVISOR_PHONE),
    ):
        with rt.sessions() as s:
            exists = s.scalar(select(Agent.id).where(Agent.email == email)) is not None
        if not exists:
            add_user(
                rt.sessions,
                email,
                DEMO_PASSWORD,
                role="supervisor",
                name=name,
                site_code=rt.settings.default_site,
                languages=["fr", "en", "ar"],
                phone=phone,
            )
    click.echo(f"sign in at /login as {DEMO_AGENT} / {DEMO_PASSWORD}")
    click.echo(f"listen to the agent's calls as {DEMO_SUPERVISOR} (same password)")
    click.echo(f"ring the line ({DEMO_LINE}) from the dev phone: /dev/phone")
    click.echo("demo cases to try (file number, birth date DDMMYYYY, status):")
    for r in records[:5]:
        click.echo(f"  {r.file_number}  {r.birth_date:%d%m%Y}  {r.status}")


@dev.command("serve")
@click.option("--port", default=5000, show_default=True, type=int)
@click.pass_context
def dev_serve(ctx: click.Context, port: int) -> None:
    """Migrate, seed, then run web + worker + transcriber (and the embedded Redis) with
    honcho: the Procfile's processes with the dev phone plugged in (its page, its REST
    side), from a copy of the Procfile written to the instance folder."""
    from .. import db as dbmod
    from ..devtools.harness import dev_procfile

    rt = get_runtime(ctx)
    env = dict(os.environ)
    if not rt.settings.redis_sentinels:
        env["REDIS_URL"] = rt.redis_url  # starts the embedded server when REDIS_URL is unset
    env["DATABASE_URL"] = rt.database_url
    env.setdefault("SECRET_KEY", rt.settings.secret_key)
    env["PORT"] = str(port)
    env.setdefault("HOST", "127.0.0.1")
    dbmod.upgrade(rt.database_url)
    ctx.invoke(dev_seed)
    procfile = rt.settings.instance_path / "Procfile.dev"
    procfile.parent.mkdir(parents=True, exist_ok=True)
    procfile.write_text(dev_procfile())
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
