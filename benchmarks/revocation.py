"""Revocation through the near cache, proven across two real OS processes.

    python benchmarks/revocation.py --trials 40000 --hogs 2 --redis-url redis://127.0.0.1:6379/12

A *writer* process creates a session field and a *reader* process reads it
through its own :class:`flask_wxlogin.nearcache.NearCache` until it is served
from memory. The writer then revokes it (``HDEL``: end_session; ``DEL``:
logout_all or the last session gone; ``HSET`` of a new value: a slide or a
rewrite) followed by its barrier PING, tells this runner, and the runner asks
the reader at once. A *stale accept* is the reader returning the revoked
value. ``--hogs`` busy processes compete for the CPU meanwhile.

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
from typing import IO, Any, Dict, List, Optional

#: How the writer revokes, in turn.
KINDS = ("hdel", "del", "overwrite")
#: Keys the trials cycle through, so invalidations of other keys arrive in between.
KEYS = 16
ROOT = Path(__file__).resolve().parent.parent


def writer(url: str, prefix: str) -> None:
    import redis

    from flask_wxlogin.nearcache import barrier

    client = redis.Redis.from_url(url)
    for line in sys.stdin:
        op, key, value = line.split()
        if op == "set":
            client.hset(prefix + key, "ref", value)
        elif op == "hdel":
            client.hdel(prefix + key, "ref")
        elif op == "del":
            client.delete(prefix + key)
        else:
            client.hset(prefix + key, "ref", value + "-new")
        barrier(client)
        _answer(sys.stdout, "ok")


def reader(url: str, prefix: str) -> None:
    import redis

    from flask_wxlogin.nearcache import NearCache

    client = redis.Redis.from_url(url)
    cache = NearCache.for_client(client, prefix)
    for line in sys.stdin:
        op, key = line.split()
        hits = cache.stats["hits"]
        value = cache.read(prefix + key, "ref", lambda: client.hget(prefix + key, "ref"))
        if op == "warm":  # read again: this one should come from memory
            value = cache.read(prefix + key, "ref", lambda: client.hget(prefix + key, "ref"))
        hit = cache.stats["hits"] > hits
        _answer(sys.stdout, f"{(value or b'-').decode()} {int(hit)}")


def _answer(stream: IO[str], text: str) -> None:
    stream.write(text + "\n")
    stream.flush()


def _ask(process: "subprocess.Popen[str]", line: str) -> str:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(line + "\n")
    process.stdin.flush()
    answer = process.stdout.readline()
    if not answer:
        raise RuntimeError(f"a {line.split()[0]!r} process died")
    return answer.strip()


def _role(role: str, url: str, prefix: str) -> "subprocess.Popen[str]":
    return subprocess.Popen(
        [sys.executable, __file__, "--role", role, "--redis-url", url, "--prefix", prefix],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def prove(url: str, trials: int, hogs: int = 0, prefix: Optional[str] = None) -> Dict[str, Any]:
    """Run ``trials`` revocations; the counts as a dict."""
    import redis

    prefix = prefix or f"wxlbench:rev:{uuid.uuid4().hex[:8]}:"
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(hogs)]
    write, read = _role("writer", url, prefix), _role("reader", url, prefix)
    stale: List[int] = []
    warm_hits = 0
    started = time.monotonic()
    try:
        for trial in range(trials):
            key, value, kind = f"u{trial % KEYS}", f"v{trial}", KINDS[trial % len(KINDS)]
            _ask(write, f"set {key} {value}")
            seen, hit = _ask(read, f"warm {key}").split()
            warm_hits += int(hit)
            if seen != value:  # an older value served after the write: stale too
                stale.append(trial)
                continue
            _ask(write, f"{kind} {key} {value}")
            seen, _ = _ask(read, f"read {key}").split()
            if seen == value:
                stale.append(trial)
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
        "trials": trials, "stale_accepts": len(stale), "first_stale": stale[:10], "warm_hits": warm_hits,
        "hogs": hogs, "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--trials", type=int, default=40_000)
    parser.add_argument("--hogs", type=int, default=0, help="busy processes competing for the CPU")
    parser.add_argument("--prefix")
    parser.add_argument("--role", choices=("writer", "reader"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "writer":
        writer(args.redis_url, args.prefix)
    elif args.role == "reader":
        reader(args.redis_url, args.prefix)
    else:
        _answer(sys.stdout, json.dumps(prove(args.redis_url, args.trials, args.hogs, args.prefix)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
