"""The app gunicorn serves in section 3: ``gunicorn 'server_app:create_app()'`` from this directory.

One app, one config (``SECRET_KEY`` set, sessions in Redis), routes that
differ only in how they decide who is asking:

- ``/bare``: no check.
- ``/floor``: one raw redis-py HMGET of a copy of a session record.
- ``/floor_spin``: the floor plus a busy-wait as long as the Redis target allows (a control).
- ``/jwt``: Flask-JWT-Extended's ``@jwt_required()``; ``POST /jwt/token`` issues a token.
- ``/ours``: ``flask_wxlogin.login_required``; ``POST /auth/login`` logs in via ``WXLBENCH_API_BASE``.
- ``/near/ours``: the same in a second app with ``WXLOGIN_NEAR_CACHE`` (same keys, same sessions).

Settings come from the environment the benchmark passes: ``WXLBENCH_SECRET_KEY``,
``WXLBENCH_APPID``, ``WXLBENCH_APPSECRET``, ``WXLBENCH_API_BASE``, and optionally
``WXLBENCH_REDIS_URL`` for the sessions (``fault_load.py`` points it at a Redis of its own;
``/floor`` always reads the suite's Redis).
"""
from __future__ import annotations

import os
from typing import Any, Dict

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from flask_jwt_extended import JWTManager, create_access_token, get_jwt_identity, jwt_required

from common import BUSY_WAIT_US, KEY_PREFIX, LOGIN_RATE_LIMIT, OPENID, REDIS_URL, busy_wait, floor_read, redis_client
from flask_wxlogin import WxLogin, current_wx_user, login_required


def create_app() -> Flask:
    app = _create_app("wxlbench-server")
    app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, {"/near": _create_app("wxlbench-near", WXLOGIN_NEAR_CACHE=True).wsgi_app}
    )
    return app


def _create_app(name: str, **config: Any) -> Flask:
    app = Flask(name)
    app.config.update(**config)
    app.config.update(
        SECRET_KEY=os.environ["WXLBENCH_SECRET_KEY"],
        WXLOGIN_APPID=os.environ["WXLBENCH_APPID"],
        WXLOGIN_SECRET=os.environ["WXLBENCH_APPSECRET"],
        WXLOGIN_API_BASE=os.environ["WXLBENCH_API_BASE"],
        WXLOGIN_KEY_PREFIX=KEY_PREFIX,
        CACHE_TYPE="RedisCache",
        CACHE_REDIS_URL=os.environ.get("WXLBENCH_REDIS_URL", REDIS_URL),
        WXLOGIN_LOGIN_RATE_LIMIT=LOGIN_RATE_LIMIT,
    )
    WxLogin(app)
    JWTManager(app)
    client = redis_client()

    @app.get("/bare")
    def bare() -> Dict[str, Any]:
        return {"openid": OPENID}

    @app.get("/floor")
    def floor() -> Dict[str, Any]:
        floor_read(client)
        return {"openid": OPENID}

    @app.get("/floor_spin")
    def floor_spin() -> Dict[str, Any]:
        floor_read(client)
        busy_wait(BUSY_WAIT_US)
        return {"openid": OPENID}

    @app.post("/jwt/token")
    def jwt_token() -> Dict[str, Any]:
        return {"token": create_access_token(identity=OPENID)}

    @app.get("/jwt")
    @jwt_required()
    def jwt() -> Dict[str, Any]:
        return {"openid": get_jwt_identity()}

    @app.get("/ours")
    @login_required
    def ours() -> Dict[str, Any]:
        return {"openid": current_wx_user.openid}

    return app
