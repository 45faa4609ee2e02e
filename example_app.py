"""flask-wxlogin example: ``python example_app.py`` serves on http://127.0.0.1:5000.

Without ``WXLOGIN_APPID``/``WXLOGIN_SECRET`` in the environment it runs in DEMO
MODE: a fake WeChat on loopback accepts any code and logs in a demo user whose
openid is derived from that code; sessions live in this process's memory.
With them set it talks to the real WeChat; set ``SECRET_KEY`` too, and
``CACHE_REDIS_URL`` to keep sessions in Redis.
"""
from __future__ import annotations

import logging
import os
import secrets

from flask import Flask

from flask_wxlogin import WxLogin, current_wx_user, login_required
from flask_wxlogin.testing import FakeWeChat

log = logging.getLogger("example_app")

wxlogin = WxLogin()


def create_app() -> Flask:
    app = Flask(__name__)
    if os.environ.get("WXLOGIN_APPID"):
        app.config.update(
            SECRET_KEY=os.environ["SECRET_KEY"],
            WXLOGIN_APPID=os.environ["WXLOGIN_APPID"],
            WXLOGIN_SECRET=os.environ["WXLOGIN_SECRET"],
        )
        if os.environ.get("CACHE_REDIS_URL"):
            app.config.update(CACHE_TYPE="RedisCache", CACHE_REDIS_URL=os.environ["CACHE_REDIS_URL"])
    else:
        _configure_demo_mode(app)
    wxlogin.init_app(app)

    @app.get("/me")
    @login_required
    def me():
        return {"code": "200", "data": {"openid": current_wx_user.openid}}

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
