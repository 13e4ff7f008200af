"""``interphone bench load``: simulated callers and agent screens against the real stack.

A bounded load generator of the project's own, on loopback only. Simulated callers ring
the phone line as Twilio would (signed webhooks, the parameters Twilio sends) and go
through the IVR by following the TwiML they get back: each answer's ``<Gather action>``
is where the caller's next key press goes, so the sequence numbers, the hold loop and
the hang-ups are the server's own. The mix is a Monday morning's: status lookups with a
file number and a birth date of demo cases (some mistyped, on unknown file numbers, since
failed birth dates are limited per file), callback requests, callers
waiting in the live queue (the hold loop polled, some pressing ``*`` to be called back),
callers who leave at the menu, and Twilio's final status callback for every call.

Calls start at fixed times (open loop across calls: a slow server cannot slow their
arrival down), and a caller presses a key about once a second after each answer. The
first ``warmup`` seconds are not measured; requests due in the ``seconds`` after are.

Meanwhile ``screens`` agent screens (distinct signed-in agents, in a child process so
that the measuring clients do not share one interpreter lock with them) hold the live
feed (``/agent/feed``, Server-Sent Events) open. The feed latency is, for every contact
a measured webhook created and every screen, the time from the moment the caller's key
press was sent to the moment that screen received the ``contact.created`` event.

The server is the Procfile's: its ``web`` line (gunicorn gthread, its workers and
threads) and its ``worker`` line (an RQ worker with the scheduler, which runs the sweep
that moves the IVR's journal into SQL), on the configured Redis and database, with the
dev phone plugged in where no Twilio account is configured
(:func:`interphone.devtools.harness.procfile_stack`).

Modules: :mod:`.callers` (the calls and the clients that send them), :mod:`.client`
(the callers' raw HTTP/1.1 keep-alive client), :mod:`.screens` (the agent screens),
:mod:`.figures`, :mod:`.runner` (the whole run).
"""

from .callers import MIX, Caller, Callers, LoadResult, Press, Sample, plan_calls, route_kind
from .client import KeepAliveClient, UnreadableAnswer
from .figures import HostProbe, feed_figures, figures, host_figures
from .runner import prepare, run

__all__ = [
    "MIX",
    "Caller",
    "Callers",
    "HostProbe",
    "KeepAliveClient",
    "LoadResult",
    "Press",
    "Sample",
    "UnreadableAnswer",
    "feed_figures",
    "figures",
    "host_figures",
    "plan_calls",
    "prepare",
    "route_kind",
    "run",
]
