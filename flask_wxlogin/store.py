"""Server-side sessions in a flask-caching cache.

A session is one cache key, ``<WXLOGIN_KEY_PREFIX><session id>``, whose value
is one line of text (never a pickle)::

    openid|session_key|unionid|created_at|refreshed_at - created_at|user_id as JSON

``unionid`` and ``user_id`` are empty when absent. WeChat's ids and keys hold
no ``|`` (the client checks them), and ``user_id`` comes last, so it may.

Each user also has an index key, ``<WXLOGIN_KEY_PREFIX>u:<openid>``, listing
their session ids (a Redis set; a space-separated string elsewhere), kept
for ``WXLOGIN_SESSION_MAX_AGE`` after their latest login, so
:meth:`SessionStore.end_all` needs no key scan.

Sliding expiry without a write per request: the key lives for the idle
timeout and is rewritten (with a fresh TTL) only once a tenth of that timeout
has passed since the last rewrite. A session is therefore alive for at least
0.9 x ``WXLOGIN_SESSION_IDLE_TIMEOUT`` after its last use and gone after the
full timeout; ``WXLOGIN_SESSION_MAX_AGE`` after login it ends regardless.
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
from typing import Any, Callable, List, Mapping, Optional, Tuple, Type

from cachelib import BaseCache, NullCache, SimpleCache
from cachelib import RedisCache as CachelibRedisCache
from flask_caching.backends.nullcache import NullCache as FlaskCachingNullCache

from .errors import StoreUnavailable
from .tokens import new_session_id
from .user import UserId, WxUser

log = logging.getLogger("flask_wxlogin")

#: A session is rewritten once this fraction of the idle timeout has passed.
REFRESH_FRACTION = 0.1


class _Backend:
    """Turns any failure of a cache call into :class:`StoreUnavailable`.

    The error is raised outside the ``except`` block, so not even its
    ``__context__`` carries the backend's exception text.
    """

    errors: Tuple[Type[BaseException], ...] = (Exception,)

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except self.errors as exc:
            error = _unavailable(exc)
        raise error


class _RedisBackend(_Backend):
    """Redis through the client flask-caching built, bypassing its pickle serializer.

    Every command goes to the write client: a replica may not have a new
    session yet, or may still have a revoked one.
    """

    def __init__(self, cache: CachelibRedisCache) -> None:
        from redis.exceptions import RedisError

        self._cache = cache
        self._client = cache._write_client
        self.errors = (RedisError, OSError)

    def _key(self, key: str) -> str:
        return self._cache._get_prefix() + key

    def get(self, key: str) -> Optional[bytes]:
        return self._call(self._client.get, self._key(key))  # type: ignore[no-any-return]

    def add(self, key: str, value: str, ttl: int) -> bool:
        return bool(self._call(self._client.set, self._key(key), value, ex=ttl, nx=True))

    def replace(self, key: str, value: str, ttl: int) -> bool:
        return bool(self._call(self._client.set, self._key(key), value, ex=ttl, xx=True))

    def delete(self, key: str) -> None:
        self._call(self._client.delete, self._key(key))

    def index_add(self, key: str, member: str, ttl: int) -> None:
        pipe = self._client.pipeline(transaction=False)
        pipe.sadd(self._key(key), member)
        pipe.expire(self._key(key), ttl)
        self._call(pipe.execute)

    def index_members(self, key: str) -> List[str]:
        return [m.decode() for m in self._call(self._client.smembers, self._key(key))]


class _CacheBackend(_Backend):
    """Any other cachelib cache, through its public API.

    Which exceptions a backend raises when its server is gone is the
    backend's business, so any exception from a cache call is an outage.
    Backends that swallow their own errors (cachelib's FileSystemCache
    reads) report an outage as a missing session.
    """

    #: The embedded default drops expired sessions once per this many logins.
    SWEEP_EVERY = 1024

    def __init__(self, cache: BaseCache) -> None:
        self._cache = cache
        self._adds = 0

    def get(self, key: str) -> Optional[str]:
        value = self._call(self._cache.get, key)
        return value if isinstance(value, str) else None

    def add(self, key: str, value: str, ttl: int) -> bool:
        self._adds += 1
        if self._adds % self.SWEEP_EVERY == 0 and isinstance(self._cache, SimpleCache):
            self._sweep(self._cache)
        return bool(self._call(self._cache.add, key, value, timeout=ttl))

    def replace(self, key: str, value: str, ttl: int) -> bool:
        return bool(self._call(self._cache.has, key)) and bool(
            self._call(self._cache.set, key, value, timeout=ttl)
        )

    def delete(self, key: str) -> None:
        self._call(self._cache.delete, key)

    def index_add(self, key: str, member: str, ttl: int) -> None:
        members = self.index_members(key)
        self._call(self._cache.set, key, " ".join([*members, member]), timeout=ttl)

    def index_members(self, key: str) -> List[str]:
        value = self._call(self._cache.get, key)
        return value.split() if isinstance(value, str) else []

    @staticmethod
    def _sweep(cache: SimpleCache) -> None:
        """Drop expired entries: with no size threshold, cachelib never prunes."""
        with getattr(cache, "_lock", contextlib.nullcontext()):
            cache._remove_expired(time.time())


def _unavailable(exc: BaseException) -> StoreUnavailable:
    log.error("session store unavailable: %s", type(exc).__name__)
    return StoreUnavailable()


class SessionStore:
    """Creates, loads (sliding the expiry), and revokes sessions."""

    def __init__(
        self, cache: BaseCache, config: Mapping[str, Any], clock: Callable[[], float] = time.time
    ) -> None:
        if isinstance(cache, (NullCache, FlaskCachingNullCache)):
            raise ValueError("a NullCache keeps nothing and cannot hold login sessions")
        self.backend = (
            _RedisBackend(cache) if isinstance(cache, CachelibRedisCache) else _CacheBackend(cache)
        )
        #: The app's config, read at each call.
        self.config = config
        #: Seconds since the epoch; tests replace it to move time.
        self.clock = clock

    def create(self, openid: str, session_key: str, unionid: Optional[str], user_id: UserId) -> WxUser:
        """Store a new session under a fresh random id; :class:`StoreUnavailable` if it was not kept."""
        config = self.config
        now = int(self.clock())
        session = WxUser(new_session_id(), openid, session_key, unionid, user_id, now, now)
        key = config["WXLOGIN_KEY_PREFIX"] + session.session_id
        if not self.backend.add(key, _encode(session), config["WXLOGIN_SESSION_IDLE_TIMEOUT"]):
            log.error("session store refused to keep a new session")
            raise StoreUnavailable()
        self.backend.index_add(self._index_key(openid), session.session_id, config["WXLOGIN_SESSION_MAX_AGE"])
        return session

    def end_all(self, openid: str) -> int:
        """End every session of ``openid`` through its index, without scanning keys."""
        index = self._index_key(openid)
        session_ids = self.backend.index_members(index)
        for session_id in session_ids:
            self.revoke(session_id)
        self.backend.delete(index)
        return len(session_ids)

    def _index_key(self, openid: str) -> str:
        """The key listing a user's session ids; ``u:`` cannot start a session id's key."""
        return f"{self.config['WXLOGIN_KEY_PREFIX']}u:{openid}"

    def load(self, session_id: str) -> Optional[WxUser]:
        """The live session with this id, or ``None`` if it expired, was revoked or never was."""
        config = self.config
        key = config["WXLOGIN_KEY_PREFIX"] + session_id
        raw = self.backend.get(key)
        if raw is None:
            return None
        try:
            session = _decode(session_id, raw)
        except (ValueError, UnicodeError):
            log.warning("unreadable session record; treating it as no session")
            return None
        now = int(self.clock())
        age, idle_for = now - session.created_at, now - session.refreshed_at
        idle = config["WXLOGIN_SESSION_IDLE_TIMEOUT"]
        max_age = config["WXLOGIN_SESSION_MAX_AGE"]
        if age >= max_age or idle_for >= idle:
            self.backend.delete(key)
            return None
        if idle_for >= idle * REFRESH_FRACTION:
            session.refreshed_at = now
            ttl = int(min(idle, max_age - age))
            if not self.backend.replace(key, _encode(session), ttl):
                return None
        return session

    def revoke(self, session_id: str) -> None:
        """End a session; ending one that is already gone is not an error."""
        self.backend.delete(self.config["WXLOGIN_KEY_PREFIX"] + session_id)


def _encode(session: WxUser) -> str:
    user_id = "" if session.user_id is None else json.dumps(session.user_id)
    return (
        f"{session.openid}|{session.session_key}|{session.unionid or ''}|{session.created_at}"
        f"|{session.refreshed_at - session.created_at}|{user_id}"
    )


def _decode(session_id: str, raw: Any) -> WxUser:
    """The session in ``raw``; ValueError or UnicodeError if it is not one of ours."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    openid, session_key, unionid, created, refreshed, user_id = raw.split("|", 5)
    if not (openid and session_key):
        raise ValueError("incomplete session record")
    created_at = int(created)
    return WxUser(
        session_id, openid, session_key, unionid or None,
        json.loads(user_id) if user_id else None, created_at, created_at + int(refreshed),
    )
