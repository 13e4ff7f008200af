"""A gunicorn worker (gthread) that gives a connection a thread only once its request has
arrived whole.

gunicorn's gthread worker hands a readable connection to a thread, which parses the
request with blocking reads and no deadline: sockets that send a request line and a
``Host`` line, then nothing, each hold a thread for as long as they stay open, and as many
of them as there are threads stop the process (the speech stream server checks Twilio's
signature only once the headers are complete). Here the worker's main loop, the selector
that already accepts and keeps connections alive, reads the request's head without
blocking, and its body when ``Content-Length`` announces one of at most ``BODY_BYTES``;
a thread takes the connection only then, and answers it without waiting for the client
again (the stream server's signature check reads nothing more). Meanwhile:

- a connection whose request has not arrived ``HEAD_DEADLINE_S`` after it was accepted
  (kept alive: after the first bytes of its next request) is closed;
- at most ``MAX_WAITING`` connections wait for their request; beyond, the oldest is
  closed. A client that sends its request at once (Twilio, a health probe) waits
  milliseconds, so it is never the oldest for long;
- a head longer than ``HEAD_BYTES``, a body longer than ``BODY_BYTES`` or of unknown
  length (chunked) is answered at once (431, 413) and closed.

So idle or half-open sockets cost a file descriptor and a few bytes, never a thread.

Use: ``gunicorn --worker-class interphone.gunicorn_worker.GuardedThreadWorker`` (``Procfile``:
``stream``), or ``GuardedWebWorker`` (``web``: the case import's larger body goes to a
thread after its head). With TLS in gunicorn (``--certfile``) or HTTP/2 by prior
knowledge, connections are served as gthread serves them: the guard reads plain bytes.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import time
from functools import partial
from typing import Any

from gunicorn.http2 import negotiation
from gunicorn.workers.gthread import TConn, ThreadWorker

HEAD_DEADLINE_S = 5.0  # Twilio sends its handshake at once: seconds are plenty
MAX_WAITING = 256  # well under gunicorn's worker_connections (1000)
HEAD_BYTES = 32 * 1024  # a Twilio handshake or webhook head is under 2 KB
BODY_BYTES = 64 * 1024  # a Twilio webhook's form is a few KB; the stream server takes none
READ_BYTES = 16 * 1024


class _Conn(TConn):  # type: ignore[misc]  # gunicorn ships no type hints
    """A connection and the bytes of its request read so far by the main loop."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.head = bytearray()
        self.deadline = 0.0
        self.ready = False  # its request has arrived: a thread may take it
        self.continued = False  # "100 Continue" sent for this request
        self.guarded = True  # False: served as gthread serves it (TLS, HTTP/2)

    def init(self) -> None:
        super().init()
        if self.head:  # a new connection: its parser starts with what the loop read
            self.parser.unreader.unread(bytes(self.head))
            self.head.clear()


# A client that sent "Expect: 100-continue" waits for it before sending its body (gunicorn
# sends one more once a thread takes the request: a client skips any 1xx it did not need).
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _refusal(status: str) -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()


def _verdict(data: bytearray, *, large_body_paths: tuple[bytes, ...] = ()) -> bytes | None:
    """None while the request is incomplete (``CONTINUE`` when its client waits for it
    to send the body); b"" once a thread may take it; else the answer that refuses it.
    ``large_body_paths``: the paths (an upload form) whose body longer than
    ``BODY_BYTES`` or of unknown length goes to a thread after the head instead of being
    refused; anywhere else (Twilio's webhooks) such a body would hold a thread for as
    long as its client pleases."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return _refusal("431 Request Header Fields Too Large") if len(data) > HEAD_BYTES else None
    lines = bytes(data[:end]).split(b"\r\n")
    target = lines[0].split(b" ")[1] if lines[0].count(b" ") >= 2 else b""
    large_bodies = target.partition(b"?")[0] in large_body_paths
    length, expect = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip()
        if name == b"transfer-encoding":
            return b"" if large_bodies else _refusal("413 Content Too Large")
        if name == b"content-length":
            if not value.isdigit():
                return b""  # malformed: gunicorn's parser answers it, from what is here
            length = max(length, int(value))
        elif name == b"expect":
            expect = value.lower() == b"100-continue"
    if length > BODY_BYTES:
        return b"" if large_bodies else _refusal("413 Content Too Large")
    if len(data) >= end + 4 + length:
        return b""
    return CONTINUE if expect else None


class GuardedThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gthread, with requests read by the main loop before a thread takes them."""

    large_body_paths: tuple[bytes, ...] = ()  # none: the speech stream server takes no body

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waiting: dict[_Conn, None] = {}  # oldest first

    def accept(self, listener: Any) -> None:
        try:
            client, address = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = _Conn(self.cfg, client, address, listener.getsockname())
        conn.guarded = not self.cfg.is_ssl and not negotiation.prior_knowledge_allowed(
            self.cfg, address
        )
        self.enqueue_req(conn)

    def enqueue_req(self, conn: _Conn) -> None:
        """Every way to a thread (new, kept alive, read ahead) goes through the guard."""
        if conn.ready or not conn.guarded:
            conn.ready = False
            super().enqueue_req(conn)
            return
        conn.continued = False
        if conn.parser is not None:  # kept alive: bytes already read ahead come first
            conn.head += conn.parser.unreader.take_buffered()
            if self._advance(conn):
                return
        conn.sock.setblocking(False)
        if self._read(conn):  # what has arrived already, without a turn of the loop
            return
        conn.deadline = time.monotonic() + HEAD_DEADLINE_S
        while len(self.waiting) >= MAX_WAITING:
            self._drop(next(iter(self.waiting)))
        self.waiting[conn] = None
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._readable, conn))

    def _readable(self, conn: _Conn, _sock: Any) -> None:
        self._read(conn)

    def _read(self, conn: _Conn) -> bool:
        """Take what has arrived; True once the connection is settled (given to a
        thread, answered, or closed)."""
        try:
            data = conn.sock.recv(READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            data = b""
        if not data:  # the client has gone
            if conn in self.waiting:
                self._drop(conn)
            else:
                self._close(conn, b"")
            return True
        conn.head += data
        return self._advance(conn)

    def _advance(self, conn: _Conn) -> bool:
        """A request arrived whole goes to a thread, a refused one is answered and
        closed (True); else it waits on (False)."""
        verdict = _verdict(conn.head, large_body_paths=self.large_body_paths)
        if verdict is None or verdict == CONTINUE:
            if verdict and not conn.continued:
                conn.continued = True
                with contextlib.suppress(OSError):
                    conn.sock.send(CONTINUE)
            return False
        if conn in self.waiting:
            del self.waiting[conn]
            self.poller.unregister(conn.sock)
        if verdict:
            self._close(conn, verdict)
            return True
        if conn.parser is not None:  # kept alive: the parser exists already
            conn.parser.unreader.unread(bytes(conn.head))
            conn.head.clear()
        conn.ready = conn.data_ready = True
        self.enqueue_req(conn)
        return True

    def _drop(self, conn: _Conn) -> None:
        """Close a connection still waiting for its request."""
        del self.waiting[conn]
        self.poller.unregister(conn.sock)
        self._close(conn, b"")

    def _close(self, conn: _Conn, answer: bytes) -> None:
        if answer:
            with contextlib.suppress(OSError):
                conn.sock.send(answer)  # a few bytes into an empty send buffer
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        """gthread's sweep of deferred connections (every turn of the loop), and ours."""
        super().murder_pending()
        now = time.monotonic()
        while self.waiting:
            oldest = next(iter(self.waiting))
            if oldest.deadline > now:
                break
            self._drop(oldest)


class GuardedWebWorker(GuardedThreadWorker):
    """The web process's worker: its Twilio webhooks (forms of a few KB) and every other
    request are read whole by the main loop; only the case file import's body beyond
    ``BODY_BYTES`` (up to the app's ``MAX_CONTENT_LENGTH``) or chunked goes to a thread
    after its head, as with gthread (an administrator's upload: its pace is the reverse
    proxy's to bound). Elsewhere such a body is refused (413)."""

    large_body_paths = (b"/admin/cases/import",)
