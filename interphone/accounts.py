"""Agents, supervisors and admins: creation and password checks (argon2)."""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from .db import transaction
from .models import ROLES, Agent, Site
from .privacy import InvalidPhoneNumber, to_e164

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[A-Za-z]{2,}$")
MIN_PASSWORD = 10
_hasher = PasswordHasher()


class AccountError(ValueError):
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
    if not EMAIL.match(email):
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


def verify_password(agent: Agent, password: str) -> bool:
    try:
        return _hasher.verify(agent.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
