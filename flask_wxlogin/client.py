"""WeChat's HTTP API: one pooled session per app, bounded calls, errcode -> error.

Every endpoint goes through :meth:`WeChatClient._call`, which maps WeChat's
``errcode`` through a table per endpoint (over :data:`COMMON_ERRCODES`) to the
house error shape. Credentials and tokens are passed in by the caller; this
module keeps no state but the connection pool.
"""
from __future__ import annotations

import json
import logging
import re
import time
from typing import Any, Dict, Mapping, NamedTuple, Optional, Tuple

import requests

from . import metrics
from .errors import BadLoginRequest, WeChatError
from .tokens import OPENID
from .transport import WatchedAdapter, bad_response, fetch, wechat_error

log = logging.getLogger("flask_wxlogin")

#: What WeChat's base64 session_keys look like (openids and unionids: :data:`~.tokens.OPENID`).
_KEY = re.compile(r"[A-Za-z0-9+/=]{1,128}")
#: wx.login and getPhoneNumber codes: short runs of letters, digits, ``-`` and ``_``.
CODE = re.compile(r"[A-Za-z0-9_-]+")
MAX_CODE_LENGTH = 128
#: access_tokens are letters, digits, ``_`` and ``-``, some 150 characters.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,1024}")
#: WeChat says 7200 s; a longer life is not WeChat (and past 2**63 Redis' SET EX fails).
MAX_TOKEN_SECONDS = 24 * 3600
#: An errcode sent as a string: ASCII digits only (``str.isdigit`` takes "²" and "٣").
_ERRCODE = re.compile(r"-?[0-9]{1,10}")
#: getuserphonenumber's fields: digits, an optional ``+`` before the country code,
#: and in ``phoneNumber`` the spaces or dashes of a formatted number.
_PURE_PHONE = re.compile(r"[0-9]{1,20}")
_COUNTRY_CODE = re.compile(r"\+?[0-9]{1,4}")
_PHONE = re.compile(r"\+?[0-9][0-9 -]{0,30}")

Errcodes = Mapping[int, Tuple[int, str, str]]

#: errcodes every endpoint may answer -> (HTTP status, error, message).
COMMON_ERRCODES: Errcodes = {
    -1: (503, "wechat_busy", "WeChat is busy; try again shortly."),
    45011: (429, "wechat_rate_limited", "WeChat's per-user rate limit was hit; retry in a minute."),
    40013: (502, "wechat_config_rejected", "WeChat rejected the server's AppID."),
    40125: (502, "wechat_config_rejected", "WeChat rejected the server's AppSecret."),
    41002: (502, "wechat_config_rejected", "WeChat received no AppID from the server."),
    41004: (502, "wechat_config_rejected", "WeChat received no AppSecret from the server."),
    40164: (502, "wechat_config_rejected", "WeChat refused this server's IP address (whitelist)."),
    45009: (503, "wechat_quota_exceeded", "The mini program's daily WeChat API quota is used up."),
    40001: (502, "access_token_rejected", "WeChat rejected the server's access token."),
    40014: (502, "access_token_rejected", "WeChat rejected the server's access token."),
    42001: (502, "access_token_rejected", "WeChat says the server's access token expired."),
}

#: code2Session errcodes, over the common ones. Others: 502 wechat_error.
ERRCODES: Dict[int, Tuple[int, str, str]] = {
    **{code: COMMON_ERRCODES[code] for code in (-1, 40013, 40125, 41002, 41004)},
    40029: (401, "code_invalid", "The login code is invalid or expired; call wx.login again."),
    40163: (401, "code_used", "The login code was already used; call wx.login again."),
    41008: (401, "code_invalid", "WeChat received no login code; call wx.login again."),
    45011: (429, "wechat_rate_limited", "Too many logins for this user; retry in a minute."),
    40226: (403, "user_blocked", "WeChat flagged this user as high-risk and refused the login."),
}

#: getuserphonenumber errcodes: a bad code is the client's fault, but not a lost session.
PHONE_ERRCODES: Errcodes = {
    40029: (400, "phone_code_invalid",
            "The phone number code is invalid or expired; ask the user to tap the button again."),
    40163: (400, "phone_code_used",
            "The phone number code was already used; ask the user to tap the button again."),
}

#: errcodes meaning the access_token itself is bad: refresh it and retry once.
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})
#: checksession's "the session_key is not valid".
INVALID_SIGNATURE = 87009


class Identity(NamedTuple):
    """What code2Session tells us about the user."""

    openid: str
    session_key: str
    unionid: Optional[str]

    def __repr__(self) -> str:
        return f"Identity(openid={self.openid!r}, unionid={self.unionid!r})"


class WeChatClient:
    """Calls WeChat over one pooled ``requests.Session``."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        #: The app's config: ``WXLOGIN_API_BASE`` and ``WXLOGIN_HTTP_TIMEOUT`` are read at each call.
        self.config = config
        self.http = requests.Session()
        adapter = WatchedAdapter(pool_connections=1, pool_maxsize=32, max_retries=0)
        self.http.mount("https://", adapter)
        self.http.mount("http://", adapter)

    def code2session(self, appid: str, secret: str, code: str) -> Identity:
        """Exchange a ``wx.login`` code for the user's identity, or raise :class:`WeChatError`."""
        answer = self._call(
            "GET", "/sns/jscode2session", ERRCODES,
            params={"appid": appid, "secret": secret, "js_code": code,
                    "grant_type": "authorization_code"},
        )
        openid: Any = answer.get("openid")
        session_key: Any = answer.get("session_key")
        unionid: Any = answer.get("unionid") or None
        if not (
            _matches(OPENID, openid) and _matches(_KEY, session_key)
            and (unionid is None or _matches(OPENID, unionid))
        ):
            raise bad_response("WeChat's answer lacks a well-formed openid or session_key.")
        return Identity(openid, session_key, unionid)

    def stable_token(self, appid: str, secret: str) -> Tuple[str, int]:
        """A fresh ``(access_token, expires_in)`` from ``cgi-bin/stable_token`` (never forced)."""
        answer = self._call(
            "POST", "/cgi-bin/stable_token", COMMON_ERRCODES,
            json={"grant_type": "client_credential", "appid": appid, "secret": secret,
                  "force_refresh": False},
        )
        token: Any = answer.get("access_token")
        expires_in: Any = answer.get("expires_in")
        if not _matches(_TOKEN, token):
            raise bad_response("WeChat's answer lacks a well-formed access_token.")
        if type(expires_in) is not int or not 0 < expires_in <= MAX_TOKEN_SECONDS:
            raise bad_response(f"WeChat's expires_in is not a whole number of seconds up to {MAX_TOKEN_SECONDS}.")
        return token, expires_in

    def phone_number(self, access_token: str, code: str) -> Dict[str, Any]:
        """``phone_info`` for a ``getPhoneNumber`` code: phoneNumber, purePhoneNumber, countryCode."""
        answer = self._call(
            "POST", "/wxa/business/getuserphonenumber", PHONE_ERRCODES,
            params={"access_token": access_token}, json={"code": code},
        )
        info: Any = answer.get("phone_info")
        if not isinstance(info, dict) or not (
            _matches(_PHONE, info.get("phoneNumber")) and _matches(_PURE_PHONE, info.get("purePhoneNumber"))
            and _matches(_COUNTRY_CODE, info.get("countryCode"))
        ):
            raise bad_response("WeChat's answer lacks a well-formed phone number.")
        return {key: info[key] for key in ("phoneNumber", "purePhoneNumber", "countryCode")}

    def check_session(self, access_token: str, openid: str, signature: str) -> bool:
        """Whether WeChat still holds the session_key that made ``signature``."""
        try:
            self._call(
                "GET", "/wxa/checksession", COMMON_ERRCODES,
                params={"access_token": access_token, "signature": signature, "openid": openid,
                        "sig_method": "hmac_sha256"},
            )
        except WeChatError as error:
            if error.errcode == INVALID_SIGNATURE:
                return False
            raise
        return True

    def _call(
        self, method: str, path: str, errcodes: Errcodes,
        params: Optional[Dict[str, Any]] = None, json: Optional[Dict[str, Any]] = None,
    ) -> Dict[str, Any]:
        """WeChat's JSON answer, or the error its errcode maps to in ``errcodes``.

        Each call is counted and timed in :mod:`.metrics` under the path's last segment.
        """
        endpoint = path.rsplit("/", 1)[-1]
        started = time.perf_counter()
        try:
            answer = self._answer(method, path, errcodes, params, json)
        except WeChatError as error:
            metrics.wechat_request(endpoint, error.error, time.perf_counter() - started)
            raise
        metrics.wechat_request(endpoint, "ok", time.perf_counter() - started)
        return answer

    def _answer(
        self, method: str, path: str, errcodes: Errcodes,
        params: Optional[Dict[str, Any]], json: Optional[Dict[str, Any]],
    ) -> Dict[str, Any]:
        config = self.config
        url = config["WXLOGIN_API_BASE"].rstrip("/") + path
        body, status = fetch(self.http, method, url, config["WXLOGIN_HTTP_TIMEOUT"], params=params, json=json)
        if status != 200:
            log.warning("WeChat %s answered HTTP %s", path, status)
            raise bad_response(f"WeChat answered HTTP {status}.")
        answer = _json_object(body)
        errcode = answer.get("errcode", 0)
        if isinstance(errcode, str) and _ERRCODE.fullmatch(errcode):
            errcode = int(errcode)
        if type(errcode) is not int:
            raise bad_response("WeChat's errcode is not a number.")
        if errcode:
            raise errcode_error(errcode, errcodes, path)
        return answer


def checked_code(code: Any) -> str:
    """``code`` if it looks like a wx.login or getPhoneNumber code, else :class:`BadLoginRequest`.

    Checked before any call, so nothing odd ever reaches WeChat's query string.
    """
    if code is None or code == "":
        raise BadLoginRequest("The request carries no code.")
    if not isinstance(code, str):
        raise BadLoginRequest("The code must be a string.", error="code_malformed")
    if len(code) > MAX_CODE_LENGTH:
        raise BadLoginRequest(f"The code is over {MAX_CODE_LENGTH} characters.", error="code_too_long")
    if not CODE.fullmatch(code):
        raise BadLoginRequest("The code may hold only letters, digits, '-' and '_'.", error="code_malformed")
    return code


def errcode_error(errcode: int, errcodes: Errcodes, path: str) -> WeChatError:
    """The error for a WeChat ``errcode`` answered by ``path``."""
    status, error, message = errcodes.get(errcode) or COMMON_ERRCODES.get(
        errcode, (502, "wechat_error", "WeChat refused the call.")
    )
    log.warning("WeChat %s answered errcode %s (%s)", path, errcode, error)
    return wechat_error(status, error, message, errcode)


def _json_object(body: bytes) -> Dict[str, Any]:
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        answer = None
    if not isinstance(answer, dict):
        raise bad_response("WeChat's answer is not a JSON object.")
    return answer


def _matches(pattern: "re.Pattern[str]", value: Any) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None
