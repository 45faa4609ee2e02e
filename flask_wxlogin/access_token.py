"""One access_token per mini program, shared by every worker through the cache.

The token lives under ``<prefix>access_token:<appid>`` until a safety margin
before WeChat's expiry. When it is missing, one caller takes a lock key
(``...:lock``, set only if absent, with a TTL) and fetches it; the others
poll the cache until it appears. A token WeChat rejects is dropped only if
the cache still holds that same token, so a late report cannot evict a newer
one.
"""
from __future__ import annotations

import logging
import secrets
import time
from typing import Any, Callable, Optional, Tuple, TypeVar

from .client import TOKEN_ERRCODES
from .errors import AccessTokenUnavailable, WeChatError

log = logging.getLogger("flask_wxlogin")

T = TypeVar("T")

#: Seconds between looks at the cache while another caller refreshes.
POLL_INTERVAL = 0.05


def cache_ttl(expires_in: int) -> int:
    """Seconds to keep a token WeChat says lives ``expires_in``: up to 5 minutes less."""
    return max(1, expires_in - min(300, expires_in // 2))


class SharedAccessToken:
    """The access_token of one mini program, fetched by one caller at a time."""

    def __init__(
        self,
        backend: Any,
        key: str,
        fetch: Callable[[], Tuple[str, int]],
        lock_seconds: Callable[[], int],
    ) -> None:
        self.backend = backend
        self.key = key
        self.lock_key = key + ":lock"
        #: Calls WeChat: ``(token, expires_in)`` or a :class:`WeChatError`.
        self.fetch = fetch
        #: How long a refresh may hold the lock, and others wait for it (over the HTTP timeout).
        self.lock_seconds = lock_seconds

    def get(self) -> str:
        """The cached token, or a fresh one fetched by exactly one caller."""
        lock_seconds = self.lock_seconds()
        deadline = time.monotonic() + lock_seconds
        while True:
            token = self.backend.get(self.key)
            if token is not None:
                return token.decode() if isinstance(token, bytes) else str(token)
            owner = secrets.token_hex(8)
            if self.backend.add(self.lock_key, owner, lock_seconds):
                return self._refresh(owner)
            if time.monotonic() >= deadline:
                log.error("no access_token after %s s: another caller holds the refresh lock", lock_seconds)
                raise AccessTokenUnavailable()
            time.sleep(POLL_INTERVAL)

    def _refresh(self, owner: str) -> str:
        try:
            # A refresh may have finished between our look and taking the lock.
            cached = self.backend.get(self.key)
            if cached is not None:
                return cached.decode() if isinstance(cached, bytes) else str(cached)
            token, expires_in = self.fetch()
            self.backend.set(self.key, token, cache_ttl(expires_in))
        finally:
            self.backend.delete_if_equal(self.lock_key, owner)
        log.info("fetched a new access_token (expires in %s s)", expires_in)
        return token

    def call(self, api_call: Callable[[str], T]) -> T:
        """``api_call(token)``; if WeChat rejects the token, drop it, refresh, retry once."""
        token = self.get()
        try:
            return api_call(token)
        except WeChatError as error:
            if error.errcode not in TOKEN_ERRCODES:
                raise
            rejected: Optional[str] = token
        log.warning("WeChat rejected the cached access_token; refreshing it once")
        self.backend.delete_if_equal(self.key, rejected)
        return api_call(self.get())
