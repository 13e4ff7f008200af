"""Logs: one line per record, text or JSON, with the call and contact they concern, and
phone numbers and birth dates masked as a last safety net.

The code never logs a phone number in clear (it logs ids and masked numbers); the
:class:`PiiFilter` on the handlers catches a mistake anyway: any run of 6 to 15 digits
that stands on its own (``+33612345678``, ``06 12 34 56 78``, ``01011990``) loses all but
its last two digits. Digits inside an identifier (a CallSid, a hex request id) are kept.

Context (``call_sid``, ``contact_id``, ``request_id``, ``route``) comes from
:func:`log_context`, which the web app sets for each request and jobs may set around
their work. No Flask here: the RQ workers and the speech server use this module too.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from typing import IO, Any

FORMATS = ("text", "json")
CONTEXT_FIELDS = ("call_sid", "contact_id", "request_id", "route")
_HANDLER_MARK = "_interphone_handler"

_context: ContextVar[dict[str, Any] | None] = ContextVar("interphone_log_context", default=None)

# 6 to 15 digits, possibly after a "+", possibly in groups separated by one space or dot
# (national formats), standing on their own: not inside a word or an identifier, and not
# an ISO date (dashes are not separators here).
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_DIGITS = re.compile(r"(?<![\w+.])\+?\d(?:[ .]?\d){5,14}(?![\w])")


def mask_digits(text: str) -> str:
    """Mask every stand-alone run of 6+ digits but its last two."""

    def hide(match: re.Match[str]) -> str:
        raw = match.group(0)
        if _IPV4.fullmatch(raw):
            return raw
        digits = re.sub(r"\D", "", raw)
        return ("+" if raw.startswith("+") else "") + "•" * (len(digits) - 2) + digits[-2:]

    return _DIGITS.sub(hide, text)


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Attach ``fields`` (e.g. ``contact_id=12``) to every record logged inside."""
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields: Any) -> Any:
    """Like :func:`log_context` for code that cannot use a ``with`` (request hooks):
    returns a token for :func:`unbind`."""
    return _context.set({**(_context.get() or {}), **fields})


def unbind(token: Any) -> None:
    with contextlib.suppress(ValueError, LookupError):  # another context made the token
        _context.reset(token)


def current_context() -> dict[str, Any]:
    return dict(_context.get() or {})


class ContextFilter(logging.Filter):
    """Copy the current log context onto the record (absent fields are ``None``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get() or {}
        for name in CONTEXT_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, context.get(name))
        return True


# gunicorn's access log atoms that are numbers of its own (status, sizes, durations,
# pid): never personal data, and left alone, since a status beside a size ("200 13791")
# reads as a phone number to the masker, which would hide every line's status
_ACCESS_NUMBERS = frozenset({"s", "b", "B", "D", "T", "M", "L", "p"})
_FORMAT_KEYS = re.compile(r"%\(([^)]+)\)")


@functools.lru_cache(maxsize=16)
def _access_atoms(log_format: str) -> tuple[str, ...]:
    """The atoms an access log format prints, but gunicorn's own numbers. Only those
    are masked: gunicorn passes every request and response header and every WSGI
    environ entry as an atom, and masking them all would cost every request far more
    than the log line it writes (docs/performance.md)."""
    names = dict.fromkeys(_FORMAT_KEYS.findall(log_format))
    return tuple(n for n in names if n not in _ACCESS_NUMBERS)


class PiiFilter(logging.Filter):
    """Mask phone numbers and 8-digit dates in the message and the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "gunicorn.access" and isinstance(record.args, dict):
            atoms = record.args  # gunicorn's own mapping (it answers unknown headers)
            for name in _access_atoms(str(record.msg)):
                value = atoms[name]  # header atoms ("{x-foo}i") are looked up lowercased
                if isinstance(value, str):
                    atoms[name.lower() if name.startswith("{") else name] = mask_digits(value)
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what was given, masked
            message = f"{record.msg!s} {record.args!r}"
        record.msg, record.args = mask_digits(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_digits(record.exc_text)
            record.exc_info = None  # formatters use the masked text
        return True


def json_formatter() -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        datefmt="%Y-%m-%dT%H:%M:%S%z",
        json_ensure_ascii=False,
    )


def text_formatter() -> logging.Formatter:
    return logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s [call=%(call_sid)s contact=%(contact_id)s "
        "req=%(request_id)s] %(message)s"
    )


def _prepare(handler: logging.Handler, log_format: str) -> None:
    handler.setFormatter(json_formatter() if log_format == "json" else text_formatter())
    for kind in (ContextFilter, PiiFilter):
        if not any(isinstance(f, kind) for f in handler.filters):
            handler.addFilter(kind())


def configure_logging(
    log_format: str = "text", level: str = "INFO", *, stream: IO[str] | None = None
) -> logging.Handler:
    """Install (or replace) Interphone's handler on the root logger; idempotent.

    gunicorn's own loggers (``gunicorn.error``, ``gunicorn.access``: they do not
    propagate) get the same filters and, in JSON mode, the same formatter."""
    if log_format not in FORMATS:
        raise ValueError(f"log format {log_format!r} is not one of {', '.join(FORMATS)}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    _prepare(handler, log_format)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("gunicorn.error", "gunicorn.access"):
        for own in logging.getLogger(name).handlers:
            if log_format == "json":
                _prepare(own, log_format)
            else:
                for kind in (ContextFilter, PiiFilter):
                    if not any(isinstance(f, kind) for f in own.filters):
                        own.addFilter(kind())
    return handler
