"""Run the flask-wxlogin benchmark suite and write its report into ``benchmarks/results/``.

    python benchmarks/run.py            # full run, about 6 minutes on 2 cores
    python benchmarks/run.py --quick    # smaller samples, under a minute
    python benchmarks/run.py --only inprocess memory

Needs Redis on 127.0.0.1:6379 (DB 12, keys under ``wxlbench:``, deleted
afterwards), wrk, and the ``bench`` extra: ``pip install -e '.[bench]'``.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any, Callable, Dict, List, Optional

import redis

import inprocess
import login
import memory
import metrics_cost
import profiling
import report
import server
from common import REDIS_URL, Settings, redis_client

log = logging.getLogger("benchmarks")

#: Each section's runner, in the order they run.
SECTIONS: Dict[str, Callable[[Settings], Dict[str, Any]]] = {
    "inprocess": inprocess.run,
    "login": login.run,
    "server": server.run,
    "memory": memory.run,
    "profile": profiling.run,
    "metrics": metrics_cost.run,
}


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    # The embedded cache's "not for production" warning is expected here.
    logging.getLogger("flask_wxlogin").setLevel(logging.ERROR)
    problem = _redis_problem()
    if problem is not None:
        log.error("no Redis at %s: %s", REDIS_URL, problem)
        return 2
    settings = Settings.quick() if args.quick else Settings.full()
    described = report.machine()
    started = time.monotonic()
    results = {name: SECTIONS[name](settings) for name in SECTIONS if name in args.only}
    described["load average at end"] = report.load_average()
    if report.library_tree() != described["flask_wxlogin/ tree"]:
        described["flask_wxlogin/ tree at end"] = f"{report.library_tree()}: the library changed during the run"
    path = report.write(results, settings, described, time.monotonic() - started)
    print(path.read_text())
    log.info("report written to %s (+ .png, .json)", path)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Benchmark flask-wxlogin against bare Flask, Flask-Login and JWT.")
    parser.add_argument("--quick", action="store_true", help="small samples, under a minute (default: full run)")
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), default=list(SECTIONS), metavar="SECTION",
                        help=f"run only these sections: {', '.join(SECTIONS)}")
    return parser


def _redis_problem() -> Optional[str]:
    try:
        redis_client(socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


if __name__ == "__main__":
    sys.exit(main())
