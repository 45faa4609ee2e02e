"""The logged-in user as views see it through ``current_wx_user``."""
from __future__ import annotations

from typing import Any, Dict, NamedTuple, Optional, Union

from flask import current_app

from .config import MAIN_PROGRAM
from .errors import Unauthorized
from .tokens import session_ref

#: What an ``on_login`` callback may return and the session keeps.
UserId = Optional[Union[str, int]]

_NOT_LOADED = object()


class WxUser:
    """One server-side session: who the user is and when the session began.

    ``session_key`` is WeChat's key for this user's encrypted data. It stays on
    the server: it is in no response and no ``repr``.
    """

    __slots__ = (
        "session_id", "openid", "session_key", "unionid", "user_id",
        "created_at", "refreshed_at", "appid", "program", "_user",
    )
    is_authenticated = True

    def __init__(
        self,
        session_id: str,
        openid: str,
        session_key: str,
        unionid: Optional[str],
        user_id: UserId,
        created_at: int,
        refreshed_at: int,
        appid: str = "",
        program: str = MAIN_PROGRAM,
    ) -> None:
        self.session_id = session_id
        self.openid = openid
        self.session_key = session_key
        self.unionid = unionid
        self.user_id = user_id
        self.created_at = created_at
        self.refreshed_at = refreshed_at
        #: The AppID and the name (``"default"`` for the main one) of the session's mini program.
        self.appid = appid
        self.program = program
        self._user: Any = _NOT_LOADED

    @property
    def ref(self) -> str:
        """The session's public name in :meth:`~flask_wxlogin.WxLogin.sessions` (not a secret)."""
        return session_ref(self.session_id)

    @property
    def user(self) -> Any:
        """The app's own user object, from the ``user_loader`` callback (once per request)."""
        if self._user is _NOT_LOADED:
            self._user = current_app.extensions["wxlogin"].load_user(self.user_id)
        return self._user

    def decrypt(self, encrypted_data: str, iv: str) -> Dict[str, Any]:
        """The JSON object in WeChat's ``encryptedData`` (AES-128-CBC with the session_key).

        Tries this session's key, then the user's newest one (a login on
        another device replaces it at WeChat). Raises
        :class:`~flask_wxlogin.DecryptError` (400) on any failure.
        """
        return current_app.extensions["wxlogin"].decrypt(self, encrypted_data, iv)  # type: ignore[no-any-return]

    def check_signature(self, raw_data: str, signature: str) -> bool:
        """Whether ``signature`` is ``sha1(rawData + session_key)`` (constant-time compare)."""
        return current_app.extensions["wxlogin"].check_signature(self, raw_data, signature)  # type: ignore[no-any-return]

    def check_session_key(self) -> bool:
        """Ask WeChat (``wxa/checksession``) whether this session's key is still valid."""
        return current_app.extensions["wxlogin"].check_session_key(self)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<WxUser openid={self.openid!r} user_id={self.user_id!r}>"


class SessionInfo(NamedTuple):
    """One live session of a user, as :meth:`~flask_wxlogin.WxLogin.sessions` lists it.

    Times are seconds since the epoch; ``last_seen_at`` moves only when the
    session slides (every tenth of the idle timeout). ``ip`` and
    ``user_agent`` are those of the login (``request.remote_addr``: behind a
    proxy, use Werkzeug's ``ProxyFix``), 64 characters at most, and ``None``
    with ``WXLOGIN_TRACK_DEVICES = False``.
    """

    #: An opaque name for the session: not the skey, and no help in forging one.
    ref: str
    created_at: int
    last_seen_at: int
    ip: Optional[str]
    user_agent: Optional[str]
    #: Whether this is the session of the request being served.
    current: bool


class AnonymousWxUser:
    """``current_wx_user`` when the request carries no valid skey."""

    __slots__ = ()
    is_authenticated = False
    session_id = ref = openid = session_key = unionid = user_id = user = appid = program = None

    def decrypt(self, encrypted_data: str, iv: str) -> Dict[str, Any]:
        raise Unauthorized()

    def check_signature(self, raw_data: str, signature: str) -> bool:
        raise Unauthorized()

    def check_session_key(self) -> bool:
        raise Unauthorized()

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "<AnonymousWxUser>"


ANONYMOUS = AnonymousWxUser()
