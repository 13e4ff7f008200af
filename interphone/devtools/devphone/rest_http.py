"""The dev phone's REST side over the network, as Twilio's API is in production.

By default twilio-python's requests land in-process in :class:`rest.DevPhoneHttpClient`.
With ``DEV_PHONE_REST_URL`` set, the web and worker processes send them over HTTP to a
:class:`RestServer` instead (same answers, same Redis records), so that the network
between the app and "Twilio" can fail: the fault tests cut it while calls are placed.
A request that cannot reach the server raises, as twilio-python does when
api.twilio.com is unreachable.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis
from twilio.base.exceptions import TwilioException
from twilio.http import HttpClient
from twilio.http.response import Response

from .rest import DevPhoneHttpClient

TIMEOUT_S = 15.0


class RemoteDevPhoneHttpClient(HttpClient):  # type: ignore[misc]
    def __init__(self, base_url: str) -> None:
        super().__init__(logging.getLogger(__name__), is_async=False)
        self.base_url = base_url.rstrip("/")

    def request(
        self,
        method: str,
        uri: str,
        params: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        headers: dict[str, Any] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        parts = urlsplit(uri)
        body = urlencode(
            [(k, str(v)) for k, value in (data or {}).items() for v in _values(value)]
        ).encode()
        query = f"?{urlencode(params, doseq=True)}" if params else ""
        request = urllib.request.Request(
            self.base_url + parts.path + query,
            data=body if method.upper() != "GET" else None,
            method=method.upper(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout or TIMEOUT_S) as answer:
                return Response(answer.status, answer.read().decode())
        except urllib.error.HTTPError as exc:
            return Response(exc.code, exc.read().decode())
        except (urllib.error.URLError, OSError) as exc:
            raise TwilioException(f"dev phone REST side unreachable: {exc}") from exc


def _keep_trying(request: Callable[[], Response], patience_s: float = 60.0) -> Response:
    """Twilio's availability does not depend on ours: the stand-in keeps its records
    in the app's Redis, so while that Redis restarts or fails over it waits for it."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return request()
        except (redis.ConnectionError, redis.TimeoutError):
            if time.monotonic() > deadline:
                raise
            threading.Event().wait(0.2)


def _fields(encoded: str) -> dict[str, Any]:
    """Form or query fields; a repeated one as a list, as twilio-python sends it."""
    form: dict[str, list[str]] = {}
    for key, value in parse_qsl(encoded):
        form.setdefault(key, []).append(value)
    return {k: v[0] if len(v) == 1 else v for k, v in form.items()}


def _values(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


class RestServer:
    """The REST side as an HTTP server on ``host:port`` (a thread of the caller)."""

    def __init__(self, connection: redis.Redis, host: str = "127.0.0.1", port: int = 0) -> None:
        local = DevPhoneHttpClient(connection)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                self._answer("POST", {}, _fields(self.rfile.read(length).decode()))

            def do_GET(self) -> None:  # noqa: N802 (a list of messages)
                self._answer("GET", _fields(urlsplit(self.path).query), {})

            def do_DELETE(self) -> None:  # noqa: N802 (a recording, a participant kicked)
                self._answer("DELETE", {}, {})

            def _answer(self, method: str, params: dict[str, Any], data: dict[str, Any]) -> None:
                uri = "https://api.twilio.com" + urlsplit(self.path).path
                answer = _keep_trying(lambda: local.request(method, uri, params, data))
                payload = str(answer.text).encode()
                self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, fmt: str, *args: Any) -> None:
                return  # numbers are in the paths' bodies: nothing logged

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RestServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=10)
