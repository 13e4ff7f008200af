"""The signed-in person's walls: their own site, or every site for an administrator.

Views pass :func:`current_scope` to the services, which answer "not found" for a record
of another site exactly as for one that does not exist (:mod:`interphone.scope`); a view
turns that into the same 404 for both.
"""

from __future__ import annotations

from flask_login import current_user

from ..scope import EVERYWHERE, Scope


def current_site_id() -> int:
    """The signed-in person's own site (read with the account as the request began)."""
    return int(current_user.site_id)


def current_scope() -> Scope:
    if current_user.role == "admin":
        return EVERYWHERE
    return Scope.of_site(current_site_id())
