"""The test app behind gunicorn: ``gunicorn "tests.served_app:create()"``, configured by environment.

``WXLT_API_BASE`` (a FakeWeChat), ``WXLT_REDIS_URL`` and ``WXLT_PREFIX``. Each
answer names the worker that gave it (``X-Worker``: its pid).
"""
from __future__ import annotations

import os

from flask import Flask, Response

from .conftest import make_app


def create() -> Flask:
    app = make_app(
        TESTING=False, WXLOGIN_API_BASE=os.environ["WXLT_API_BASE"], CACHE_TYPE="RedisCache",
        CACHE_REDIS_URL=os.environ["WXLT_REDIS_URL"], WXLOGIN_KEY_PREFIX=os.environ["WXLT_PREFIX"],
    )

    @app.after_request
    def name_the_worker(response: Response) -> Response:
        response.headers["X-Worker"] = str(os.getpid())
        return response

    return app
