"""What the benches and the load test share: a free local port, a percentile, and a
server process started, waited for and stopped (gunicorn as the Procfile runs it).

Servers run in a session of their own, so that stopping one also stops the processes
it started (a gunicorn master killed alone would leave its workers serving until the
end of their graceful timeout). Where no Twilio account is configured, the servers are
the development ones, with the dev phone plugged in (:func:`dev_command`).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import interphone
from interphone.runtime import Runtime

T = TypeVar("T")

PROCFILE = Path(interphone.__file__).resolve().parent.parent / "Procfile"
PRODUCT_APP = "interphone.web.wsgi:app"
DEV_APP = "interphone.devtools.wsgi:app"  # the same app, the dev phone plugged in
DEV_WORKER = "interphone.devtools.worker"  # ``interphone worker``, the dev phone plugged in


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(ordered: Sequence[float], share: float) -> float:
    """The value below which ``share`` of the sorted, non-empty ``ordered`` lies (the
    nearest rank at or above it)."""
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def port_open(port: int) -> bool:
    """Something accepts connections on 127.0.0.1:``port``; raises OSError otherwise."""
    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True


def stop(proc: subprocess.Popen[Any], grace_s: float = 30.0) -> None:
    """SIGTERM, then SIGKILL to its whole process group (it leads one: ``server`` starts
    it in a session of its own) after ``grace_s``; what it left behind goes too."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        proc.wait(timeout=10)
    _kill_group(proc.pid)  # children that outlived their parent


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def wait_ready(
    ready: Callable[[], T], procs: Sequence[subprocess.Popen[Any]], timeout_s: float, what: str
) -> T:
    """Call ``ready`` until it answers instead of raising OSError; RuntimeError when
    ``timeout_s`` passes or one of ``procs`` exits first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ready()
        except OSError:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.1)


@contextmanager
def server(
    argv: list[str],
    env: Mapping[str, str],
    *,
    ready: Callable[[], T],
    timeout_s: float = 30.0,
    grace_s: float = 30.0,
    what: str = "gunicorn",
    **popen: Any,
) -> Iterator[T]:
    """Run ``argv`` until the block ends; yields what ``ready`` answers once it answers
    (e.g. :func:`port_open`)."""
    proc = subprocess.Popen(argv, env=dict(env), start_new_session=True, **popen)
    try:
        yield wait_ready(ready, [proc], timeout_s, what)
    finally:
        stop(proc, grace_s)


def server_env(rt: Runtime, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``environ`` (default: this process's) with the runtime's Redis, database, secret
    and public URL: a server started with it shares the caller's data."""
    env = dict(os.environ if environ is None else environ)
    env.update(
        REDIS_URL=rt.redis_url,
        DATABASE_URL=rt.database_url,
        SECRET_KEY=rt.settings.secret_key,
        PUBLIC_BASE_URL=rt.settings.public_base_url,
    )
    return env


@contextmanager
def gunicorn(rt: Runtime, workers: int, threads: int = 1) -> Iterator[int]:
    """The web app on a free port (threaded workers when ``threads`` > 1, no sweep of its
    own, rate limits on as in production); yields the port."""
    port = free_port()
    env = server_env(rt)
    env.update(
        INTERPHONE_ENV="test",  # no sweep scheduling from the benchmark's server
        RATE_LIMITS="on",  # as in production: each turn counted against its caller
        WEB_THREADS=str(threads),  # the live feeds' share of them (FEEDS_PER_PROCESS)
    )
    argv = [
        str(Path(sys.executable).parent / "gunicorn"),
        "-w",
        str(workers),
        "-b",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        "--worker-class",
        "gthread" if threads > 1 else "sync",
        "--threads",
        str(threads),
        "--graceful-timeout",
        "2",
        DEV_APP if rt.settings.dev_phone else PRODUCT_APP,
    ]
    with server(argv, env, ready=lambda: port_open(port)):
        yield port


def sign_in(port: int, email: str, password: str) -> str:
    """Sign in at /login as a person would (its CSRF token, its cookie); the session
    cookie."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/login")
        response = conn.getresponse()
        page = response.read().decode()
        cookie = response.getheader("Set-Cookie", "").split(";", 1)[0]
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        if token is None:
            raise RuntimeError("no CSRF token on /login")
        body = urlencode({"email": email, "password": password, "csrf_token": token.group(1)})
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}
        conn.request("POST", "/login", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    if response.status != 302:
        raise RuntimeError(f"{email} could not sign in ({response.status})")
    return response.getheader("Set-Cookie", "").split(";", 1)[0]


# -- the Procfile's processes ------------------------------------------------------------------
_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def dev_command(command: str) -> str:
    """A Procfile command with the dev phone plugged in: the web serves :data:`DEV_APP`
    instead of :data:`PRODUCT_APP`, ``interphone worker`` runs as :data:`DEV_WORKER`."""
    command = command.replace(PRODUCT_APP, DEV_APP)
    words = command.split(None, 2)
    if words[:2] == ["interphone", "worker"]:
        rest = words[2] if len(words) > 2 else ""
        command = f"{shlex.quote(sys.executable)} -m {DEV_WORKER} {rest}".rstrip()
    return command


def dev_procfile(procfile: Path = PROCFILE) -> str:
    """The Procfile's text with every command as :func:`dev_command` makes it."""
    lines = []
    for line in procfile.read_text().splitlines():
        label, sep, command = line.partition(":")
        if sep and label.strip() and not label.lstrip().startswith("#"):
            line = f"{label}: {dev_command(command.strip())}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def procfile_command(
    name: str, env: Mapping[str, str], procfile: Path | None = None, *, dev_phone: bool = False
) -> list[str]:
    """The Procfile's ``name`` line as a command, ``${VAR:-default}`` taken from ``env``;
    its program from this interpreter's environment (the venv); ``dev_phone``: as
    :func:`dev_command` makes it."""
    path = procfile or PROCFILE
    for line in path.read_text().splitlines():
        label, _, command = line.partition(":")
        if label.strip() == name:
            if dev_phone:
                command = dev_command(command.strip())
            expanded = _VAR.sub(lambda m: env.get(m.group(1)) or m.group(2) or "", command)
            words = shlex.split(expanded)
            words[0] = str(Path(sys.executable).parent / words[0])  # an absolute path stays
            return words
    raise RuntimeError(f"no {name!r} process in {path}")


def process_cpu_s(roots: list[int]) -> dict[int, float]:
    """CPU seconds (user + system) used so far by each of these processes and their
    children (gunicorn's workers), from ``/proc``; empty where there is no ``/proc``."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}  # pid → (parent pid, cpu seconds)
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        stats[int(entry.parent.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    totals = {}
    for root in roots:
        family, todo = {root}, [root]
        while todo:
            parent = todo.pop()
            children = [pid for pid, (ppid, _) in stats.items() if ppid == parent]
            family.update(children)
            todo.extend(children)
        totals[root] = sum(stats[pid][1] for pid in family if pid in stats)
    return totals


@contextmanager
def procfile_stack(
    rt: Runtime,
    env_extra: dict[str, str],
    *,
    processes: tuple[str, ...] = ("web", "worker"),
    environ: Mapping[str, str] | None = None,
) -> Iterator[tuple[int, list[str], Callable[[], dict[str, float]]]]:
    """The Procfile's ``web`` and ``worker`` (or only those of ``processes``) on the
    configured Redis and database, in ``environ`` (default: this process's) plus
    ``env_extra``, with the dev phone plugged in where no Twilio account is configured;
    their logs go to ``loadtest.log`` in the instance folder (the access log is written,
    as in production, and not kept). Yields the web's port, its command, and a function
    giving the CPU seconds the web (master and workers) and the worker have used so far."""
    port = int(env_extra.get("PORT") or free_port())
    env = server_env(rt, environ)
    env.update(
        BIRTHDATE_HASH_KEY=rt.settings.birthdate_key,
        HOST="127.0.0.1",
        PORT=str(port),
    )
    env.update(env_extra)
    if processes[:1] != ("web",):
        raise ValueError("the web process comes first: its port is the one waited for")
    dev = rt.settings.dev_phone
    web = procfile_command("web", env, dev_phone=dev)
    rt.settings.instance_path.mkdir(parents=True, exist_ok=True)
    log = (rt.settings.instance_path / "loadtest.log").open("ab")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in processes:
            procs[name] = subprocess.Popen(
                procfile_command(name, env, dev_phone=dev),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        wait_ready(lambda: port_open(port), [procs["web"]], 60, "gunicorn")

        def cpu() -> dict[str, float]:
            used = process_cpu_s([proc.pid for proc in procs.values()])
            return {name: used.get(proc.pid, 0.0) for name, proc in procs.items()}

        yield port, web, cpu
    finally:
        for proc in procs.values():
            proc.terminate()
        # the web's feed threads notice closed screens only when they next write
        for name, proc in procs.items():
            stop(proc, grace_s=5 if name == "web" else 30)
        log.close()
