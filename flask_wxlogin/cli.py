"""``flask wxlogin ...`` commands: list and end a user's sessions.

A failure (an unknown program, the store down) is one line on stderr and
exit status 1, never a traceback; an OPENID not shaped like one is a usage
error (exit status 2). When the app has configured no logging, the store's
own log line (which Python's last-resort handler would print above it) is
folded into that one line instead, so it still names the cause.
"""
from __future__ import annotations

import contextlib
import functools
import logging
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, List, Optional, TypeVar

import click
from flask import current_app
from flask.cli import AppGroup

from . import check as checks
from .errors import WxLoginError
from .tokens import OPENID

wxlogin_cli = AppGroup("wxlogin", help="flask-wxlogin sessions.")

F = TypeVar("F", bound=Callable[..., Any])

_program = click.option(
    "--program", default=None, metavar="NAME", help="A name from WXLOGIN_MINI_PROGRAMS (default: the main one)."
)


def _openid(context: click.Context, parameter: click.Parameter, value: str) -> str:
    if not OPENID.fullmatch(value):
        raise click.BadParameter("not an openid (1 to 128 letters, digits, '_' or '-')")
    return value


_openid_argument = click.argument("openid", callback=_openid)


def _one_line_errors(command: F) -> F:
    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        with _unhandled_log_lines() as lines:
            try:
                return command(*args, **kwargs)
            except WxLoginError as error:
                cause = "".join(f" ({line})" for line in lines)
                raise click.ClickException(f"{error.error}: {error.message}{cause}") from None

    return run  # type: ignore[return-value]


class _Collect(logging.Handler):
    def __init__(self, lines: List[str]) -> None:
        super().__init__(logging.WARNING)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def _unhandled_log_lines() -> Iterator[List[str]]:
    """The extension's warnings and errors that no handler would take (logging not configured).

    Without this, logging's last resort prints them on a line of their own.
    """
    logger = logging.getLogger("flask_wxlogin")
    lines: List[str] = []
    if logger.hasHandlers():
        yield lines
        return
    handler, propagate = _Collect(lines), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


@wxlogin_cli.command("check")
def check() -> None:
    """Check each mini program's config, session store and WeChat credentials; exit 1 if any fails."""
    results = checks.run(current_app.extensions["wxlogin"], current_app.config)
    for result in results:
        click.echo(result.line())
    if not all(result.ok for result in results):
        raise SystemExit(1)


@wxlogin_cli.command("logout-all")
@_openid_argument
@_program
@_one_line_errors
def logout_all(openid: str, program: Optional[str]) -> None:
    """End every session of the user OPENID."""
    ended = current_app.extensions["wxlogin"].logout_all(openid, program)
    click.echo(f"ended {ended} session(s) of {openid}")


@wxlogin_cli.command("sessions")
@_openid_argument
@_program
@_one_line_errors
def sessions(openid: str, program: Optional[str]) -> None:
    """List the live sessions of the user OPENID, most recently seen first."""
    listed = current_app.extensions["wxlogin"].sessions(openid, program)
    if not listed:
        click.echo(f"no live session of {openid}")
        return
    rows = [("REF", "CREATED (UTC)", "LAST SEEN (UTC)", "IP", "USER AGENT")]
    rows += [
        (info.ref, _when(info.created_at), _when(info.last_seen_at), info.ip or "-", info.user_agent or "-")
        for info in listed
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    for row in rows:
        click.echo("  ".join([*(cell.ljust(width) for cell, width in zip(row, widths)), row[4]]).rstrip())


@wxlogin_cli.command("end-session")
@_openid_argument
@click.argument("ref")
@_program
@_one_line_errors
def end_session(openid: str, ref: str, program: Optional[str]) -> None:
    """End the session REF (from `flask wxlogin sessions`) of the user OPENID."""
    if not current_app.extensions["wxlogin"].end_session(openid, ref, program):
        raise click.ClickException(f"no live session {ref} of {openid}")
    click.echo(f"ended session {ref} of {openid}")


def _when(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
