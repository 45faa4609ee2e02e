"""WeChat's HTTP API: one pooled session, bounded timeouts, errcode -> error.

The appsecret travels in the query string, so nothing here puts a URL, a
query or a library's exception text into a message: errors are raised
``from None`` and the urllib3 logger is scrubbed (see :mod:`.redact`).
"""
from __future__ import annotations

import json
import logging
import re
from typing import Any, Dict, NamedTuple, Optional, Tuple

import requests
from flask import current_app
from requests.adapters import HTTPAdapter

from .errors import WeChatError
from .transport import bad_response, fetch, wechat_error

log = logging.getLogger("flask_wxlogin")

#: What WeChat's openids/unionids and base64 session_keys look like.
_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_KEY = re.compile(r"[A-Za-z0-9+/=]{1,128}")

#: code2Session errcodes -> (HTTP status, error, message). Others: 502 wechat_error.
ERRCODES: Dict[int, Tuple[int, str, str]] = {
    -1: (503, "wechat_busy", "WeChat is busy; try again shortly."),
    40029: (401, "code_invalid", "The login code is invalid or expired; call wx.login again."),
    40163: (401, "code_used", "The login code was already used; call wx.login again."),
    41008: (401, "code_invalid", "WeChat received no login code; call wx.login again."),
    45011: (429, "wechat_rate_limited", "Too many logins for this user; retry in a minute."),
    40226: (403, "user_blocked", "WeChat flagged this user as high-risk and refused the login."),
    40013: (502, "wechat_config_rejected", "WeChat rejected the server's AppID."),
    40125: (502, "wechat_config_rejected", "WeChat rejected the server's AppSecret."),
    41002: (502, "wechat_config_rejected", "WeChat received no AppID from the server."),
    41004: (502, "wechat_config_rejected", "WeChat received no AppSecret from the server."),
}

class Identity(NamedTuple):
    """What code2Session tells us about the user."""

    openid: str
    session_key: str
    unionid: Optional[str]

    def __repr__(self) -> str:
        return f"Identity(openid={self.openid!r}, unionid={self.unionid!r})"


class WeChatClient:
    """Calls WeChat over one pooled ``requests.Session`` per app."""

    def __init__(self) -> None:
        self.http = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=32, max_retries=0)
        self.http.mount("https://", adapter)
        self.http.mount("http://", adapter)

    def code2session(self, code: str) -> Identity:
        """Exchange a ``wx.login`` code for the user's identity, or raise :class:`WeChatError`."""
        config = current_app.config
        answer = self._get_json(
            "/sns/jscode2session",
            {
                "appid": config["WXLOGIN_APPID"],
                "secret": config["WXLOGIN_SECRET"],
                "js_code": code,
                "grant_type": "authorization_code",
            },
        )
        openid: Any = answer.get("openid")
        session_key: Any = answer.get("session_key")
        unionid: Any = answer.get("unionid") or None
        if not (
            _matches(_ID, openid) and _matches(_KEY, session_key)
            and (unionid is None or _matches(_ID, unionid))
        ):
            raise bad_response("WeChat's answer lacks a well-formed openid or session_key.")
        return Identity(openid, session_key, unionid)

    def _get_json(self, path: str, params: Dict[str, Any]) -> Dict[str, Any]:
        config = current_app.config
        url = config["WXLOGIN_API_BASE"].rstrip("/") + path
        timeout = config["WXLOGIN_HTTP_TIMEOUT"]
        body, status = fetch(self.http, "GET", url, timeout, params=params)
        if status != 200:
            log.warning("WeChat %s answered HTTP %s", path, status)
            raise bad_response(f"WeChat answered HTTP {status}.")
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise bad_response("WeChat's answer is not a JSON object.")
        errcode = answer.get("errcode", 0)
        if isinstance(errcode, str) and errcode.lstrip("-").isdigit():
            errcode = int(errcode)
        if isinstance(errcode, bool) or not isinstance(errcode, int):
            raise bad_response("WeChat's errcode is not a number.")
        if errcode:
            raise errcode_error(errcode)
        return answer


def errcode_error(errcode: int) -> WeChatError:
    """The error for a WeChat ``errcode``."""
    status, error, message = ERRCODES.get(
        errcode, (502, "wechat_error", "WeChat refused the login.")
    )
    log.warning("WeChat answered errcode %s (%s)", errcode, error)
    return wechat_error(status, error, message, errcode)


def _matches(pattern: "re.Pattern[str]", value: Any) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None
