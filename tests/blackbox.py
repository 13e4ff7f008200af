"""The black-box harness: the Procfile's ``web`` process in production mode, and clients
that reach it over HTTP alone, as a caller, an agent in a browser and an anonymous client
would (tests/test_security_blackbox.py).

The server is gunicorn as the Procfile starts it (``interphone.devtools.harness.
procfile_stack``), with ``INTERPHONE_ENV=production`` and a production's secrets: random
keys, a Twilio account of its own (never the dev phone's token), an https
``PUBLIC_BASE_URL`` behind one trusted proxy. The clients play that proxy: each sends the
``X-Forwarded-For`` of the address it stands for, so per-address limits see distinct
addresses. Webhooks are signed for the public https URL, as Twilio signs them.

The data (two sites, their staff, cases, a pending callback, a voicemail) is seeded
through the product's own functions before the server starts; :class:`Server` keeps a
runtime on the same Redis and database to read back what the attacks changed.
"""

from __future__ import annotations

import http.client
import itertools
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from twilio.request_validator import RequestValidator

from interphone.accounts import add_user
from interphone.cases import CaseRecord, ImportReport, import_records
from interphone.config import TEST_ONLY, load_settings
from interphone.devtools import harness
from interphone.models import Base
from interphone.runtime import Runtime
from interphone.sites import ensure_site

from .topology import wait_until

PUBLIC_HOST = "interphone.test"
PUBLIC_BASE_URL = f"https://{PUBLIC_HOST}"
PASSWORD = "a-long-password-for-the-suite"
SITE_A, SITE_B = "site-a", "site-b"
LINE_A, LINE_B = "+33473001001", "+33473002002"
TIMEOUT_S = 10.0
# the test run's own variables: a production process must not see them (and refuses
# those of config.TEST_ONLY)
NOT_FOR_PRODUCTION = (*TEST_ONLY, "TEST_DATABASE_URL", "TEST_REDIS_DB", "RATE_LIMITS")


@dataclass(frozen=True)
class File:
    """A case as its applicant knows it."""

    number: str
    born: date

    @property
    def birth_digits(self) -> str:
        return self.born.strftime("%d%m%Y")

    @property
    def wrong_birth_digits(self) -> str:
        return date(self.born.year, self.born.month, self.born.day % 28 + 1).strftime("%d%m%Y")


@dataclass
class Seeded:
    """What the server holds before the first request."""

    files: dict[str, File]  # by use: each attack has its applicants' files to itself
    staff: dict[str, int]  # e-mail → agent id
    pending_phone: str  # a callback waits for this number on site A
    voicemail_a: int  # a message left on site A


@dataclass
class Server:
    port: int
    account_sid: str
    auth_token: str
    api_token: str
    metrics_token: str
    runtime: Runtime  # on the server's Redis and database: reads what attacks changed
    seeded: Seeded
    cpu: Callable[[], dict[str, float]]  # CPU seconds the web process has used so far


def _env(redis_url: str, database_url: str, instance: Path) -> dict[str, str]:
    """A production environment: every secret random, Twilio's token not the dev phone's."""
    return {
        "INTERPHONE_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(36),  # 48 characters
        "BIRTHDATE_HASH_KEY": secrets.token_urlsafe(36),
        "TWILIO_ACCOUNT_SID": "AC" + secrets.token_hex(16),
        "TWILIO_AUTH_TOKEN": secrets.token_hex(16),
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "API_TOKENS": secrets.token_urlsafe(36),
        "METRICS_TOKEN": secrets.token_urlsafe(36),
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "TRUSTED_PROXIES": "1",
        "INTERPHONE_INSTANCE": str(instance),
        "INTERPHONE_SITE": SITE_A,
        "WEB_CONCURRENCY": "1",
        "WEB_THREADS": "8",
        "LOG_LEVEL": "WARNING",
    }


def _empty(rt: Runtime) -> None:
    with rt.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
    rt.redis.flushdb()


def _seed(rt: Runtime) -> Seeded:
    _empty(rt)
    for code, line in ((SITE_A, LINE_A), (SITE_B, LINE_B)):
        ensure_site(rt.sessions, code, phone_numbers=[line], always_open=True)
    staff = {}
    for code in (SITE_A, SITE_B):
        for role in ("supervisor", "agent"):
            email = f"{role}@{code}.test"
            staff[email] = add_user(
                rt.sessions, email, PASSWORD, role=role, site_code=code, languages=["fr", "en"]
            ).id
    for email, role in (("admin@site-a.test", "admin"), ("reset@site-a.test", "agent")):
        staff[email] = add_user(rt.sessions, email, PASSWORD, role=role, site_code=SITE_A).id
    now = datetime.now(UTC)
    soon = now.date() + timedelta(days=5)  # within URGENT_WITHIN_DAYS: an urgent class
    files = {
        "urgent": File("AB12345", date(1990, 4, 17)),
        "squatted": File("CD67890", date(1985, 11, 3)),
        "status": File("EF24680", date(1979, 2, 9)),
        "guessed": File("GH13579", date(2001, 7, 23)),
        "proven": File("JK97531", date(1995, 12, 30)),
        "carded": File("LM86420", date(1988, 6, 14)),
    }
    records = [
        CaseRecord(file.number, file.born, "api_issued", now - timedelta(days=1), soon)
        for file in files.values()
    ]
    import_records(rt.sessions, records, rt.settings.birthdate_key, ImportReport())
    pending_phone = "+33612345678"
    rt.queue.request_callback(SITE_A, phone=pending_phone, language="fr", reason="other")
    saved = rt.voicemail.save(
        recording_sid="RE" + secrets.token_hex(16),
        call_sid="CA" + secrets.token_hex(16),
        site=SITE_A,
        language="fr",
        channel="phone",
        duration_s=12,
        phone=None,
        arrived_ms=None,
    )
    return Seeded(files, staff, pending_phone, saved.voicemail_id)


@contextmanager
def production_server(redis_url: str, database_url: str, instance: Path) -> Iterator[Server]:
    """The Procfile's ``web`` in production mode on this Redis and database, seeded."""
    env = _env(redis_url, database_url, instance)
    rt = Runtime(load_settings(env), trigger=lambda site: None)
    try:
        seeded = _seed(rt)
        environ = {k: v for k, v in os.environ.items() if k not in NOT_FOR_PRODUCTION}
        with harness.procfile_stack(rt, env, processes=("web",), environ=environ) as started:
            names = ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "API_TOKENS", "METRICS_TOKEN")
            port, _, cpu = started
            server = Server(port, *(env[name] for name in names), rt, seeded, cpu)
            _wait_until_serving(server, instance / "loadtest.log")
            yield server
    finally:
        _empty(rt)
        rt.close()


def production_environ(
    redis_url: str, database_url: str, instance: Path, **changes: str
) -> dict[str, str]:
    """A process's environment in production (this one's, less the test run's own
    variables), with ``changes`` (an empty value removes the variable)."""
    env = {k: v for k, v in os.environ.items() if k not in NOT_FOR_PRODUCTION}
    env.update(_env(redis_url, database_url, instance), **changes)
    return {k: v for k, v in env.items() if v}


def interphone(redis_url: str, database_url: str, instance: Path, *args: str) -> str:
    """``interphone ARGS`` run in production, as an operator would: what it said (its
    output and errors), raising if it succeeded."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "interphone"), *args],
        env=production_environ(redis_url, database_url, instance),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0, done.stdout
    return done.stdout + done.stderr


def start_refused(redis_url: str, database_url: str, instance: Path, **changes: str) -> str:
    """Start the Procfile's ``web`` in production with ``changes`` to its environment
    (an empty value removes the variable), expecting it to refuse: what it said on the
    way out. Fails as soon as it answers instead."""
    env = production_environ(redis_url, database_url, instance, **changes)
    env.update(HOST="127.0.0.1", PORT="0")  # the port gunicorn takes is in its log
    log = instance / "refused.log"
    with log.open("wb") as out:
        web = subprocess.Popen(
            harness.procfile_command("web", env),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
            start_new_session=True,
        )
        try:

            def refused_or_answering() -> str | None:
                if web.poll() is not None:
                    return "refused"
                listening = LISTENING.search(log.read_text(errors="replace"))
                return "answered" if listening and _answers(int(listening.group(1))) else None

            outcome = wait_until(refused_or_answering, 60, "the web process to refuse or answer")
            if outcome == "answered":
                raise AssertionError(f"the web process started with {sorted(changes)}")
        finally:
            if web.poll() is None:
                os.killpg(web.pid, signal.SIGKILL)
            web.wait(timeout=10)
    assert web.returncode != 0
    return log.read_text(errors="replace")


LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.25) as sock:
            sock.sendall(f"GET /ping HTTP/1.1\r\nHost: {PUBLIC_HOST}\r\n\r\n".encode())
            return sock.recv(12).startswith(b"HTTP/1.1 ")
    except OSError:
        return False


def _wait_until_serving(server: Server, log: Path) -> None:
    """gunicorn's master listens before its worker has imported the app: wait for an
    answer, or say why the worker did not boot."""
    try:
        wait_until(lambda: Client(server).get("/ping").status == 200, 60, "/ping", interval_s=0.2)
    except AssertionError:
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise RuntimeError(f"the production server did not answer /ping:\n{tail}") from None


# -- HTTP ------------------------------------------------------------------------------------
@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers if k.lower() == name.lower()), "")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class Client:
    """A raw HTTP client behind the public proxy: one address, its own cookies (the
    server's are ``Secure``; the proxy speaks plain HTTP to it, as in production)."""

    def __init__(self, server: Server, address: str = "198.51.100.7") -> None:
        self.server, self.address = server, address
        self.cookies: dict[str, str] = {}

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        cookies: bool = True,
    ) -> Answer:
        sent = {
            "Host": PUBLIC_HOST,
            "X-Forwarded-For": self.address,
            "X-Forwarded-Proto": "https",
            "User-Agent": "Mozilla/5.0 (black-box suite)",
        }
        if cookies and self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        sent.update(headers or {})
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=TIMEOUT_S)
        try:
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            answer = Answer(response.status, response.getheaders(), response.read())
        finally:
            conn.close()
        if cookies:
            self._keep_cookies(answer)
        return answer

    def _keep_cookies(self, answer: Answer) -> None:
        for name, value in answer.headers:
            if name.lower() != "set-cookie":
                continue
            pair, _, attributes = value.partition(";")
            key, _, content = pair.strip().partition("=")
            gone = "max-age=0" in attributes.lower().replace(" ", "") or "1970" in attributes
            if gone:
                self.cookies.pop(key, None)
            else:
                self.cookies[key] = content

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> Answer:
        return self.request("GET", path, headers=headers)

    def post_form(self, path: str, form: Mapping[str, str]) -> Answer:
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": PUBLIC_BASE_URL,
            "Referer": f"{PUBLIC_BASE_URL}/",
        }
        return self.request("POST", path, urlencode(form).encode(), headers)

    def put_json(self, path: str, raw: bytes, token: str | None = None) -> Answer:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.request("PUT", path, raw, headers, cookies=False)


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser(Client):
    """A person at a screen: signs in through ``/login`` with the form's CSRF token and
    posts forms with a fresh one, as the pages' forms do."""

    def sign_in(self, email: str, password: str = PASSWORD) -> Answer:
        page = self.get("/login")
        return self.post_form(
            "/login", {"email": email, "password": password, "csrf_token": _csrf(page)}
        )

    def submit(self, path: str, form: Mapping[str, str] | None = None) -> Answer:
        """A form of a page, with the CSRF token every page's header form carries."""
        token = _csrf(self.get("/login"))
        return self.post_form(path, {**(form or {}), "csrf_token": token})


def _csrf(page: Answer) -> str:
    found = CSRF.search(page.text)
    if found is None:
        raise AssertionError(f"no CSRF token in the page ({page.status})")
    return found.group(1)


# -- a caller, through Twilio ------------------------------------------------------------------
_calls = itertools.count(1)


@dataclass
class Caller:
    """Someone calling the line: Twilio's signed webhooks for the public URL, following
    the TwiML answered (``<Gather action>``, ``<Redirect>``) and noting what is said."""

    server: Server
    number: str  # "From" as Twilio sends it ("anonymous" for a withheld number)
    line: str = LINE_A
    sid: str = field(default_factory=lambda: "CA" + secrets.token_hex(16))
    heard: list[str] = field(default_factory=list)  # every <Say>, in order
    said: list[str] = field(default_factory=list)  # the last answer's <Say>s
    action: str | None = None  # where the next key press goes
    redirected: bool = False  # the action is a <Redirect>'s: requested without keys
    ended: bool = False
    last: Answer | None = None  # the last answer, as sent

    def __post_init__(self) -> None:
        self.validator = RequestValidator(self.server.auth_token)
        self.client = Client(self.server, address="54.172.60.1")  # one of Twilio's

    @property
    def step(self) -> str:
        """The step whose keys are awaited (``/voice/step/<step>``), or the path."""
        path = urlsplit(self.action or "").path
        return path.removeprefix("/voice/step/")

    def params(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {
            "CallSid": self.sid,
            "AccountSid": self.server.account_sid,
            "From": self.number,
            "To": self.line,
            "Caller": self.number,
            "Called": self.line,
            "CallStatus": "in-progress",
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
            **(extra or {}),
        }

    def post(self, path: str, form: Mapping[str, str]) -> Answer:
        signature = self.validator.compute_signature(PUBLIC_BASE_URL + path, dict(form))
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
            "User-Agent": "TwilioProxy/1.1",
        }
        return self.client.request("POST", path, urlencode(form).encode(), headers, cookies=False)

    def call(self) -> Caller:
        self._follow(self.post("/voice/incoming", self.params({"CallStatus": "ringing"})))
        return self

    def press(self, digits: str = "") -> Caller:
        """Keys typed at the current ``<Gather>`` (Twilio leaves out the finishing ``#``),
        or the ``<Redirect>`` followed (no keys)."""
        if self.ended or self.action is None:
            raise AssertionError(f"the call is over; it last heard {self.said}")
        keys = {} if self.redirected else {"Digits": digits.rstrip("#")}
        self._follow(self.post(self.action, self.params(keys)))
        return self

    def _follow(self, answer: Answer) -> None:
        self.last = answer
        assert answer.status == 200, f"{answer.status} {answer.text[:300]}"
        assert answer.header("Content-Type").startswith(("application/xml", "text/xml"))
        document = ET.fromstring(answer.body)
        self.said, self.action, self.redirected = [], None, False
        for element in document.iter():
            if element.tag == "Say" and element.text:
                self.said.append(element.text.strip())
            elif element.tag == "Gather":
                self.action = element.get("action")
            elif element.tag == "Redirect" and element.text and self.action is None:
                target = urlsplit(element.text.strip())
                self.action = target.path + (f"?{target.query}" if target.query else "")
                self.redirected = True
            elif element.tag == "Hangup":
                self.ended = True
        self.heard.extend(self.said)
        if self.action is None and not any(e.tag in ("Record", "Dial") for e in document.iter()):
            self.ended = True

    def words(self) -> str:
        return " ".join(self.said)


def next_number() -> str:
    """A distinct French mobile number per caller of the suite."""
    return f"+3367{next(_calls):07d}"
