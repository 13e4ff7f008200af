"""Agents, supervisors and admins: creation, password checks (argon2) and the end of
their sessions, and what an admin does with accounts (create, edit, reset a password,
deactivate, reactivate).

:func:`add_user` serves the command line (English messages); the admin functions raise
:class:`AccountError` with French messages (see :class:`interphone.sites.FormError`) and
write every change to the audit log, without passwords or phone numbers.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import secrets
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from . import events, prompts
from .db import transaction
from .models import ROLES, Agent, Site
from .privacy import InvalidPhoneNumber, to_e164
from .queue.exceptions import Conflict
from .sites import N_, FormError

if TYPE_CHECKING:
    from .queue.service import QueueService

EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,190}\.[A-Za-z]{2,}")
MIN_PASSWORD = 10
_hasher = PasswordHasher()


class AccountError(FormError):
    pass


def add_user(
    sessions: sessionmaker[Session],
    email: str,
    password: str,
    *,
    role: str = "agent",
    name: str | None = None,
    site_code: str,
    languages: list[str] | None = None,
    phone: str | None = None,
    region: str = "FR",
) -> Agent:
    email = email.strip().lower()
    if not EMAIL.fullmatch(email):
        raise AccountError(f"{email!r} is not an e-mail address")
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"password must have at least {MIN_PASSWORD} characters")
    langs = [code.strip().lower() for code in (languages or ["fr"]) if code.strip()]
    if not langs or any(not code.isalpha() or len(code) > 8 for code in langs):
        raise AccountError("languages: short codes such as fr,en,ar")
    try:
        number = to_e164(phone, region) if phone else None
    except InvalidPhoneNumber as exc:
        raise AccountError(f"phone: {exc}") from None
    with transaction(sessions) as s:
        site = s.scalar(select(Site).where(Site.code == site_code))
        if site is None:
            raise AccountError(f"unknown site {site_code!r}")
        if s.scalar(select(Agent.id).where(Agent.email == email)) is not None:
            raise AccountError(f"{email} already exists")
        agent = Agent(
            name=name or email.split("@")[0],
            email=email,
            password_hash=_hasher.hash(password),
            role=role,
            languages=langs,
            phone=number,
            client_identity=f"agent-{email.split('@')[0]}",
            site_id=site.id,
        )
        s.add(agent)
    return agent


def verify_password(agent: Agent | None, password: str) -> bool:
    """Whether ``password`` is ``agent``'s. For no agent, the same work against a dummy
    hash (same algorithm and cost), then False: refusing an unknown address takes as
    long as refusing a wrong password, so the time says nothing about who has an
    account."""
    hashed = agent.password_hash if agent is not None else _dummy_hash()
    try:
        matches = _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False
    return matches and agent is not None


@functools.cache
def _dummy_hash() -> str:
    """A hash of a random password, made at the first sign-in of an unknown address."""
    return _hasher.hash(secrets.token_urlsafe(32))


def end_sessions(sessions: sessionmaker[Session], agent_id: int) -> None:
    """Every session of this account ends, every copy of its cookie included: a session
    holds the account's ``session_version`` of its sign-in, which this moves on. Recorded
    as ``user.signed_out`` (the agent log's)."""
    with transaction(sessions) as s:
        s.execute(
            update(Agent)
            .where(Agent.id == agent_id)
            .values(session_version=Agent.session_version + 1)
        )
        site_id = s.scalar(select(Agent.site_id).where(Agent.id == agent_id))
        if site_id is not None:
            events.record(
                s, "user.signed_out", site_id=site_id, agent_id=agent_id, actor=f"agent:{agent_id}"
            )


# -- administration ---------------------------------------------------------------------
MAX_PASSWORD = 200  # the sign-in form reads no more
MAX_NAME = 200
CLIENT_IDENTITY = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclasses.dataclass(frozen=True)
class AgentInput:
    """An account as an admin types it, before validation (languages: ``fr, en``)."""

    name: str = ""
    email: str = ""
    role: str = "agent"
    site_code: str = ""
    languages: str = "fr"
    phone: str = ""
    client_identity: str = ""

    @classmethod
    def of(cls, agent: Agent, site_code: str) -> AgentInput:
        return cls(
            name=agent.name,
            email=agent.email,
            role=agent.role,
            site_code=site_code,
            languages=", ".join(agent.languages or []),
            phone=agent.phone or "",
            client_identity=agent.client_identity or "",
        )


def list_agents(sessions: sessionmaker[Session]) -> list[Agent]:
    """Every account, active ones first, by name."""
    with sessions() as s:
        return list(s.scalars(select(Agent).order_by(Agent.active.desc(), Agent.name)))


def get_agent(sessions: sessionmaker[Session], agent_id: int) -> Agent | None:
    with sessions() as s:
        return s.get(Agent, agent_id)


def create_agent(
    sessions: sessionmaker[Session],
    data: AgentInput,
    password: str,
    *,
    actor: str,
    region: str = "FR",
) -> Agent:
    """A new account; audited as ``admin.agent_created``."""
    _check_password(password)
    with transaction(sessions) as s:
        values = _agent_values(s, data, region=region, agent=None)
        agent = Agent(password_hash=_hasher.hash(password), **values)
        s.add(agent)
        _flush(s, values["email"])
        events.record(
            s,
            "admin.agent_created",
            site_id=agent.site_id,
            agent_id=agent.id,
            actor=actor,
            data={"role": agent.role, "languages": agent.languages},
        )
    return agent


def update_agent(
    sessions: sessionmaker[Session],
    queue: QueueService,
    agent_id: int,
    data: AgentInput,
    *,
    actor: str,
    region: str = "FR",
) -> list[str]:
    """Save an admin's changes to an account; the names of the fields that changed.

    An agent moved to another site or given other languages is taken offline first: the
    queue knows them by site and languages from their last presence change. Audited as
    ``admin.agent_updated`` with the field names only.
    """
    with sessions() as s:
        agent = _existing(s, agent_id)
        values = _agent_values(s, data, region=region, agent=agent)
    changed = [key for key, value in values.items() if getattr(agent, key) != value]
    if agent.email == actor and values["role"] != "admin":
        raise AccountError(
            N_("Rôle : vous ne pouvez pas retirer votre propre rôle d'administrateur."),
            field="role",
        )
    if not changed:
        return []
    if {"site_id", "languages"} & set(changed) and agent.active:
        _take_offline(queue, agent_id, actor, only_if_present=True)
    with transaction(sessions) as s:
        agent = _existing(s, agent_id)
        for key in changed:
            setattr(agent, key, values[key])
        _flush(s, values["email"])
        events.record(
            s,
            "admin.agent_updated",
            site_id=agent.site_id,
            agent_id=agent.id,
            actor=actor,
            data={"changed": changed},
        )
    return changed


def reset_password(
    sessions: sessionmaker[Session], agent_id: int, password: str, *, actor: str
) -> None:
    """Replace an account's password (typed by the admin) and end its open sessions;
    audited as ``admin.password_reset``, without the password."""
    _check_password(password)
    with transaction(sessions) as s:
        agent = _existing(s, agent_id)
        agent.password_hash = _hasher.hash(password)
        agent.session_version += 1  # signed in with the old password: signed out
        events.record(
            s,
            "admin.password_reset",
            site_id=agent.site_id,
            agent_id=agent.id,
            actor=actor,
            data={},
        )


def deactivate_agent(
    sessions: sessionmaker[Session], queue: QueueService, agent_id: int, *, actor: str
) -> None:
    """The account can no longer sign in (open sessions end) and leaves the queue.

    Refused while the agent is on a call, and for the admin's own account. Audited as
    ``admin.agent_deactivated``.
    """
    with sessions() as s:
        agent = _existing(s, agent_id)
    if agent.email == actor:
        raise AccountError(N_("Vous ne pouvez pas désactiver votre propre compte."))
    if not agent.active:
        return
    _take_offline(queue, agent_id, actor)
    with transaction(sessions) as s:
        agent = _existing(s, agent_id)
        agent.active = False
        agent.session_version += 1  # so that a reactivation revives no old session
        events.record(
            s,
            "admin.agent_deactivated",
            site_id=agent.site_id,
            agent_id=agent.id,
            actor=actor,
            data={},
        )


def reactivate_agent(sessions: sessionmaker[Session], agent_id: int, *, actor: str) -> None:
    """The account may sign in again (it starts offline); audited as
    ``admin.agent_reactivated``."""
    with transaction(sessions) as s:
        agent = _existing(s, agent_id)
        if agent.active:
            return
        agent.active = True
        events.record(
            s,
            "admin.agent_reactivated",
            site_id=agent.site_id,
            agent_id=agent.id,
            actor=actor,
            data={},
        )


def _existing(s: Session, agent_id: int) -> Agent:
    agent = s.get(Agent, agent_id)
    if agent is None:
        raise AccountError(N_("Compte inconnu."))
    return agent


def _take_offline(
    queue: QueueService, agent_id: int, actor: str, *, only_if_present: bool = False
) -> None:
    """Offline in the queue (an offer in hand goes back to its place); not during a call."""
    if only_if_present and queue.store.agent(agent_id).get("state", "offline") == "offline":
        return
    try:
        queue.set_presence(agent_id, "offline", actor=actor[:64])
    except Conflict:
        raise AccountError(
            N_("Cet agent est en communication : réessayez à la fin de l'appel.")
        ) from None


def _flush(s: Session, email: str) -> None:
    try:
        s.flush()
    except IntegrityError:  # the same address saved a moment ago by someone else
        raise _email_taken(email) from None


def _email_taken(email: str) -> AccountError:
    return AccountError(
        N_("Adresse électronique : %(value)s est déjà celle d'un autre compte."),
        field="email",
        value=email,
    )


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(
            N_("Mot de passe : au moins %(min)s caractères."), field="password", min=MIN_PASSWORD
        )
    if len(password) > MAX_PASSWORD:
        raise AccountError(
            N_("Mot de passe : %(max)s caractères au plus."), field="password", max=MAX_PASSWORD
        )


def _agent_values(
    s: Session, data: AgentInput, *, region: str, agent: Agent | None
) -> dict[str, Any]:
    """Validate an account's fields (``agent``: the one edited, if any): the column values
    to store, or :class:`AccountError`."""
    agent_id = agent.id if agent is not None else None
    name = data.name.strip()
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise AccountError(
            N_("Nom : obligatoire, %(max)s caractères au plus."), field="name", max=MAX_NAME
        )
    email = data.email.strip().lower()
    if len(email) > 254 or not EMAIL.fullmatch(email):
        raise AccountError(
            N_("Adresse électronique : « %(value)s » n'est pas une adresse valide."),
            field="email",
            value=email[:254],
        )
    taken = s.scalar(select(Agent.id).where(Agent.email == email))
    if taken is not None and taken != agent_id:
        raise _email_taken(email)
    if data.role not in ROLES:
        raise AccountError(N_("Rôle : agent, superviseur ou administrateur."), field="role")
    site_id = s.scalar(select(Site.id).where(Site.code == data.site_code))
    if site_id is None:
        raise AccountError(
            N_("Site : « %(value)s » n'existe pas."), field="site_code", value=data.site_code[:40]
        )
    known = prompts.available()
    languages = list(dict.fromkeys(c.lower() for c in re.split(r"[,;\s]+", data.languages) if c))
    if not languages or any(code not in known for code in languages):
        raise AccountError(
            N_("Langues : une ou plusieurs langues parmi %(known)s, séparées par des virgules."),
            field="languages",
            known=", ".join(known),
        )
    phone = None
    if data.phone.strip():
        try:
            phone = to_e164(data.phone, region)
        except InvalidPhoneNumber:
            raise AccountError(
                N_(
                    "Téléphone : ce numéro n'est pas valide (par exemple 06 12 34 56 78 "
                    "ou +33 6 12 34 56 78)."
                ),
                field="phone",
            ) from None
    identity = data.client_identity.strip()
    if not identity:  # the browser softphone is always reachable
        identity = "agent-" + re.sub(r"[^A-Za-z0-9._-]", "-", email.split("@")[0])[:58]
    elif not CLIENT_IDENTITY.fullmatch(identity):
        raise AccountError(
            N_(
                "Identité navigateur : lettres, chiffres, points, tirets et soulignés, "
                "64 caractères au plus."
            ),
            field="client_identity",
        )
    other = s.scalar(
        select(Agent.id).where(Agent.client_identity == identity, Agent.id != (agent_id or 0))
    )
    if other is not None and (agent is None or identity != agent.client_identity):
        raise AccountError(
            N_("Identité navigateur : « %(value)s » est déjà celle d'un autre compte."),
            field="client_identity",
            value=identity,
        )
    return {
        "name": name,
        "email": email,
        "role": data.role,
        "site_id": site_id,
        "languages": languages,
        "phone": phone,
        "client_identity": identity,
    }
