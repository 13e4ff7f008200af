"""A plain agent page: presence, the offer in hand, the call in progress and its outcome.

Updates arrive live through Server-Sent Events fed by Redis pub/sub (the queue's
notifier); the screen re-renders its panel on each change and after each reconnection.
"""

from __future__ import annotations

import io
import json
import queue
import random
from collections.abc import Iterator
from typing import Any, cast

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    send_file,
    stream_with_context,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from werkzeug.exceptions import NotFound

from ..caller_card import contact_card
from ..digits import row_id
from ..metrics import recorder_for
from ..models import Agent, Site
from ..queue.clock import to_ms
from ..queue.exceptions import QueueError, UnknownAgent, UnknownVoicemail
from ..queue.service import OUTCOMES
from .auth import role_required
from .context import queue_error_response, runtime_of
from .feeds import CLOSED, REPLACED, FeedHub, FeedsBusy
from .i18n import queue_error_text
from .walls import current_scope

KEEP_ALIVE_S = 15.0
BATCHES_PER_WRITE = 16  # a screen further behind gets its changes in several writes
BUSY_RETRY_MS = (5_000, 15_000)  # a feed refused by a full process tries again, spread out

bp = Blueprint("agent", __name__)

# the marks of a caller's path through the IVR (``interphone.voice.reply.trace``)
PATH_LABELS = {
    "language": _l("choix de la langue"),
    "main": _l("menu principal"),
    "status_file": _l("numéro de dossier"),
    "status_birth": _l("date de naissance"),
    "status_mismatch": _l("dossier non reconnu"),
    "file_limit": _l("dossier : essais de date de naissance épuisés"),
    "status_after": _l("situation du dossier entendue"),
    "callback": _l("demande de rappel"),
    "callback_number": _l("numéro de rappel"),
    "callback_file": _l("dossier du rappel"),
    "callback_birth": _l("date de naissance du rappel"),
    "callback_reason": _l("motif du rappel"),
    "callback_registered": _l("rappel enregistré"),
    "queue": _l("mis en attente"),
    "door_language": _l("interphone : choix de la langue"),
    "door_main": _l("interphone : menu"),
    "door_file": _l("interphone : numéro de dossier dit"),
    "door_file_ok": _l("interphone : numéro de dossier relu"),
    "door_birth": _l("interphone : date de naissance dite"),
    "door_birth_ok": _l("interphone : date de naissance relue"),
    "door_after": _l("interphone : situation du dossier entendue"),
    "door_number": _l("interphone : numéro de portable dit"),
    "door_number_ok": _l("interphone : numéro de portable relu"),
    "closed": _l("service fermé"),
    "door_closed": _l("interphone : service fermé"),
    "voicemail": _l("message vocal"),
    "voicemail_left": _l("message laissé"),
}
# who may listen to applicants' messages: the people who call them back
LISTENERS = ("agent", "supervisor")
PAUSE_REASONS = {
    "break": _l("pause"),
    "lunch": _l("repas"),
    "back_office": _l("traitement de dossiers"),
    "training": _l("formation"),
    "meeting": _l("réunion"),
}


def _agent_id() -> int:
    return int(current_user.agent_id)


def _panel_context() -> dict[str, Any]:
    rt = runtime_of(current_app)
    state = rt.store.agent(_agent_id())
    offer = int(state["offer"]) if state.get("offer") else None
    call = int(state["call"]) if state.get("call") else None
    current = offer or call
    contact = rt.queue.ticket(current) if current else None
    deadline = rt.store.contact(offer).get("deadline", "") if offer else ""
    with rt.sessions() as s:
        agent = s.get(Agent, _agent_id())
        site = s.get(Site, agent.site_id) if agent else None
    waiting = rt.queue.list_waiting(site.code, limit=50) if site else []
    return {
        "unattended": rt.voicemail.unattended(site.id, scope=current_scope()) if site else [],
        "can_listen": current_user.role in LISTENERS,
        "card": contact_card(rt.sessions, rt.calls, current) if current else None,
        "path_labels": PATH_LABELS,
        "pause_reasons": PAUSE_REASONS,
        "state": state,
        "offer": offer,
        "call": call,
        "contact": contact,
        "deadline_ms": deadline,
        "now_ms": to_ms(rt.clock.now()),
        "waiting": waiting,
        "outcomes": list(OUTCOMES),
        "transfer_to": rt.queue.transfer_targets(_agent_id()) if call else [],
        "consulting": rt.bridge.consulting(call) if call else None,
    }


@bp.get("/agent")
@login_required
def screen() -> Any:
    return render_template("agent.html", **_panel_context())


@bp.get("/agent/panel")
@login_required
def panel() -> Any:
    """The live part of the screen, fetched again whenever the feed says it changed."""
    return render_template("_agent_panel.html", **_panel_context())


@bp.get("/agent/feed")
@login_required
def feed() -> Response:
    """Server-Sent Events: one message per change on the agent's site.

    The first message (``hello``) tells the screen to resynchronize, which it also does
    after every reconnection, so nothing missed while disconnected stays missed.
    """
    rt = runtime_of(current_app)
    with rt.sessions() as s:
        agent = s.get(Agent, _agent_id())
        site_id = agent.site_id if agent else 0
    return feed_response(site_id)


def feed_response(site_id: int) -> Response:
    """The live feed of a site, as a streamed Server-Sent Events response, counted among
    the signed-in person's feeds (:mod:`interphone.web.feeds`)."""
    rt = runtime_of(current_app)
    seq = rt.notifier.sequence(site_id)
    owner = f"agent:{current_user.agent_id}"
    replaced = _("Cet écran est ouvert dans un onglet plus récent : il ne se met plus à jour ici.")
    return Response(
        stream_with_context(events_stream(rt.feeds, site_id, seq, owner, replaced)),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def events_stream(
    hub: FeedHub, site_id: int, seq: int, owner: str | None = None, replaced: str = ""
) -> Iterator[str]:
    """Server-Sent Events of one site: ``hello`` first, then one ``change`` per event,
    from the process's shared subscription (:mod:`interphone.web.feeds`). A process
    with its share of feeds open answers ``busy`` and a later ``retry`` instead; a stream
    whose owner opened a newer one ends with ``replaced`` and its text for the person
    (the page shows it and stops reconnecting)."""
    try:
        with hub.listen(site_id, owner) as inbox:
            yield f"event: hello\ndata: {json.dumps({'seq': seq})}\n\n"
            while True:
                try:
                    item = inbox.get(timeout=KEEP_ALIVE_S)
                except queue.Empty:
                    yield ": keep-alive\n\n"
                    continue
                batches = [item]  # with those that came meanwhile: one write for them all
                while not _ends(batches[-1]) and len(batches) < BATCHES_PER_WRITE:
                    try:
                        batches.append(inbox.get_nowait())
                    except queue.Empty:
                        break
                changes = "".join(
                    f"event: change\ndata: {change}\n\n"
                    for batch in batches
                    if not _ends(batch)
                    for change in cast(tuple[str, ...], batch)
                )
                if changes:
                    yield changes
                if batches[-1] is REPLACED:
                    recorder_for(hub.redis).inc("interphone_live_feeds_capped", "person")
                    yield f"event: replaced\ndata: {json.dumps({'message': replaced})}\n\n"
                    return
                if batches[-1] is CLOSED:
                    return  # the browser reconnects and resynchronizes on its hello
    except FeedsBusy:
        recorder_for(hub.redis).inc("interphone_live_feeds_capped", "process")
        yield f"retry: {random.randint(*BUSY_RETRY_MS)}\nevent: busy\ndata: {{}}\n\n"


def _ends(item: object) -> bool:
    return item is CLOSED or item is REPLACED


@bp.errorhandler(QueueError)
def refused(exc: QueueError) -> Any:
    """An action refused: shown on the screen. A message of another site, or none, is a
    404; any other refusal outside an action, the app's JSON answer."""
    if isinstance(exc, UnknownVoicemail):
        return current_app.handle_http_exception(NotFound(_("Message inconnu.")))
    if isinstance(exc, UnknownAgent):  # of another site, or none: a transfer's target
        return current_app.handle_http_exception(NotFound(_("Agent inconnu.")))
    if request.method != "POST":
        return queue_error_response(exc)
    flash(queue_error_text(exc))
    return redirect(url_for("agent.screen"))


@bp.post("/agent/presence")
@login_required
def presence() -> Any:
    runtime_of(current_app).queue.set_presence(
        _agent_id(),
        request.form.get("state", ""),
        request.form.get("reason", "")[:64],
        actor=f"agent:{_agent_id()}",
    )
    return redirect(url_for("agent.screen"))


@bp.post("/agent/offer/<int:contact_id>/<any(accept, decline):answer>")
@login_required
def answer_offer(contact_id: int, answer: str) -> Any:
    rt = runtime_of(current_app)
    if answer == "accept":
        rt.bridge.accept(_agent_id(), contact_id)
    else:
        rt.queue.decline(_agent_id(), contact_id)
    return redirect(url_for("agent.screen"))


@bp.post("/agent/call/<int:contact_id>/finish")
@login_required
def finish(contact_id: int) -> Any:
    runtime_of(current_app).queue.finish(
        _agent_id(),
        contact_id,
        request.form.get("outcome", ""),
        request.form.get("note") or None,
    )
    return redirect(url_for("agent.screen"))


@bp.post("/agent/call/<int:contact_id>/hand-back")
@login_required
def hand_back(contact_id: int) -> Any:
    """Back to the queue at the caller's place, with a note for the next agent."""
    runtime_of(current_app).bridge.hand_back(_agent_id(), contact_id, request.form.get("note", ""))
    return redirect(url_for("agent.screen"))


@bp.post("/agent/call/<int:contact_id>/transfer")
@login_required
def transfer(contact_id: int) -> Any:
    """To another available agent of the site: at once (cold), or talking first (warm)."""
    to_agent = row_id(request.form.get("to", ""))
    if to_agent is None:
        abort(404)
    bridge = runtime_of(current_app).bridge
    start = bridge.consult if request.form.get("warm") else bridge.transfer
    start(_agent_id(), contact_id, to_agent, scope=current_scope())
    return redirect(url_for("agent.screen"))


@bp.post("/agent/call/<int:contact_id>/transfer/complete")
@login_required
def transfer_complete(contact_id: int) -> Any:
    """The warm transfer under way completed: the first agent leaves the call."""
    runtime_of(current_app).bridge.complete_transfer(_agent_id(), contact_id)
    return redirect(url_for("agent.screen"))


@bp.post("/agent/call/<int:contact_id>/transfer/cancel")
@login_required
def transfer_cancel(contact_id: int) -> Any:
    """The warm transfer under way cancelled: the receiving agent leaves the call."""
    runtime_of(current_app).bridge.cancel_transfer(_agent_id(), contact_id)
    return redirect(url_for("agent.screen"))


@bp.get("/agent/voicemail/<int:voicemail_id>/audio")
@role_required(*LISTENERS)
def voicemail_audio(voicemail_id: int) -> Any:
    """A message's audio, from our database (never from Twilio), by the message's id."""
    found = runtime_of(current_app).voicemail.audio(voicemail_id, scope=current_scope())
    if found is None:
        abort(404, description=_("Le message n'a pas encore été récupéré."))
    audio, content_type = found
    response = send_file(
        io.BytesIO(audio),
        mimetype=content_type,
        conditional=True,
        download_name=f"message-{voicemail_id}.wav",
        max_age=0,
    )
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.post("/agent/voicemail/<int:voicemail_id>/done")
@role_required(*LISTENERS)
def voicemail_done(voicemail_id: int) -> Any:
    """A message with no number to call back was dealt with: it leaves the list."""
    runtime_of(current_app).voicemail.mark_handled(voicemail_id, _agent_id(), scope=current_scope())
    return redirect(url_for("agent.screen"))
