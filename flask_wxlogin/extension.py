"""``WxLogin``: configuration, the cache, the blueprint, and authentication."""
from __future__ import annotations

import functools
import logging
import math
import sys
import weakref
from typing import Any, Callable, List, Optional, Union

from cachelib import BaseCache
from flask import Flask, current_app, g, has_request_context, jsonify, request
from flask_caching import Cache
from werkzeug.exceptions import HTTPException

from . import audit, config, crypto, metrics, redact, signals
from .access_token import SharedAccessToken
from .client import Identity, WeChatClient, checked_code
from .errors import (
    ALLOW, RETRY_AFTER, CallbackError, ConfigurationError, Unauthorized, WeChatError, WxLoginError,
    mini_program_unknown,
)
from .ratelimit import LoginRateLimit
from .store import SessionStore, backend_for, without_pickle
from .tokens import SkeySigner, salt_for, split_session_id
from .user import SessionInfo, UserId, WxUser

log = logging.getLogger("flask_wxlogin")

#: Seconds for redis-py's socket and connect timeouts when we build the cache.
REDIS_SOCKET_TIMEOUT = 1.0


class _Program:
    """One mini program the app serves: its sessions, skey signer and access_token.

    Its AppID, AppSecret and key prefix are read from the config at each use.
    """

    __slots__ = ("name", "store", "client", "_signers")

    def __init__(self, name: str, backend: Any, app_config: Any, client: WeChatClient) -> None:
        self.name = name
        self.store = SessionStore(backend, app_config, name)
        self.client = client
        self._signers: "dict[str, SkeySigner]" = {}

    def _signer(self, appid: str) -> SkeySigner:
        """The signer of skeys for ``appid`` (the salt holds it), made once per AppID."""
        signer = self._signers.get(appid)
        if signer is None:
            signer = self._signers[appid] = SkeySigner(salt_for(appid))
        return signer

    def unsign(self, skey: str, app_config: Any, appid: Optional[str] = None) -> str:
        """The session id in ``skey`` (signed for ``appid``, by default this program's), or 401."""
        return self._signer(appid or self.store.appid).unsign(
            skey, app_config["SECRET_KEY"], app_config.get("SECRET_KEY_FALLBACKS") or ()
        )

    def sign(self, session_id: str, app_config: Any) -> str:
        return self._signer(self.store.appid).sign(
            session_id, app_config["SECRET_KEY"], app_config.get("SECRET_KEY_FALLBACKS") or ()
        )

    def session(self, skey: str, app_config: Any) -> Optional[WxUser]:
        """:meth:`unsign` then load: the live session ``skey`` names, else ``None``; the settings read once."""
        settings = self.store.settings()
        return self.store.load(self.unsign(skey, app_config, settings[0]), settings)

    def code2session(self, code: str) -> Identity:
        appid, secret, _ = self.store.settings()
        return self.client.code2session(appid, secret, code)

    def access_token(self) -> SharedAccessToken:
        appid, secret, prefix = self.store.settings()
        return SharedAccessToken(
            self.store.backend,
            f"{prefix}{config.ACCESS_TOKEN_NAMESPACE}:{{{appid}}}",
            fetch=lambda: self._fetch_token(appid, secret),
            lock_seconds=math.ceil(self.store.config["WXLOGIN_HTTP_TIMEOUT"]) + 1,
        )

    def _fetch_token(self, appid: str, secret: str) -> "tuple[str, int]":
        try:
            fetched = self.client.stable_token(appid, secret)
        except WeChatError as error:
            metrics.access_token_refresh(self.name, error.error)
            raise
        metrics.access_token_refresh(self.name, "ok")
        return fetched


class _AppState:
    """What one app needs at request time."""

    __slots__ = ("config", "client", "backend", "programs", "main", "rate_limit")

    def __init__(self, app: Flask, backend: Any) -> None:
        self.config = app.config
        self.client = WeChatClient(app.config)
        self.backend = backend
        self.main = _Program(config.MAIN_PROGRAM, backend, app.config, self.client)
        self.programs = {config.MAIN_PROGRAM: self.main}
        self.rate_limit = LoginRateLimit(backend)

    def program(self, name: Optional[str]) -> _Program:
        """The mini program called ``name`` (``None``: the main one), or a 404 error."""
        if name is None:
            return self.main
        if config.program_settings(self.config, name) is None:
            raise mini_program_unknown()
        program = self.programs.get(name)
        if program is None:
            program = self.programs.setdefault(name, _Program(name, self.backend, self.config, self.client))
        return program


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
            near_cache_prefix = app.config["WXLOGIN_KEY_PREFIX"] if app.config["WXLOGIN_NEAR_CACHE"] else None
            self._states[app] = _AppState(app, backend_for(_cache_backend(app, cache), near_cache_prefix))
        except ValueError as exc:
            raise ConfigurationError(f"flask-wxlogin: {exc}") from None
        except ModuleNotFoundError as exc:
            if (exc.name or "").partition(".")[0] != "redis":
                raise
            raise ConfigurationError(
                f"flask-wxlogin: CACHE_TYPE={app.config.get('CACHE_TYPE')!r} needs the redis package: "
                'pip install "flask-wxlogin[redis]"'
            ) from None
        for key, closest in config.unknown_keys(app.config):
            hint = f"; did you mean {closest}?" if closest else ""
            log.warning("flask-wxlogin ignores the unknown config key %s%s", key, hint)
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
        if user_id is None:
            return None
        return self._run_callback("user_loader", self._user_loader, user_id)

    @staticmethod
    def _run_callback(name: str, callback: Optional[Callable[[Any], Any]], argument: Any) -> Any:
        """``callback(argument)``; the app's exception becomes a logged :class:`CallbackError` (500)."""
        if callback is None:
            return None
        try:
            return callback(argument)
        except (WxLoginError, HTTPException):
            raise  # the app's own answer: refused, say, with Unauthorized or abort(403)
        except Exception:  # the app's code, not ours: whatever it raises is a 500 in the house shape
            log.exception("the %s callback failed", name)
        raise CallbackError()

    # -- state of the current app ---------------------------------------------

    @property
    def store(self) -> SessionStore:
        """The current app's session store (of its main mini program)."""
        return self._state().main.store

    def _state(self) -> _AppState:
        return self._states[current_app._get_current_object()]  # type: ignore[attr-defined]

    # -- login, authentication, logout ---------------------------------------

    def login(self, code: str, program: Optional[str] = None) -> "tuple[WxUser, str]":
        """Exchange ``code`` at WeChat and open a session of mini ``program``: ``(user, skey)``.

        A valid skey of that program on the request names a session this one replaces. Past
        ``WXLOGIN_LOGIN_RATE_LIMIT`` for the request's IP, :class:`LoginRateLimited` before WeChat is called.
        """
        state = self._state()
        chosen = state.program(program)
        state.rate_limit.hit(
            state.config["WXLOGIN_LOGIN_RATE_LIMIT"], state.config["WXLOGIN_KEY_PREFIX"],
            chosen.name, request.remote_addr or "",
        )
        identity = chosen.code2session(code)
        previous = _presented_session_id(state, chosen)
        parts = None if previous is None else split_session_id(previous)
        if parts is None or parts[0] != identity.openid:
            user, skey = self._open_session(identity, program, None, None)
            # Another user's session (or none): its key is not this user's, so it ends on its own.
            if parts is not None and chosen.store.end_session(*parts):
                audit.record("session_ended", program=chosen.name, openid=parts[0], ref=parts[1], by="self")
            return user, skey
        # The user's own session ends in the login's atomic step, before the cap counts it.
        return self._open_session(identity, program, None, parts[1])

    def open_session(
        self, identity: Identity, program: Optional[str] = None, *, user_id: UserId = None
    ) -> "tuple[WxUser, str]":
        """Open a session of mini ``program`` for ``identity``, as a login does after WeChat: ``(user, skey)``.

        Runs the ``on_login`` callback unless ``user_id`` is given, so a failing
        callback stores nothing. :func:`flask_wxlogin.testing.issue_skey` uses it.
        """
        return self._open_session(identity, program, user_id, None)

    def _open_session(
        self, identity: Identity, program: Optional[str], user_id: UserId, replaces: Optional[str]
    ) -> "tuple[WxUser, str]":
        """:meth:`open_session`, ending the user's session ``replaces`` (a ref) in the same step."""
        state = self._state()
        chosen = state.program(program)
        if user_id is not None:
            if not _is_user_id(user_id):
                raise TypeError(f"user_id must be a str or an int, not {type(user_id).__name__}")
        else:
            user_id = self._run_callback("on_login", self._login_callback, identity)
            if user_id is not None and not _is_user_id(user_id):
                log.error("the on_login callback returned a %s, not a str, an int or None", type(user_id).__name__)
                raise CallbackError()
        device = None
        if state.config["WXLOGIN_TRACK_DEVICES"] and has_request_context():
            device = (request.remote_addr, request.user_agent.string)
        user, evicted, replaced = chosen.store.create(
            identity.openid, identity.session_key, identity.unionid, user_id, device, replaces
        )
        if replaced:
            audit.record("session_ended", program=chosen.name, openid=user.openid, ref=replaces, by="self")
        for ref in evicted:
            audit.record("session_ended", program=chosen.name, openid=user.openid, ref=ref, by="eviction")
        signals.user_logged_in.send(current_app._get_current_object(), user=user)  # type: ignore[attr-defined]
        return user, chosen.sign(user.session_id, state.config)

    def authenticate(self, program: Optional[str] = None) -> WxUser:
        """The session of mini ``program`` the request's skey names, or :class:`Unauthorized`."""
        return self.authenticate_environ(current_app._get_current_object(), request.environ, program)  # type: ignore[attr-defined]

    def authenticate_environ(
        self, app: Flask, environ: "dict[str, Any]", program: Optional[str] = None
    ) -> WxUser:
        """:meth:`authenticate` for callers that hold the app and WSGI environ already."""
        state = self._states[app]
        chosen = state.program(program)
        skey = _skey_in(environ, state.config)
        if skey is None:
            raise Unauthorized()
        user = chosen.session(skey, state.config)
        if user is None:
            raise Unauthorized(
                "The session has expired or was ended; log in again.", error="session_expired"
            )
        return user

    def logout(self, program: Optional[str] = None) -> None:
        """End the session the request's skey names; an already-ended one is fine."""
        state = self._state()
        chosen = state.program(program)
        skey = _skey_in(request.environ, state.config)
        if skey is None:
            raise Unauthorized()
        session_id = chosen.unsign(skey, state.config)
        user = chosen.store.load(session_id)
        if user is not None and chosen.store.revoke(session_id):
            audit.record("logout", program=chosen.name, openid=user.openid, ref=user.ref)
            signals.user_logged_out.send(current_app._get_current_object(), user=user)  # type: ignore[attr-defined]

    def logout_all(self, openid: str, program: Optional[str] = None) -> int:
        """End every session of ``openid`` (inside an app context); how many were live.

        Atomic against concurrent logins on Redis and the embedded cache: no
        session that began before the call outlives it.
        """
        chosen = self._state().program(program)
        count = chosen.store.end_all(openid)
        audit.record("logout_all", program=chosen.name, openid=openid, count=count)
        return count

    # -- the devices list ------------------------------------------------------

    def sessions(self, openid: str, program: Optional[str] = None) -> List[SessionInfo]:
        """The live sessions of ``openid`` in mini ``program``, most recently seen first.

        Inside a request, ``current`` marks the one whose skey it carries.
        """
        state = self._state()
        chosen = state.program(program)
        return chosen.store.sessions(openid, _current_ref(state, chosen, openid))

    def end_session(self, openid: str, ref: str, program: Optional[str] = None) -> bool:
        """End the session ``ref`` (from :meth:`sessions`) of ``openid``; whether it was live."""
        state = self._state()
        chosen = state.program(program)
        ended = chosen.store.end_session(openid, ref)
        if ended:
            current = _current_ref(state, chosen, openid)
            by = "admin" if current is None else "self" if current == ref else "other_device"
            audit.record("session_ended", program=chosen.name, openid=openid, ref=ref, by=by)
        return ended

    def logout_others(self) -> int:
        """Inside a protected request: end the user's other sessions in its mini program; how many."""
        user = g.get("_wxlogin_user")
        if not isinstance(user, WxUser):
            user = self.authenticate()
        chosen = self._state().program(user.program)
        ended = chosen.store.end_others(user.openid, user.ref)
        for ref in ended:
            audit.record("session_ended", program=chosen.name, openid=user.openid, ref=ref, by="other_device")
        return len(ended)

    # -- open data and server APIs ---------------------------------------------

    def access_token(self, program: Optional[str] = None) -> str:
        """A valid access_token of mini ``program``, shared through the cache by every worker."""
        return self._state().program(program).access_token().get()

    def phone_number(self, code: str, program: Optional[str] = None) -> "dict[str, Any]":
        """Exchange a ``getPhoneNumber`` button's code: ``phoneNumber``, ``purePhoneNumber``, ``countryCode``."""
        code = checked_code(code)
        state = self._state()
        return state.program(program).access_token().call(lambda token: state.client.phone_number(token, code))

    def decrypt(self, user: WxUser, encrypted_data: str, iv: str) -> "dict[str, Any]":
        """``user.decrypt``: with the session's key, else the user's newest one."""
        return crypto.decrypt(encrypted_data, iv, self._session_keys(user), user.appid, user.openid)

    def check_signature(self, user: WxUser, raw_data: str, signature: str) -> bool:
        """``user.check_signature``: the session's key, else the user's newest one."""
        return crypto.raw_data_signature_ok(raw_data, signature, self._session_keys(user))

    def _session_keys(self, user: WxUser) -> "tuple[crypto.KeySource, ...]":
        """The session's own key, then (fetched only if needed) the user's newest one."""
        store = self._state().program(user.program).store
        return (user.session_key, lambda: store.newest_session_key(user.openid))

    def check_session_key(self, user: WxUser) -> bool:
        """``user.check_session_key``: ask WeChat whether the session's key is still valid."""
        state = self._state()
        signature = crypto.login_state_signature(user.session_key)
        return state.program(user.program).access_token().call(
            lambda token: state.client.check_session(token, user.openid, signature)
        )

    # -- errors ----------------------------------------------------------------

    def error_response(self, error: WxLoginError) -> Any:
        """The JSON answer for ``error`` (or the ``unauthorized_handler``'s, for a 401)."""
        if isinstance(error, Unauthorized) and self._unauthorized_callback is not None:
            return self._unauthorized_callback(error)
        response = jsonify(error.to_dict())
        response.status_code = error.status
        response.headers["Cache-Control"] = "no-store"
        retry_after = error.retry_after or RETRY_AFTER.get(error.status)
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        if error.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="wxlogin"'
        if error.status == 405:
            response.headers["Allow"] = ALLOW
        return response


def _is_user_id(value: Any) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool)


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


def _presented_session_id(state: _AppState, program: _Program) -> Optional[str]:
    """The session id of a valid skey of ``program`` the request carries, if any."""
    skey = _skey_in(request.environ, state.config)
    if skey is None:
        return None
    try:
        return program.unsign(skey, state.config)
    except Unauthorized:
        return None


def _current_ref(state: _AppState, program: _Program, openid: str) -> Optional[str]:
    """The ref of the request's session of ``openid`` in ``program``, if a request carries one."""
    if not has_request_context():
        return None
    session_id = _presented_session_id(state, program)
    parts = None if session_id is None else split_session_id(session_id)
    return parts[1] if parts is not None and parts[0] == openid else None


def _immediate_retry(retries: int) -> Any:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), retries)


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
        cache_type = str(app.config["CACHE_TYPE"]).lower()
        if "redis" in cache_type:
            options = dict(app.config.get("CACHE_OPTIONS") or {})
            options.setdefault("socket_timeout", REDIS_SOCKET_TIMEOUT)
            options.setdefault("socket_connect_timeout", REDIS_SOCKET_TIMEOUT)
            options.setdefault("retry", _immediate_retry(1))
            if "sentinel" in cache_type:
                # flask-caching gives the sentinels only the sentinel_* options. No retry of
                # their own: the master connection's retry asks them again.
                options.setdefault("sentinel_socket_timeout", REDIS_SOCKET_TIMEOUT)
                options.setdefault("sentinel_socket_connect_timeout", REDIS_SOCKET_TIMEOUT)
                options.setdefault("sentinel_retry", _immediate_retry(0))
            overrides["CACHE_OPTIONS"] = options
        own.init_app(app, config=overrides)
    return without_pickle(app.extensions["cache"][own])
