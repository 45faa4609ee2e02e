"""Section 4: Redis memory per user: everything a user's sessions cost, all keys included.

Users are made by the extension's own store, as logins make them: realistic
ids (28-character openid and unionid, a 24-character base64 session_key, a
7-digit user id), 1, 2 or 10 sessions per user, device tracking off or on
(a 170-character WeChat iPhone User-Agent and an IPv4 address per login),
and one session that has slid to the end of its life (its record holds a
7-digit ``last_seen_at - created_at``, the longest it gets).
The figure is Redis's ``used_memory`` delta over the batch divided by the
number of users, so it includes Redis's per-key overhead, the expiry
entry and its hash tables' growth. ``MEMORY USAGE`` over a sample of keys
is a cross-check that other clients of a shared server cannot disturb.
flask-caching's pickled dict, one session per key, is the reference.

The section has a DB and a prefix of its own on the suite's Redis, so other
runs of the suite cannot delete its keys; ``used_memory`` is the whole
server's, so other clients of a shared server add noise (MEMORY USAGE does
not move with them). ``WXLBENCH_MEMORY_REDIS_URL`` points it at another
Redis, such as a private ``redis-server``.
"""
from __future__ import annotations

import base64
import logging
import os
import random
import secrets
import statistics
import time
from typing import Any, Dict, List, NamedTuple

import redis
from flask import Flask
from flask_caching import Cache

from common import APPID, APPSECRET, REDIS_HOST, REDIS_PORT, SECRET_KEY, Settings, delete_our_keys, user_keys
from flask_wxlogin import WxLogin
from flask_wxlogin.config import DEFAULTS

log = logging.getLogger("benchmarks")

#: A real WeChat iPhone User-Agent (170 characters); the store keeps its first 64.
IPHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148 MicroMessenger/8.0.44(0x18002c2f) NetType/WIFI Language/zh_CN"
)
#: The section's own DB and prefix (the prefix as long as the default ``wxl:`` plus 3).
REDIS_URL = os.environ.get("WXLBENCH_MEMORY_REDIS_URL", f"redis://{REDIS_HOST}:{REDIS_PORT}/11")
KEY_PREFIX = "wxlmem:"
#: At least this many users per row, whatever the settings.
MIN_USERS = 10_000
#: At most this many: the 10-session rows make ten logins per user.
MAX_USERS = 20_000
#: Keys read back with MEMORY USAGE.
SAMPLED_KEYS = 500
#: Seconds to let Redis finish rehashing before reading ``used_memory``.
SETTLE_SECONDS = 1.0
IDLE_TIMEOUT = 7 * 24 * 3600


#: Days after its login at which a "slid" session is used (each use slides it): up to the default max age.
SLIDES = (6, 12, 18, 24, 29.99)


class Case(NamedTuple):
    label: str
    sessions: int
    unionid: bool
    track_devices: bool
    slid: bool = False


CASES = {
    "one": Case("1 session", 1, False, False),
    "one_unionid": Case("1 session, unionid", 1, True, False),
    "two": Case("2 sessions", 2, False, False),
    "ten": Case("10 sessions", 10, False, False),
    "one_tracked": Case("1 session, devices tracked", 1, False, True),
    "one_unionid_tracked": Case("1 session, unionid, devices tracked", 1, True, True),
    "two_tracked": Case("2 sessions, devices tracked", 2, False, True),
    "ten_tracked": Case("10 sessions, devices tracked", 10, False, True),
    "one_slid": Case("1 session, slid for 30 days", 1, False, False, True),
    "one_slid_tracked": Case("1 session, slid for 30 days, devices tracked", 1, False, True, True),
}
#: The issue's targets: bytes per user with one session, devices not tracked and tracked.
TARGETS = {"one": 300, "one_tracked": 400}


def run(settings: Settings) -> Dict[str, Any]:
    users = max(MIN_USERS, min(settings.sessions, MAX_USERS))
    client = redis.Redis.from_url(REDIS_URL)
    info = client.info("server")
    server = f"{REDIS_URL.rsplit('@', 1)[-1]}, Redis {info['redis_version']}"
    delete_our_keys(client, KEY_PREFIX)
    try:
        results = {name: _measure(client, users, case) for name, case in CASES.items()}
        results["pickled"] = _measure_pickled(client, users)
    finally:
        delete_our_keys(client, KEY_PREFIX)
        client.close()
    return {"users": users, "server": server, **results}


def _measure(client: redis.Redis, users: int, case: Case) -> Dict[str, Any]:
    """Make ``users`` users of ``case`` in an empty keyspace and weigh them."""
    log.info("memory: %s, %d users", case.label, users)
    delete_our_keys(client, KEY_PREFIX)
    before = _used_memory(client)
    app = _app(case.track_devices)
    with app.test_request_context():
        store = app.extensions["wxlogin"].store
        start = int(time.time())
        store.clock = lambda: start
        made = []
        for _ in range(users):
            openid = "o" + secrets.token_urlsafe(21)[:27]
            unionid = "o" + secrets.token_urlsafe(21)[:27] if case.unionid else None
            for _ in range(case.sessions):
                device = (_ipv4(), IPHONE_UA) if case.track_devices else None
                user, _, _ = store.create(openid, _session_key(), unionid, random.randrange(1_000_000, 10_000_000), device)
                made.append(user.session_id)
        for day in SLIDES if case.slid else ():
            store.clock = lambda: start + day * 86400  # read within this iteration only
            for session_id in made:
                assert store.load(session_id) is not None, "a slid session was lost"
    after = _used_memory(client)
    sample = _sample(client)
    stats = _weigh(client, sample, (after - before) / users)
    delete_our_keys(client, KEY_PREFIX)
    return stats


def _measure_pickled(client: redis.Redis, users: int) -> Dict[str, Any]:
    """0.1's reference: one session's fields as a dict in flask-caching's RedisCache (pickled), one key each."""
    log.info("memory: flask-caching pickled dict, %d users", users)
    delete_our_keys(client, KEY_PREFIX)
    before = _used_memory(client)
    app = Flask("wxlbench-memory-pickled")
    cache = Cache(app, config={"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": REDIS_URL, "CACHE_KEY_PREFIX": ""})
    now = int(time.time())
    with app.app_context():
        for _ in range(users):
            record = {"openid": "o" + secrets.token_urlsafe(21)[:27], "session_key": _session_key(),
                      "user_id": random.randrange(1_000_000, 10_000_000), "created_at": now, "refreshed_at": now}
            cache.set(KEY_PREFIX + secrets.token_urlsafe(16), record, timeout=IDLE_TIMEOUT)
    after = _used_memory(client)
    stats = _weigh(client, _sample(client), (after - before) / users)
    delete_our_keys(client, KEY_PREFIX)
    return stats


def _weigh(client: redis.Redis, sample: List[bytes], per_user: float) -> Dict[str, Any]:
    encodings = {client.object("encoding", key).decode() for key in sample}
    return {
        "bytes_per_user": per_user,
        "memory_usage": statistics.mean(client.memory_usage(key, samples=0) or 0 for key in sample),
        "encodings": sorted(encodings),
        "key_bytes": statistics.mean(len(key) for key in sample),
    }


def _app(track_devices: bool) -> Flask:
    app = Flask("wxlbench-memory")
    app.config.update(SECRET_KEY=SECRET_KEY, WXLOGIN_APPID=APPID, WXLOGIN_SECRET=APPSECRET,
                      CACHE_TYPE="RedisCache", CACHE_REDIS_URL=REDIS_URL, WXLOGIN_KEY_PREFIX=KEY_PREFIX,
                      WXLOGIN_SESSION_IDLE_TIMEOUT=IDLE_TIMEOUT, WXLOGIN_TRACK_DEVICES=track_devices)
    WxLogin(app)
    return app


def _session_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def _ipv4() -> str:
    return ".".join(str(random.randrange(1, 255)) for _ in range(4))


def _used_memory(client: redis.Redis) -> int:
    time.sleep(SETTLE_SECONDS)
    return int(client.info("memory")["used_memory"])


def _sample(client: redis.Redis) -> List[bytes]:
    return sorted(user_keys(client, KEY_PREFIX))[:SAMPLED_KEYS]


def markdown(result: Dict[str, Any]) -> List[str]:
    lines = [
        "## 4. Redis memory per user",
        "",
        f"{result['users']:,} users per row, made one login at a time by the extension's store, TTL "
        f"{IDLE_TIMEOUT // 86400} days. Bytes per user = `used_memory` delta / users: every key included "
        "(a user is one hash, `<prefix><openid>`). MEMORY USAGE is the mean over a sample of keys. The "
        f"section's prefix `{KEY_PREFIX}` makes keys {len(KEY_PREFIX) - len(DEFAULTS['WXLOGIN_KEY_PREFIX'])} "
        f"bytes longer than the default `{DEFAULTS['WXLOGIN_KEY_PREFIX']}`; both fall in jemalloc's 48-byte "
        f"size class for a 28-character openid, so the figures hold for the default. Redis: {result['server']}.",
        "",
        "| per user | bytes / user | MEMORY USAGE (sample) | encoding | target |",
        "|---|---:|---:|---|---|",
    ]
    for name, case in CASES.items():
        stats = result[name]
        target = f"≤ {TARGETS[name]} B" if name in TARGETS else ""
        lines.append(
            f"| {case.label} | {stats['bytes_per_user']:.0f} | {stats['memory_usage']:.0f} "
            f"| {', '.join(stats['encodings'])} | {target} |"
        )
    pickled = result["pickled"]
    lines += [
        f"| flask-caching pickled dict, 1 session (reference) | {pickled['bytes_per_user']:.0f} "
        f"| {pickled['memory_usage']:.0f} | {', '.join(pickled['encodings'])} | |",
        "",
    ]
    return lines
