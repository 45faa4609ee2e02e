"""A near cache: session reads served from this process's memory, revocation still immediate.

Opt-in (``WXLOGIN_NEAR_CACHE``). Redis tells us which keys changed through
server-assisted client-side caching (``CLIENT TRACKING``); an entry is served
only while nothing can have changed it. The rules below are the invariants;
each one is a bug a prototype had without it, and each has a named test in
``tests/test_nearcache.py``.

1. **One Redis node, reached directly.** Invalidations come from the node we
   track; a replica promoted under a Sentinel kept serving the old value, a
   Cluster spreads keys over nodes that each track separately, and a proxy
   does not forward tracking. :meth:`NearCache.for_client` refuses them.
2. **BCAST tracking on a dedicated invalidation connection**, which
   subscribes to ``__redis__:invalidate`` and redirects its own tracking
   (``CLIENT TRACKING ON REDIRECT <own id> BCAST PREFIX <prefix>``). Data
   connections stay untracked. Default (per-key) tracking leaked: Redis queues
   the writer's reply ahead of the redirected invalidation, and killing the
   tracked data connection silently stopped tracking. BCAST invalidations are
   built in Redis's ``beforeSleep`` and so go out before the writer's reply.
3. **Drain before every hit**, without blocking. Any EOF, timeout, error
   reply or unexpected message flushes everything; the next read that reached
   Redis reconnects. Whenever the lock is released, every byte received has
   been applied (each read of the connection ends by reading until nothing is
   left), so one ``poll`` of its socket tells whether anything new arrived:
   a hit costs no read attempt.
4. **Insert after a miss only if no invalidation of that key arrived during
   the read** and the generation (bumped by every flush and reconnect) is
   unchanged. Otherwise a value read just before a write could be kept after
   that write's invalidation was consumed.
5. **A lease.** Hits are served only within :attr:`NearCache.lease` seconds
   (1 s) of the *send* time of the last PING on the invalidation connection
   whose PONG came back: its receipt time would extend the lease by the round
   trip. A frozen or unreachable Redis therefore stops hits within a second.
6. **FLUSHDB / FLUSHALL.** Redis 7.0 announces a flush with a null in the
   flushing client's protocol: RESP2 ``$-1``, or RESP3 ``_`` even to a RESP2
   subscriber when the flushing client is itself tracked. The parser reads
   both, and any invalidation that is not a list of keys flushes everything.
7. **After fork**, the child caches nothing until it has its own connection
   (an ``os.register_at_fork`` hook resets every near cache in the child, and
   each read and invalidation compares the process id too: uWSGI forks
   through C's ``fork()`` without Python's hooks by default).
8. **Revokers send one PING on their own connection after the write**
   (:func:`barrier`). When it returns, Redis has written the invalidation to
   every subscriber's socket, so their next request sees it. That ordering is
   an implementation detail of Redis, not a contract, hence the barrier.

What it does not cover: see README.rst, "Near cache".
"""
from __future__ import annotations

import collections
import logging
import os
import select
import threading
import time
import weakref
from typing import Any, Callable, Dict, List, Optional

import redis
from redis._parsers import _RESP2Parser
from redis.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry
from redis.sentinel import SentinelConnectionPool
from redis.utils import SENTINEL

from . import causes, metrics

log = logging.getLogger("flask_wxlogin")

#: The channel Redis publishes invalidations on for RESP2 clients.
CHANNEL = b"__redis__:invalidate"
#: Seconds after an acknowledged PING's send time during which hits are served.
LEASE = 1.0
#: An unanswered PING older than this many leases means the connection is gone.
PATIENCE = 5
#: Seconds between reconnection attempts while the invalidation connection is down.
RECONNECT_EVERY = 0.5
#: Roughly what one entry costs beyond its key, field and value (dicts, list links).
ENTRY_OVERHEAD = 200
#: Seconds between two warnings that the invalidation connection cannot subscribe.
WARN_EVERY = 60.0

#: Reads the value from Redis on a miss: text or bytes, or a tuple of them and ``None`` (an HMGET);
#: ``None`` means there is nothing to keep.
Loader = Callable[[], Any]


class _InvalidationParser(_RESP2Parser):
    """redis-py's RESP2 parser, plus the RESP3 null ``_`` that Redis 7.0 may send a RESP2 subscriber on a flush.

    redis-py's RESP3 parser is no substitute: it misreads RESP2's ``$-1``,
    which Redis sends on the same occasion when the flushing client is not tracked.
    """

    def _read_response(self, disable_decoding: bool = False, timeout: Any = SENTINEL) -> Any:
        start = self._buffer.get_pos()
        if self._buffer.readline(timeout=timeout) == b"_":
            return None
        self._buffer.rewind(start)
        return super()._read_response(disable_decoding=disable_decoding, timeout=timeout)


class _Read:
    """A miss in progress; set ``dirty`` when its key is invalidated before it is inserted."""

    __slots__ = ("dirty",)

    def __init__(self) -> None:
        self.dirty = False


class NearCache:
    """Hash fields of keys under one prefix, kept in memory while Redis says they are unchanged.

    ``connect`` returns a new, unconnected redis-py connection to the node.
    Thread-safe; one per process (it notices a fork by itself).
    """

    def __init__(
        self,
        connect: Callable[[], Connection],
        prefix: str,
        *,
        max_entries: int = 10_000,
        max_bytes: int = 16 * 1024 * 1024,
        lease: float = LEASE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not prefix:
            raise ValueError("a near cache needs a non-empty key prefix to track")
        self._connect = connect
        self.prefix = prefix
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.lease = lease
        self.clock = clock
        #: Counters since start: ``hits``, ``misses``, ``flushes``, ``reconnects``, ``errors`` (failed subscriptions).
        self.stats: Dict[str, int] = collections.Counter()
        self._reset()
        _LIVE.add(self)
        metrics.watch_near_cache(self)

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._conn: Optional[Connection] = None
        #: Polls the invalidation connection's socket while there is one.
        self._poll: Any = None
        self._generation = 0
        # Keyed by text, as the caller names keys and fields: only invalidations (rare) convert.
        self._entries: "collections.OrderedDict[str, Dict[str, Any]]" = collections.OrderedDict()
        self._sizes: Dict[str, int] = {}
        self._bytes = 0
        self._reads: Dict[str, List[_Read]] = {}
        self._lease_from: Optional[float] = None
        self._ping_sent: Optional[float] = None
        self._retry_at = 0.0
        self._warned_at = -float("inf")

    @classmethod
    def for_client(cls, client: Any, prefix: str, **options: Any) -> "NearCache":
        """A near cache beside ``client``, a plain ``redis.Redis`` to one node; ValueError otherwise."""
        if not isinstance(client, redis.Redis):
            raise ValueError(
                f"WXLOGIN_NEAR_CACHE needs a single Redis node reached directly, not a {type(client).__name__}: "
                "a Cluster spreads keys over nodes that each track their own"
            )
        pool = client.connection_pool
        if isinstance(pool, SentinelConnectionPool):
            raise ValueError(
                "WXLOGIN_NEAR_CACHE needs a single Redis node reached directly, not through Sentinel: "
                "after a failover the promoted replica's connection kept serving old values"
            )
        if pool.connection_class not in (Connection, SSLConnection, UnixDomainSocketConnection):
            raise ValueError(
                f"WXLOGIN_NEAR_CACHE needs a single Redis node reached directly; "
                f"unknown connection class {pool.connection_class.__name__}"
            )
        kwargs = dict(pool.connection_kwargs)
        kwargs.update(
            parser_class=_InvalidationParser, protocol=2, client_name=None, health_check_interval=0,
            decode_responses=False, maint_notifications_config=None, maint_notifications_pool_handler=None,
            retry=Retry(NoBackoff(), 0),  # one attempt per RECONNECT_EVERY, never a retry loop in a request
        )
        kwargs.pop("cache", None)
        kwargs.pop("cache_config", None)
        return cls(lambda: pool.connection_class(**kwargs), prefix, **options)

    # -- reads -------------------------------------------------------------

    def read(self, key: str, field: str, load: Loader) -> Any:
        """``field`` of ``key`` from memory if provably current, else from ``load`` (its HGET or HMGET).

        A key outside the tracked prefix (``WXLOGIN_KEY_PREFIX`` changed after
        init) is always loaded: Redis would not say when it changes.
        """
        if not key.startswith(self.prefix):
            return load()
        if os.getpid() != self._pid:  # forked without Python's hooks: the parent's lock may be held
            self._reset()
        with self._lock:
            now = self.clock()
            if self._poll is not None and self._poll.poll(0):
                self._drain()
            self._renew(now)
            if self._serving(now):
                fields = self._entries.get(key)
                if fields is not None and field in fields:
                    self._entries.move_to_end(key)
                    self.stats["hits"] += 1
                    return fields[field]
            generation = self._generation if self._conn is not None else None
            pending = _Read()
            if generation is not None:
                self._reads.setdefault(key, []).append(pending)
            self.stats["misses"] += 1
        try:
            value = load()
        except BaseException:
            if generation is not None:
                with self._lock:
                    self._forget(key, pending)
            raise
        with self._lock:
            now = self.clock()
            self._drain()
            if generation is not None:
                self._forget(key, pending)
                if value is not None and not pending.dirty and generation == self._generation:
                    self._insert(key, field, value)
            elif self._conn is None and now >= self._retry_at:
                self._subscribe()
        return value

    def invalidate(self, key: str) -> None:
        """Drop ``key`` here now, ahead of Redis's own message (after this process's writes)."""
        if os.getpid() != self._pid:
            self._reset()
        with self._lock:
            self._invalidate(key)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """Bytes held, as counted against ``max_bytes``."""
        return self._bytes

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def close(self) -> None:
        with self._lock:
            self._lost("closed", reconnect=False)

    # -- the invalidation connection ---------------------------------------

    def _serving(self, now: float) -> bool:
        return self._conn is not None and self._lease_from is not None and now - self._lease_from < self.lease

    def probe(self) -> Optional[str]:
        """Open an invalidation connection and close it: ``None`` if it subscribed, else why not.

        For ``flask wxlogin check``: an ACL user without ``+client`` cannot track.
        """
        try:
            self._open().disconnect()
        except _FAILURES as exc:
            return causes.describe(exc)
        return None

    def _open(self) -> Connection:
        """A new connection tracking the prefix in BCAST mode redirected to itself, subscribed."""
        conn = self._connect()
        try:
            conn.connect()
            conn.send_command("CLIENT", "ID", check_health=False)
            own_id = conn.read_response()
            conn.send_command(
                "CLIENT", "TRACKING", "ON", "REDIRECT", own_id, "BCAST", "PREFIX", self.prefix, check_health=False
            )
            if conn.read_response() != b"OK":
                raise RedisError("CLIENT TRACKING refused")
            conn.send_command("SUBSCRIBE", CHANNEL, check_health=False)
            if conn.read_response()[:2] != [b"subscribe", CHANNEL]:
                raise RedisError("SUBSCRIBE refused")
        except _FAILURES:
            conn.disconnect()
            raise
        return conn

    def _subscribe(self) -> None:
        """Open the invalidation connection; on failure serve nothing from memory, and say why (once a minute)."""
        now = self.clock()
        self._retry_at = now + RECONNECT_EVERY
        try:
            conn = self._open()
        except _FAILURES as exc:
            self.stats["errors"] += 1
            if now - self._warned_at >= WARN_EVERY:
                self._warned_at = now
                log.warning(
                    "near cache cannot subscribe, so every read goes to Redis: %s "
                    "(it needs CLIENT TRACKING and SUBSCRIBE; at most one such warning a minute)",
                    causes.describe(exc),
                )
            return
        self._conn = conn
        self._poll = select.poll()
        self._poll.register(conn._sock, select.POLLIN)  # redis-py has no public accessor for the socket
        self._generation += 1
        self.stats["reconnects"] += 1
        self._drain()  # a message that came with SUBSCRIBE's reply sits in the parser's buffer: apply it
        self._renew(self.clock())

    def _renew(self, now: float) -> None:
        """Send a PING when the lease is half gone; give up on a connection that stopped answering."""
        conn = self._conn
        if conn is None:
            return
        if self._ping_sent is not None:
            if now - self._ping_sent > PATIENCE * self.lease:
                self._lost("no answer to PING")
            return
        if self._lease_from is not None and now - self._lease_from < self.lease / 2:
            return
        try:
            conn.send_packed_command(conn.pack_command("PING"), check_health=False)
        except (RedisError, OSError):
            self._lost("PING not sent")
            return
        self._ping_sent = now

    def _drain(self) -> None:
        """Apply every message already received, without waiting for more (and so empty the parser's buffer)."""
        conn = self._conn
        if conn is None:
            return
        try:
            while conn.can_read(timeout=0):
                self._apply(conn.read_response(disable_decoding=True, timeout=self.lease))
        except (RedisError, OSError, ValueError, TypeError, IndexError):
            self._lost("invalidation connection failed")

    def _apply(self, message: Any) -> None:
        if not isinstance(message, list) or not message:
            raise RedisError("unexpected message on the invalidation connection")
        kind = message[0]
        if kind == b"pong" and self._ping_sent is not None:
            self._lease_from, self._ping_sent = self._ping_sent, None
        elif kind == b"message" and len(message) == 3 and message[1] == CHANNEL:
            keys = message[2]
            if isinstance(keys, list) and keys and all(isinstance(key, bytes) for key in keys):
                for key in keys:
                    self._invalidate(key.decode("utf-8", "surrogateescape"))
            else:  # FLUSHDB, FLUSHALL: a null of either protocol
                self._flush()
        else:
            raise RedisError("unexpected message on the invalidation connection")

    def _lost(self, why: str, reconnect: bool = True) -> None:
        log.info("near cache flushed: %s", why)
        conn, self._conn, self._poll = self._conn, None, None
        if conn is not None:
            conn.disconnect()
        self._lease_from = self._ping_sent = None
        self._retry_at = 0.0 if reconnect else float("inf")
        self._flush()

    # -- the entries -------------------------------------------------------

    def _flush(self) -> None:
        self._generation += 1
        self._entries.clear()
        self._sizes.clear()
        self._bytes = 0
        self.stats["flushes"] += 1

    def _invalidate(self, key: str) -> None:
        for pending in self._reads.get(key, ()):
            pending.dirty = True
        if self._entries.pop(key, None) is not None:
            self._bytes -= self._sizes.pop(key)

    def _forget(self, key: str, pending: _Read) -> None:
        reads = self._reads[key]
        reads.remove(pending)
        if not reads:
            del self._reads[key]

    def _insert(self, key: str, field: str, value: Any) -> None:
        fields = self._entries.setdefault(key, {})
        fields[field] = value
        size = ENTRY_OVERHEAD + len(key) + sum(len(f) + _weight(v) for f, v in fields.items())
        self._bytes += size - self._sizes.get(key, 0)
        self._sizes[key] = size
        self._entries.move_to_end(key)
        while self._entries and (len(self._entries) > self.max_entries or self._bytes > self.max_bytes):
            old, _ = self._entries.popitem(last=False)
            self._bytes -= self._sizes.pop(old)


#: What opening the invalidation connection may raise (a reply of the wrong shape is a TypeError).
_FAILURES = (RedisError, OSError, TypeError)
#: Every near cache of this process, so a forked child can reset them all.
_LIVE: "weakref.WeakSet[NearCache]" = weakref.WeakSet()


def _forked() -> None:
    """In a new child: forget the parent's connection and entries (invariant 7)."""
    for cache in list(_LIVE):
        cache._reset()


os.register_at_fork(after_in_child=_forked)


def _weight(value: Any) -> int:
    if isinstance(value, tuple):
        return sum(len(part) for part in value if part is not None)
    return len(value)


def barrier(client: Any) -> None:
    """After a write under a tracked prefix: one PING on the writer's own connection.

    Once its PONG is back, Redis has run the event-loop pass that wrote the
    write's invalidation to every subscriber's socket.
    """
    client.ping()

