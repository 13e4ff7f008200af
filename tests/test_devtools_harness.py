"""The tooling's shared harness: percentiles, servers started and stopped, and the
Procfile's processes with the dev phone plugged in (``interphone dev serve``, the load
test, the fault topology)."""

from __future__ import annotations

import importlib.util
import shlex
import sys
from pathlib import Path

import pytest

from interphone.devtools import harness

from .topology import wait_until


def test_percentile_is_the_nearest_rank_at_or_above_the_share() -> None:
    ordered = [float(v) for v in range(1, 101)]
    assert harness.percentile(ordered, 0.5) == 51.0
    assert harness.percentile(ordered, 0.99) == 100.0
    assert harness.percentile(ordered, 1.0) == 100.0  # never past the last
    assert harness.percentile([7.0], 0.99) == 7.0


def test_free_port_is_free() -> None:
    port = harness.free_port()
    with pytest.raises(OSError):
        harness.port_open(port)


def test_a_server_that_exits_before_it_is_ready_is_reported_at_once() -> None:
    argv = [sys.executable, "-c", "raise SystemExit(3)"]
    with (
        pytest.raises(RuntimeError, match="the thing did not start"),
        harness.server(argv, {}, ready=lambda: harness.port_open(1), what="the thing"),
    ):
        pass


def test_a_server_is_stopped_with_its_children_when_the_block_ends(tmp_path: Path) -> None:
    """The server leads a process group of its own: a child that ignores SIGTERM goes
    too, whether its parent ends on SIGTERM or has to be killed."""
    child = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); signal.pause()"
    for parent_ignores_sigterm in (False, True):
        port = harness.free_port()
        pidfile = tmp_path / f"child-{parent_ignores_sigterm}"
        parent = (
            "import signal,socket,subprocess,sys\n"
            f"if {parent_ignores_sigterm}: signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            f"c = subprocess.Popen([sys.executable, '-c', {child!r}])\n"
            f"open({str(pidfile)!r}, 'w').write(str(c.pid))\n"
            f"s = socket.socket(); s.bind(('127.0.0.1', {port})); s.listen()\n"
            "signal.pause()\n"
        )
        argv = [sys.executable, "-c", parent]
        with harness.server(argv, {}, ready=lambda p=port: harness.port_open(p), grace_s=0.5):
            child_pid = int(pidfile.read_text())
        wait_until(lambda pid=child_pid: _gone(pid), 10, "the child killed")


def _gone(pid: int) -> bool:
    """No such process, or a zombie waiting for its reaper."""
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_dev_procfile_plugs_the_dev_phone_into_the_web_and_every_worker() -> None:
    lines = dict(line.split(":", 1) for line in harness.dev_procfile().splitlines() if ":" in line)
    product = dict(
        line.split(":", 1) for line in harness.PROCFILE.read_text().splitlines() if ":" in line
    )
    assert lines.keys() == product.keys()
    assert harness.PRODUCT_APP in product["web"] and harness.DEV_APP in lines["web"]
    assert harness.PRODUCT_APP not in lines["web"]
    assert lines["web"].replace(harness.DEV_APP, harness.PRODUCT_APP) == product["web"]
    for name in ("worker", "transcriber"):
        assert shlex.split(product[name])[:2] == ["interphone", "worker"]
        words = shlex.split(lines[name])
        assert words[:3] == [sys.executable, "-m", harness.DEV_WORKER]
        assert words[3:] == shlex.split(product[name])[2:]  # the same options
    assert lines["stream"].strip() == product["stream"].strip()
    for module in (harness.DEV_APP.split(":")[0], harness.DEV_WORKER):
        assert importlib.util.find_spec(module) is not None, module


def test_procfile_command_with_the_dev_phone_runs_the_dev_modules() -> None:
    env = {"PORT": "18123"}
    web = harness.procfile_command("web", env, dev_phone=True)
    assert web[-1] == harness.DEV_APP and "0.0.0.0:18123" in web
    assert harness.procfile_command("web", env)[-1] == harness.PRODUCT_APP
    worker = harness.procfile_command("worker", env, dev_phone=True)
    assert worker[:3] == [sys.executable, "-m", harness.DEV_WORKER]
