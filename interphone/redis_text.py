"""Redis replies as text: every module that reads Redis without ``decode_responses``."""

from __future__ import annotations


def as_text(value: object) -> str:
    """Bytes decoded as UTF-8, None as the empty string, anything else as ``str()``."""
    if isinstance(value, bytes):
        return value.decode()
    return "" if value is None else str(value)
