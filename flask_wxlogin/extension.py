"""``WxLogin``: configuration, the cache, the blueprint, and authentication."""
from __future__ import annotations

import functools
import logging
import sys
import weakref
from typing import Any, Callable, Optional, Union

from cachelib import BaseCache
from flask import Flask, current_app, jsonify, request
from flask_caching import Cache

from . import config, redact, signals
from .client import Identity, WeChatClient
from .errors import RETRY_AFTER, ConfigurationError, Unauthorized, WxLoginError
from .store import SessionStore
from .tokens import SkeySigner
from .user import UserId, WxUser

log = logging.getLogger("flask_wxlogin")

#: Seconds for redis-py's socket and connect timeouts when we build the cache.
REDIS_SOCKET_TIMEOUT = 1.0


class _AppState:
    """What one app needs at request time."""

    __slots__ = ("config", "store", "client", "signer")

    def __init__(self, app: Flask, store: SessionStore) -> None:
        self.config = app.config
        self.store = store
        self.client = WeChatClient()
        self.signer = SkeySigner()

    def unsign(self, skey: str) -> str:
        config = self.config
        return self.signer.unsign(skey, config["SECRET_KEY"], config.get("SECRET_KEY_FALLBACKS") or ())

    def sign(self, session_id: str) -> str:
        config = self.config
        return self.signer.sign(session_id, config["SECRET_KEY"], config.get("SECRET_KEY_FALLBACKS") or ())


class WxLogin:
    """WeChat mini program login for a Flask app.

    ``WxLogin(app)`` or ``WxLogin()`` then ``init_app(app)``; pass ``cache=`` to
    keep sessions in a flask-caching ``Cache`` the app already has.
    """

    def __init__(self, app: Optional[Flask] = None, cache: Union[Cache, BaseCache, None] = None) -> None:
        self._states: "weakref.WeakKeyDictionary[Flask, _AppState]" = weakref.WeakKeyDictionary()
        self._login_callback: Optional[Callable[[Identity], UserId]] = None
        self._user_loader: Optional[Callable[[UserId], Any]] = None
        self._unauthorized_callback: Optional[Callable[[Unauthorized], Any]] = None
        if app is not None:
            self.init_app(app, cache)

    def init_app(self, app: Flask, cache: Union[Cache, BaseCache, None] = None) -> None:
        """Check the config, set up the session cache and mount the login blueprint."""
        from .cli import wxlogin_cli
        from .views import blueprint

        try:
            config.apply_defaults(app.config)
            store = SessionStore(_cache_backend(app, cache), app.config)
        except ValueError as exc:
            raise ConfigurationError(f"flask-wxlogin: {exc}") from None
        self._states[app] = _AppState(app, store)
        app.extensions["wxlogin"] = self
        app.register_blueprint(blueprint, url_prefix=app.config["WXLOGIN_URL_PREFIX"])
        app.cli.add_command(wxlogin_cli)
        if WxLoginError not in app.error_handler_spec[None][None]:
            app.register_error_handler(WxLoginError, self.error_response)
        redact.install()

    # -- callbacks -----------------------------------------------------------

    def on_login(self, callback: Callable[[Identity], UserId]) -> Callable[[Identity], UserId]:
        """Register ``callback(identity)``, run at each login before the session is stored.

        ``identity`` has ``openid``, ``unionid`` and ``session_key``; the callback
        returns the app's own user id (str, int or None), kept as ``user_id``.
        """
        self._login_callback = callback
        return callback

    def user_loader(self, callback: Callable[[UserId], Any]) -> Callable[[UserId], Any]:
        """Register ``callback(user_id)`` that returns the app's user for ``current_wx_user.user``."""
        self._user_loader = callback
        return callback

    def unauthorized_handler(self, callback: Callable[[Unauthorized], Any]) -> Callable[[Unauthorized], Any]:
        """Register ``callback(error)`` whose return value answers every 401."""
        self._unauthorized_callback = callback
        return callback

    def load_user(self, user_id: UserId) -> Any:
        if self._user_loader is None or user_id is None:
            return None
        return self._user_loader(user_id)

    # -- state of the current app ---------------------------------------------

    @property
    def store(self) -> SessionStore:
        """The current app's session store."""
        return self._states[current_app._get_current_object()].store  # type: ignore[attr-defined]

    def _state(self) -> _AppState:
        return self._states[current_app._get_current_object()]  # type: ignore[attr-defined]

    # -- login, authentication, logout ---------------------------------------

    def login(self, code: str) -> "tuple[WxUser, str]":
        """Exchange ``code`` at WeChat and open a session: ``(user, skey)``."""
        state = self._state()
        identity = state.client.code2session(code)
        user_id = None if self._login_callback is None else self._login_callback(identity)
        if user_id is not None and (isinstance(user_id, bool) or not isinstance(user_id, (str, int))):
            raise TypeError("the on_login callback must return a str, an int or None")
        previous = _presented_session_id(state)
        user = state.store.create(identity.openid, identity.session_key, identity.unionid, user_id)
        if previous is not None:
            state.store.revoke(previous)
        signals.user_logged_in.send(current_app._get_current_object(), user=user)  # type: ignore[attr-defined]
        return user, state.sign(user.session_id)

    def authenticate(self) -> WxUser:
        """The session the request's skey names, or :class:`Unauthorized`."""
        return self.authenticate_environ(current_app._get_current_object(), request.environ)  # type: ignore[attr-defined]

    def authenticate_environ(self, app: Flask, environ: "dict[str, Any]") -> WxUser:
        """:meth:`authenticate` for callers that hold the app and WSGI environ already."""
        state = self._states[app]
        skey = _skey_in(environ, state.config)
        if skey is None:
            raise Unauthorized()
        user = state.store.load(state.unsign(skey))
        if user is None:
            raise Unauthorized(
                "The session has expired or was ended; log in again.", error="session_expired"
            )
        return user

    def logout(self) -> None:
        """End the session the request's skey names; an already-ended one is fine."""
        state = self._state()
        skey = _skey_in(request.environ, state.config)
        if skey is None:
            raise Unauthorized()
        session_id = state.unsign(skey)
        user = state.store.load(session_id)
        state.store.revoke(session_id)
        if user is not None:
            signals.user_logged_out.send(current_app._get_current_object(), user=user)  # type: ignore[attr-defined]

    def logout_all(self, openid: str) -> int:
        """End every session of ``openid`` (inside an app context); how many there were."""
        return self._state().store.end_all(openid)

    # -- errors ----------------------------------------------------------------

    def error_response(self, error: WxLoginError) -> Any:
        """The JSON answer for ``error`` (or the ``unauthorized_handler``'s, for a 401)."""
        if isinstance(error, Unauthorized) and self._unauthorized_callback is not None:
            return self._unauthorized_callback(error)
        response = jsonify(error.to_dict())
        response.status_code = error.status
        response.headers["Cache-Control"] = "no-store"
        if error.status in RETRY_AFTER:
            response.headers["Retry-After"] = str(RETRY_AFTER[error.status])
        if error.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="wxlogin"'
        if error.status == 405:
            response.headers["Allow"] = "POST, OPTIONS"
        return response


def _skey_in(environ: "dict[str, Any]", config: Any) -> Optional[str]:
    """The skey from the configured header, else from ``Authorization: Bearer``."""
    skey = environ.get(_environ_key(config["WXLOGIN_TOKEN_HEADER"]), "").strip()
    if not skey:
        scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        skey = token.strip() if scheme.lower() == "bearer" else ""
    return skey or None


@functools.lru_cache(maxsize=8)
def _environ_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


def _presented_session_id(state: _AppState) -> Optional[str]:
    """The session id of a valid skey the request carries, if any."""
    skey = _skey_in(request.environ, state.config)
    if skey is None:
        return None
    try:
        return state.unsign(skey)
    except Unauthorized:
        return None


def _one_quick_retry() -> Any:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), 1)


def _cache_backend(app: Flask, cache: Union[Cache, BaseCache, None]) -> BaseCache:
    """The cachelib object sessions live in: given, built from ``CACHE_*``, or the embedded default."""
    if isinstance(cache, BaseCache):
        return cache
    if isinstance(cache, Cache):
        try:
            return app.extensions["cache"][cache]
        except KeyError:
            raise ValueError("the cache passed to WxLogin is not initialised on this app") from None
    if cache is not None:
        raise ValueError(f"cache must be a flask_caching.Cache, not {type(cache).__name__}")
    own = Cache()
    if "CACHE_TYPE" not in app.config:
        log.warning(
            "flask-wxlogin keeps sessions in this process's memory: they are not shared "
            "between processes or hosts and are lost on restart. Set CACHE_TYPE=RedisCache "
            "and CACHE_REDIS_URL for production."
        )
        own.init_app(app, config={"CACHE_TYPE": "SimpleCache", "CACHE_THRESHOLD": sys.maxsize})
    else:
        overrides: "dict[str, Any]" = {}
        if "CACHE_KEY_PREFIX" not in app.config:
            overrides["CACHE_KEY_PREFIX"] = ""
        if "CACHE_THRESHOLD" not in app.config:
            # cachelib evicts live entries past 500; sessions must stay until they time out.
            if "SimpleCache" in str(app.config["CACHE_TYPE"]):
                overrides["CACHE_THRESHOLD"] = sys.maxsize
            elif "FileSystemCache" in str(app.config["CACHE_TYPE"]):
                overrides["CACHE_THRESHOLD"] = 0
        if "redis" in str(app.config["CACHE_TYPE"]).lower():
            options = dict(app.config.get("CACHE_OPTIONS") or {})
            options.setdefault("socket_timeout", REDIS_SOCKET_TIMEOUT)
            options.setdefault("socket_connect_timeout", REDIS_SOCKET_TIMEOUT)
            options.setdefault("retry", _one_quick_retry())
            overrides["CACHE_OPTIONS"] = options
        own.init_app(app, config=overrides)
    return app.extensions["cache"][own]
