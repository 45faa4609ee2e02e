"""Server-side sessions in a flask-caching cache.

Every key starts with the mini program's prefix: ``WXLOGIN_KEY_PREFIX`` for
the main one, ``WXLOGIN_KEY_PREFIX + "<name>:"`` for each other. A session is
one key, ``<prefix><session id>``, whose value is one line of text (never a
pickle)::

    openid|session_key|unionid|created_at|refreshed_at - created_at|user_id as JSON

``unionid`` and ``user_id`` are empty when absent. WeChat's ids and keys hold
no ``|`` (the client checks them), and ``user_id`` comes last, so it may.

Each login also writes, for ``WXLOGIN_SESSION_MAX_AGE``:

- ``<prefix>u:<openid>``, the user's session ids (a Redis set; a
  space-separated string elsewhere), so :meth:`SessionStore.end_all` needs
  no key scan;
- ``<prefix>k:<appid>:<openid>``, the user's newest session_key: WeChat
  keeps one valid key per user, so after a login on another device the data
  the client gets is encrypted with this one, not the session's own.

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

from .config import MAIN_PROGRAM, program_settings
from .errors import StoreUnavailable, mini_program_unknown
from .nearcache import NearCache, barrier
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


#: Deletes KEYS[1] only while it still holds ARGV[1], atomically.
_DELETE_IF_EQUAL = """
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0
"""


class _RedisBackend(_Backend):
    """Redis through the client flask-caching built, bypassing its pickle serializer.

    Every command goes to the write client: a replica may not have a new
    session yet, or may still have a revoked one. A ``RedisCluster`` raises
    ``RedisClusterException``, which is no ``RedisError``, when no node
    answers or a slot has no master.

    With a :class:`~flask_wxlogin.nearcache.NearCache`, reads go through it,
    and each write that ends or changes what another process may hold in
    memory is followed by the revoker's barrier PING.
    """

    def __init__(self, cache: CachelibRedisCache, near_cache: Optional[NearCache] = None) -> None:
        from redis.exceptions import RedisClusterException, RedisError

        self._cache = cache
        self._client = cache._write_client
        self.errors = (RedisError, RedisClusterException, OSError)
        #: The near cache in front of reads, or ``None`` (``WXLOGIN_NEAR_CACHE``).
        self.near_cache = near_cache

    def _key(self, key: str) -> str:
        return self._cache._get_prefix() + key

    def get(self, key: str) -> Optional[bytes]:
        full = self._key(key)
        if self.near_cache is None:
            return self._call(self._client.get, full)  # type: ignore[no-any-return]
        return self._call(self.near_cache.read, full, "", lambda: self._client.get(full))  # type: ignore[no-any-return]

    def _changed(self, *keys: str) -> None:
        """After a write to ``keys``: drop them here, and PING so other processes see it first."""
        if self.near_cache is not None:
            for key in keys:
                self.near_cache.invalidate(self._key(key))
            self._call(barrier, self._client)

    def add(self, key: str, value: str, ttl: int) -> bool:
        return bool(self._call(self._client.set, self._key(key), value, ex=ttl, nx=True))

    def replace(self, key: str, value: str, ttl: int) -> bool:
        replaced = bool(self._call(self._client.set, self._key(key), value, ex=ttl, xx=True))
        if self.near_cache is not None:
            # A slide, no revocation: no barrier, other processes may hold the old timestamps a moment longer.
            self.near_cache.invalidate(self._key(key))
        return replaced

    def delete(self, key: str) -> None:
        self._call(self._client.delete, self._key(key))
        self._changed(key)

    def set(self, key: str, value: str, ttl: int) -> None:
        self._call(self._client.set, self._key(key), value, ex=ttl)
        self._changed(key)

    def delete_if_equal(self, key: str, value: str) -> None:
        # EVAL, not a registered script: a cluster would SCRIPT LOAD on every master.
        self._call(self._client.eval, _DELETE_IF_EQUAL, 1, self._key(key), value)
        self._changed(key)

    def record_login(self, index: str, session_id: str, newest_key: str, session_key: str, ttl: int) -> None:
        pipe = self._client.pipeline(transaction=False)
        pipe.sadd(self._key(index), session_id)
        pipe.expire(self._key(index), ttl)
        pipe.set(self._key(newest_key), session_key, ex=ttl)
        self._call(pipe.execute)
        self._changed(index, newest_key)

    def index_members(self, key: str) -> List[str]:
        return [m.decode() for m in self._call(self._client.smembers, self._key(key))]


class _CacheBackend(_Backend):
    """Any other cachelib cache, through its public API.

    Which exceptions a backend raises when its server is gone is the
    backend's business, so any exception from a cache call is an outage.
    Backends that swallow their own errors (cachelib's FileSystemCache
    reads) report an outage as a missing session.
    """

    #: The embedded default drops expired entries once per this many new keys (a login adds one).
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

    def set(self, key: str, value: str, ttl: int) -> None:
        self._call(self._cache.set, key, value, timeout=ttl)

    def delete_if_equal(self, key: str, value: str) -> None:
        """Check, then delete: atomic only where the cache's own calls are (Redis's EVAL is)."""
        if self.get(key) == value:
            self.delete(key)

    def record_login(self, index: str, session_id: str, newest_key: str, session_key: str, ttl: int) -> None:
        members = self.index_members(index)
        self.set(index, " ".join([*members, session_id]), ttl)
        self.set(newest_key, session_key, ttl)

    def index_members(self, key: str) -> List[str]:
        value = self._call(self._cache.get, key)
        return value.split() if isinstance(value, str) else []

    @staticmethod
    def _sweep(cache: SimpleCache) -> None:
        """Drop expired entries: with no size threshold, cachelib never prunes."""
        with getattr(cache, "_lock", contextlib.nullcontext()):
            cache._remove_expired(time.time())


class Verbatim:
    """A cachelib serializer that keeps values as they are, for the embedded default cache.

    cachelib's SimpleCache pickles every value to protect callers from
    mutating what they stored; the store keeps only ``str``, which cannot
    change, so the pickle round trip on each read buys nothing.
    """

    @staticmethod
    def dumps(value: Any) -> Any:
        return value

    @staticmethod
    def loads(value: Any) -> Any:
        return value


def _unavailable(exc: BaseException) -> StoreUnavailable:
    log.error("session store unavailable: %s", type(exc).__name__)
    return StoreUnavailable()


def text(value: Any) -> Optional[str]:
    """A value read from a backend as text: Redis gives bytes, cachelib what was stored."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def backend_for(cache: BaseCache, near_cache_prefix: Optional[str] = None) -> Any:
    """The backend that keeps sessions in ``cache``, with a near cache for keys under
    ``near_cache_prefix`` if given; ValueError for a cache that keeps nothing or cannot have one.
    """
    if isinstance(cache, (NullCache, FlaskCachingNullCache)):
        raise ValueError("a NullCache keeps nothing and cannot hold login sessions")
    if not isinstance(cache, CachelibRedisCache):
        if near_cache_prefix is not None:
            raise ValueError(
                f"WXLOGIN_NEAR_CACHE needs RedisCache against one Redis node, not {type(cache).__name__}: "
                "only Redis tells the other processes which sessions changed"
            )
        return _CacheBackend(cache)
    near_cache = None
    if near_cache_prefix is not None:
        near_cache = NearCache.for_client(cache._write_client, cache._get_prefix() + near_cache_prefix)
    return _RedisBackend(cache, near_cache)


class SessionStore:
    """Creates, loads (sliding the expiry), and revokes one mini program's sessions."""

    def __init__(
        self,
        backend: Any,
        config: Mapping[str, Any],
        program: str = MAIN_PROGRAM,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        #: The app's config, read at each call.
        self.config = config
        #: The name of the mini program whose sessions these are.
        self.program = program
        #: Seconds since the epoch; tests replace it to move time.
        self.clock = clock

    @property
    def appid(self) -> str:
        return self.settings()[0]

    @property
    def key_prefix(self) -> str:
        """Prepended to every key of this mini program."""
        return self.settings()[2]

    def settings(self) -> Tuple[str, str, str]:
        """``(appid, secret, key prefix)`` of this mini program, as configured now; 404 if it is gone."""
        settings = program_settings(self.config, self.program)
        if settings is None:
            raise mini_program_unknown()
        return settings

    def create(self, openid: str, session_key: str, unionid: Optional[str], user_id: UserId) -> WxUser:
        """Store a new session under a fresh random id; :class:`StoreUnavailable` if it was not kept."""
        config = self.config
        appid, _, prefix = self.settings()
        now = int(self.clock())
        session = WxUser(
            new_session_id(), openid, session_key, unionid, user_id, now, now, appid, self.program
        )
        key = prefix + session.session_id
        if not self.backend.add(key, _encode(session), config["WXLOGIN_SESSION_IDLE_TIMEOUT"]):
            log.error("session store refused to keep a new session")
            raise StoreUnavailable()
        self.backend.record_login(
            self._index_key(openid), session.session_id, self._newest_key_key(openid), session_key,
            config["WXLOGIN_SESSION_MAX_AGE"],
        )
        return session

    def newest_session_key(self, openid: str) -> Optional[str]:
        """The session_key of ``openid``'s latest login here, while any session could use it."""
        return text(self.backend.get(self._newest_key_key(openid))) or None

    def end_all(self, openid: str) -> int:
        """End every session of ``openid`` through its index, without scanning keys."""
        index = self._index_key(openid)
        session_ids = self.backend.index_members(index)
        for session_id in session_ids:
            self.revoke(session_id)
        self.backend.delete(index)
        self.backend.delete(self._newest_key_key(openid))
        return len(session_ids)

    def _index_key(self, openid: str) -> str:
        """The key listing a user's session ids; ``u:`` cannot start a session id's key."""
        return f"{self.key_prefix}u:{openid}"

    def _newest_key_key(self, openid: str) -> str:
        appid, _, prefix = self.settings()
        return f"{prefix}k:{appid}:{openid}"

    def load(self, session_id: str) -> Optional[WxUser]:
        """The live session with this id, or ``None`` if it expired, was revoked or never was."""
        config = self.config
        appid, _, prefix = self.settings()
        key = prefix + session_id
        raw = self.backend.get(key)
        if raw is None:
            return None
        try:
            session = _decode(session_id, raw, appid, self.program)
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
        self.backend.delete(self.key_prefix + session_id)


def _encode(session: WxUser) -> str:
    user_id = "" if session.user_id is None else json.dumps(session.user_id)
    return (
        f"{session.openid}|{session.session_key}|{session.unionid or ''}|{session.created_at}"
        f"|{session.refreshed_at - session.created_at}|{user_id}"
    )


def _decode(session_id: str, raw: Any, appid: str, program: str) -> WxUser:
    """The session in ``raw``; ValueError or UnicodeError if it is not one of ours."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    openid, session_key, unionid, created, refreshed, user_id = raw.split("|", 5)
    if not (openid and session_key):
        raise ValueError("incomplete session record")
    created_at = int(created)
    return WxUser(
        session_id, openid, session_key, unionid or None,
        json.loads(user_id) if user_id else None, created_at, created_at + int(refreshed), appid, program,
    )
