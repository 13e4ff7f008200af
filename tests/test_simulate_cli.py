"""``interphone simulate day|staff``: one JSON object with every figure, a report for
people, a CSV timeline, a chart, and clear errors for bad options."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from interphone.cli import main

SMALL_DAY = ["--hours", "0.2", "--arrivals-per-hour", "60", "--agents", "2", "--seed", "3"]
REPORT_KEYS = {
    "arrivals",
    "self_served",
    "queued_live",
    "answered_live",
    "abandoned",
    "callbacks_requested",
    "callbacks_completed",
    "callbacks_unreachable",
    "p_wait",
    "asa_s",
    "service_level",
    "max_callback_delay_s",
    "agent_occupancy",
    "lost",
    "duplicated",
}


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_simulate_day_json_is_one_object_with_every_figure_the_issue_names() -> None:
    code, out, _ = _run("simulate", "day", *SMALL_DAY, "--json")
    assert code == 0, out
    report = json.loads(out)  # the whole output is one JSON document
    assert set(report) >= REPORT_KEYS
    assert report["lost"] == 0 and report["duplicated"] == 0
    parts = (
        "self_served",
        "queued_live",
        "callbacks_requested",
        "closed_turned_away",
        "refused_by_queue",
    )
    accounted = sum(report[key] for key in parts)
    assert accounted == report["arrivals"]
    assert len(report["by_hour"]) == 1


def test_simulate_day_report_for_people_has_the_hour_table_and_the_line_chart(
    tmp_path: Path,
) -> None:
    timeline = tmp_path / "day.csv"
    code, out, err = _run("simulate", "day", *SMALL_DAY, "--csv", str(timeline))
    assert code == 0, out + err
    assert "hour" in out and "agents" in out and "09:00" in out
    assert "Contacts waiting in line" in out
    assert "lost 0, duplicated 0" in out
    rows = list(csv.DictReader(io.StringIO(timeline.read_text(encoding="utf-8"))))
    assert rows and {"called_at", "fate", "wait_s", "outcome"} <= set(rows[0])
    assert all(r["outcome"] or r["fate"] in ("self_served", "closed") for r in rows)


def test_plot_draws_a_png_or_says_how_to_install_matplotlib(tmp_path: Path) -> None:
    chart = tmp_path / "day.png"
    code, out, err = _run("simulate", "day", *SMALL_DAY, "--plot", str(chart))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert code == 2
        assert "pip install 'interphone[sim]'" in out + err
        assert not chart.exists()
        return
    assert code == 0, out + err
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--patience", "soon"], "--patience"),
        (["--self-service", "1.5"], "--self-service"),
        (["--hours", "2", "--agents", "3,4,5"], "--agents"),
        (["--open", "12:00-09:00"], "--open"),
        (["--open", "nine to five"], "--open"),
        (["--languages", "fr=lots"], "--languages"),
        (["--agent-languages", "FR"], "--agent-languages"),
        (["--arrivals-per-hour", "-5"], "--arrivals-per-hour"),
        (["--accept-delay", "30"], "--accept-delay"),
        (["--start", "25:00"], "--start"),
        (["--profile", "tuesday"], "--profile"),
        (["--aht", "0"], "--aht"),
    ],
)
def test_bad_simulation_options_get_a_clear_error_and_never_a_traceback(
    args: list[str], says: str
) -> None:
    result = CliRunner().invoke(main, ["simulate", "day", *args, "--json"])
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_simulate_staff_gives_agents_per_hour_beside_erlang_c() -> None:
    code, out, err = _run(
        "simulate",
        "staff",
        "--hours",
        "2",
        "--arrivals-per-hour",
        "50",
        "--self-service",
        "0.2",
        "--callback-share",
        "0",
        "--patience",
        "inf",
        "--aht",
        "240",
        "--target-sl",
        "0.8",
        "--threshold",
        "20",
        "--json",
    )
    assert code == 0, out + err
    result = json.loads(out)
    assert [h["hour"] for h in result["hours"]] == ["09:00", "10:00"]
    for hour in result["hours"]:
        assert hour["agents"] >= 1 and hour["erlang_c_agents"] >= 1
        assert hour["service_level"] >= 0.8
    assert result["day"]["lost"] == 0 and result["day"]["duplicated"] == 0
