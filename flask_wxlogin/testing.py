"""Testing an app that uses flask-wxlogin, without WeChat.

- :func:`issue_skey` opens a real session in the app's store and returns its skey;
- :class:`WxLoginClient` is a test client logged in as a given user;
- :class:`FakeWeChat` is WeChat's API on loopback, for tests that go through
  the login route; ``python -m flask_wxlogin.testing --port N`` serves one
  for an app running in several worker processes.

The pytest plugin (:mod:`flask_wxlogin.pytest_plugin`) wraps them in fixtures.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import os
import sys
import threading
from typing import Any, ContextManager, List, Mapping, Optional

from flask import Flask, current_app, has_app_context
from flask.testing import FlaskClient

from .client import _KEY, Identity
from .extension import _environ_key
from .fakewechat import DEFAULT_APPID, FakeWeChat
from .tokens import OPENID
from .user import UserId

__all__ = ["FakeWeChat", "WxLoginClient", "issue_skey"]


def issue_skey(
    app: Optional[Flask] = None,
    *,
    openid: str,
    unionid: Optional[str] = None,
    session_key: Optional[str] = None,
    user_id: UserId = None,
    program: Optional[str] = None,
) -> str:
    """Open a real session for ``openid`` in ``app``'s store, without WeChat; its skey.

    ``app`` defaults to ``current_app``. Unless ``user_id`` is given, the
    app's ``on_login`` callback runs, so the app's user record is made as at
    a real login. ``session_key`` defaults to a random valid one. Works only
    while ``app.testing`` is true: it opens sessions nobody proved.
    """
    app = current_app._get_current_object() if app is None else app  # type: ignore[attr-defined]
    if not app.testing:
        raise RuntimeError(
            "issue_skey opens sessions without WeChat, so it works only in tests: "
            "set TESTING=True (app.testing) first"
        )
    session_key = session_key or base64.b64encode(os.urandom(16)).decode()
    for name, value, pattern in (("openid", openid, OPENID), ("unionid", unionid, OPENID), ("session_key", session_key, _KEY)):
        if (value is not None or name == "openid") and not (isinstance(value, str) and pattern.fullmatch(value)):
            raise ValueError(f"{name} {value!r} is not of WeChat's shape ({pattern.pattern})")
    with _app_context(app):
        _, skey = app.extensions["wxlogin"].open_session(
            Identity(openid, session_key, unionid), program, user_id=user_id
        )
    return skey  # type: ignore[no-any-return]


def _app_context(app: Flask) -> ContextManager[Any]:
    """``app``'s context: the one already pushed, else a new one."""
    if has_app_context() and current_app._get_current_object() is app:  # type: ignore[attr-defined]
        return contextlib.nullcontext()
    return app.app_context()


class WxLoginClient(FlaskClient):
    """A test client that sends a user's skey with every request.

    ``app.test_client_class = WxLoginClient``, then
    ``app.test_client(wx_user={"openid": "o1"})`` (also ``unionid``,
    ``user_id``, ``program``, ``session_key``: :func:`issue_skey`'s keywords).
    The skey goes in ``WXLOGIN_TOKEN_HEADER``; a header passed to one request
    wins over it. Without ``wx_user`` it is a plain client.
    """

    def __init__(self, *args: Any, wx_user: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The user the client is logged in as, as given; ``None`` for a plain client.
        self.wx_user = None if wx_user is None else dict(wx_user)
        #: The skey it sends, or ``None``.
        self.skey: Optional[str] = None
        if self.wx_user is not None:
            self.skey = issue_skey(self.application, **self.wx_user)
            header = self.application.config["WXLOGIN_TOKEN_HEADER"]
            self.environ_base[_environ_key(header)] = self.skey


def main(argv: Optional[List[str]] = None) -> None:
    """``python -m flask_wxlogin.testing --port N``: serve a FakeWeChat until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m flask_wxlogin.testing",
        description="Serve a fake WeChat API on 127.0.0.1 for an app under test "
                    "(one fake shared by all its workers), until Ctrl-C.",
    )
    parser.add_argument("--port", type=int, required=True, help="the port to listen on (0: any free one)")
    parser.add_argument("--appid", default=DEFAULT_APPID, help=f"the AppID it accepts (default {DEFAULT_APPID})")
    parser.add_argument("--secret", help="the AppSecret it accepts (default: a random one, printed)")
    args = parser.parse_args(argv)
    try:
        fake = FakeWeChat(args.appid, args.secret, port=args.port)
    except OSError as exc:
        parser.error(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror}")
    with fake:
        sys.stdout.write("".join(f"{key}={value}\n" for key, value in fake.config.items()))
        sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
