"""``flask wxlogin ...`` commands."""
from __future__ import annotations

from typing import Optional

import click
from flask import current_app
from flask.cli import AppGroup

from . import check as checks

wxlogin_cli = AppGroup("wxlogin", help="flask-wxlogin sessions.")


@wxlogin_cli.command("check")
def check() -> None:
    """Check each mini program's config, session store and WeChat credentials; exit 1 if any fails."""
    results = checks.run(current_app.extensions["wxlogin"], current_app.config)
    for result in results:
        click.echo(result.line())
    if not all(result.ok for result in results):
        raise SystemExit(1)


@wxlogin_cli.command("logout-all")
@click.argument("openid")
@click.option("--program", default=None, help="A name from WXLOGIN_MINI_PROGRAMS (default: the main one).")
def logout_all(openid: str, program: Optional[str]) -> None:
    """End every session of the user OPENID."""
    ended = current_app.extensions["wxlogin"].logout_all(openid, program)
    click.echo(f"ended {ended} session(s) of {openid}")
