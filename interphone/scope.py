"""Sites are walls: the sites whose records a person may see and act on.

An agent or a supervisor works for their own site; an administrator for every site; the
system itself (the IVR, SMS replies, jobs, the command line) acts everywhere. Services
take the acting person's :class:`Scope` and answer "not found" for a record outside it,
exactly as for a record that does not exist, so that no page tells another site's
contacts, agents or messages apart from missing ones.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scope:
    site_ids: frozenset[int] | None = None  # None: every site

    @classmethod
    def of_site(cls, site_id: int) -> Scope:
        return cls(frozenset((site_id,)))

    def allows(self, site_id: int | None) -> bool:
        return self.site_ids is None or site_id in self.site_ids


EVERYWHERE = Scope()  # administrators, and the system itself
