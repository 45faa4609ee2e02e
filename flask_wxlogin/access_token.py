"""One access_token per mini program, shared by every worker through the cache.

The token lives under ``<prefix>access_token:{<appid>}`` until a safety margin
before WeChat's expiry (the braces are a Redis Cluster hash tag: the token,
its lock and its failure marker share one slot, so one node holds them all). When it is missing, one caller takes a lock key
(``...:lock``, set only if absent, with a TTL) and fetches it; the others
poll the cache until it appears. If the fetch fails, the failure is kept for
:data:`FAILURE_SECONDS` under ``...:failed`` and every caller in that time
gets the same error without calling WeChat, so an outage costs WeChat one
call per :data:`FAILURE_SECONDS`, not one per caller. A token WeChat rejects
is dropped only if the cache still holds that same token, so a late report
cannot evict a newer one.
"""
from __future__ import annotations

import logging
import secrets
import time
from typing import Any, Callable, Optional, Tuple, TypeVar

from .client import TOKEN_ERRCODES
from .errors import AccessTokenUnavailable, WeChatError
from .store import text

log = logging.getLogger("flask_wxlogin")

T = TypeVar("T")

#: Seconds between looks at the cache while another caller refreshes.
POLL_INTERVAL = 0.05
#: Seconds a failed refresh is answered from the cache instead of asking WeChat again.
FAILURE_SECONDS = 2


def cache_ttl(expires_in: int) -> int:
    """Seconds to keep a token WeChat says lives ``expires_in``: up to 5 minutes less."""
    return max(1, expires_in - min(300, expires_in // 2))


class SharedAccessToken:
    """The access_token of one mini program, fetched by one caller at a time."""

    def __init__(
        self, backend: Any, key: str, fetch: Callable[[], Tuple[str, int]], lock_seconds: int
    ) -> None:
        self.backend = backend
        self.key = key
        self.lock_key = key + ":lock"
        self.failed_key = key + ":failed"
        #: Calls WeChat: ``(token, expires_in)`` or a :class:`WeChatError`.
        self.fetch = fetch
        #: How long a refresh may hold the lock, and others wait for it (over the HTTP timeout).
        self.lock_seconds = lock_seconds

    def get(self) -> str:
        """The cached token, or a fresh one fetched by exactly one caller."""
        deadline = time.monotonic() + self.lock_seconds
        while True:
            token = self._cached()
            if token is not None:
                return token
            owner = secrets.token_hex(8)
            if self.backend.add(self.lock_key, owner, self.lock_seconds):
                return self._refresh(owner)
            if time.monotonic() >= deadline:
                log.error("no access_token after %s s: another caller holds the refresh lock", self.lock_seconds)
                raise AccessTokenUnavailable()
            time.sleep(POLL_INTERVAL)

    def _cached(self) -> Optional[str]:
        """The cached token; the recent refresh failure, raised, if there is one instead."""
        token = text(self.backend.get(self.key))
        if token:
            return token
        failure = text(self.backend.get(self.failed_key))
        if failure:
            status, _, error = failure.partition(" ")
            raise WeChatError(
                "WeChat did not give an access token just now; try again shortly.",
                error=error, status=int(status) if status.isdigit() else 502,
            )
        return None

    def _refresh(self, owner: str) -> str:
        try:
            # A refresh may have finished between our look and taking the lock.
            token = self._cached()
            if token is None:
                token = self._fetch()
        finally:
            self.backend.delete_if_equal(self.lock_key, owner)
        return token

    def _fetch(self) -> str:
        try:
            token, expires_in = self.fetch()
        except WeChatError as error:
            failed = error
        else:
            self.backend.set(self.key, token, cache_ttl(expires_in))
            log.info("fetched a new access_token (expires in %s s)", expires_in)
            return token
        self.backend.set(self.failed_key, f"{failed.status} {failed.error}", FAILURE_SECONDS)
        raise failed

    def call(self, api_call: Callable[[str], T]) -> T:
        """``api_call(token)``; if WeChat rejects the token, drop it, refresh, retry once."""
        token = self.get()
        try:
            return api_call(token)
        except WeChatError as error:
            if error.errcode not in TOKEN_ERRCODES:
                raise
        log.warning("WeChat rejected the cached access_token; refreshing it once")
        self.backend.delete_if_equal(self.key, token)
        return api_call(self.get())
