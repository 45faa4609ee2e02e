"""Shared pieces of the benchmark suite: settings, Redis scratch space, WSGI replay, timing, stats."""
from __future__ import annotations

import io
import os
import random
import secrets
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

import redis
from flask import Flask
from werkzeug.datastructures import Headers
from werkzeug.test import EnvironBuilder

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"

REDIS_HOST = "127.0.0.1"
#: ``WXLBENCH_REDIS_PORT`` points the whole suite (gunicorn workers included) at another local server,
#: e.g. a private one when other runs share 6379.
REDIS_PORT = int(os.environ.get("WXLBENCH_REDIS_PORT", "6379"))
REDIS_DB = 12
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
#: Every key the suite writes starts with this; cleanup deletes exactly these.
KEY_PREFIX = "wxlbench:"
#: Holds a copy of a real user's sessions; the floor route reads it as we do (:func:`floor_read`).
FLOOR_KEY = KEY_PREFIX + "floor"
#: The field of the copied session in :data:`FLOOR_KEY`, as long as a session's ref.
FLOOR_FIELD = "floorfloorf"
#: The busy-wait control's spin: what the Redis target allows on top of the floor.
BUSY_WAIT_US = 25

APPID = "wxbench0123456789"
APPSECRET = secrets.token_hex(16)
#: One random key per run, shared with the gunicorn workers through the environment.
SECRET_KEY = secrets.token_hex(32)
#: A realistic openid (28 characters), what every view answers with.
OPENID = "oGZUI0egBJY1zhBYw2KhdUfwVJJE"
#: Rounds run their cases in a shuffled order, the same from run to run.
SHUFFLE_SEED = 6

#: WXLOGIN_LOGIN_RATE_LIMIT of every benchmark app: thousands of logins come from one loopback
#: address, so a limit that is counted (its cost is measured) but never reached.
LOGIN_RATE_LIMIT = "1000000/minute"


@dataclass(frozen=True)
class Settings:
    """How much of everything to run; ``quick()`` and ``full()`` are the two documented sizes."""

    name: str
    rounds: int
    batch: int
    login_rounds: int
    login_batch: int
    server_rounds: int
    server_seconds: int
    sessions: int
    profile_requests: int

    @classmethod
    def quick(cls) -> "Settings":
        return cls("quick", rounds=8, batch=200, login_rounds=5, login_batch=20,
                   server_rounds=1, server_seconds=2, sessions=10_000, profile_requests=2_000)

    @classmethod
    def full(cls) -> "Settings":
        return cls("full", rounds=50, batch=500, login_rounds=20, login_batch=50,
                   server_rounds=7, server_seconds=5, sessions=100_000, profile_requests=20_000)


# -- statistics -----------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """Median and range of one measurement over the rounds of a run."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> "Spread":
        return cls(statistics.median(values), min(values), max(values))

    def text(self, digits: int = 1) -> str:
        return f"{self.median:,.{digits}f} ({self.low:,.{digits}f}–{self.high:,.{digits}f})"


def ratios(values: Sequence[float], bases: Sequence[float]) -> Spread:
    """Each round's value over the same round's base."""
    return Spread.of([value / base for value, base in zip(values, bases)])


def differences(values: Sequence[float], bases: Sequence[float]) -> Spread:
    """Each round's value minus the same round's base."""
    return Spread.of([value - base for value, base in zip(values, bases)])


def interleave(cases: Mapping[str, Callable[[], Any]], rounds: int, batch: int) -> Dict[str, List[float]]:
    """Microseconds per call of each case: one sample per round, case order shuffled each round."""
    samples: Dict[str, List[float]] = {name: [] for name in cases}
    order = list(cases)
    shuffle = random.Random(SHUFFLE_SEED).shuffle
    for _ in range(rounds):
        shuffle(order)
        for name in order:
            samples[name].append(time_batch(cases[name], batch))
    return samples


def time_batch(call: Callable[[], Any], batch: int) -> float:
    """Mean microseconds per call over ``batch`` back-to-back calls."""
    start = time.perf_counter_ns()
    for _ in range(batch):
        call()
    return (time.perf_counter_ns() - start) / batch / 1000


# -- WSGI replay ----------------------------------------------------------------


class WsgiRequest:
    """One prebuilt request replayed straight into an app's WSGI callable.

    The environ is built once; each call copies it and gives it a fresh body
    stream, then drains and closes the response, as a WSGI server would.
    """

    def __init__(
        self,
        app: Flask,
        path: str,
        method: str = "GET",
        headers: Optional[Dict[str, str]] = None,
        json: Any = None,
    ) -> None:
        builder = EnvironBuilder(
            path=path, method=method, headers=Headers(headers or {}), json=json,
            environ_base={"REMOTE_ADDR": "127.0.0.1", "HTTP_USER_AGENT": "wxlbench"},
        )
        self._environ = builder.get_environ()
        self._body = self._environ["wsgi.input"].read()
        builder.close()
        self.app = app
        self._wsgi = app.wsgi_app

    def __call__(self) -> None:
        _drain(self._wsgi(self.environ(), _ignore_start))

    def environ(self) -> Dict[str, Any]:
        """A fresh copy of the prebuilt environ."""
        environ = self._environ.copy()
        environ["wsgi.input"] = io.BytesIO(self._body)
        return environ

    def send(self) -> Tuple[int, Dict[str, str], bytes]:
        """Status, headers and body of one replay, for checks outside the timed loops."""
        seen: Dict[str, Any] = {}

        def start_response(status: str, headers: List[Tuple[str, str]], exc_info: Any = None) -> Any:
            seen["status"], seen["headers"] = int(status.split()[0]), dict(headers)
            return _ignore_write

        body = _drain(self._wsgi(self.environ(), start_response))
        return seen["status"], seen["headers"], body

    def expect(self, status: int) -> None:
        """Replay once; :class:`AssertionError` unless the answer has ``status`` and sets no cookie.

        No ``Set-Cookie`` means no variant pays for rewriting Flask's session.
        """
        got, headers, body = self.send()
        if got != status:
            raise AssertionError(f"{self.app.name}: expected HTTP {status}, got {got}: {body[:200]!r}")
        if "Set-Cookie" in headers:
            raise AssertionError(f"{self.app.name}: the response rewrites the session cookie")


def _drain(chunks: Iterable[bytes]) -> bytes:
    """Read a WSGI response body to the end and close it, as a server does."""
    try:
        return b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def _ignore_write(data: bytes) -> None:
    """The WSGI ``write`` callable; Flask never uses it."""


def _ignore_start(status: str, headers: List[Tuple[str, str]], exc_info: Any = None) -> Any:
    return _ignore_write


def busy_wait(microseconds: int) -> None:
    """Spin on the clock: CPU time that touches almost no memory."""
    until = time.perf_counter_ns() + microseconds * 1000
    while time.perf_counter_ns() < until:
        pass


def repeat(call: Callable[[], Any], times: int) -> Callable[[], None]:
    """A callable that calls ``call`` ``times`` times."""

    def run() -> None:
        for _ in range(times):
            call()

    return run


# -- Redis scratch space ----------------------------------------------------------


def redis_client(**options: Any) -> redis.Redis:
    return redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB, **options)


def delete_our_keys(client: redis.Redis, prefix: str = KEY_PREFIX) -> None:
    """Delete every key under ``prefix`` in the client's DB (SCAN, never KEYS)."""
    batch: List[bytes] = []
    for key in client.scan_iter(match=prefix + "*", count=1000):
        batch.append(key)
        if len(batch) == 1000:
            client.delete(*batch)
            batch.clear()
    if batch:
        client.delete(*batch)


def user_keys(client: redis.Redis, prefix: str = KEY_PREFIX) -> Set[bytes]:
    """Our users' session hashes under ``prefix`` in the client's DB, not the floor's key.

    A set: SCAN may return a key twice. Openids hold no ``:``; the suite's
    other keys (markers, access tokens) do.
    """
    return {
        key for key in client.scan_iter(match=prefix + "*")
        if key != FLOOR_KEY.encode() and b":" not in key[len(prefix):]
    }


def copy_session_to_floor(client: redis.Redis) -> None:
    """Put a copy of the one user's sessions under :data:`FLOOR_KEY`, its one session as :data:`FLOOR_FIELD`."""
    keys = user_keys(client)
    if len(keys) != 1:
        raise RuntimeError(f"expected one user in Redis DB {REDIS_DB}, found {len(keys)}")
    fields = client.hgetall(keys.pop())
    (record,) = [value for name, value in fields.items() if len(name) == len(FLOOR_FIELD)]
    client.delete(FLOOR_KEY)
    client.hset(FLOOR_KEY, mapping={**fields, FLOOR_FIELD: record})


def floor_read(client: redis.Redis) -> Any:
    """The raw read a protected request makes: the session's record and the user's unionid, one HMGET."""
    return client.hmget(FLOOR_KEY, (FLOOR_FIELD, "u"))


def count_commands(action: Callable[[], Any]) -> "Counter[str]":
    """The commands Redis ran in our DB while ``action`` ran, by name, seen through MONITOR.

    A marker command sent after ``action`` ends the count, so the result does
    not depend on timing; the marker's client connects before MONITOR starts,
    so its handshake is not counted; commands in other DBs are ignored.
    """
    marker = f"{KEY_PREFIX}marker:{secrets.token_hex(8)}"
    counts: "Counter[str]" = Counter()
    watcher, sender = redis_client(socket_timeout=10), redis_client()
    sender.ping()
    try:
        with watcher.monitor() as monitor:
            action()
            sender.exists(marker)
            while True:
                entry = monitor.next_command()
                if marker in entry["command"]:
                    break
                if entry["db"] == REDIS_DB:
                    counts[entry["command"].split(" ", 1)[0].upper()] += 1
    finally:
        watcher.close()
        sender.close()
    return counts
