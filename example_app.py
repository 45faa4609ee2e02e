"""flask-wxlogin example: ``python example_app.py`` serves on http://127.0.0.1:5000.

``python example_app.py --port N`` (or ``PORT=N``) serves on port N instead
(``--port 0``: any free port, printed as ``Running on http://127.0.0.1:PORT``);
``flask --app example_app run -p N`` works too.

Routes: ``POST /auth/login``, ``POST /auth/logout``, and four protected ones:
``GET /me``, ``POST /phone`` (``{"code": <getPhoneNumber code>}``),
``POST /open-data`` (``{"encryptedData", "iv"}`` from ``wx.getWeRunData`` and
friends: answers the decrypted JSON) and ``POST /avatar`` (a ``wx.uploadFile``
of the field ``file``: answers its size, keeps nothing).

With ``WXLOGIN_APPID``, ``WXLOGIN_SECRET`` and ``SECRET_KEY`` in the environment
it talks to the real WeChat (``CACHE_REDIS_URL`` keeps sessions in Redis).
With none of those four set it runs in DEMO MODE: a fake WeChat on loopback,
sessions in this process's memory. Any other mix is refused, so a
deployment that forgets one setting stops instead of falling back to the demo;
so is a variable set but empty (``WXLOGIN_APPID=${WXLOGIN_APPID}`` in a
template, with the variable missing).

The demo models phones, so logging in again gives the same user, as on WeChat:

- each code works once; sending it again answers 401 ``code_used``;
- ``<phone>-<anything>`` (``alice-1``, ``alice-2``) logs in the user of phone
  ``<phone>``: one phone, one openid, however many codes;
- a code without ``-`` (``hello``, or the random codes of WeChat's developer
  tools) comes from the one default phone, so its user is the same every time.
- a code ``demo-fail-<errcode>-<anything>`` (say ``demo-fail--1-x``, WeChat
  busy) gets that errcode, so a client can see every login error this server answers.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import secrets
from typing import Any, Callable, Dict, List, Optional, Tuple

from flask import Flask, request
from werkzeug.exceptions import RequestEntityTooLarge

from flask_wxlogin import WxLogin, WxLoginError, current_wx_user, login_required
from flask_wxlogin.testing import FakeWeChat

log = logging.getLogger("example_app")

wxlogin = WxLogin()

REQUIRED_SETTINGS = ("WXLOGIN_APPID", "WXLOGIN_SECRET", "SECRET_KEY")
#: Any of these in the environment means a real deployment: no demo mode.
REAL_SETTINGS = REQUIRED_SETTINGS + ("CACHE_REDIS_URL",)
DEFAULT_PORT = 5000
MAX_AVATAR_BYTES = 2 * 1024 * 1024
#: Demo mode only: a code like this makes the fake WeChat answer that errcode.
DEMO_FAILING_CODE = re.compile(r"demo-fail-(-?[0-9]+)(?:-|$)")


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

    @app.post("/open-data")
    @login_required
    def open_data():
        """Decrypted open data; ``400 session_key_stale`` means: log in again, fetch it again."""
        body = request.get_json(silent=True)
        body = body if isinstance(body, dict) else {}
        return {"code": "200", "data": current_wx_user.decrypt(body.get("encryptedData"), body.get("iv"))}

    @app.post("/avatar")
    @login_required
    def avatar():
        """Where a ``wx.uploadFile`` lands; a real app would store the file."""
        request.max_content_length = MAX_AVATAR_BYTES
        try:
            upload = request.files.get("file")
        except RequestEntityTooLarge:
            raise WxLoginError("An avatar is at most 2 MiB.", error="body_too_large", status=413) from None
        if upload is None:
            raise WxLoginError("Send the image as the form field 'file'.", error="file_missing", status=400)
        size = len(upload.read())
        return {"code": "200", "data": {"openid": current_wx_user.openid, "size": size, "form": request.form.to_dict()}}

    return app


#: The phone of demo codes that name none.
DEFAULT_PHONE = "phone"


def demo_phone(code: str) -> str:
    """The phone a demo code came from: the part before its first ``-``, else the default one."""
    phone, dash, _ = code.partition("-")
    return phone if dash and phone else DEFAULT_PHONE


def _configure_demo_mode(app: Flask) -> None:
    fake = FakeWeChat(appid="wx-demo-appid", secret=secrets.token_hex(16), phone_of=demo_phone)
    fake.answer = _failing_codes(fake.answer)
    fake.start()
    app.config.update(
        SECRET_KEY=secrets.token_hex(32),
        WXLOGIN_APPID=fake.appid,
        WXLOGIN_SECRET=fake.secret,
        WXLOGIN_API_BASE=fake.url,
    )
    log.warning(
        "\n%s\n DEMO MODE: no WXLOGIN_APPID set, so logins go to a FAKE WeChat at %s\n"
        " that accepts any code once (alice-1, alice-2: phone alice's user; codes without\n"
        " '-': one default phone's user). Never expose this server. Set WXLOGIN_APPID,\n"
        " WXLOGIN_SECRET and SECRET_KEY to talk to the real WeChat.\n%s",
        "=" * 72, fake.url, "=" * 72,
    )


JsCode2Session = Callable[[Dict[str, str]], Tuple[int, Any]]


def _failing_codes(answer: JsCode2Session) -> JsCode2Session:
    """``answer``, except that a ``demo-fail-<errcode>`` code gets that errcode."""

    def scripted(params: Dict[str, str]) -> Tuple[int, Any]:
        failing = DEMO_FAILING_CODE.match(params.get("js_code", ""))
        if failing is None:
            return answer(params)
        return 200, {"errcode": int(failing.group(1)), "errmsg": "demo: scripted failure"}

    return scripted


def port_from(argv: Optional[List[str]] = None, environ: Optional[Dict[str, str]] = None) -> int:
    """``--port N``, else the ``PORT`` environment variable, else 5000; 0 asks the OS for a free port."""
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(description="The flask-wxlogin example app.")
    parser.add_argument("--port", type=int, help=f"port to serve on (default: $PORT or {DEFAULT_PORT})")
    port = parser.parse_args(argv).port
    if port is None:
        try:
            port = int(environ.get("PORT") or DEFAULT_PORT)
        except ValueError:
            parser.error(f"PORT must be a number, not {environ['PORT']!r}")
    if not 0 <= port < 65536:
        parser.error(f"the port must be between 0 (any free port) and 65535, not {port}")
    return port


if __name__ == "__main__":
    chosen_port = port_from()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    create_app().run(host="127.0.0.1", port=chosen_port)
