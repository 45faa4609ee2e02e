"""flask-wxlogin example: ``python example_app.py`` serves on http://127.0.0.1:5000.

Routes: ``POST /auth/login``, ``POST /auth/logout``, and two protected ones,
``GET /me`` and ``POST /phone`` (``{"code": <getPhoneNumber code>}``).

With ``WXLOGIN_APPID``, ``WXLOGIN_SECRET`` and ``SECRET_KEY`` in the environment
it talks to the real WeChat (``CACHE_REDIS_URL`` keeps sessions in Redis).
With none of those four set it runs in DEMO MODE: a fake WeChat on loopback
accepts any code and logs in a demo user whose openid is derived from that
code; sessions live in this process's memory. Any other mix is refused, so a
deployment that forgets one setting stops instead of falling back to the demo;
so is a variable set but empty (``WXLOGIN_APPID=${WXLOGIN_APPID}`` in a
template, with the variable missing).
"""
from __future__ import annotations

import logging
import os
import secrets

from flask import Flask, request

from flask_wxlogin import WxLogin, current_wx_user, login_required
from flask_wxlogin.testing import FakeWeChat

log = logging.getLogger("example_app")

wxlogin = WxLogin()

REQUIRED_SETTINGS = ("WXLOGIN_APPID", "WXLOGIN_SECRET", "SECRET_KEY")
#: Any of these in the environment means a real deployment: no demo mode.
REAL_SETTINGS = REQUIRED_SETTINGS + ("CACHE_REDIS_URL",)


def create_app() -> Flask:
    app = Flask(__name__)
    given = {name: os.environ[name] for name in REAL_SETTINGS if name in os.environ}
    if not given:
        _configure_demo_mode(app)
    else:
        empty = [name for name, value in given.items() if not value]
        if empty:
            raise SystemExit(f"example_app: {', '.join(empty)} set but empty: give a value or unset it")
        missing = [name for name in REQUIRED_SETTINGS if name not in given]
        if missing:
            raise SystemExit(f"example_app: set {', '.join(missing)} too (or none of {', '.join(REAL_SETTINGS)} for the demo)")
        app.config.update({name: given[name] for name in REQUIRED_SETTINGS})
        if "CACHE_REDIS_URL" in given:
            app.config.update(CACHE_TYPE="RedisCache", CACHE_REDIS_URL=given["CACHE_REDIS_URL"])
    wxlogin.init_app(app)

    @app.get("/me")
    @login_required
    def me():
        return {"code": "200", "data": {"openid": current_wx_user.openid}}

    @app.post("/phone")
    @login_required
    def phone():
        """The user's phone number, from a ``<button open-type="getPhoneNumber">`` code."""
        body = request.get_json(silent=True)
        code = body.get("code") if isinstance(body, dict) else None
        return {"code": "200", "data": wxlogin.phone_number(code)}

    return app


def _configure_demo_mode(app: Flask) -> None:
    fake = FakeWeChat(appid="wx-demo-appid", secret=secrets.token_hex(16)).start()
    app.config.update(
        SECRET_KEY=secrets.token_hex(32),
        WXLOGIN_APPID=fake.appid,
        WXLOGIN_SECRET=fake.secret,
        WXLOGIN_API_BASE=fake.url,
    )
    log.warning(
        "\n%s\n DEMO MODE: no WXLOGIN_APPID set, so logins go to a FAKE WeChat at %s\n"
        " that accepts any code. Never expose this server. Set WXLOGIN_APPID,\n"
        " WXLOGIN_SECRET and SECRET_KEY to talk to the real WeChat.\n%s",
        "=" * 72, fake.url, "=" * 72,
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    create_app().run(host="127.0.0.1", port=5000)
