"""Server-side sessions in a flask-caching cache, kept together per user.

Every key starts with the mini program's prefix: ``WXLOGIN_KEY_PREFIX`` for
the main one, ``WXLOGIN_KEY_PREFIX + "<name>:"`` for each other. A user's
sessions live in one small hash under ``<prefix><openid>`` (openids hold no
``:``, so no user's key is another program's or an internal one). Its fields:

- ``<ref>``: one per session, named by the session's ref (a digest of the
  skey's secret part, :func:`~.tokens.split_session_id`: the store keeps no
  bearer secret), holding one line of text (never a pickle)::

      session_key|created_at|last_seen_at - created_at|user_id as JSON

- ``k``: the user's newest session_key. WeChat keeps one valid key per user,
  so after a login on another device the data a client gets is encrypted
  with this one, not the session's own.
- ``u``: the unionid, if WeChat sent one.
- ``@<ref>`` and ``#<ref>``: the User-Agent (64 characters at most) and IP
  address the session logged in with, kept only with ``WXLOGIN_TRACK_DEVICES``.

A record is 38 bytes (with WeChat's 24-character session_key) plus the
user id as JSON when new; the slides add digits to ``last_seen_at -
created_at``, up to 7 (while ``WXLOGIN_SESSION_MAX_AGE`` is under 10**7 s,
115 days). So every value stays within 64 bytes, and Redis keeps the hash in
its compact listpack encoding, for user ids of up to 20 characters as JSON
(an int of up to 20 digits, a string of up to 18 ASCII characters) over the
session's whole life. A longer one fits when new and turns that user's hash
into a hashtable (about twice the memory; nothing else changes) once it has
slid.

On Redis, a protected request is one ``HMGET key ref u``; a login, a slide
and each way of ending sessions is one script, atomic on a Cluster too
since a user is one key. Other caches hold the same fields as one text
value, changed under a process lock (see :class:`_CacheBackend` for what
that makes exact).

Expiry is judged from the record's timestamps: a session unused for
``WXLOGIN_SESSION_IDLE_TIMEOUT`` or older than ``WXLOGIN_SESSION_MAX_AGE``
is dead, and pruned at the next login. Its last-seen time is rewritten (the
slide) only once a tenth of the idle timeout has passed since the last
rewrite, so a session is alive for at least 0.9 x the idle timeout after its
last use. The key expires with its longest-lived session.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Type

from cachelib import BaseCache, FileSystemCache, NullCache, SimpleCache
from cachelib import RedisCache as CachelibRedisCache
from cachelib.serializers import JSONSerializer
from flask_caching.backends.nullcache import NullCache as FlaskCachingNullCache

from . import causes, metrics
from .config import MAIN_PROGRAM, program_settings
from .errors import StoreUnavailable, mini_program_unknown
from .nearcache import NearCache, barrier
from .tokens import OPENID, REF, REF_LENGTH, new_session_id, split_session_id
from .user import SessionInfo, UserId, WxUser

log = logging.getLogger("flask_wxlogin")

#: A session is rewritten once this fraction of the idle timeout has passed.
REFRESH_FRACTION = 0.1
#: Fields of the per-user data besides the sessions: the newest session_key, the unionid.
NEWEST_KEY, UNIONID = "k", "u"
#: Prefixes of a session's device fields: its User-Agent, its IP address.
AGENT, ADDRESS = "@", "#"
#: Longest User-Agent and IP address kept: Redis's listpack holds values of up to 64 bytes.
DEVICE_CHARS = 64

_TIMES = re.compile(r"[^|]*\|([0-9]+)\|([0-9]+)\|")


class Rules(NamedTuple):
    """When sessions expire, as of ``now`` (seconds since the epoch)."""

    now: int
    idle: int
    max_age: int

    def last_seen(self, record: str) -> Optional[int]:
        """When the session in ``record`` was last seen, or ``None`` if it is dead or unreadable."""
        times = _TIMES.match(record)
        if times is None:
            return None
        created = int(times.group(1))
        seen = created + int(times.group(2))
        return seen if self.now - seen < self.idle and self.now - created < self.max_age else None

    def remaining(self, record: str) -> int:
        """Seconds the session in ``record`` has left if unused (0 if it is dead)."""
        times = _TIMES.match(record)
        if times is None:
            return 0
        created = int(times.group(1))
        return max(0, min(created + int(times.group(2)) + self.idle, created + self.max_age) - self.now)


class _Backend:
    """Turns any failure of a cache call into :class:`StoreUnavailable`.

    The error is raised outside the ``except`` block, so not even its
    ``__context__`` carries the backend's exception text.
    """

    errors: Tuple[Type[BaseException], ...] = (Exception,)
    _cache: BaseCache
    #: The redis-py client every command goes to, or None for a cache that is not Redis.
    redis: Any = None

    def where(self) -> str:
        """Which backend this is, for a log line (never a password)."""
        return type(self._cache).__name__

    def guarded(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``method(*args, **kwargs)`` on this backend; any backend failure is :class:`StoreUnavailable`.

        Logged once with its cause and counted: the rate limiter's calls go through it too.
        """
        try:
            return method(*args, **kwargs)
        except self.errors as exc:
            metrics.store_error(method.__name__)
            log.error("session store unavailable at %s: %s", self.where(), causes.describe(exc))
        raise StoreUnavailable()


#: Deletes KEYS[1] only while it still holds ARGV[1], atomically.
_DELETE_IF_EQUAL = """
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0
"""

#: What every per-user script shares: ARGV[1..3] are Rules; ``last_seen`` mirrors :meth:`Rules.last_seen`.
#: A key that is no hash (written by something else) holds no session: it is dropped.
_RULES = f"""
local key, now, idle, max_age = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local kind = redis.call("TYPE", key).ok
if kind ~= "hash" and kind ~= "none" then redis.call("DEL", key) end
local function last_seen(record)
  local created, delta = string.match(record, "^[^|]*|(%d+)|(%d+)|")
  if not created then return nil end
  created = tonumber(created)
  local seen = created + tonumber(delta)
  if now - seen < idle and now - created < max_age then return seen, created end
  return nil
end
local function is_session(field) return #field == {REF_LENGTH} end
local function drop(field) redis.call("HDEL", key, field, "{AGENT}" .. field, "{ADDRESS}" .. field) end
"""

#: Login. ARGV[4]: the cap (0: none); ARGV[5]: "" or the unionid; ARGV[6]: "" or the ref of the
#: session this login replaces; ARGV[7..]: fields and values to set. Ends the replaced session
#: first, prunes dead sessions, evicts the least recently seen beyond the cap; returns
#: ``{evicted refs, 1 if the replaced session was live}``.
_LOGIN = _RULES + f"""
local live, evicted, replaced = {{}}, {{}}, 0
if ARGV[6] ~= "" then
  local record = redis.call("HGET", key, ARGV[6])
  if record then
    if last_seen(record) then replaced = 1 end
    drop(ARGV[6])
  end
end
local all = redis.call("HGETALL", key)
for i = 1, #all, 2 do
  if is_session(all[i]) then
    local seen, created = last_seen(all[i + 1])
    if seen then live[#live + 1] = {{all[i], seen, created}} else drop(all[i]) end
  end
end
local cap = tonumber(ARGV[4])
if cap > 0 and #live >= cap then
  table.sort(live, function(a, b)
    if a[2] ~= b[2] then return a[2] < b[2] end
    if a[3] ~= b[3] then return a[3] < b[3] end
    return a[1] < b[1]
  end)
  for i = 1, #live - cap + 1 do
    drop(live[i][1])
    evicted[#evicted + 1] = live[i][1]
  end
end
if ARGV[5] == "" then redis.call("HDEL", key, "{UNIONID}") else redis.call("HSET", key, "{UNIONID}", ARGV[5]) end
for i = 7, #ARGV, 2 do redis.call("HSET", key, ARGV[i], ARGV[i + 1]) end
redis.call("EXPIRE", key, math.min(idle, max_age))  -- the new session lives longest
return {{evicted, replaced}}
"""

#: The slide. ARGV[4]: the ref; ARGV[5]: its new record; ARGV[6]: its seconds left.
#: Never writes a session that has ended meanwhile; the key lives as long as its longest session.
_SLIDE = """
local key = KEYS[1]
if redis.call("HEXISTS", key, ARGV[4]) == 0 then return 0 end
redis.call("HSET", key, ARGV[4], ARGV[5])
if redis.call("TTL", key) < tonumber(ARGV[6]) then redis.call("EXPIRE", key, ARGV[6]) end
return 1
"""

#: Ending sessions. ARGV[4]: "all" or "others" (then ARGV[5] is the ref kept) or "these" (refs in ARGV[5..]).
#: Returns the refs of the live sessions it ended.
_END = _RULES + """
local ended = {}
if ARGV[4] == "these" then
  for i = 5, #ARGV do
    local record = redis.call("HGET", key, ARGV[i])
    if record then
      if last_seen(record) then ended[#ended + 1] = ARGV[i] end
      drop(ARGV[i])
    end
  end
  return ended
end
local all = redis.call("HGETALL", key)
for i = 1, #all, 2 do
  if is_session(all[i]) and all[i] ~= ARGV[5] then
    if last_seen(all[i + 1]) then ended[#ended + 1] = all[i] end
    if ARGV[4] == "others" then drop(all[i]) end
  end
end
if ARGV[4] == "all" then redis.call("DEL", key) end
return ended
"""


class _RedisBackend(_Backend):
    """Redis through the client flask-caching built, bypassing its pickle serializer.

    Every command goes to the write client: a replica may not have a new
    session yet, or may still have a revoked one. A ``RedisCluster`` raises
    ``RedisClusterException``, which is no ``RedisError``, when no node
    answers or a slot has no master. Scripts go by EVAL, not a registered
    script: a cluster would SCRIPT LOAD on every master.

    With a :class:`~flask_wxlogin.nearcache.NearCache`, session reads go
    through it, and each write that may end a session another process holds
    in memory (a login evicting beyond the cap, every way of ending sessions)
    is followed by the revokers' barrier PING.
    """

    def __init__(self, cache: CachelibRedisCache, near_cache: Optional[NearCache] = None) -> None:
        from redis.exceptions import RedisClusterException, RedisError, ResponseError

        self._response_error = ResponseError
        self._cache = cache
        # cachelib has no public accessor for its client; its serializer would pickle.
        self._client = self.redis = cache._write_client
        self.errors = (RedisError, RedisClusterException, OSError)
        #: The near cache in front of session reads, or ``None`` (``WXLOGIN_NEAR_CACHE``).
        self.near_cache = near_cache

    def where(self) -> str:
        """``host:port`` of the Redis (the nodes of a cluster, the sentinels' master name)."""
        from redis.cluster import RedisCluster
        from redis.sentinel import SentinelConnectionPool

        client = self._client
        if isinstance(client, RedisCluster):
            names = sorted(node.name for node in client.get_nodes())
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            return f"Redis Cluster {', '.join(names[:3])}{more}"
        pool = client.connection_pool
        if isinstance(pool, SentinelConnectionPool):
            sentinels = ", ".join(_address(s.connection_pool) for s in pool.sentinel_manager.sentinels)
            return f"Redis master {pool.service_name!r} of sentinels {sentinels}"
        return f"Redis {_address(pool)}"

    def _key(self, key: str) -> str:
        # cachelib's own key prefix (CACHE_KEY_PREFIX): no public accessor either.
        return self._cache._get_prefix() + key  # type: ignore[attr-defined]

    # -- plain values (the access_token) -------------------------------------------

    def get(self, key: str) -> Optional[bytes]:
        return self.guarded(self._client.get, self._key(key))  # type: ignore[no-any-return]

    def add(self, key: str, value: str, ttl: int) -> bool:
        return bool(self.guarded(self._client.set, self._key(key), value, ex=ttl, nx=True))

    def delete(self, key: str) -> None:
        self.guarded(self._client.delete, self._key(key))

    def set(self, key: str, value: str, ttl: int) -> None:
        self.guarded(self._client.set, self._key(key), value, ex=ttl)

    def delete_if_equal(self, key: str, value: str) -> None:
        self.guarded(self._client.eval, _DELETE_IF_EQUAL, 1, self._key(key), value)

    # -- a user's sessions ---------------------------------------------------------

    def read(self, key: str, ref: str) -> Tuple[Optional[str], Optional[str]]:
        """The session's record and the user's unionid, in one command (none on a near-cache hit)."""
        full = self._key(key)
        if self.near_cache is None:
            record, unionid = self.guarded(self.hmget, full, (ref, UNIONID))
            return text(record), text(unionid)
        found = self.guarded(self.near_cache.read, full, ref, lambda: _session(self.hmget(full, (ref, UNIONID))))
        return found or (None, None)  # type: ignore[no-any-return]

    def _changed(self, key: str, revoking: bool) -> None:
        """After a write to ``key``: drop it here; if it may end a session, PING so other processes know first."""
        if self.near_cache is not None:
            self.near_cache.invalidate(self._key(key))
            if revoking:
                self.guarded(barrier, self._client)

    def field(self, key: str, name: str) -> Optional[str]:
        return text(self.guarded(self.hget, self._key(key), name))

    def fields(self, key: str) -> Dict[str, str]:
        found = self.guarded(self.hgetall, self._key(key))
        return {text(name): text(value) for name, value in found.items()}  # type: ignore[misc]

    # Reads of a user's hash. A key of another type (written by something else) is no
    # session, not an outage: the next login replaces it. Named as the commands, for the metric.

    def hmget(self, key: str, names: Sequence[str]) -> List[Optional[bytes]]:
        found = self._hash_read(self._client.hmget, key, names)
        return [None] * len(names) if found is None else found  # type: ignore[no-any-return]

    def hget(self, key: str, name: str) -> Optional[bytes]:
        return self._hash_read(self._client.hget, key, name)  # type: ignore[no-any-return]

    def hgetall(self, key: str) -> Dict[bytes, bytes]:
        return self._hash_read(self._client.hgetall, key) or {}  # type: ignore[no-any-return]

    def _hash_read(self, command: Callable[..., Any], key: str, *args: Any) -> Any:
        """``command(key, *args)``, or ``None`` if ``key`` holds no hash (a ``WRONGTYPE`` reply)."""
        try:
            return command(key, *args)
        except self._response_error as exc:
            if not str(exc).startswith("WRONGTYPE"):
                raise
        log.warning("a user's session key holds no hash (written by something else?); treating it as no session")
        return None

    def slide(self, key: str, ref: str, record: str, rules: Rules) -> bool:
        ttl = rules.remaining(record)
        slid = bool(self.guarded(self._client.eval, _SLIDE, 1, self._key(key), *rules, ref, record, ttl))
        self._changed(key, revoking=False)  # no session ends: others may see the older time a moment longer
        return slid

    def login(
        self, key: str, rules: Rules, cap: int, unionid: Optional[str], entries: Mapping[str, str], replaces: str = ""
    ) -> Tuple[List[str], bool]:
        pairs = [item for entry in entries.items() for item in entry]
        evicted, replaced = self.guarded(
            self._client.eval, _LOGIN, 1, self._key(key), *rules, cap, unionid or "", replaces, *pairs
        )
        self._changed(key, revoking=bool(evicted or replaced))
        return [ref.decode() for ref in evicted], bool(replaced)

    def end(self, key: str, rules: Rules, mode: str, refs: Sequence[str] = ()) -> List[str]:
        ended = self.guarded(self._client.eval, _END, 1, self._key(key), *rules, mode, *refs)
        self._changed(key, revoking=True)
        return [ref.decode() for ref in ended]


class _CacheBackend(_Backend):
    """Any other cachelib cache, through its public API.

    A user's fields are one text value, ``\nname=value`` lines, rewritten
    whole under a lock of this process: exact for threads sharing one cache
    object (the embedded default). Across processes (FileSystemCache,
    Memcached) two rewrites may race and one be lost. A lost login loses its
    own session (the user logs in again); a lost ``end`` (a login or a slide
    in another process wrote back the value it read before the ``end``)
    leaves sessions that the next one ends. cachelib offers no
    compare-and-set to prevent that. Sessions never live outside the user's
    value, so none can be out of reach of ``logout_all``.

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
        self._lock = threading.Lock()

    # -- plain values (the access_token) -------------------------------------------

    def get(self, key: str) -> Optional[str]:
        value = self.guarded(self._cache.get, key)
        return value if isinstance(value, str) else None

    def add(self, key: str, value: str, ttl: int) -> bool:
        return bool(self.guarded(self._cache.add, key, value, timeout=ttl))

    def delete(self, key: str) -> None:
        self.guarded(self._cache.delete, key)

    def set(self, key: str, value: str, ttl: int) -> None:
        if not self.guarded(self._cache.set, key, value, timeout=ttl):
            log.error("session store refused to keep a write")
            raise StoreUnavailable()

    def delete_if_equal(self, key: str, value: str) -> None:
        """Check, then delete: atomic only where the cache's own calls are (Redis's EVAL is)."""
        if self.get(key) == value:
            self.delete(key)

    # -- a user's sessions ---------------------------------------------------------

    def read(self, key: str, ref: str) -> Tuple[Optional[str], Optional[str]]:
        value = self.guarded(self._cache.get, key)
        if not isinstance(value, str):
            return None, None
        return _line(value, ref), _line(value, UNIONID)

    def field(self, key: str, name: str) -> Optional[str]:
        value = self.get(key)
        return _line(value, name) if value else None

    def fields(self, key: str) -> Dict[str, str]:
        value = self.get(key)
        if not value:
            return {}
        try:
            return dict(line.split("=", 1) for line in value.split("\n")[1:])  # type: ignore[misc]
        except ValueError:
            log.warning("unreadable per-user session data; treating it as none")
            return {}

    def slide(self, key: str, ref: str, record: str, rules: Rules) -> bool:
        with self._lock:
            found = self.fields(key)
            if ref not in found:
                return False
            found[ref] = record
            self._put(key, found, rules)
        return True

    def login(
        self, key: str, rules: Rules, cap: int, unionid: Optional[str], entries: Mapping[str, str], replaces: str = ""
    ) -> Tuple[List[str], bool]:
        with self._lock:
            found = self.fields(key)
            replaced = replaces in found and rules.last_seen(found[replaces]) is not None
            if replaces:
                _drop(found, replaces)
            live = []
            for ref, record in list(found.items()):
                if len(ref) == REF_LENGTH:
                    seen = rules.last_seen(record)
                    if seen is None:
                        _drop(found, ref)
                    else:
                        live.append((seen, created_at(record), ref))
            evicted = [ref for _, _, ref in sorted(live)[:len(live) - cap + 1]] if 0 < cap <= len(live) else []
            for ref in evicted:
                _drop(found, ref)
            found.pop(UNIONID, None)
            if unionid:
                found[UNIONID] = unionid
            if not found and isinstance(self._cache, SimpleCache):
                self._count_new_key()
            found.update(entries)
            self._put(key, found, rules)
        return evicted, replaced

    def end(self, key: str, rules: Rules, mode: str, refs: Sequence[str] = ()) -> List[str]:
        with self._lock:
            found = self.fields(key)
            if mode == "these":
                doomed = [ref for ref in refs if ref in found]
            else:
                kept = refs[0] if mode == "others" else None
                doomed = [ref for ref in found if len(ref) == REF_LENGTH and ref != kept]
            ended = [ref for ref in doomed if rules.last_seen(found[ref]) is not None]
            for ref in doomed:
                _drop(found, ref)
            if mode == "all":
                self.delete(key)
            elif doomed:
                self._put(key, found, rules)
        return ended

    def _put(self, key: str, found: Dict[str, str], rules: Rules) -> None:
        """Write the user's fields back, to live as long as their longest-lived session."""
        ttl = max((rules.remaining(record) for ref, record in found.items() if len(ref) == REF_LENGTH), default=0)
        if ttl == 0:
            self.delete(key)
        else:
            self.set(key, "".join(f"\n{name}={value}" for name, value in found.items()), ttl)

    def _count_new_key(self) -> None:
        """Every :attr:`SWEEP_EVERY` new users, drop expired entries: with no size threshold, cachelib never prunes."""
        self._adds += 1
        if self._adds % self.SWEEP_EVERY == 0:
            # cachelib has no public "drop expired entries"; its own lock keeps it safe.
            cache: Any = self._cache
            with getattr(cache, "_lock", contextlib.nullcontext()):
                cache._remove_expired(time.time())


def created_at(record: str) -> int:
    """When the session in ``record`` began; for a record :meth:`Rules.last_seen` has read."""
    return int(record.split("|", 2)[1])


def _line(value: str, name: str) -> Optional[str]:
    """The value of field ``name`` in a user's text, without parsing the rest (the read of every request)."""
    start = value.find(f"\n{name}=")
    if start < 0:
        return None
    start += len(name) + 2
    end = value.find("\n", start)
    return value[start:] if end < 0 else value[start:end]


def _drop(found: Dict[str, str], ref: str) -> None:
    for name in (ref, AGENT + ref, ADDRESS + ref):
        found.pop(name, None)


def _address(pool: Any) -> str:
    """``host:port`` (or the socket path) a redis-py pool connects to: no password, no URL."""
    settings = pool.connection_kwargs
    return str(settings.get("path") or f"{settings.get('host')}:{settings.get('port')}")


def text(value: Any) -> Optional[str]:
    """A value read from a backend as text: Redis gives bytes, cachelib what was stored."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


class _Unchanged:
    """A serializer that keeps values as they are: the embedded cache holds our immutable strings."""

    @staticmethod
    def dumps(value: Any) -> Any:
        return value

    @staticmethod
    def loads(value: Any) -> Any:
        return value


def without_pickle(cache: BaseCache) -> BaseCache:
    """``cache``, built by us alone, set to store values without pickle where cachelib lets us choose.

    cachelib pickles every value by default: anyone who can write a
    FileSystemCache's directory would run code at the next read. JSON cannot.
    The embedded SimpleCache keeps our strings as they are (also saving a
    pickle round trip per request). A cache the app passes in is its own
    and keeps its serializer.
    """
    if isinstance(cache, FileSystemCache):
        cache.serializer = JSONSerializer()  # type: ignore[assignment]
    elif isinstance(cache, SimpleCache):
        cache.serializer = _Unchanged()  # type: ignore[assignment]
    return cache


def _session(found: Sequence[Optional[bytes]]) -> Optional[Tuple[Optional[str], Optional[str]]]:
    """HMGET's ``(record, unionid)`` as text (kept so, a hit decodes nothing), or ``None`` when there is
    no record: nothing for the near cache to keep."""
    return None if found[0] is None else (text(found[0]), text(found[1]))


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
        # cachelib has no public accessor for its key prefix; CACHE_KEY_PREFIX comes before ours.
        near_cache = NearCache.for_client(cache._write_client, cache._get_prefix() + near_cache_prefix)
    return _RedisBackend(cache, near_cache)


class SessionStore:
    """Creates, loads (sliding the expiry), lists and ends one mini program's sessions."""

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

    def user_key(self, openid: str) -> Optional[str]:
        """The key of ``openid``'s sessions in this mini program; ``None`` for what is no openid.

        Checked, because a string with a ``:`` would name another program's key.
        """
        return self.key_prefix + openid if OPENID.fullmatch(openid) else None

    def rules(self) -> Rules:
        config = self.config
        return Rules(int(self.clock()), config["WXLOGIN_SESSION_IDLE_TIMEOUT"], config["WXLOGIN_SESSION_MAX_AGE"])

    def create(
        self,
        openid: str,
        session_key: str,
        unionid: Optional[str],
        user_id: UserId,
        device: Optional[Tuple[Optional[str], Optional[str]]] = None,
        replaces: Optional[str] = None,
    ) -> Tuple[WxUser, List[str], bool]:
        """Store a new session: ``(user, refs of the sessions evicted by the cap, whether it replaced one)``.

        ``device`` is ``(ip, user_agent)`` to keep with it. ``replaces`` is the
        ref of the user's session this login replaces (the skey the client
        logged in with): it ends in the same atomic step, before the cap is
        counted, so it never costs another device its session. Dead sessions
        are pruned on the way; :class:`StoreUnavailable` if the cache fails.
        """
        if not OPENID.fullmatch(openid):
            raise ValueError(
                "not an openid: WeChat's openids are 1 to 128 letters, digits, '_' or '-' (no ':')"
            )
        appid, _, prefix = self.settings()
        rules = self.rules()
        session = WxUser(
            new_session_id(openid), openid, session_key, unionid, user_id, rules.now, rules.now, appid, self.program
        )
        ref = session.ref
        entries = {ref: _encode(session), NEWEST_KEY: session_key}
        if device is not None:
            for prefix_char, value in zip((ADDRESS, AGENT), device):
                if value:
                    entries[prefix_char + ref] = _printable(value)
        cap = self.config["WXLOGIN_MAX_SESSIONS_PER_USER"] or 0
        evicted, replaced = self.backend.login(prefix + openid, rules, cap, unionid, entries, replaces or "")
        return session, evicted, replaced

    def load(self, session_id: str, settings: Optional[Tuple[str, str, str]] = None) -> Optional[WxUser]:
        """The live session with this id, or ``None`` if it expired, was ended or never was.

        ``settings``: :meth:`settings`, if the caller has just read them.
        """
        parts = split_session_id(session_id)
        if parts is None:
            return None
        openid, ref = parts
        appid, _, prefix = settings or self.settings()
        key = prefix + openid
        record, unionid = self.backend.read(key, ref)
        if record is None:
            return None
        try:
            session_key, created_at, refreshed_at, user_id = _fields(record)
        except (ValueError, UnicodeError):
            log.warning("unreadable session record; treating it as no session")
            return None
        session = WxUser(
            session_id, openid, session_key, unionid or None, user_id, created_at, refreshed_at, appid, self.program
        )
        config, now = self.config, int(self.clock())
        idle, idle_for = config["WXLOGIN_SESSION_IDLE_TIMEOUT"], now - session.refreshed_at
        if now - session.created_at >= config["WXLOGIN_SESSION_MAX_AGE"] or idle_for >= idle:
            return None
        if idle_for >= idle * REFRESH_FRACTION:
            session.refreshed_at = now
            if not self.backend.slide(key, ref, _encode(session), self.rules()):
                return None
        return session

    def newest_session_key(self, openid: str) -> Optional[str]:
        """The session_key of ``openid``'s latest login here, while any session could use it."""
        key = self.user_key(openid)
        return None if key is None else self.backend.field(key, NEWEST_KEY) or None

    def sessions(self, openid: str, current: Optional[str] = None) -> List[SessionInfo]:
        """``openid``'s live sessions, most recently seen first; ``current`` is the request's ref."""
        key = self.user_key(openid)
        found = {} if key is None else self.backend.fields(key)
        rules = self.rules()
        listed = []
        for ref, record in found.items():
            if len(ref) != REF_LENGTH:
                continue
            seen = rules.last_seen(record)
            if seen is None:
                continue
            listed.append(SessionInfo(
                ref, created_at(record), seen, found.get(ADDRESS + ref), found.get(AGENT + ref), ref == current,
            ))
        return sorted(listed, key=lambda info: (-info.last_seen_at, -info.created_at, info.ref))

    def revoke(self, session_id: str) -> bool:
        """End the session with this id; whether it was live. Ending one that is gone is not an error."""
        parts = split_session_id(session_id)
        return parts is not None and self.end_session(*parts)

    def end_session(self, openid: str, ref: str) -> bool:
        """End ``openid``'s session ``ref``; whether it was live."""
        key = self.user_key(openid)
        return key is not None and REF.fullmatch(ref) is not None and bool(
            self.backend.end(key, self.rules(), "these", (ref,))
        )

    def end_others(self, openid: str, kept: str) -> List[str]:
        """End every session of ``openid`` but ``kept``: the refs of the live ones ended."""
        key = self.user_key(openid)
        return [] if key is None else self.backend.end(key, self.rules(), "others", (kept,))  # type: ignore[no-any-return]

    def end_all(self, openid: str) -> int:
        """End every session of ``openid`` at once, atomically against logins; how many were live."""
        key = self.user_key(openid)
        return 0 if key is None else len(self.backend.end(key, self.rules(), "all"))


def _printable(value: str) -> str:
    """``value`` as at most :data:`DEVICE_CHARS` printable ASCII characters (anything else is ``?``)."""
    return "".join(char if " " <= char <= "~" else "?" for char in value[:DEVICE_CHARS])


def _encode(session: WxUser) -> str:
    user_id = "" if session.user_id is None else json.dumps(session.user_id)
    return (
        f"{session.session_key}|{session.created_at}"
        f"|{session.refreshed_at - session.created_at}|{user_id}"
    )


@functools.lru_cache(maxsize=4096)
def _fields(record: str) -> Tuple[str, int, int, UserId]:
    """``(session_key, created_at, refreshed_at, user_id)`` of a session record; ValueError or
    UnicodeError if it is not one of ours.

    Cached: a client sends the same session again and again, and its record
    changes only at a slide. Everything in the result is immutable.
    """
    session_key, created, refreshed, user_id = record.split("|", 3)
    if not (session_key and session_key.isascii()):
        raise ValueError("no session_key in the session record")
    created_at = int(created)
    parsed = json.loads(user_id) if user_id else None
    if parsed is not None and not (isinstance(parsed, (str, int)) and not isinstance(parsed, bool)):
        raise ValueError("a user_id that is not a str or an int")
    return session_key, created_at, created_at + int(refreshed), parsed
