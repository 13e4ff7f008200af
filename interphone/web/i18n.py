"""The screens' language: French by default, English available (Flask-Babel).

Templates and handlers write their text in French inside ``_()``; the English catalogue
(``translations/en/LC_MESSAGES/messages.po``) translates it. The language is the one the
person picked (kept in their session), else the best match of the browser's
``Accept-Language`` among the interface's languages, else French. Update the catalogue
with ``make translations`` after changing a text.
"""

from __future__ import annotations

from flask import Blueprint, Flask, redirect, request, session
from flask.typing import ResponseReturnValue
from flask_babel import Babel, gettext
from flask_babel import lazy_gettext as _l

from ..queue.exceptions import Conflict, QueueError
from .redirects import local_path

LANGUAGES = {"fr": "Français", "en": "English"}
DEFAULT = "fr"
SESSION_KEY = "ui_lang"

bp = Blueprint("i18n", __name__)

CHANNEL_LABELS = {
    "phone": _l("téléphone"),
    "intercom": _l("interphone"),
    "browser": _l("navigateur"),
}
STATE_LABELS = {
    "available": _l("disponible"),
    "paused": _l("en pause"),
    "offline": _l("hors ligne"),
    "offered": _l("proposition en cours"),
    "on_call": _l("en communication"),
    "wrap_up": _l("après-appel"),
}
LISTEN_LABELS = {  # what a supervisor listening in is doing (interphone.voice.supervise)
    "monitor": _l("Vous écoutez (micro coupé)."),
    "coach": _l("Vous conseillez l'agent : lui seul vous entend."),
    "barge": _l("Vous intervenez : l'agent et l'appelant vous entendent."),
}
CASE_STATUS_LABELS = {
    "filed": _l("déposé"),
    "incomplete": _l("incomplet"),
    "under_review": _l("en instruction"),
    "api_issued": _l("API délivrée"),
    "favourable": _l("avis favorable"),
    "card_in_production": _l("titre en fabrication"),
    "card_ready": _l("titre prêt"),
    "refused": _l("refusé"),
    "closed": _l("clos"),
}
# the queue's refusals, by the reason its Redis scripts give
CONFLICTS = {
    "NO_OFFER": _l("Cette proposition n'est plus ouverte (délai dépassé ou reprise)."),
    "NOT_ON_CALL": _l("Cet agent n'est pas en communication avec ce contact."),
    "ON_CALL": _l("L'agent est en communication : terminez d'abord l'appel."),
    "OUTCOME_DUE": _l("L'appel est terminé : indiquez d'abord son résultat."),
    "OTHER_LEG": _l("L'agent est encore en ligne sur un autre appel."),
    "NO_TRANSFER": _l("Aucun transfert de cet appel n'est en cours."),
    "NOT_WAITING": _l("Ce contact n'attend plus dans la file."),
    "OTHER_SITE": _l("Cet agent travaille pour un autre site."),
    "AGENT_NOT_FREE": _l("Cet agent n'est pas disponible."),
    "UNKNOWN": _l("Contact inconnu."),
    # a supervisor listening in (interphone.voice.supervise)
    "AGENT_NOT_ON_CALL": _l("Cet agent n'est pas en communication : rien à écouter."),
    "NO_HANDSET": _l(
        "Aucun téléphone n'est enregistré sur votre compte : demandez à un administrateur"
        " d'y ajouter votre numéro."
    ),
    "CALL_ENDED": _l("L'appel s'est terminé entre-temps."),
    "CALL_NOT_STARTED": _l(
        "L'appelant n'a pas encore rejoint l'agent : réessayez dans un instant."
    ),
    "NOT_LISTENING": _l("Vous n'écoutez pas l'appel de cet agent."),
    "OWN_CALL": _l("Vous ne pouvez pas écouter votre propre appel."),
    "SUPERVISOR_IN_QUEUE": _l(
        "Vous recevez des appels de la file : mettez-vous en pause pour écouter un appel."
    ),
    "TELEPHONY_UNAVAILABLE": _l(
        "Le service téléphonique ne répond pas : réessayez dans un instant."
    ),
}
# the queue's refusals of what a form sent, by the reason they give
INVALID = {
    "TRANSFER_NOTE": _l(
        "Retour en file : écrivez une note pour l'agent suivant (500 caractères au plus)."
    ),
    "CANCEL_REASON": _l(
        "Annulation : choisissez un motif de la liste, et précisez « Autre motif » "
        "(200 caractères au plus)."
    ),
    "UNKNOWN_MODE": _l("Mode d'écoute inconnu."),  # a supervisor listening in
}


def queue_error_text(exc: QueueError) -> str:
    """A queue refusal in the interface's language (its English message otherwise)."""
    texts = CONFLICTS if isinstance(exc, Conflict) else INVALID
    known = texts.get(str(exc.details.get("reason", "")))
    return exc.message if known is None else str(known)


def duration(seconds: int | None) -> str:
    """A time in a state, as a supervisor reads it in the interface's language: "45 s",
    "12 min", "1 h 05 min", "2 j 3 h"; "—" when unknown."""
    if seconds is None:
        return "—"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 60:
        return str(gettext("%(seconds)s s", seconds=seconds))
    if seconds < 3600:
        return str(gettext("%(minutes)s min", minutes=minutes))
    if seconds < 86400:
        text = gettext("%(hours)s h %(minutes)s min", hours=hours, minutes=f"{minutes % 60:02d}")
        return str(text)
    return str(gettext("%(days)s j %(hours)s h", days=days, hours=hours % 24))


def select_locale() -> str:
    chosen = session.get(SESSION_KEY)
    if chosen in LANGUAGES:
        return str(chosen)
    return request.accept_languages.best_match(list(LANGUAGES), default=DEFAULT) or DEFAULT


def init_app(app: Flask) -> None:
    Babel(app, locale_selector=select_locale, default_locale=DEFAULT)
    app.jinja_env.globals["ui_languages"] = LANGUAGES
    app.jinja_env.globals["ui_lang"] = select_locale
    app.jinja_env.globals["channel_labels"] = CHANNEL_LABELS
    app.jinja_env.globals["state_labels"] = STATE_LABELS
    app.jinja_env.globals["listen_labels"] = LISTEN_LABELS
    app.jinja_env.globals["case_status_labels"] = CASE_STATUS_LABELS
    app.jinja_env.filters["duration"] = duration
    app.register_blueprint(bp)


@bp.post("/lang")
def choose_language() -> ResponseReturnValue:
    """Switch the interface language (a form in every page's header, CSRF-protected)."""
    lang = request.form.get("lang", "")
    if lang in LANGUAGES:
        session[SESSION_KEY] = lang
    return redirect(local_path(request.form.get("next")) or "/", code=303)
