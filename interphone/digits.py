"""Numbers typed or sent as text, read from the ASCII digits 0-9 only.

``str.isdigit()`` is also true of ``"²"`` and of other scripts' digits, which ``int()``
refuses (a 500) or reads as numbers nobody typed.
"""

from __future__ import annotations


def ascii_digits(text: str) -> bool:
    """Whether ``text`` is one or more of the digits 0-9, and nothing else."""
    return text.isascii() and text.isdigit()


def small_int(text: str, max_digits: int) -> int | None:
    """``text`` as a number when it is 1 to ``max_digits`` ASCII digits, else None."""
    return int(text) if len(text) <= max_digits and ascii_digits(text) else None


SQL_INT_MAX = 2**31 - 1  # ids are SQL INTEGER columns: PostgreSQL refuses a larger one


def row_id(text: str) -> int | None:
    """``text`` as a table's id: ASCII digits for a number from 1 to :data:`SQL_INT_MAX`,
    else None: a larger one would overflow PostgreSQL's INTEGER, a 500 rather than "no
    such row" (SQLite lets it through, so only a PostgreSQL run shows it)."""
    number = small_int(text, len(str(SQL_INT_MAX)))
    return number if number is not None and 1 <= number <= SQL_INT_MAX else None
