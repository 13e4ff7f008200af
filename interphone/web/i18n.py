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
from flask_babel import Babel

LANGUAGES = {"fr": "Français", "en": "English"}
DEFAULT = "fr"
SESSION_KEY = "ui_lang"

bp = Blueprint("i18n", __name__)


def select_locale() -> str:
    chosen = session.get(SESSION_KEY)
    if chosen in LANGUAGES:
        return str(chosen)
    return request.accept_languages.best_match(list(LANGUAGES), default=DEFAULT) or DEFAULT


def init_app(app: Flask) -> None:
    Babel(app, locale_selector=select_locale, default_locale=DEFAULT)
    app.jinja_env.globals["ui_languages"] = LANGUAGES
    app.jinja_env.globals["ui_lang"] = select_locale
    app.register_blueprint(bp)


@bp.post("/lang")
def choose_language() -> ResponseReturnValue:
    """Switch the interface language (a form in every page's header, CSRF-protected)."""
    lang = request.form.get("lang", "")
    if lang in LANGUAGES:
        session[SESSION_KEY] = lang
    target = request.form.get("next", "")
    # only a local path: never an open redirect
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        target = "/"
    return redirect(target, code=303)
