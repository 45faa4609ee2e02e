"""The logged-in user as views see it through ``current_wx_user``."""
from __future__ import annotations

from typing import Any, Optional, Union

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
        "created_at", "refreshed_at", "_user",
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
    ) -> None:
        self.session_id = session_id
        self.openid = openid
        self.session_key = session_key
        self.unionid = unionid
        self.user_id = user_id
        self.created_at = created_at
        self.refreshed_at = refreshed_at
        self._user: Any = _NOT_LOADED

    @property
    def user(self) -> Any:
        """The app's own user object, from the ``user_loader`` callback (once per request)."""
        if self._user is _NOT_LOADED:
            from flask import current_app

            self._user = current_app.extensions["wxlogin"].load_user(self.user_id)
        return self._user

    def __repr__(self) -> str:
        return f"<WxUser openid={self.openid!r} user_id={self.user_id!r}>"


class AnonymousWxUser:
    """``current_wx_user`` when the request carries no valid skey."""

    __slots__ = ()
    is_authenticated = False
    session_id = openid = session_key = unionid = user_id = user = None

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "<AnonymousWxUser>"


ANONYMOUS = AnonymousWxUser()
