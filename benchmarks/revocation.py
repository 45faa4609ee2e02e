"""Revocation through the near cache, proven across two real OS processes.

    python benchmarks/revocation.py --trials 40000 --hogs 2 --redis-url redis://127.0.0.1:6379/12

A *writer* process creates a session and a *reader* process reads it
through its own :class:`flask_wxlogin.nearcache.NearCache` until it is served
from memory. The writer then ends it, tells this runner, and the runner asks
the reader at once. ``--through redis`` writes the per-user hash directly
(``HDEL``: one session ended; ``DEL``: the user's key gone; ``HSET`` of a new
value: a rewrite), each followed by the revokers' barrier PING; ``--through
app`` runs the real app in both processes and ends the session by the
logout route, ``logout_all``, ``end_session`` or eviction by a login beyond
``WXLOGIN_MAX_SESSIONS_PER_USER``. A *stale accept* is the reader still
accepting the ended session (or serving an older value). ``--hogs`` busy
processes compete for the CPU meanwhile.

The report is one JSON line: trials, stale accepts, how many of the reads
before a revocation were near-cache hits (a proof where nothing was cached
proves nothing), and the seconds taken. tests/test_nearcache.py runs a short
variant; the full one lives here because it takes minutes.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import IO, Any, Callable, Dict, List, Optional

#: How the writer revokes, in turn: on Redis directly, and through the app.
KINDS = {"redis": ("hdel", "del", "overwrite"), "app": ("logout", "logout_all", "end_session", "evict")}
#: Keys (users) the trials cycle through, so invalidations of other keys arrive in between.
USERS = 16
ROOT = Path(__file__).resolve().parent.parent
#: Seconds the reader waits before reading a session again after a stale accept.
RECHECK_AFTER = 0.05
SECRET_KEY = "revocation-proof-secret-key"
APPID, APPSECRET = "wx00000000000000ff", "revocation-proof-appsecret"


def _serve(handle: Callable[[List[str]], str]) -> None:
    for line in sys.stdin:
        _answer(sys.stdout, handle(line.split()))


def redis_writer(url: str, prefix: str) -> None:
    """``create <trial>`` -> ``<key> <value>``; ``<kind> <key>`` -> ``ok``."""
    import redis

    from flask_wxlogin.nearcache import barrier

    client = redis.Redis.from_url(url)

    def handle(words: List[str]) -> str:
        op, arg = words
        if op == "create":
            key, value = f"u{int(arg) % USERS}", f"v{arg}"
            client.hset(prefix + key, "ref", value)
            barrier(client)
            return f"{key} {value}"
        if op == "hdel":
            client.hdel(prefix + arg, "ref")
        elif op == "del":
            client.delete(prefix + arg)
        else:
            client.hset(prefix + arg, "ref", "overwritten")
        barrier(client)
        return "ok"

    _serve(handle)


def redis_reader(url: str, prefix: str) -> None:
    """``warm <key>`` reads twice, ``read <key>`` once -> ``<value or -> <1 if from memory>``."""
    import redis

    from flask_wxlogin.nearcache import NearCache

    client = redis.Redis.from_url(url)
    cache = NearCache.for_client(client, prefix)

    def handle(words: List[str]) -> str:
        op, key = words
        if op == "recheck":
            time.sleep(RECHECK_AFTER)
        hits = cache.stats["hits"]
        for _ in range(2 if op == "warm" else 1):
            value = cache.read(prefix + key, "ref", lambda: client.hget(prefix + key, "ref"))
        return f"{(value or b'-').decode()} {int(cache.stats['hits'] > hits)}"

    _serve(handle)


def _app(url: str, prefix: str, api_base: str = "http://127.0.0.1:9") -> Any:
    """The app both processes run: Redis, the near cache on, one protected route."""
    from flask import Flask

    from flask_wxlogin import WxLogin, current_wx_user, login_required

    app = Flask("revocation")
    app.config.update(
        SECRET_KEY=SECRET_KEY, WXLOGIN_APPID=APPID, WXLOGIN_SECRET=APPSECRET, WXLOGIN_API_BASE=api_base,
        CACHE_TYPE="RedisCache", CACHE_REDIS_URL=url, WXLOGIN_KEY_PREFIX=prefix, WXLOGIN_NEAR_CACHE=True,
        WXLOGIN_MAX_SESSIONS_PER_USER=1,  # "evict": the user's next login ends the session
        WXLOGIN_LOGIN_RATE_LIMIT=None,  # every trial logs in from one address
    )
    wxlogin = WxLogin(app)

    @app.get("/me")
    @login_required
    def me() -> Dict[str, Any]:
        return {"openid": current_wx_user.openid}

    return app, wxlogin


def app_writer(url: str, prefix: str) -> None:
    """``create <trial>`` logs in -> ``<skey> <openid>``; ``<kind> <skey>`` ends that session -> ``ok``.

    Kinds: ``logout`` (the route), ``logout_all``, ``end_session`` (by its ref), ``evict`` (another
    login of the same user, beyond ``WXLOGIN_MAX_SESSIONS_PER_USER = 1``).
    """
    from flask_wxlogin.testing import FakeWeChat
    from flask_wxlogin.tokens import session_ref

    with FakeWeChat(APPID, APPSECRET, one_time_codes=False) as wechat:
        app, wxlogin = _app(url, prefix, wechat.url)
        client, openids, codes = app.test_client(), {}, {}

        def log_in(code: str) -> str:
            return str(client.post("/auth/login", json={"code": code}).get_json()["data"]["skey"])

        def handle(words: List[str]) -> str:
            op, arg = words
            if op == "create":
                code = f"user-{int(arg) % USERS}"
                skey = log_in(code)
                openids[skey], codes[skey] = client.get("/me", headers={"X-WX-Skey": skey}).get_json()["openid"], code
                return f"{skey} {openids[skey]}"
            openid, code = openids.pop(arg), codes.pop(arg)
            if op == "logout":
                ended = client.post("/auth/logout", headers={"X-WX-Skey": arg}).status_code == 200
            elif op == "evict":
                log_in(code)
                with app.app_context():
                    ended = session_ref(arg.rpartition(".")[0]) not in {info.ref for info in wxlogin.sessions(openid)}
            else:
                with app.app_context():
                    if op == "logout_all":
                        ended = wxlogin.logout_all(openid) >= 1
                    else:
                        ended = wxlogin.end_session(openid, session_ref(arg.rpartition(".")[0]))
            return "ok" if ended else "not-ended"

        _serve(handle)


def app_reader(url: str, prefix: str) -> None:
    """``warm <skey>`` requests twice, ``read <skey>`` once -> ``<openid or -> <1 if from memory>``."""
    app, wxlogin = _app(url, prefix)
    client = app.test_client()
    with app.app_context():
        stats = wxlogin.store.backend.near_cache.stats

    def handle(words: List[str]) -> str:
        op, skey = words
        if op == "recheck":
            time.sleep(RECHECK_AFTER)
        hits = stats["hits"]
        for _ in range(2 if op == "warm" else 1):
            response = client.get("/me", headers={"X-WX-Skey": skey})
        seen = response.get_json()["openid"] if response.status_code == 200 else "-"
        return f"{seen} {int(stats['hits'] > hits)}"

    _serve(handle)


ROLES = {"redis-writer": redis_writer, "redis-reader": redis_reader, "app-writer": app_writer, "app-reader": app_reader}


def _answer(stream: IO[str], text: str) -> None:
    stream.write(text + "\n")
    stream.flush()


def _ask(process: "subprocess.Popen[str]", line: str) -> str:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(line + "\n")
    process.stdin.flush()
    answer = process.stdout.readline()
    if not answer:
        raise RuntimeError(f"a process died answering {line.split()[0]!r}")
    return answer.strip()


def _role(role: str, url: str, prefix: str) -> "subprocess.Popen[str]":
    return subprocess.Popen(
        [sys.executable, __file__, "--role", role, "--redis-url", url, "--prefix", prefix],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def prove(url: str, trials: int, hogs: int = 0, prefix: Optional[str] = None, through: str = "redis") -> Dict[str, Any]:
    """Run ``trials`` revocations (``through`` Redis directly or the app); the counts as a dict."""
    import redis

    prefix = prefix or f"wxlbench:rev:{uuid.uuid4().hex[:8]}:"
    kinds = KINDS[through]
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(hogs)]
    write, read = _role(f"{through}-writer", url, prefix), _role(f"{through}-reader", url, prefix)
    stale: List[Dict[str, Any]] = []
    warm_hits = 0
    started = time.monotonic()
    try:
        for trial in range(trials):
            token, expected = _ask(write, f"create {trial}").split()
            seen, hit = _ask(read, f"warm {token}").split()
            warm_hits += int(hit)
            kind = kinds[trial % len(kinds)]
            if seen != expected:  # not even the new session served: a stale value, or broken
                stale.append({"trial": trial, "phase": "warm", "kind": kind, "seen": seen, "hit": hit})
                continue
            done = _ask(write, f"{kind} {token}")
            if done != "ok":
                raise RuntimeError(f"trial {trial}: revoking answered {done}")
            seen, hit = _ask(read, f"read {token}").split()
            if seen == expected:
                # Asked again a moment later: a miss now means the invalidation came late, not never.
                again, again_hit = _ask(read, f"recheck {token}").split()
                stale.append({"trial": trial, "phase": "revoked", "kind": kind, "seen": seen, "hit": hit,
                              "recheck": again, "recheck_hit": again_hit})
    finally:
        for process in (write, read):
            assert process.stdin is not None
            process.stdin.close()
            process.wait(10)
        for process in busy:
            process.kill()
            process.wait(10)
        client = redis.Redis.from_url(url)
        names = list(client.scan_iter(match=prefix + "*"))
        if names:
            client.delete(*names)
    return {
        "through": through, "trials": trials, "stale_accepts": len(stale), "first_stale": stale[:10],
        "warm_hits": warm_hits, "hogs": hogs, "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--trials", type=int, default=40_000)
    parser.add_argument("--hogs", type=int, default=0, help="busy processes competing for the CPU")
    parser.add_argument("--prefix")
    parser.add_argument("--through", choices=tuple(KINDS), default="redis",
                        help="revoke on Redis directly, or through the app's logout and logout_all")
    parser.add_argument("--role", choices=tuple(ROLES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role:
        ROLES[args.role](args.redis_url, args.prefix)
    else:
        result = prove(args.redis_url, args.trials, args.hogs, args.prefix, args.through)
        _answer(sys.stdout, json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
