"""The login blueprint: parse the request, call the extension, answer JSON."""
from __future__ import annotations

import json
import logging
from typing import Any, Optional

from flask import Blueprint, Response, current_app, jsonify, request
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import Rule

from . import signals
from .client import checked_code
from .errors import ALLOW, BadLoginRequest, WxLoginError

log = logging.getLogger("flask_wxlogin")

blueprint = Blueprint("wxlogin", __name__)

#: A login body is a code of a few dozen characters; refuse anything larger.
MAX_BODY_BYTES = 4096
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
#: The blueprint's paths. POST goes to its view; every other method to :func:`other_method`.
PATHS = ("/login", "/logout", "/<program>/login", "/<program>/logout")


@blueprint.route("/login", methods=["POST"], provide_automatic_options=False)
@blueprint.route("/<program>/login", methods=["POST"], provide_automatic_options=False)
def login(program: Optional[str] = None) -> Response:
    try:
        _served(program)
        user, skey = current_app.extensions["wxlogin"].login(read_code(), program)
    except WxLoginError as error:
        signals.user_login_failed.send(current_app._get_current_object(), error=error)  # type: ignore[attr-defined]
        raise
    expires_in = int(current_app.config["WXLOGIN_SESSION_IDLE_TIMEOUT"])
    return _ok({"skey": skey, "expires_in": expires_in, "openid": user.openid})


@blueprint.route("/logout", methods=["POST"], provide_automatic_options=False)
@blueprint.route("/<program>/logout", methods=["POST"], provide_automatic_options=False)
def logout(program: Optional[str] = None) -> Response:
    current_app.extensions["wxlogin"].logout(program)
    return _ok({})


def other_method(program: Optional[str] = None) -> Response:
    """Any method but POST: an unknown program is 404, OPTIONS an empty 200, the rest a JSON 405."""
    _served(program)
    if request.method == "OPTIONS":
        response = current_app.response_class()
        response.headers["Allow"] = ALLOW
        return response
    raise BadLoginRequest("Use POST.", error="method_not_allowed", status=405)


def _served(program: Optional[str]) -> None:
    """404 (``mini_program_unknown``) unless ``program`` is configured: checked before the body is read."""
    current_app.extensions["wxlogin"]._state().program(program)


@blueprint.record
def _route_other_methods(state: BlueprintSetupState) -> None:
    """Send every other method on :data:`PATHS` to :func:`other_method`, through one rule per path.

    Flask's ``add_url_rule`` always lists methods, so an unlisted one (``PROPFIND``)
    would get werkzeug's HTML 405; a werkzeug ``Rule`` without ``methods`` matches
    every method, and is tried after the POST rules added before it.
    """
    endpoint = f"{state.name_prefix}.{state.name}.{other_method.__name__}".lstrip(".")
    prefix = (state.url_prefix or "").rstrip("/")
    for path in PATHS:
        state.app.url_map.add(Rule(prefix + path, endpoint=endpoint, subdomain=state.subdomain))
    state.app.view_functions[endpoint] = other_method


def read_code() -> str:
    """The wx.login code from a JSON object or string, a form field, or the bare body."""
    raw = _read_body()
    if request.mimetype in _FORMS:
        code: Any = request.form.get("code")
    else:
        code = _code_from_body(raw)
    return checked_code(code)


def _read_body() -> bytes:
    """The body, read once (forms parse the cached copy); 413 past :data:`MAX_BODY_BYTES`.

    Reading stops one byte past the limit, so a chunked body (no
    ``Content-Length``) is measured as well as a declared one.
    """
    request.max_content_length = MAX_BODY_BYTES + 1
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge:  # a declared Content-Length over the limit
        raise _too_large() from None
    # The WSGI server's input stream raises what it likes (PEP 3333 names nothing):
    # gunicorn's InvalidChunkSize or NoMoreData, werkzeug's ClientDisconnected, resets.
    except Exception as exc:  # not our logic: any failure of a foreign stream
        log.info("unreadable login body (%s)", type(exc).__name__)
        raise _body_invalid("The request body could not be read: it is truncated or badly chunked.") from None
    if len(raw) > MAX_BODY_BYTES:
        raise _too_large()
    if request.content_length is not None and len(raw) < request.content_length:
        raise _body_invalid("The request body is shorter than its Content-Length.")
    return raw


def _code_from_body(raw: bytes) -> Optional[Any]:
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise _body_invalid("The request body is not UTF-8 text.") from None
    if not text:
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        if text[0] in '{["':
            raise _body_invalid("The request body is not valid JSON.") from None
        return text  # a bare code (checked_code refuses anything else)
    if isinstance(data, dict):
        return data.get("code")
    if data is None or isinstance(data, str):
        return data
    if type(data) is int and text.isdigit():
        return text  # a bare code of digits only, not a number
    raise _body_invalid('Send {"code": "<code from wx.login>"}.')


def _body_invalid(message: str) -> BadLoginRequest:
    return BadLoginRequest(message, error="body_invalid")


def _too_large() -> BadLoginRequest:
    return BadLoginRequest(f"The request body is over {MAX_BODY_BYTES} bytes.", error="body_too_large", status=413)


def _ok(data: dict) -> Response:
    response = jsonify({"code": "200", "data": data})
    response.headers["Cache-Control"] = "no-store"
    return response
