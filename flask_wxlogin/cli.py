"""``flask wxlogin ...`` commands."""
from __future__ import annotations

from typing import Optional

import click
from flask import current_app
from flask.cli import AppGroup

wxlogin_cli = AppGroup("wxlogin", help="flask-wxlogin sessions.")


@wxlogin_cli.command("logout-all")
@click.argument("openid")
@click.option("--program", default=None, help="A name from WXLOGIN_MINI_PROGRAMS (default: the main one).")
def logout_all(openid: str, program: Optional[str]) -> None:
    """End every session of the user OPENID."""
    ended = current_app.extensions["wxlogin"].logout_all(openid, program)
    click.echo(f"ended {ended} session(s) of {openid}")
