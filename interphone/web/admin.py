"""Administration (admin role only): sites, accounts, case data import, the sites'
own wording of the IVR's prompts.

Handlers parse the form, call a service (:mod:`interphone.sites`,
:mod:`interphone.accounts`, :mod:`interphone.cases`), then flash and redirect, or show
the form again with the error. The services check the values and write the audit log.
"""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import NotFound, RequestEntityTooLarge

from ..accounts import (
    MIN_PASSWORD,
    AgentInput,
    create_agent,
    deactivate_agent,
    get_agent,
    list_agents,
    reactivate_agent,
    reset_password,
    update_agent,
)
from ..cases import (
    REQUIRED,
    CaseDataError,
    EmptyFile,
    ImportReport,
    NotUtf8,
    import_records,
    read_upload,
)
from ..hours import DAYS
from ..models import ROLES
from ..prompt_overrides import (
    PromptNotFound,
    PromptTextError,
    history,
    languages_of,
    prompt_row,
    prompt_rows,
    reset_prompt,
    set_prompt,
    site_in_scope,
)
from ..prompts import available, catalogue, examples
from ..sites import (
    FormError,
    Label,
    SiteInput,
    create_site,
    get_site,
    holiday_regions,
    list_sites,
    update_site,
)
from .auth import role_required
from .context import runtime_of
from .walls import current_scope

bp = Blueprint("admin", __name__, url_prefix="/admin")
MAX_REJECTED_SHOWN = 500


def _actor() -> str:
    """The signed-in admin's e-mail address: the actor of the audit log."""
    admin = get_agent(runtime_of(current_app).sessions, int(current_user.agent_id))
    if admin is None:
        abort(403)
    return admin.email


def _audit() -> dict[str, str]:
    """What a service records of a change made here: who, and the phone numbers' region."""
    return {"actor": _actor(), "region": runtime_of(current_app).settings.default_region}


def _message(error: FormError) -> str:
    """The error's French message in the interface language."""
    params = {k: _(v) if isinstance(v, Label) else v for k, v in error.params.items()}
    return str(_(error.message, **params))


# -- overview ---------------------------------------------------------------------------
@bp.get("")
@role_required("admin")
def overview() -> Any:
    sessions = runtime_of(current_app).sessions
    sites = list_sites(sessions)
    return render_template(
        "admin.html",
        sites=sites,
        site_names={site.id: site.name for site in sites},
        agents=list_agents(sessions),
    )


# -- sites ------------------------------------------------------------------------------
def _site_input(form: MultiDict[str, str]) -> SiteInput:
    return SiteInput(
        name=form.get("name", ""),
        timezone=form.get("timezone", ""),
        holiday_region=form.get("holiday_region", ""),
        languages=form.get("languages", ""),
        phone_numbers=form.get("phone_numbers", ""),
        intercom_identities=form.get("intercom_identities", ""),
        opening_hours={day: form.get(f"opening-{day}", "") for day in DAYS},
        callback_hours={day: form.get(f"callback-{day}", "") for day in DAYS},
        extra_closures=form.get("extra_closures", ""),
    )


def _site_page(data: SiteInput, *, code: str, new: bool, error: FormError | None = None) -> str:
    return render_template(
        "admin_site.html",
        data=data,
        code=code,
        new=new,
        days=DAYS,
        regions=holiday_regions(),
        known_languages=available(),
        error=_message(error) if error else None,
        error_field=error.field if error else None,
    )


@bp.route("/sites/new", methods=["GET", "POST"])
@role_required("admin")
def site_new() -> Any:
    if request.method == "GET":
        return _site_page(SiteInput.new(), code="", new=True)
    data, code = _site_input(request.form), request.form.get("code", "")
    try:
        site = create_site(runtime_of(current_app).sessions, code, data, **_audit())
    except FormError as exc:
        return _site_page(data, code=code, new=True, error=exc), 400
    flash(_("Site « %(name)s » créé.", name=site.name))
    return redirect(url_for("admin.site_edit", code=site.code), code=303)


@bp.route("/sites/<code>", methods=["GET", "POST"])
@role_required("admin")
def site_edit(code: str) -> Any:
    site = get_site(runtime_of(current_app).sessions, code)
    if site is None:
        abort(404)
    if request.method == "GET":
        return _site_page(SiteInput.of(site), code=site.code, new=False)
    data = _site_input(request.form)
    try:
        changed = update_site(runtime_of(current_app).sessions, site.code, data, **_audit())
    except FormError as exc:
        return _site_page(data, code=site.code, new=False, error=exc), 400
    flash(_("Site enregistré.") if changed else _("Aucune modification."))
    return redirect(url_for("admin.site_edit", code=site.code), code=303)


# -- accounts ---------------------------------------------------------------------------
def _agent_input(form: MultiDict[str, str]) -> AgentInput:
    return AgentInput(
        name=form.get("name", ""),
        email=form.get("email", ""),
        role=form.get("role", ""),
        site_code=form.get("site_code", ""),
        languages=form.get("languages", ""),
        phone=form.get("phone", ""),
        client_identity=form.get("client_identity", ""),
    )


def _agent_page(data: AgentInput, *, agent_id: int | None, error: FormError | None = None) -> str:
    rt = runtime_of(current_app)
    agent = get_agent(rt.sessions, agent_id) if agent_id is not None else None
    presence = rt.store.agent(agent_id).get("state", "offline") if agent_id else "offline"
    return render_template(
        "admin_agent.html",
        data=data,
        agent=agent,
        presence=presence,
        sites=list_sites(rt.sessions),
        roles=ROLES,
        min_password=MIN_PASSWORD,
        known_languages=available(),
        error=_message(error) if error else None,
        error_field=error.field if error else None,
    )


def _existing_agent(agent_id: int) -> AgentInput:
    """The account's current values, or 404."""
    rt = runtime_of(current_app)
    agent = get_agent(rt.sessions, agent_id)
    if agent is None:
        abort(404)
    site_codes = {site.id: site.code for site in list_sites(rt.sessions)}
    return AgentInput.of(agent, site_codes.get(agent.site_id, ""))


@bp.route("/agents/new", methods=["GET", "POST"])
@role_required("admin")
def agent_new() -> Any:
    rt = runtime_of(current_app)
    if request.method == "GET":
        first = next(iter(list_sites(rt.sessions)), None)
        return _agent_page(AgentInput(site_code=first.code if first else ""), agent_id=None)
    data = _agent_input(request.form)
    try:
        agent = create_agent(rt.sessions, data, request.form.get("password", ""), **_audit())
    except FormError as exc:
        return _agent_page(data, agent_id=None, error=exc), 400
    flash(_("Compte de %(name)s créé.", name=agent.name))
    return redirect(url_for("admin.agent_edit", agent_id=agent.id), code=303)


@bp.route("/agents/<int:agent_id>", methods=["GET", "POST"])
@role_required("admin")
def agent_edit(agent_id: int) -> Any:
    current = _existing_agent(agent_id)
    if request.method == "GET":
        return _agent_page(current, agent_id=agent_id)
    rt = runtime_of(current_app)
    data = _agent_input(request.form)
    try:
        changed = update_agent(rt.sessions, rt.queue, agent_id, data, **_audit())
    except FormError as exc:
        return _agent_page(data, agent_id=agent_id, error=exc), 400
    flash(_("Compte enregistré.") if changed else _("Aucune modification."))
    return redirect(url_for("admin.agent_edit", agent_id=agent_id), code=303)


@bp.post("/agents/<int:agent_id>/password")
@role_required("admin")
def agent_password(agent_id: int) -> Any:
    current = _existing_agent(agent_id)
    try:
        reset_password(
            runtime_of(current_app).sessions,
            agent_id,
            request.form.get("password", ""),
            actor=_actor(),
        )
    except FormError as exc:
        return _agent_page(current, agent_id=agent_id, error=exc), 400
    flash(_("Mot de passe remplacé. Communiquez-le à la personne par un canal sûr."))
    return redirect(url_for("admin.agent_edit", agent_id=agent_id), code=303)


@bp.post("/agents/<int:agent_id>/deactivate")
@role_required("admin")
def agent_deactivate(agent_id: int) -> Any:
    current = _existing_agent(agent_id)
    rt = runtime_of(current_app)
    try:
        deactivate_agent(rt.sessions, rt.queue, agent_id, actor=_actor())
    except FormError as exc:
        return _agent_page(current, agent_id=agent_id, error=exc), 400
    flash(_("Compte désactivé : il ne peut plus se connecter et il est hors ligne."))
    return redirect(url_for("admin.agent_edit", agent_id=agent_id), code=303)


@bp.post("/agents/<int:agent_id>/reactivate")
@role_required("admin")
def agent_reactivate(agent_id: int) -> Any:
    _existing_agent(agent_id)
    reactivate_agent(runtime_of(current_app).sessions, agent_id, actor=_actor())
    flash(_("Compte réactivé."))
    return redirect(url_for("admin.agent_edit", agent_id=agent_id), code=303)


# -- case data --------------------------------------------------------------------------
def _import_page(
    *, report: ImportReport | None = None, error: str | None = None, status: int = 200
) -> tuple[str, int]:
    rejected = report.rejected if report else []
    return render_template(
        "admin_import.html",
        columns=REQUIRED,
        report=report,
        rejected=[(line, _shown_reason(reason)) for line, reason in rejected][:MAX_REJECTED_SHOWN],
        hidden=max(0, len(rejected) - MAX_REJECTED_SHOWN),
        error=error,
        max_mb=current_app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024),
    ), status


def _shown_reason(reason: str) -> str:
    """Why a line was refused, never with the birth date it held."""
    if reason.startswith("birth_date"):
        return str(_("birth_date : date absente, invalide ou invraisemblable (AAAA-MM-JJ)."))
    return reason


@bp.route("/cases/import", methods=["GET", "POST"])
@role_required("admin")
def cases_import() -> Any:
    if request.method == "GET":
        return _import_page()
    rt = runtime_of(current_app)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _import_page(error=_("Choisissez un fichier CSV à importer."), status=400)
    records, report = read_upload(upload.read(), region=rt.settings.default_region)
    import_records(rt.sessions, records, rt.settings.birthdate_key, report, actor=_actor())
    return _import_page(report=report)


@bp.errorhandler(CaseDataError)
def import_refused(exc: CaseDataError) -> Any:
    """A file refused whole: nothing was imported, and the page says why."""
    if isinstance(exc, EmptyFile):
        return _import_page(error=_("Le fichier est vide."), status=400)
    if isinstance(exc, NotUtf8):
        message = _(
            "Le fichier n'est pas encodé en UTF-8. Dans le tableur, enregistrez-le au "
            "format « CSV UTF-8 », puis importez-le de nouveau. Rien n'a été importé."
        )
        return _import_page(error=message, status=400)
    message = _("Fichier refusé, rien n'a été importé : %(reason)s", reason=str(exc))
    return _import_page(error=message, status=400)


# -- journal ----------------------------------------------------------------------------
@bp.get("/journal")
@role_required("admin")
def journal() -> Any:
    """Call records set aside for their own data (numbers masked), until an admin fixes
    their cause and runs ``interphone journal replay``."""
    rt = runtime_of(current_app)
    return render_template(
        "admin_journal.html",
        entries=[entry.summary() for entry in rt.journal.set_aside(MAX_REJECTED_SHOWN)],
        total=rt.journal.rejected(),
        pending=rt.journal.pending(),
    )


@bp.errorhandler(RequestEntityTooLarge)
def too_large(exc: RequestEntityTooLarge) -> Any:
    if request.endpoint != "admin.cases_import":
        return exc
    mb = current_app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024)
    message = _(
        "Le fichier dépasse %(mb)s Mo : découpez-le en plusieurs fichiers. Rien n'a été importé.",
        mb=mb,
    )
    return _import_page(error=message, status=413)


# -- the sites' own prompts -------------------------------------------------------------
@bp.get("/sites/<code>/prompts")
@role_required("admin")
def prompts(code: str) -> Any:
    """Every prompt of the site (a language, a search), its default and its own text."""
    rt, scope = runtime_of(current_app), current_scope()
    site = site_in_scope(rt.sessions, scope, code)
    lang, query = request.args.get("lang", "")[:8], request.args.get("q", "")[:100]
    return render_template(
        "admin_prompts.html",
        site=site,
        rows=prompt_rows(rt.sessions, scope, code, language=lang, query=query),
        languages=languages_of(site),
        lang=lang,
        query=query,
        changes=history(rt.sessions, scope, code),
    )


def _prompt_page(
    code: str, lang: str, key: str, *, text: str | None = None, error: FormError | None = None
) -> str:
    rt, scope = runtime_of(current_app), current_scope()
    row = prompt_row(rt.sessions, scope, code, lang, key)
    return render_template(
        "admin_prompt.html",
        site=site_in_scope(rt.sessions, scope, code),
        row=row,
        text=row.text or row.default if text is None else text,
        say_language=catalogue(lang).say_language,
        examples=examples(lang),
        changes=history(rt.sessions, scope, code, language=lang, key=key),
        error=_message(error) if error else None,
        error_field=error.field if error else None,
    )


def _change(code: str, lang: str, key: str) -> dict[str, Any]:
    """Which prompt an admin changes, who they are, and whom to tell once it is saved."""
    rt = runtime_of(current_app)
    return {
        "sessions": rt.sessions,
        "scope": current_scope(),
        "code": code,
        "language": lang,
        "key": key,
        "actor": _actor(),
        "changed": rt.prompt_texts.changed,
    }


@bp.route("/sites/<code>/prompts/<lang>/<key>", methods=["GET", "POST"])
@role_required("admin")
def prompt_edit(code: str, lang: str, key: str) -> Any:
    if request.method == "GET":
        return _prompt_page(code, lang, key)
    text = request.form.get("text", "")[:5000]
    try:
        changed = set_prompt(text=text, **_change(code, lang, key))
    except PromptTextError as exc:
        return _prompt_page(code, lang, key, text=text, error=exc), 400
    flash(
        _("Texte enregistré : le prochain appel l'entendra.")
        if changed
        else _("Aucune modification.")
    )
    return redirect(url_for("admin.prompt_edit", code=code, lang=lang, key=key), code=303)


@bp.post("/sites/<code>/prompts/<lang>/<key>/reset")
@role_required("admin")
def prompt_reset(code: str, lang: str, key: str) -> Any:
    reset = reset_prompt(**_change(code, lang, key))
    flash(_("Texte par défaut rétabli.") if reset else _("Ce texte était déjà celui par défaut."))
    return redirect(url_for("admin.prompt_edit", code=code, lang=lang, key=key), code=303)


@bp.errorhandler(PromptNotFound)
def prompt_not_found(exc: PromptNotFound) -> Any:
    """No such site (or another one's), language or prompt: the same 404."""
    return current_app.handle_http_exception(NotFound(_("Texte inconnu.")))
