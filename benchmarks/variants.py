"""The apps compared in process: each returns a ready :class:`WsgiRequest` for ``GET /me``.

Every view answers the same small JSON object (one 28-character openid), so
the variants differ only in how they decide who is asking.
"""
from __future__ import annotations

import json
import secrets
from typing import Any, Callable, Dict, Optional

import flask_login
import redis
from flask import Flask
from flask_jwt_extended import JWTManager, create_access_token, get_jwt_identity, jwt_required

from common import KEY_PREFIX, LOGIN_RATE_LIMIT, OPENID, REDIS_URL, SECRET_KEY, WsgiRequest, busy_wait, floor_read
from flask_wxlogin import WxLogin, current_wx_user, login_required
from flask_wxlogin.testing import FakeWeChat

#: The wx.login code every benchmark login sends; the fake WeChat accepts any.
LOGIN_CODE = "wxlbench-code"
#: The cache settings of "ours on Redis"; none at all means the embedded default.
REDIS_CACHE: Dict[str, Any] = {"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": REDIS_URL, "WXLOGIN_KEY_PREFIX": KEY_PREFIX}


def bare(with_secret_key: bool) -> WsgiRequest:
    """A JSON route and nothing else; with ``SECRET_KEY`` Flask also opens its cookie session."""
    app = Flask("bare")
    if with_secret_key:
        app.config["SECRET_KEY"] = SECRET_KEY

    @app.get("/me")
    def me() -> Dict[str, Any]:
        return {"openid": OPENID}

    return WsgiRequest(app, "/me")


def floor(client: redis.Redis) -> WsgiRequest:
    """The bare route with ``SECRET_KEY`` whose view does one raw redis-py HMGET: the physical floor."""
    app = Flask("floor")
    app.config["SECRET_KEY"] = SECRET_KEY

    @app.get("/me")
    def me() -> Dict[str, Any]:
        floor_read(client)
        return {"openid": OPENID}

    return WsgiRequest(app, "/me")


def floor_and_busy_wait(client: redis.Redis, microseconds: int) -> WsgiRequest:
    """The floor whose view also spins for ``microseconds``: work that touches almost no memory."""
    app = Flask("floor-busy-wait")
    app.config["SECRET_KEY"] = SECRET_KEY

    @app.get("/me")
    def me() -> Dict[str, Any]:
        floor_read(client)
        busy_wait(microseconds)
        return {"openid": OPENID}

    return WsgiRequest(app, "/me")


class _User(flask_login.UserMixin):
    def __init__(self, user_id: str) -> None:
        self.id = user_id


def flask_login_cookie() -> WsgiRequest:
    """Flask-Login with its cookie session; the user comes from ``user_loader``, the cookie is not rewritten."""
    app = Flask("flask-login")
    app.config["SECRET_KEY"] = SECRET_KEY
    users = {OPENID: _User(OPENID)}
    flask_login.LoginManager(app).user_loader(users.get)

    @app.post("/login")
    def login() -> Dict[str, Any]:
        flask_login.login_user(users[OPENID])
        return {}

    @app.get("/me")
    @flask_login.login_required
    def me() -> Dict[str, Any]:
        return {"openid": flask_login.current_user.id}

    _, headers, _ = WsgiRequest(app, "/login", method="POST").send()
    cookie = headers["Set-Cookie"].split(";", 1)[0]
    return WsgiRequest(app, "/me", headers={"Cookie": cookie})


def jwt_header() -> WsgiRequest:
    """Flask-JWT-Extended: ``@jwt_required()`` with an HS256 access token in the Authorization header."""
    app = Flask("jwt")
    app.config["SECRET_KEY"] = SECRET_KEY
    JWTManager(app)

    @app.get("/me")
    @jwt_required()
    def me() -> Dict[str, Any]:
        return {"openid": get_jwt_identity()}

    with app.app_context():
        token = create_access_token(identity=OPENID)
    return WsgiRequest(app, "/me", headers={"Authorization": f"Bearer {token}"})


def ours_app(
    fake: FakeWeChat, name: str, *, floor_client: Optional[redis.Redis] = None, **config: Any
) -> Flask:
    """An app with :class:`WxLogin` pointed at ``fake`` and a protected ``/me``.

    With ``floor_client`` the view also does the floor's raw HMGET: a control
    that shows what our work costs next to a Redis round trip, whatever the
    session store is.
    """
    app = Flask(name)
    app.config.update(
        SECRET_KEY=SECRET_KEY, WXLOGIN_APPID=fake.appid, WXLOGIN_SECRET=fake.secret,
        WXLOGIN_API_BASE=fake.url, WXLOGIN_LOGIN_RATE_LIMIT=LOGIN_RATE_LIMIT, **config,
    )
    WxLogin(app)
    view = _me if floor_client is None else _me_after_get(floor_client)
    app.add_url_rule("/me", "me", login_required(view), methods=["GET"])
    return app


def _me() -> Dict[str, Any]:
    return {"openid": current_wx_user.openid}


def _me_after_get(client: redis.Redis) -> Callable[[], Dict[str, Any]]:
    def me() -> Dict[str, Any]:
        floor_read(client)
        return {"openid": current_wx_user.openid}

    return me


def login_request(app: Flask) -> WsgiRequest:
    """``POST /auth/login`` with a wx.login code, as a mini program sends it."""
    return WsgiRequest(app, "/auth/login", method="POST", json={"code": LOGIN_CODE})


def log_in(app: Flask) -> str:
    """An skey from the app's own login route (which calls the fake WeChat)."""
    status, _, body = login_request(app).send()
    if status != 200:
        raise RuntimeError(f"login failed with HTTP {status}: {body[:200]!r}")
    return str(json.loads(body)["data"]["skey"])


def ours(app: Flask, skey: Optional[str]) -> WsgiRequest:
    """``GET /me`` on one of our apps carrying ``skey`` in the skey header."""
    headers = {} if skey is None else {app.config["WXLOGIN_TOKEN_HEADER"]: skey}
    return WsgiRequest(app, "/me", headers=headers)


def forge(skey: str) -> str:
    """``skey`` with its signature replaced by a random one in canonical form (so the HMAC runs)."""
    payload, dot, signature = skey.rpartition(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    random = "".join(secrets.choice(alphabet) for _ in signature[:-1])
    return payload + dot + random + secrets.choice(alphabet[::4])
