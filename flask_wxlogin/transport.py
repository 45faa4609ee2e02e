"""One bounded HTTP exchange with WeChat: time, size, and no URL in any error.

The appsecret and access_token travel in query strings and bodies, so nothing
here puts a URL, a query or a library's exception text into a message: errors
are raised outside the ``except`` block (not even ``__context__`` keeps
requests' text) and the urllib3 logger is scrubbed (see :mod:`.redact`).

requests' timeout bounds each socket operation, not the exchange, so a server
dripping one byte at a time could hold a login for ever. A watchdog per call
(fired by one scheduler thread per process) bounds the whole exchange instead: connections made by
:class:`WatchedAdapter` put themselves in its care as they connect and send,
and at the deadline it shuts the socket down, which ends any read at once;
such a connection is closed, never pooled half-read.
"""
from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import socket
import threading
import time
from contextvars import ContextVar
from typing import Any, Dict, List, Optional, Tuple, Type

import requests
from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, poolmanager
from urllib3.connection import HTTPConnection, HTTPSConnection

from . import causes
from .errors import WeChatError

log = logging.getLogger("flask_wxlogin")

#: WeChat's answers are a few hundred bytes; anything past this is not WeChat.
MAX_RESPONSE_BYTES = 64 * 1024


def fetch(
    http: requests.Session,
    method: str,
    url: str,
    timeout: float,
    params: Optional[Dict[str, Any]] = None,
    json: Optional[Dict[str, Any]] = None,
) -> Tuple[bytes, int]:
    """``(body, status)`` of one request, or a :class:`WeChatError` with no trace of the URL.

    Connecting, sending, the headers and the body together take at most
    ``timeout`` when ``http`` mounts :class:`WatchedAdapter`.
    """
    watchdog = _Watchdog(timeout)
    try:
        with watchdog, http.request(
            method, url, params=params, json=json, timeout=timeout, stream=True, allow_redirects=False
        ) as response:
            body, status = _read_bounded(response, watchdog), response.status_code
            watchdog.disarm()
    except requests.RequestException as exc:
        error = _error_for(exc, watchdog.fired)
    else:
        if watchdog.fired:
            error = _error_for(requests.Timeout(), True)
        elif body is None:
            error = bad_response("WeChat's answer is too large.")
        else:
            return body, status
    raise error


def bad_response(message: str) -> WeChatError:
    return wechat_error(502, "wechat_bad_response", message)


def wechat_error(status: int, error: str, message: str, errcode: Optional[int] = None) -> WeChatError:
    return WeChatError(message, error=error, status=status, errcode=errcode)


def _read_bounded(response: requests.Response, watchdog: "_Watchdog") -> Optional[bytes]:
    """The body, ``None`` past :data:`MAX_RESPONSE_BYTES`; cut short once ``watchdog`` fired."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
        return None
    body = b""
    for chunk in response.iter_content(chunk_size=1024):
        body += chunk
        if len(body) > MAX_RESPONSE_BYTES:
            return None
        if watchdog.fired:
            break
    return body


def _error_for(exc: requests.RequestException, timed_out: bool) -> WeChatError:
    if timed_out or isinstance(exc, requests.Timeout):
        return wechat_error(504, "wechat_timeout", "WeChat did not answer in time.")
    if isinstance(exc, requests.ConnectionError) or _dropped(exc):
        log.warning("WeChat could not be reached: %s", causes.describe(exc))
        return wechat_error(502, "wechat_unreachable", "WeChat could not be reached.")
    return bad_response("The call to WeChat failed.")


def _dropped(exc: Optional[BaseException]) -> bool:
    """Whether Python's ``ConnectionError`` (a reset, say) lies under a broken body."""
    while exc is not None:
        if isinstance(exc, ConnectionError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


# -- the watchdog ------------------------------------------------------------------

_current: ContextVar[Optional["_Watchdog"]] = ContextVar("wxlogin_watchdog", default=None)


class _Watchdog:
    """From ``with`` until its end: at ``timeout``, fire and shut the connection in its care."""

    def __init__(self, timeout: float) -> None:
        self.deadline = time.monotonic() + timeout
        self.fired = False
        self.armed = True
        self._connection: Optional[_WatchedConnection] = None
        self._lock = threading.Lock()

    def __enter__(self) -> "_Watchdog":
        self._token = _current.set(self)
        _SCHEDULER.add(self)
        return self

    def disarm(self) -> None:
        with self._lock:
            self.armed = False

    def __exit__(self, *exc_info: object) -> None:
        self.disarm()
        _current.reset(self._token)

    def watch(self, connection: "_WatchedConnection") -> None:
        with self._lock:
            self._connection, connection.watchdog = connection, self
            if self.fired:
                _shut(connection)

    def release(self, connection: "_WatchedConnection") -> None:
        """Let go of ``connection`` as it goes back to the pool: another call may take it next."""
        with self._lock:
            if self._connection is connection:
                self._connection = None
            if connection.watchdog is self:
                connection.watchdog = None

    def fire(self) -> None:
        with self._lock:
            if self.armed:
                self.fired = True
                if self._connection is not None:
                    _shut(self._connection)


class _Scheduler:
    """One daemon thread per process that fires each watchdog still armed at its deadline.

    A thread per call would cost more than the rest of a login; this one
    sleeps until the earliest deadline. Started on first use, and again in a
    forked worker, where the parent's thread does not exist.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._due: List[Tuple[float, int, _Watchdog]] = []
        self._count = itertools.count()
        self._thread: Optional[threading.Thread] = None

    def add(self, watchdog: _Watchdog) -> None:
        with self._condition:
            heapq.heappush(self._due, (watchdog.deadline, next(self._count), watchdog))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="wxlogin-watchdog", daemon=True)
                self._thread.start()
            elif self._due[0][2] is watchdog:
                self._condition.notify()

    def _run(self) -> None:
        with self._condition:
            while True:
                now = time.monotonic()
                while self._due and (self._due[0][0] <= now or not self._due[0][2].armed):
                    heapq.heappop(self._due)[2].fire()
                self._condition.wait(self._due[0][0] - now if self._due else None)


_SCHEDULER = _Scheduler()


def _new_scheduler_after_fork() -> None:
    """A forked child must not inherit the parent's lock state, heap or (absent) thread."""
    global _SCHEDULER
    _SCHEDULER = _Scheduler()


os.register_at_fork(after_in_child=_new_scheduler_after_fork)


def _shut(connection: HTTPConnection) -> None:
    sock = connection.sock
    if isinstance(sock, socket.socket):
        # socket.socket's own shutdown: ssl.SSLSocket's drops its TLS state under the reader.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _WatchedConnection(HTTPConnection):
    """A connection that puts itself in the care of the running exchange's watchdog."""

    watchdog: Optional[_Watchdog] = None

    def connect(self) -> None:
        _watch(self)
        super().connect()

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self)
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(_WatchedConnection, HTTPSConnection):
    pass


def _watch(connection: _WatchedConnection) -> None:
    watchdog = _current.get()
    if watchdog is not None:
        watchdog.watch(connection)


class _ReleasingPool(HTTPConnectionPool):
    """Detaches a connection from its watchdog as urllib3 pools it (which it does as soon
    as the body has been read, before ``fetch`` returns)."""

    def _put_conn(self, conn: Any) -> None:
        watchdog = getattr(conn, "watchdog", None)
        if watchdog is not None:
            watchdog.release(conn)
        super()._put_conn(conn)


class _HTTPPool(_ReleasingPool):
    ConnectionCls = _WatchedConnection


class _HTTPSPool(_ReleasingPool, HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS: Dict[str, Type[HTTPConnectionPool]] = {"http": _HTTPPool, "https": _HTTPSPool}


class WatchedAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose connections :func:`fetch`'s watchdog can cut at its deadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        # Only urllib3's own pool classes: SOCKS proxies bring theirs (and go unwatched).
        if manager.pool_classes_by_scheme is poolmanager.pool_classes_by_scheme:
            manager.pool_classes_by_scheme = _POOLS
        return manager
