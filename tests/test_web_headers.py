"""Security headers on every response, pages without inline script or style (so the
Content-Security-Policy can forbid them), and redirects that stay on this site."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.datastructures import Headers

from interphone.accounts import add_user
from interphone.runtime import Runtime
from interphone.web import create_app
from interphone.web.sessions import TWILIO_PREFIXES

from .conftest import SITE

PASSWORD = "long enough password"
PACKAGE = Path(__file__).resolve().parent.parent / "interphone"
TEMPLATES = sorted(
    [
        *(PACKAGE / "web/templates").glob("*.html"),
        *(PACKAGE / "devtools/devphone/templates").glob("*.html"),
    ]
)


def _token(client: Any) -> str:
    page = client.get("/login").get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token on the sign-in page"
    return match.group(1)


def _admin(app: Flask, rt: Runtime) -> Any:
    add_user(rt.sessions, "admin@example.org", PASSWORD, site_code=SITE, role="admin")
    client = app.test_client()
    form = {"email": "admin@example.org", "password": PASSWORD, "csrf_token": _token(client)}
    assert client.post("/login", data=form).status_code == 302
    return client


def _get_urls(app: Flask) -> list[str]:
    """Every GET route, its arguments filled in (a page, a 404 or a redirect: all count)."""
    urls = []
    for rule in app.url_map.iter_rules():
        if "GET" not in (rule.methods or ()) or rule.rule.startswith(TWILIO_PREFIXES):
            continue
        url = rule.rule
        for name in rule.arguments:
            value = "base.css" if name == "filename" else SITE if name == "code" else "1"
            url = re.sub(rf"<(?:[^:<>]+:)?{name}>", value, url)
        urls.append(url)
    return sorted(set(urls))


@pytest.fixture
def admin(app: Flask, voice_runtime: Runtime) -> Any:
    return _admin(app, voice_runtime)


@dataclass(frozen=True)
class Seen:
    url: str
    status: int
    mimetype: str
    headers: Headers
    body: str


def _seen(client: Any, method: str, url: str, **kwargs: Any) -> Seen:
    """The response, read (an event feed: its first event only) and closed."""
    response = client.open(url, method=method, buffered=False, **kwargs)
    try:
        if response.mimetype == "text/event-stream":
            body = next(iter(response.response)).decode()
        else:
            body = response.get_data(as_text=True)
        return Seen(url, response.status_code, response.mimetype, response.headers, body)
    finally:
        response.close()


@pytest.fixture
def responses(app: Flask, admin: Any) -> list[Seen]:
    """Every GET route as an admin and as nobody signed in, and a missing page (Twilio's
    webhooks excepted: their TwiML goes to Twilio, not to a browser)."""
    anonymous = app.test_client()
    return [
        *(_seen(client, "GET", url) for client in (admin, anonymous) for url in _get_urls(app)),
        _seen(anonymous, "GET", "/no/such/page"),
    ]


def test_every_page_sends_the_security_headers(responses: list[Seen]) -> None:
    assert len(responses) > 40
    for seen in responses:
        url, headers = seen.url, seen.headers
        policy = dict(
            part.strip().split(" ", 1)
            for part in headers.get("Content-Security-Policy", "").split(";")
            if part.strip()
        )
        assert policy.get("script-src") == "'self'", url
        assert policy.get("style-src") == "'self'", url
        assert policy.get("frame-ancestors") == "'none'", url
        assert policy.get("default-src") == "'none'", url
        assert headers.get("X-Frame-Options") == "DENY", url
        assert headers.get("X-Content-Type-Options") == "nosniff", url
        assert headers.get("Referrer-Policy") == "same-origin", url
        assert "Strict-Transport-Security" not in headers, url  # PUBLIC_BASE_URL is http


@pytest.fixture
def https_app(voice_runtime: Runtime) -> Iterator[Flask]:
    rt = Runtime(
        voice_runtime.settings.with_overrides(public_base_url="https://interphone.example.org"),
        clock=voice_runtime.clock,
        trigger=lambda site: None,
    )
    yield create_app(runtime=rt)
    rt.close()


def test_a_site_served_over_https_keeps_browsers_on_https(https_app: Flask) -> None:
    for url in ("/login", "/healthz", "/no/such/page"):
        response = https_app.test_client().get(url)
        assert response.headers["Strict-Transport-Security"] == "max-age=31536000", url


class _Inline(HTMLParser):
    """What a strict Content-Security-Policy refuses: inline scripts, ``<style>``
    elements, ``style`` and ``on…`` attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.found.append("<script> without src")
        if tag == "style":
            self.found.append("<style>")
        self.found += [f"{tag} {name}=" for name in names if name == "style" or name[:2] == "on"]


def _inline(html: str) -> list[str]:
    parser = _Inline()
    parser.feed(html)
    return parser.found


def test_no_page_holds_inline_script_or_style(responses: list[Seen]) -> None:
    pages = [seen for seen in responses if seen.mimetype == "text/html" and seen.status == 200]
    assert {"/login", "/agent", "/supervisor", "/admin", "/dev/phone"} <= {p.url for p in pages}
    for page in pages:
        assert _inline(page.body) == [], page.url


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda path: path.name)
def test_no_template_holds_inline_script_or_style(template: Path) -> None:
    """Every branch of every template, including those the pages above do not reach."""
    source = re.sub(r"{[{%#].*?[%}#]}", "x", template.read_text(), flags=re.S)
    assert _inline(source) == []


HOSTILE = [
    "/\t/evil.com",
    "/\n/evil.com",
    "/\r\n/evil.com",
    "//evil.com",
    "/\\evil.com",
    "\\\\evil.com",
    "https://evil.com/",
    "javascript:alert(1)",
    "evil.com",
    " /agent",
    "/agent\x7f",  # (a NUL is refused earlier, with a 400: interphone.web.nul_guard)
    "",
]


@pytest.mark.parametrize("target", HOSTILE, ids=repr)
def test_the_language_redirect_stays_on_this_site(app: Flask, target: str) -> None:
    client = app.test_client()
    response = client.post(
        "/lang", data={"lang": "en", "next": target, "csrf_token": _token(client)}
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize(
    "target", ["/agent", "/supervisor?site=prefecture", "/login?next=%2Fadmin"]
)
def test_the_language_redirect_goes_back_to_the_page(app: Flask, target: str) -> None:
    client = app.test_client()
    response = client.post(
        "/lang", data={"lang": "en", "next": target, "csrf_token": _token(client)}
    )
    assert response.headers["Location"] == target
