"""Every screen route, read from the app's URL map: the wrong role gets 403, nobody signed
in is sent to the sign-in page, and a state-changing form without its CSRF token is
refused, whoever sends it. A route added later is covered without touching this file."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask

from interphone.accounts import add_user
from interphone.runtime import Runtime

from .conftest import SITE

PASSWORD = "long enough password"
# who may use a route, by its first path segment; anything else must be listed as public
NEEDS = {
    "agent": "agent",
    "supervisor": "supervisor",
    "admin": "admin",
    "": "agent",
    "logout": "agent",
}
ROLES = ("agent", "supervisor", "admin")
# reached without a session: sign-in, health checks, the language switch, and the
# machine-to-machine routes, which have their own checks (Twilio signatures, API bearer
# tokens, the dev phone only exists without Twilio credentials)
PUBLIC = (
    "/login",
    "/lang",
    "/ping",
    "/healthz",
    "/readyz",
    "/metrics",  # loopback or METRICS_TOKEN (tests/test_ops_metrics.py)
    "/static/",
    "/api/",
    "/voice/",
    "/sms/",
    "/dev/",
)


def _value(name: str, converter: Any) -> str:
    options = getattr(converter, "items", None)
    if options:
        return str(sorted(options)[0])
    if name == "code":
        return SITE
    return "1" if "id" in name else "x"


def _screen_routes(app: Flask) -> list[tuple[str, str, str]]:
    routes = []
    for rule in app.url_map.iter_rules():
        path = rule.rule
        if path.startswith(PUBLIC):
            continue
        url = path
        for name in rule.arguments:
            url = re.sub(rf"<(?:[^:<>]+:)?{name}>", _value(name, rule._converters[name]), url)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            routes.append((method, url, NEEDS[path.strip("/").split("/")[0]]))
    return sorted(set(routes))


def _token(client: Any) -> str:
    page = client.get("/login").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def _client(app: Flask, rt: Runtime, role: str | None) -> Any:
    client = app.test_client()
    if role is not None:
        email = f"{role}@example.org"
        add_user(rt.sessions, email, PASSWORD, site_code=SITE, role=role)
        response = client.post(
            "/login", data={"email": email, "password": PASSWORD, "csrf_token": _token(client)}
        )
        assert response.status_code == 302
    return client


def _send(client: Any, method: str, url: str, with_token: bool = True) -> Any:
    if method == "GET":
        return client.get(url)
    data = {"csrf_token": _token(client)} if with_token else {}
    return client.open(url, method=method, data=data)


def test_every_screen_route_is_classified(app: Flask) -> None:
    routes = _screen_routes(app)
    assert {path for _, path, _ in routes} >= {"/agent", "/supervisor", "/admin"}


def test_anonymous_users_are_sent_to_sign_in_on_every_screen_route(
    app: Flask, voice_runtime: Runtime
) -> None:
    client = _client(app, voice_runtime, None)
    for method, url, _ in _screen_routes(app):
        response = _send(client, method, url)
        assert response.status_code == 302, (method, url, response.status_code)
        assert "/login" in response.location, (method, url)


@pytest.mark.parametrize("role", ["agent", "supervisor"])
def test_wrong_role_gets_403_on_every_route_above_it(
    app: Flask, voice_runtime: Runtime, role: str
) -> None:
    client = _client(app, voice_runtime, role)
    above = [r for r in _screen_routes(app) if ROLES.index(r[2]) > ROLES.index(role)]
    assert above, "nothing to check"
    for method, url, _ in above:
        response = _send(client, method, url)
        assert response.status_code == 403, (method, url, response.status_code)


def test_forms_without_csrf_token_are_refused_even_for_an_admin(
    app: Flask, voice_runtime: Runtime
) -> None:
    client = _client(app, voice_runtime, "admin")
    posts = [r for r in _screen_routes(app) if r[0] == "POST"] + [("POST", "/lang", "")]
    for method, url, _ in posts:
        response = _send(client, method, url, with_token=False)
        assert response.status_code == 400, (method, url, response.status_code)
