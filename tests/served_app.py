"""The test app in another process: ``gunicorn "tests.served_app:create()"`` or ``flask --app``.

Configured by environment: ``WXLT_API_BASE`` (a FakeWeChat), and optionally
``WXLT_REDIS_URL`` and ``WXLT_PREFIX`` (else the embedded cache). Each answer
names the worker that gave it (``X-Worker``: its pid).
"""
from __future__ import annotations

import os

from flask import Flask, Response

from .conftest import make_app


def create() -> Flask:
    config = {"TESTING": False, "WXLOGIN_API_BASE": os.environ["WXLT_API_BASE"]}
    if "WXLT_REDIS_URL" in os.environ:
        config.update(CACHE_TYPE="RedisCache", CACHE_REDIS_URL=os.environ["WXLT_REDIS_URL"],
                      WXLOGIN_KEY_PREFIX=os.environ["WXLT_PREFIX"])
    app = make_app(**config)

    @app.after_request
    def name_the_worker(response: Response) -> Response:
        response.headers["X-Worker"] = str(os.getpid())
        return response

    return app
