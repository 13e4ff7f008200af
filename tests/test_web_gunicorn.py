"""The web process as the Procfile starts it (gunicorn, its worker class), attacked as
finding 4 of issue 18 did without signing in: sockets that send half a request, then
nothing, must never hold the threads that answer Twilio's webhooks, where no buffering
reverse proxy stands in front."""

from __future__ import annotations

import http.client
import socket
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

from interphone.devtools import harness
from interphone.gunicorn_worker import BODY_BYTES, GuardedWebWorker, _verdict
from interphone.runtime import Runtime

HALF_OPEN = 200  # far more than the threads of this test's web process (2 × 4)


def test_half_open_requests_never_hold_the_threads_that_answer_twilio(
    voice_runtime: Runtime,
) -> None:
    rt = voice_runtime
    small = {"WEB_CONCURRENCY": "2", "WEB_THREADS": "4"}  # the Procfile's line, fewer threads
    with harness.procfile_stack(rt, small, processes=("web",)) as (port, _, _):
        half_open = []
        try:
            for n in range(HALF_OPEN):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                heads = (
                    "GET /pi",
                    "POST /voice/incoming HTTP/1.1\r\n",
                    # a whole head announcing a body that never comes
                    f"POST /voice/incoming HTTP/1.1\r\nContent-Length: {10 * BODY_BYTES}\r\n\r\n",
                    "POST /voice/incoming HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                )
                sock.sendall(heads[n % len(heads)].encode())
                half_open.append(sock)

            form = {"CallSid": "CA" + "5" * 32, "From": "+33612345678", "To": "+33473000000"}
            url = rt.settings.public_base_url.rstrip("/") + "/voice/incoming"
            signature = RequestValidator(rt.settings.twilio_auth_token).compute_signature(url, form)
            webhook = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            webhook.request(
                "POST",
                "/voice/incoming",
                body=urlencode(form),
                headers={
                    "X-Twilio-Signature": signature,
                    "Content-Type": "application/x-www-form-urlencoded",
                },
            )
            answer = webhook.getresponse()
            assert answer.status == 200 and b"<Response>" in answer.read()
            webhook.request("GET", "/ping")  # the same connection, kept alive
            assert webhook.getresponse().status == 200
            webhook.close()
        finally:
            for sock in half_open:
                sock.close()


def test_the_web_worker_hands_an_upload_to_a_thread_after_its_head() -> None:
    paths = GuardedWebWorker.large_body_paths
    upload = f"POST /admin/cases/import HTTP/1.1\r\nContent-Length: {BODY_BYTES + 1}\r\n\r\n"
    chunked = "POST /admin/cases/import?x=1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    for head in (upload, chunked):  # up to MAX_CONTENT_LENGTH: the app's to refuse
        assert _verdict(bytearray(head.encode()), large_body_paths=paths) == b""
    webhook = "POST /voice/incoming HTTP/1.1\r\nContent-Length: 300\r\n\r\n" + "a" * 299
    assert _verdict(bytearray(webhook.encode()), large_body_paths=paths) is None  # a byte to come


def test_a_large_or_chunked_body_anywhere_but_the_import_is_refused_before_a_thread() -> None:
    """A head announcing a big or chunked body, then nothing, would hold a thread for as
    long as its client pleases: on Twilio's routes it is refused at once."""
    paths = GuardedWebWorker.large_body_paths
    for head in (
        f"POST /voice/incoming HTTP/1.1\r\nContent-Length: {BODY_BYTES + 1}\r\n\r\n",
        "POST /voice/incoming HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        f"POST /admin/cases/import/../x HTTP/1.1\r\nContent-Length: {BODY_BYTES + 1}\r\n\r\n",
    ):
        found = _verdict(bytearray(head.encode()), large_body_paths=paths)
        assert found is not None and found.startswith(b"HTTP/1.1 413"), head
