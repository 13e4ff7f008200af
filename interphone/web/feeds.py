"""The screens' live feeds: one Redis subscription per process, shared by its screens.

Each open agent or supervisor screen holds a streamed response (Server-Sent Events). With
a subscription of its own, every queue change woke every screen's thread to read and
parse the same Redis message: fifty screens, fifty readers, fifty connections, and a
crowd of threads taking the process's GIL from the webhooks at every change. Here one
thread per process reads the feed channels (``ip:feed:site:*``) and hands each message,
already decoded, to the screens of that site through in-memory queues.

If the subscription breaks (Redis restarted; redis-py subscribes again by itself), every
screen's stream is ended: browsers reconnect by themselves and resynchronize on the
``hello`` message, so no change missed meanwhile stays missed.

A stream holds one of the process's threads for as long as it is open, and the same
threads answer Twilio's webhooks. So feeds are capped twice: ``per_process`` open
streams at most in a process (a cap well below its thread count: the rest always answer
the line), and ``per_owner`` per signed-in person across every process (their newest
screen wins: the oldest is told it was replaced and ends at once, through a message on
:data:`CONTROL` that every process's reader receives). One person opening seventy feeds
holds four threads, not every thread of the web.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from ..queue.notifier import channel
from ..redis_text import as_text

log = logging.getLogger(__name__)

PATTERN = channel(0).rsplit(":", 1)[0] + ":*"  # every site's channel
CONTROL = "ip:feed:replaced"  # a stream's token published here ends that stream
CLOSED = object()  # put in a screen's inbox when the subscription broke: it reconnects
REPLACED = object()  # put in a screen's inbox when a newer one of its owner took its place
OWNERS_TTL_S = 24 * 3600  # an owner's list of open streams, kept after their last feed
WAKE_S = 0.25  # the reader looks this often whether the runtime is closing
BATCH_S = 0.1  # changes that come within this time after one go to screens together


class FeedsBusy(Exception):
    """The process already streams its share of feeds: the screen tries again later."""


class FeedHub:
    def __init__(
        self,
        connection: redis.Redis,
        subscribe_timeout_s: float = 10.0,
        *,
        batch_s: float = BATCH_S,
        per_process: int = 16,
        per_owner: int = 4,
    ) -> None:
        self.redis = connection
        self.subscribe_timeout_s = subscribe_timeout_s
        self.batch_s = batch_s
        self.per_process = per_process
        self.per_owner = per_owner
        self._lock = threading.Lock()
        self._screens: dict[str, set[queue.SimpleQueue[object]]] = {}
        self._by_token: dict[str, queue.SimpleQueue[object]] = {}  # the open streams
        self._reader_pid: int | None = None
        self._subscribed = threading.Event()
        self._stopping = threading.Event()
        self._reader: threading.Thread | None = None

    @contextmanager
    def listen(self, site_id: int, owner: str | None = None) -> Iterator[queue.SimpleQueue[object]]:
        """An inbox receiving every change of the site from now on, in batches (a tuple
        of str: those that came within ``batch_s`` of the first, so that a screen's
        thread wakes and writes once for them); or :data:`CLOSED` if the subscription
        breaks; or :data:`REPLACED` when ``owner`` (a signed-in person) opens more than
        ``per_owner`` streams and this one is their oldest. Subscribed when this returns.
        Raises :class:`FeedsBusy` when the process already has ``per_process`` open."""
        if self._stopping.is_set():
            raise redis.ConnectionError("the live feeds are closed (the runtime closes)")
        inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        name = channel(site_id)
        token = secrets.token_hex(8)
        with self._lock:
            if len(self._by_token) >= self.per_process:
                raise FeedsBusy(f"{self.per_process} live feeds already open in this process")
            self._by_token[token] = inbox
            self._screens.setdefault(name, set()).add(inbox)
            self._ensure_reader()
        try:
            if not self._subscribed.wait(self.subscribe_timeout_s):
                raise redis.ConnectionError("the feed's subscription did not start")
            if owner is not None:
                self._take_place(owner, token)
            yield inbox
        finally:
            if owner is not None:
                self._leave(owner, token)
            with self._lock:
                self._by_token.pop(token, None)
                screens = self._screens.get(name, set())
                screens.discard(inbox)
                if not screens:
                    self._screens.pop(name, None)

    def open_streams(self) -> int:
        with self._lock:
            return len(self._by_token)

    def _take_place(self, owner: str, token: str) -> None:
        """Count the stream among its owner's (in Redis: they may be in several
        processes) and replace the oldest beyond ``per_owner``, wherever it is."""
        key = _owner_key(owner)
        beyond = -(self.per_owner + 1)
        pipe = self.redis.pipeline()  # MULTI/EXEC: two screens opening at once count right
        pipe.zadd(key, {token: time.time()})
        pipe.zrange(key, 0, beyond)
        pipe.zremrangebyrank(key, 0, beyond)
        pipe.expire(key, OWNERS_TTL_S)
        _, oldest, _, _ = pipe.execute()
        for old in oldest:
            self.redis.publish(CONTROL, old)

    def _leave(self, owner: str, token: str) -> None:
        try:
            self.redis.zrem(_owner_key(owner), token)
        except redis.RedisError:  # the entry expires, or the owner's next screen drops it
            log.debug("could not forget a closed feed", exc_info=True)

    def _ensure_reader(self) -> None:
        """One reader per process (started by the first screen: a forked gunicorn
        worker starts its own)."""
        pid = os.getpid()
        if self._reader_pid == pid:
            return
        self._reader_pid = pid
        self._subscribed.clear()
        self._reader = threading.Thread(target=self._read, name="feed-reader", daemon=True)
        self._reader.start()

    def close(self) -> None:
        """End the subscription (the runtime closes): open streams end. The reader stops
        and closes its connection itself. Closed from this thread instead, its blocked
        read failed, redis-py connected again at once (it does on any failed read), and
        that new socket was left open for the garbage collector to find."""
        self._stopping.set()
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout=2 * WAKE_S + 1)

    def _read(self) -> None:
        pubsub = self.redis.pubsub()  # type: ignore[no-untyped-call, unused-ignore]
        try:
            pubsub.psubscribe(PATTERN, CONTROL)
            batch: dict[str, list[str]] = {}  # by channel, the changes not delivered yet
            due = 0.0
            while not self._stopping.is_set():
                wait = max(0.0, due - time.monotonic()) if batch else WAKE_S
                message = pubsub.get_message(timeout=wait)  # at once when one comes
                kind = message["type"] if message is not None else ""
                if kind == "psubscribe" and as_text(message["channel"]) == PATTERN:
                    if self._subscribed.is_set():  # redis-py reconnected: a gap
                        self._close_streams()
                    self._subscribed.set()
                elif kind == "pmessage" and as_text(message["pattern"]) == CONTROL:
                    self._replace(as_text(message["data"]))
                elif kind == "pmessage":
                    if not batch:
                        due = time.monotonic() + self.batch_s
                    name = as_text(message["channel"])
                    batch.setdefault(name, []).append(as_text(message["data"]))
                if batch and (message is None or time.monotonic() >= due):
                    for name, changes in batch.items():
                        self._deliver(name, tuple(changes))
                    batch = {}
        except Exception as exc:  # the next screen starts a new reader
            log.warning("live feed subscription lost (%s): screens reconnect", exc)
        finally:
            with self._lock:
                self._reader_pid = None
                self._subscribed.clear()
            self._close_streams()
            try:
                pubsub.close()
            except Exception:
                log.debug("feed pubsub already closed", exc_info=True)

    def _close_streams(self) -> None:
        """Changes may have been missed: every open stream ends, and its browser
        reconnects and resynchronizes."""
        with self._lock:
            everyone = [inbox for screens in self._screens.values() for inbox in screens]
        for inbox in everyone:
            inbox.put(CLOSED)

    def _replace(self, token: str) -> None:
        """A newer screen of the same owner took this stream's place: it ends."""
        with self._lock:
            inbox = self._by_token.get(token)
        if inbox is not None:
            inbox.put(REPLACED)

    def _deliver(self, name: str, changes: tuple[str, ...]) -> None:
        with self._lock:
            screens = list(self._screens.get(name, ()))
        for inbox in screens:
            inbox.put(changes)


def _owner_key(owner: str) -> str:
    return f"ip:feeds:{owner}"
