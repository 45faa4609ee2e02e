"""Login rate limits: attempts per client IP and mini program, counted by ``limits``.

The counters live where the sessions do, so every worker and host shares
them: on the session store's own Redis client (plain, Sentinel or Cluster),
or in this process's memory beside the embedded default cache. A moving
window: "30/minute" means at most 30 attempts in any 60 seconds.

A single Redis (or Sentinel master) that cannot count fails closed: the
login answers 503 ``session_store_unavailable`` before calling WeChat. A login
could not store its session in that store anyway, so failing open would only
spend WeChat calls (and the users' codes) on logins bound to fail.

A Redis Cluster that cannot count fails open: a lost master holds the
counters of some addresses, but only its own users' sessions, so failing
closed would turn away users whose sessions are up. The login goes on
uncounted; each such failure is counted in ``wxlogin_store_errors_total``
and logged as a warning at most once per :data:`WARN_EVERY` seconds.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable, Dict, Optional

from limits.storage import MemoryStorage, RedisClusterStorage, RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter

from . import causes, metrics
from .config import RATE_LIMIT_NAMESPACE, rate_limits
from .errors import LoginRateLimited

log = logging.getLogger("flask_wxlogin")

#: Appended to ``WXLOGIN_KEY_PREFIX`` for the counters' keys (limits adds ``:LIMITER/...``).
KEY_SUFFIX = RATE_LIMIT_NAMESPACE
#: Seconds between two warnings that a cluster could not count (it fails open).
WARN_EVERY = 60


class LoginRateLimit:
    """Counts login attempts in one app's session store; one ``limits`` storage per key prefix."""

    def __init__(self, backend: Any, clock: Callable[[], float] = time.monotonic) -> None:
        #: The session store's backend: its ``redis`` client (or None) and its outage guard.
        self.backend = backend
        #: Times the warnings of a cluster that cannot count; tests replace it.
        self.clock = clock
        self._limiters: Dict[str, MovingWindowRateLimiter] = {}
        self._warned_at = -math.inf

    def hit(self, limit: Optional[str], key_prefix: str, program: str, ip: str) -> None:
        """Count one attempt of ``program`` from ``ip``; :class:`LoginRateLimited` past ``limit``.

        A store outage raises the store's own 503 (fail closed), but on a
        Redis Cluster the attempt goes uncounted (fail open).
        """
        if limit is None:
            return
        limiter = self._limiters.get(key_prefix)
        if limiter is None:
            storage = storage_for(self.backend.redis, key_prefix + KEY_SUFFIX)
            limiter = self._limiters.setdefault(key_prefix, MovingWindowRateLimiter(storage))
        if isinstance(limiter.storage, _ClusterStorage):
            try:
                self._hit(limiter, limit, program, ip, _direct)
            except self.backend.errors as exc:
                self._failed_open(exc)
            return
        # Through the store's guard: an outage is the same 503, log line and metric as a session call.
        self._hit(limiter, limit, program, ip, self.backend.guarded)

    def _hit(
        self, limiter: MovingWindowRateLimiter, limit: str, program: str, ip: str, call: Callable[..., Any]
    ) -> None:
        for item in rate_limits(limit):
            if not call(limiter.hit, item, program, ip):
                stats = call(limiter.get_window_stats, item, program, ip)
                # Whole seconds after which the oldest attempt is out of the window (at the edge it is in).
                raise LoginRateLimited(max(1, math.floor(stats.reset_time - time.time()) + 1))

    def _failed_open(self, exc: BaseException) -> None:
        metrics.store_error("hit")
        now = self.clock()
        if now - self._warned_at >= WARN_EVERY:
            self._warned_at = now
            log.warning(
                "login rate limit not counted: %s failed (%s); letting logins through (at most one such warning a minute)",
                self.backend.where(), causes.describe(exc),
            )


def _direct(method: Callable[..., Any], *args: Any) -> Any:
    return method(*args)


def storage_for(client: Any, key_prefix: str) -> Storage:
    """A ``limits`` storage on ``client`` (redis-py), or in memory when the sessions are not on Redis."""
    if client is None:
        return MemoryStorage()
    from redis.cluster import RedisCluster

    if isinstance(client, RedisCluster):
        return _ClusterStorage(client, key_prefix)
    # A Sentinel master's client carries a SentinelConnectionPool, which finds the master itself.
    return RedisStorage("redis://", connection_pool=client.connection_pool, key_prefix=key_prefix)


class _ClusterStorage(RedisClusterStorage):
    """limits' cluster storage on the session store's own ``RedisCluster``.

    limits builds a cluster client only from a URI, which would be a second
    set of connections with options copied by hand (timeouts, retries,
    credentials). This skips that constructor and gives the inherited
    commands and Lua scripts the client the sessions use. It sets the
    attributes ``RedisClusterStorage.__init__`` sets; tests on a real cluster
    catch a limits release that changes them.
    """

    def __init__(self, client: Any, key_prefix: str) -> None:
        Storage.__init__(self)
        self.key_prefix = key_prefix
        self.target_server = "redis"
        self.dependency = self.dependencies["redis"].module
        self.storage = client
        self.initialize_storage("")
