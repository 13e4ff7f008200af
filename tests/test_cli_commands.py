"""The ``interphone`` command line: cases, users, bench."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from interphone.accounts import verify_password
from interphone.cli import main
from interphone.models import Agent, Case
from interphone.privacy import check_birth_date
from interphone.runtime import Runtime

from .conftest import SITE


@pytest.fixture
def cli(runtime: Runtime, queue, monkeypatch) -> CliRunner:
    settings = runtime.settings
    monkeypatch.setenv("REDIS_URL", settings.redis_url or "")
    monkeypatch.setenv("DATABASE_URL", settings.database_url or "")
    monkeypatch.setenv("INTERPHONE_ENV", "test")
    monkeypatch.setenv("INTERPHONE_SITE", SITE)
    return CliRunner()


GOOD = """file_number,birth_date,status,status_changed_at,api_valid_until,phone,language
6300000001,1990-04-12,under_review,2026-09-01,,,fr
6300000002,1985-12-31,api_issued,2026-10-02T10:00:00+02:00,2027-01-31,0612345678,ar
"""


def test_cases_import_keeps_good_rows_and_reports_bad_ones_by_line(
    cli: CliRunner, runtime: Runtime, tmp_path: Path
) -> None:
    csv_file = tmp_path / "cases.csv"
    csv_file.write_text(
        GOOD
        + "6300000003,1990-02-30,filed,2026-09-01,,,\n"  # no 30 February
        + "6300000004,1990-01-01,lost_in_space,2026-09-01,,,\n"
        + "6300000005,1990-01-01,api_issued,2026-09-01,,,\n"  # API without its date
        + "6300000006,1990-01-01,filed,yesterday,,,\n"
        + "6300000007,1990-01-01,filed,2026-09-01,,12,\n",
        encoding="utf-8",
    )
    result = cli.invoke(main, ["cases", "import", str(csv_file), "--json"])
    assert result.exit_code == 1  # something was rejected: scripts can tell
    report = json.loads(result.stdout)
    assert report["created"] == 2 and report["updated"] == 0
    assert [r["line"] for r in report["rejected"]] == [4, 5, 6, 7, 8]
    assert "birth_date" in report["rejected"][0]["error"]
    assert "status" in report["rejected"][1]["error"]
    assert "api_valid_until" in report["rejected"][2]["error"]
    assert "status_changed_at" in report["rejected"][3]["error"]
    assert "phone" in report["rejected"][4]["error"]
    with runtime.sessions() as s:
        case = s.scalar(select(Case).where(Case.file_number == "6300000002"))
        assert case.phone == "+33612345678" and case.api_valid_until == date(2027, 1, 31)
        # the birth date is not stored in clear, but can still be checked
        assert "1985" not in case.birth_date_hash
        assert check_birth_date(
            runtime.settings.birthdate_key, "6300000002", date(1985, 12, 31), case.birth_date_hash
        )


def test_cases_reimport_updates_status(cli: CliRunner, runtime: Runtime, tmp_path: Path) -> None:
    csv_file = tmp_path / "cases.csv"
    csv_file.write_text(GOOD, encoding="utf-8")
    assert cli.invoke(main, ["cases", "import", str(csv_file)]).exit_code == 0
    csv_file.write_text(GOOD.replace("under_review", "card_ready"), encoding="utf-8")
    result = cli.invoke(main, ["cases", "import", str(csv_file), "--json"])
    assert json.loads(result.stdout) == {"created": 0, "updated": 2, "rejected": []}
    with runtime.sessions() as s:
        assert s.scalar(select(Case.status).where(Case.file_number == "6300000001")) == "card_ready"


def test_cases_import_with_missing_columns_writes_nothing(
    cli: CliRunner, runtime: Runtime, tmp_path: Path
) -> None:
    csv_file = tmp_path / "cases.csv"
    csv_file.write_text("file_number,status\n631,filed\n", encoding="utf-8")
    result = cli.invoke(main, ["cases", "import", str(csv_file)])
    assert result.exit_code == 1 and "missing column" in result.output
    assert "Traceback" not in result.output
    with runtime.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Case)) == 0


def test_cases_import_of_a_binary_file_gets_a_clear_error(cli: CliRunner, tmp_path: Path) -> None:
    csv_file = tmp_path / "cases.csv"
    csv_file.write_bytes(b"\xff\xfe\x00garbage\x81")
    result = cli.invoke(main, ["cases", "import", str(csv_file)])
    assert result.exit_code == 1 and "UTF-8" in result.output


def test_cases_demo_creates_cases_and_prints_how_to_try_them(
    cli: CliRunner, runtime: Runtime
) -> None:
    result = cli.invoke(main, ["cases", "demo", "--count", "12", "--seed", "3"])
    assert result.exit_code == 0, result.output
    with runtime.sessions() as s:
        cases = {c.file_number: c for c in s.scalars(select(Case))}
    assert len(cases) == 12
    line = [ln for ln in result.output.splitlines() if ln.strip().startswith("file")][0]
    _, file_number, _, born, *_ = line.split()
    birth = date(int(born[4:]), int(born[2:4]), int(born[:2]))
    assert check_birth_date(
        runtime.settings.birthdate_key, file_number, birth, cases[file_number].birth_date_hash
    )


def test_users_add_reads_the_password_from_stdin(cli: CliRunner, runtime: Runtime) -> None:
    result = cli.invoke(
        main,
        ["users", "add", "Lea@Example.org", "--role", "supervisor", "--languages", "fr,ar"],
        input="correct horse battery\n",
    )
    assert result.exit_code == 0, result.output
    with runtime.sessions() as s:
        agent = s.scalar(select(Agent).where(Agent.email == "lea@example.org"))
    assert agent.role == "supervisor" and agent.languages == ["fr", "ar"]
    assert agent.password_hash.startswith("$argon2")
    assert verify_password(agent, "correct horse battery")
    assert not verify_password(agent, "wrong")


@pytest.mark.parametrize(
    ("args", "password", "message"),
    [
        (["not-an-email"], "long enough pw", "e-mail"),
        (["a@example.org", "--role", "king"], "long enough pw", "role"),
        (["a@example.org"], "short", "at least"),
        (["a@example.org", "--site", "nowhere"], "long enough pw", "unknown site"),
        (["a@example.org", "--phone", "123"], "long enough pw", "phone"),
    ],
)
def test_users_add_rejects_bad_input_clearly(
    cli: CliRunner, args: list[str], password: str, message: str
) -> None:
    result = cli.invoke(main, ["users", "add", *args], input=password + "\n")
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_users_add_twice_is_refused(cli: CliRunner) -> None:
    args = ["users", "add", "b@example.org"]
    assert cli.invoke(main, args, input="long enough pw\n").exit_code == 0
    result = cli.invoke(main, args, input="long enough pw\n")
    assert result.exit_code == 1 and "already exists" in result.output


def test_bench_queue_prints_one_json_object_with_the_figures(cli: CliRunner, runtime) -> None:
    result = cli.invoke(
        main,
        ["bench", "queue", "--json", "--contacts", "2000", "--agents", "20", "--samples", "200"],
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    for key in (
        "contacts_waiting",
        "enqueue_per_s",
        "dispatch_per_s",
        "dispatch_p50_ms",
        "dispatch_p99_ms",
        "position_p99_ms",
        "baseline_eval_p99_ms",
    ):
        assert figures[key] > 0, key
    assert figures["contacts_waiting"] == 2000
    assert list(runtime.redis.scan_iter(match="ipbench:*")) == []  # cleaned up


def test_dev_seed_is_idempotent_and_gives_a_demo_agent_a_phone_to_ring(
    cli: CliRunner, runtime: Runtime
) -> None:
    from interphone.cli.dev import (
        DEMO_AGENT,
        DEMO_AGENT_PHONE,
        DEMO_SUPERVISOR,
        DEMO_SUPERVISOR_PHONE,
    )

    for _ in range(2):
        result = cli.invoke(main, ["dev", "seed"])
        assert result.exit_code == 0, result.output
    assert "/dev/phone" in result.output and DEMO_AGENT in result.output
    assert DEMO_SUPERVISOR in result.output
    with runtime.sessions() as s:
        agent = s.scalar(select(Agent).where(Agent.email == DEMO_AGENT))
        assert agent.phone == DEMO_AGENT_PHONE
        supervisor = s.scalar(select(Agent).where(Agent.email == DEMO_SUPERVISOR))
        assert (supervisor.role, supervisor.phone) == ("supervisor", DEMO_SUPERVISOR_PHONE)
        assert s.scalar(select(func.count()).select_from(Agent)) == 2


def test_dev_seed_refuses_production_and_creates_no_demo_supervisor(
    cli: CliRunner, runtime: Runtime
) -> None:
    production = Runtime(runtime.settings.with_overrides(env="production"), clock=runtime.clock)
    try:
        result = cli.invoke(main, ["dev", "seed"], obj=production)
    finally:
        production.close()
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: dev seed is refused in production: it creates a supervisor whose password "
        "is published"
    ]
    with runtime.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Agent)) == 0
        assert s.scalar(select(func.count()).select_from(Case)) == 0


def test_worker_serves_the_queue_it_is_given_so_voicemails_are_not_left_unread(
    cli: CliRunner, runtime: Runtime
) -> None:
    """The Procfile's ``transcriber`` is ``interphone worker --queue interphone-speech``:
    a job on that queue must be run by it, and one on the main queue must not."""
    from rq import Queue

    speech = Queue("interphone-speech", connection=runtime.redis).enqueue("os.getpid")
    main_job = Queue("interphone", connection=runtime.redis).enqueue("os.getpid")
    result = cli.invoke(main, ["worker", "--burst", "--queue", "interphone-speech"], obj=runtime)
    assert result.exit_code == 0, result.output
    speech.refresh()
    main_job.refresh()
    assert speech.get_status() == "finished" and isinstance(speech.return_value(), int)
    assert main_job.get_status() == "queued"


def test_every_command_group_module_is_registered_on_the_interphone_command() -> None:
    """Each module of ``interphone.cli`` defines a group (or a command) that ``main`` must
    carry: one left unregistered would vanish from the command line without an error."""
    import importlib
    import pkgutil

    import click

    import interphone.cli

    top_level: list[click.Command] = []
    for info in pkgutil.iter_modules(interphone.cli.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"interphone.cli.{info.name}")
        defined = [v for v in vars(module).values() if isinstance(v, click.Command)]
        nested = {
            id(sub)
            for group in defined
            if isinstance(group, click.Group)
            for sub in group.commands.values()
        }
        top_level += [c for c in defined if id(c) not in nested and c is not main]
    assert top_level
    for command in top_level:
        assert command.name is not None
        assert main.commands.get(command.name) is command, command.name
    # the command lines CI and the Procfile call
    assert set(main.commands) == {
        "bench", "cases", "db", "dev", "journal", "prompts", "queue",
        "retention", "simulate", "sites", "users", "worker",
    }  # fmt: skip
    bench = main.commands["bench"]
    assert isinstance(bench, click.Group)
    assert set(bench.commands) == {"queue", "ivr", "feed", "load", "speech", "simulate"}
