"""Section 4: Redis memory per session, ours against flask-caching's default pickled dict.

Both sides store the same fields (openid and unionid of 28 characters, a
24-character base64 session_key, an integer user id, two timestamps) under
keys of the same length, with the same TTL; the figure is Redis's
``used_memory`` delta over the whole batch divided by the number of sessions,
so it includes Redis's per-key overhead and its hash tables' growth.
``MEMORY USAGE`` over a sample of keys is shown as a cross-check.
"""
from __future__ import annotations

import base64
import logging
import os
import random
import secrets
import statistics
import time
from typing import Any, Dict, List

import redis
from flask import Flask
from flask_caching import Cache

from common import (
    APPID, APPSECRET, KEY_PREFIX, REDIS_URL, SECRET_KEY, Settings, delete_our_keys, redis_client, session_keys,
)
from flask_wxlogin import WxLogin
from flask_wxlogin.config import DEFAULTS
from flask_wxlogin.tokens import new_session_id

log = logging.getLogger("benchmarks")

#: The key length the extension uses out of the box: default prefix + session id.
DEFAULT_KEY_LENGTH = len(DEFAULTS["WXLOGIN_KEY_PREFIX"]) + len(new_session_id())
LABELS = {
    "ours": "ours, with unionid",
    "ours_no_unionid": "ours, no unionid",
    "ours_short": f"ours, with unionid, {DEFAULT_KEY_LENGTH}-byte keys (default prefix)",
    "ours_short_no_unionid": f"ours, no unionid, {DEFAULT_KEY_LENGTH}-byte keys (default prefix)",
    "pickled": "flask-caching default (pickled dict), with unionid",
    "pickled_no_unionid": "flask-caching default (pickled dict), no unionid",
}
#: Keys read back with MEMORY USAGE and STRLEN.
SAMPLED_KEYS = 500
#: Seconds to let Redis finish rehashing before reading ``used_memory``.
SETTLE_SECONDS = 1.0
IDLE_TIMEOUT = 7 * 24 * 3600


def run(settings: Settings) -> Dict[str, Any]:
    client = redis_client()
    delete_our_keys(client)
    try:
        results = {name: _measure(client, settings.sessions, name) for name in LABELS}
    finally:
        delete_our_keys(client)
        client.close()
    return {"sessions": settings.sessions, **results}


def _measure(client: redis.Redis, sessions: int, name: str) -> Dict[str, Any]:
    """Make ``sessions`` sessions of kind ``name`` in an empty keyspace and weigh them."""
    log.info("memory: %s, %d sessions", LABELS[name], sessions)
    delete_our_keys(client)
    before = _used_memory(client)
    create = _create_pickled if name.startswith("pickled") else _create_ours
    create(sessions, not name.endswith("no_unionid"))
    if "_short" in name:
        _move_to_keys_of(client, DEFAULT_KEY_LENGTH)
    after = _used_memory(client)
    sample = _sample_keys(client)
    stats = {
        "bytes_per_session": (after - before) / sessions,
        "user_key_bytes": _weigh_user_keys(client, sessions) if name.startswith("ours") else 0.0,
        "memory_usage": statistics.mean(client.memory_usage(key, samples=0) or 0 for key in sample),
        "value_bytes": statistics.mean(client.strlen(key) for key in sample),
        "key_bytes": statistics.mean(len(key) for key in sample),
        "example_value": repr(client.get(sample[0]))[:200],
    }
    delete_our_keys(client)
    return stats


def _used_memory(client: redis.Redis) -> int:
    time.sleep(SETTLE_SECONDS)
    return int(client.info("memory")["used_memory"])


def _move_to_keys_of(client: redis.Redis, length: int) -> None:
    """Move every session to a fresh key ``length`` bytes long, keeping its value and TTL.

    Our keys must start with the benchmark's prefix, which is longer than the
    extension's default; this weighs the records under keys of the default length.
    """
    keys = sorted(session_keys(client))
    for start in range(0, len(keys), 1000):
        chunk = keys[start:start + 1000]
        read = client.pipeline(transaction=False)
        for key in chunk:
            read.get(key)
            read.pttl(key)
        answers = read.execute()
        write = client.pipeline(transaction=False)
        write.delete(*chunk)
        for key, value, ttl in zip(chunk, answers[::2], answers[1::2]):
            if value is None or ttl <= 0:
                raise RuntimeError(f"{key!r} vanished or lost its TTL while being moved (PTTL {ttl})")
            write.set(KEY_PREFIX + secrets.token_urlsafe(length)[:length - len(KEY_PREFIX)], value, px=ttl)
        write.execute()


def _sample_keys(client: redis.Redis) -> List[bytes]:
    keys: List[bytes] = []
    for key in client.scan_iter(match=KEY_PREFIX + "*", count=1000):
        keys.append(key)
        if len(keys) == SAMPLED_KEYS:
            break
    return keys


def _identity(unionid: bool) -> Dict[str, Any]:
    """Fields shaped like real code2Session answers and app user ids."""
    return {
        "openid": "o" + secrets.token_urlsafe(21)[:27],
        "session_key": base64.b64encode(os.urandom(16)).decode(),
        "unionid": "o" + secrets.token_urlsafe(21)[:27] if unionid else None,
        "user_id": random.randrange(1, 10_000_000),
    }


def _ours_app() -> Flask:
    app = Flask("wxlbench-memory")
    app.config.update(SECRET_KEY=SECRET_KEY, WXLOGIN_APPID=APPID, WXLOGIN_SECRET=APPSECRET,
                      CACHE_TYPE="RedisCache", CACHE_REDIS_URL=REDIS_URL, WXLOGIN_KEY_PREFIX=KEY_PREFIX,
                      WXLOGIN_SESSION_IDLE_TIMEOUT=IDLE_TIMEOUT)
    WxLogin(app)
    return app


def _create_ours(sessions: int, unionid: bool) -> None:
    """Session records made by the extension's store, as a login makes them, without the per-user keys."""
    app = _ours_app()
    with app.test_request_context():
        store = app.extensions["wxlogin"].store
        store.backend.record_login = lambda *args: None  # weighed apart: _weigh_user_keys
        for _ in range(sessions):
            fields = _identity(unionid)
            store.create(fields["openid"], fields["session_key"], fields["unionid"], fields["user_id"])


def _weigh_user_keys(client: redis.Redis, users: int) -> float:
    """Bytes per user of the keys a login writes beside the session: index set and newest session_key."""
    app = _ours_app()
    before = _used_memory(client)
    with app.test_request_context():
        store = app.extensions["wxlogin"].store
        for _ in range(users):
            fields = _identity(False)
            store.backend.record_login(
                store._index_key(fields["openid"]), new_session_id(), store._newest_key_key(fields["openid"]),
                fields["session_key"], IDLE_TIMEOUT,
            )
    return (_used_memory(client) - before) / users


def _create_pickled(sessions: int, unionid: bool) -> None:
    """The same fields as a dict in flask-caching's RedisCache (pickled), key length matched."""
    app = Flask("wxlbench-memory-pickled")
    cache = Cache(app, config={"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": REDIS_URL, "CACHE_KEY_PREFIX": ""})
    now = int(time.time())
    with app.app_context():
        for _ in range(sessions):
            record = {**_identity(unionid), "created_at": now, "refreshed_at": now}
            cache.set(KEY_PREFIX + secrets.token_urlsafe(16), record, timeout=IDLE_TIMEOUT)


def markdown(result: Dict[str, Any]) -> List[str]:
    lines = [
        "## 4. Redis memory per session",
        "",
        f"{result['sessions']:,} sessions per row, created one by one through the store (ours) or "
        f"flask-caching's `Cache.set` (pickled), TTL {IDLE_TIMEOUT // 86400} days. Bytes per session = "
        "`used_memory` delta / sessions. The benchmark's own prefix `wxlbench:` makes keys "
        f"{len(KEY_PREFIX) + len(new_session_id())} bytes; the `{DEFAULT_KEY_LENGTH}-byte keys` rows re-store the "
        "same records under keys as long as the extension's default prefix `"
        f"{DEFAULTS['WXLOGIN_KEY_PREFIX']}` gives. Redis allocates in size classes (jemalloc: 16-byte steps "
        "here), so a few bytes less in a value can save 16 or nothing. Fewer sessions read higher: Redis "
        "sizes its hash tables in powers of two, and their share per key shrinks as they fill. "
        "The last column is what each login adds beside its session for a user seen once (the index "
        "set and the newest session_key, both kept for the maximum age), added after the session "
        "figures are taken, for as many users as sessions.",
        "",
        "| format | bytes / session | MEMORY USAGE (sample) | value bytes | key bytes | + per-user keys |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, label in LABELS.items():
        stats = result[name]
        lines.append(
            f"| {label} | {stats['bytes_per_session']:.0f} | {stats['memory_usage']:.0f} "
            f"| {stats['value_bytes']:.0f} | {stats['key_bytes']:.0f} | {stats.get('user_key_bytes', 0):.0f} |"
        )
    lines += ["", f"Our record as stored (synthetic values): `{result['ours']['example_value']}`", ""]
    return lines
