"""Identifiers are matched whole: ``$`` also matches before a trailing newline, so a
pattern written ``^…$`` and used with ``re.match`` let ``"demo\\n"`` through (a site
code given to ``interphone sites add``). Every identifier pattern uses ``fullmatch``."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from interphone.models import Site
from interphone.runtime import Runtime
from interphone.sites import SiteError, ensure_site


def test_a_site_code_with_a_trailing_newline_creates_no_site(runtime: Runtime) -> None:
    sessions: sessionmaker[Session] = runtime.sessions
    with pytest.raises(SiteError):
        ensure_site(sessions, "demo\n", "Démo")
    with sessions() as session:
        assert session.scalars(select(Site.code)).all() == []
