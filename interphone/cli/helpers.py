"""What the command groups share: the runtime a command works on, and domain errors turned
into a one-line message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..config import ConfigError
from ..runtime import Runtime

F = TypeVar("F", bound=Callable[..., Any])


def get_runtime(ctx: click.Context) -> Runtime:
    """The runtime of this invocation (the one passed as ``obj``, else one built from the
    environment and closed with the context)."""
    rt = ctx.find_object(Runtime)
    if rt is None:
        try:
            rt = Runtime()
        except ConfigError as exc:
            raise click.ClickException(f"configuration: {exc}") from None
        ctx.obj = rt
        ctx.call_on_close(rt.close)
    return rt


def fail_cleanly(error_types: tuple[type[Exception], ...]) -> Callable[[F], F]:
    """Turn domain errors into a one-line message and exit status 1, never a traceback."""

    def decorate(fn: F) -> F:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except error_types as exc:
                raise click.ClickException(str(exc)) from None

        wrapper.__name__ = fn.__name__
        wrapper.__doc__ = fn.__doc__
        return wrapper  # type: ignore[return-value]

    return decorate


def domain_errors() -> tuple[type[Exception], ...]:
    """The errors a command reports in one line: bad configuration or refused input."""
    from ..accounts import AccountError
    from ..cases import CaseDataError
    from ..queue.exceptions import QueueError
    from ..sites import SiteError

    return (ConfigError, AccountError, CaseDataError, QueueError, SiteError)
