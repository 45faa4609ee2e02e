"""Every error the extension raises, rooted in :class:`WxLoginError`.

Each error knows the HTTP status and the machine-readable ``error`` name it is
answered with, so one handler turns any of them into the house JSON shape.
Apps override that answer with ``app.errorhandler(WxLoginError)`` (or a
subclass).
"""
from __future__ import annotations

from typing import Any, Dict, Optional


#: ``Retry-After`` seconds sent with these statuses.
RETRY_AFTER = {429: 60, 502: 5, 503: 5, 504: 5}
#: The ``Allow`` header of the login blueprint's 405 and OPTIONS answers.
ALLOW = "POST, OPTIONS"


def mini_program_unknown() -> "BadLoginRequest":
    """404: no mini program of the requested name is configured (now)."""
    return BadLoginRequest(
        "No mini program of that name is configured here.", error="mini_program_unknown", status=404
    )


class WxLoginError(Exception):
    """Base class. Subclasses set ``status``, ``error`` and ``message``."""

    status: int = 500
    error: str = "wxlogin_error"
    message: str = "The login service failed."

    def __init__(
        self,
        message: Optional[str] = None,
        *,
        error: Optional[str] = None,
        status: Optional[int] = None,
        errcode: Optional[int] = None,
    ) -> None:
        if message is not None:
            self.message = message
        if error is not None:
            self.error = error
        if status is not None:
            self.status = status
        #: WeChat's ``errcode`` when the error came from WeChat.
        self.errcode = errcode
        super().__init__(self.message)

    def to_dict(self) -> Dict[str, Any]:
        """The JSON body: ``code`` (the HTTP status as a string), ``error``, ``message``."""
        body: Dict[str, Any] = {"code": str(self.status), "error": self.error, "message": self.message}
        if self.errcode is not None:
            body["errcode"] = self.errcode
        return body


class ConfigurationError(WxLoginError):
    """The app's configuration cannot work; raised by ``init_app``."""

    error = "configuration_error"


class BadLoginRequest(WxLoginError):
    """The client sent a login request we cannot use (4xx)."""

    status = 400
    error = "code_missing"
    message = "The request carries no login code."


class Unauthorized(WxLoginError):
    """No valid session: the client should log in again (401)."""

    status = 401
    error = "skey_missing"
    message = "Log in first: the request carries no skey."


class WeChatError(WxLoginError):
    """WeChat refused the call, failed, or answered something unusable."""

    status = 502
    error = "wechat_error"
    message = "WeChat answered with an error."


class StoreUnavailable(WxLoginError):
    """The session cache cannot be read or written (503)."""

    status = 503
    error = "session_store_unavailable"
    message = "The session store is unavailable; try again shortly."


class DecryptError(WxLoginError):
    """Encrypted open data that cannot be used (400).

    ``error`` is ``session_key_stale`` when no key we hold decrypts it (the
    client should call ``wx.login``, then retry once), ``data_malformed`` for
    bad base64 or lengths, ``watermark_mismatch`` for another app's data,
    ``openid_mismatch`` for another user's, ``data_tampered`` when the first
    block is not what WeChat writes (the client altered the ``iv``).
    """

    status = 400
    error = "data_malformed"
    message = "The encrypted data cannot be decrypted."


class AccessTokenUnavailable(WxLoginError):
    """No access_token could be had in time: another caller holds the refresh lock (503)."""

    status = 503
    error = "access_token_unavailable"
    message = "WeChat's access token is being refreshed; try again shortly."
