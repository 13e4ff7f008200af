"""Agent screens holding the live feed open, in a child process of their own (so that
the measuring clients do not share one interpreter lock with them)."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection

from ..bench.feed import connect_screens
from ..harness import sign_in

AGENT_PASSWORD = "load-test-password-2026"


def _screens_main(port: int, emails: list[str], pipe: Connection) -> None:
    """Child process: sign the agents in, hold their feeds open, note when each
    ``contact.created`` event arrives (``time.perf_counter``: CLOCK_MONOTONIC, the same
    clock in every process), and send the arrivals back when told to stop."""
    seen: dict[int, list[float]] = {}
    lock = threading.Lock()
    try:
        cookies = [sign_in(port, email, AGENT_PASSWORD) for email in emails]
        screens = connect_screens(port, cookies, seen, lock, timeout_s=60)
    except Exception as exc:  # told to the parent, which stops the run
        pipe.send(("failed", repr(exc)))
        return
    pipe.send(("ready", len(screens)))
    pipe.recv()  # stop
    with lock:
        pipe.send(("seen", {k: list(v) for k, v in seen.items()}))


@contextmanager
def agent_screens(port: int, emails: list[str]) -> Iterator[Callable[[], dict[int, list[float]]]]:
    """Open the screens; yields a function that returns what they received so far."""
    if not emails:
        yield dict
        return
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_screens_main, args=(port, emails, child), daemon=True)
    process.start()
    try:
        if not parent.poll(120):
            raise RuntimeError("the agent screens did not open in time")
        status, detail = parent.recv()
        if status != "ready":
            raise RuntimeError(f"agent screens: {detail}")

        def collect() -> dict[int, list[float]]:
            parent.send("stop")
            _, seen = parent.recv()
            return dict(seen)

        yield collect
    finally:
        process.terminate()
        process.join(timeout=10)
