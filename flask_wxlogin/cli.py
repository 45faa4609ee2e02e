"""``flask wxlogin ...`` commands."""
from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

wxlogin_cli = AppGroup("wxlogin", help="flask-wxlogin sessions.")


@wxlogin_cli.command("logout-all")
@click.argument("openid")
def logout_all(openid: str) -> None:
    """End every session of the user OPENID."""
    ended = current_app.extensions["wxlogin"].logout_all(openid)
    click.echo(f"ended {ended} session(s) of {openid}")
