"""Where a form may send people back to: a path on this site, nothing else.

The language switch and the sign-in page take a ``next`` path from the form. Browsers
forgive a lot in a ``Location`` header (they drop tabs and newlines, read ``\\`` as
``/``, take ``//host`` as another site), so the path is refused, not cleaned, when it
holds anything a browser could read as another origin.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import urlsplit

MAX_LENGTH = 2048


def local_path(target: str | None) -> str | None:
    """``target`` when it is a same-origin relative path (``/…``, not ``//…``), else None.

    Refused: control characters (a browser drops ``\\t`` and ``\\n`` and reads what is
    left), backslashes, a scheme or a host, and anything not starting with one ``/``.
    """
    if not target or len(target) > MAX_LENGTH:
        return None
    if not target.startswith("/") or target[1:2] == "/":
        return None
    if "\\" in target or any(unicodedata.category(c) == "Cc" for c in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target
