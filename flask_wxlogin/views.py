"""The login blueprint: parse the request, call the extension, answer JSON."""
from __future__ import annotations

import json
from typing import Any, Optional

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from . import signals
from .client import CODE, checked_code
from .config import session_lifetime
from .errors import BadLoginRequest, WxLoginError

blueprint = Blueprint("wxlogin", __name__)

#: A login body is a code of a few dozen characters; refuse anything larger.
MAX_BODY_BYTES = 4096
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


@blueprint.post("/login")
@blueprint.post("/<program>/login")
def login(program: Optional[str] = None) -> Response:
    try:
        user, skey = current_app.extensions["wxlogin"].login(read_code(), program)
    except WxLoginError as error:
        signals.user_login_failed.send(current_app._get_current_object(), error=error)  # type: ignore[attr-defined]
        raise
    return _ok({"skey": skey, "expires_in": session_lifetime(current_app.config), "openid": user.openid})


@blueprint.post("/logout")
@blueprint.post("/<program>/logout")
def logout(program: Optional[str] = None) -> Response:
    current_app.extensions["wxlogin"].logout(program)
    return _ok({})


_NOT_POST = ["GET", "PUT", "PATCH", "DELETE", "TRACE", "CONNECT"]


@blueprint.route("/login", methods=_NOT_POST)
@blueprint.route("/logout", methods=_NOT_POST)
@blueprint.route("/<program>/login", methods=_NOT_POST)
@blueprint.route("/<program>/logout", methods=_NOT_POST)
def wrong_method(program: Optional[str] = None) -> Response:
    current_app.extensions["wxlogin"]._state().program(program)  # an unknown one is 404, not 405
    raise BadLoginRequest(
        f"Use POST, not {request.method}.", error="method_not_allowed", status=405
    )


def read_code() -> str:
    """The wx.login code from a JSON object, a form field, or the bare body."""
    request.max_content_length = MAX_BODY_BYTES
    try:
        if request.mimetype in _FORMS:
            code: Any = request.form.get("code")
        else:
            code = _code_from_body(request.get_data(cache=True))
    except RequestEntityTooLarge:
        raise BadLoginRequest(
            f"The request body is over {MAX_BODY_BYTES} bytes.", error="body_too_large", status=413
        ) from None
    return checked_code(code)


def _code_from_body(raw: bytes) -> Optional[Any]:
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise _body_invalid("The request body is not UTF-8 text.") from None
    if not text or CODE.fullmatch(text):
        return text
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        if text[0] in '{["':
            raise _body_invalid("The request body is not valid JSON.") from None
        return text
    if isinstance(data, dict):
        return data.get("code")
    if isinstance(data, str):
        return data
    raise _body_invalid('Send {"code": "<code from wx.login>"}.')


def _body_invalid(message: str) -> BadLoginRequest:
    return BadLoginRequest(message, error="body_invalid")


def _ok(data: dict) -> Response:
    response = jsonify({"code": "200", "data": data})
    response.headers["Cache-Control"] = "no-store"
    return response
