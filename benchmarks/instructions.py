"""Instructions per protected request, counted by callgrind: a figure that load does not move.

    apt-get install -y valgrind
    python benchmarks/instructions.py                   # this checkout
    python benchmarks/instructions.py --tree ../v0.2.0  # another checkout, with its own benchmarks/

Each variant of ``inprocess.py`` (bare + SECRET_KEY, Flask-Login, ours on the
embedded cache, the floor, ours on Redis) runs in its own Python under
``valgrind --tool=callgrind`` twice: 200 warm-up requests and then
``--requests`` more, and 200 warm-up requests alone. The difference over
``--requests`` is the user-space instructions one request takes in this
process (Redis's own work is in another process and not counted). Timings
on a shared VM swing by a factor of two; at 1,000 requests these counts
repeat to within about 1 %, so they show what a change to the hot path did.
Needs Redis as ``run.py`` does (DB 12, keys ``wxlbench:``): each run deletes
those keys, so do not run it beside ``run.py`` on the same Redis. 0.2.0's
benchmark code ignores ``WXLBENCH_REDIS_PORT`` (it always uses 6379).
"""
from __future__ import annotations

import argparse
import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

HERE = Path(__file__).resolve().parent
VARIANTS = ("bare_sk", "flask_login", "ours_embedded", "floor", "ours_redis")
WARM_UP = 200
_COLLECTED = re.compile(r"Collected : (\d+)")


def serve(tree: Path, variant: str, requests: int) -> None:
    """Inside callgrind: build ``variant`` with ``tree``'s code as its ``inprocess.py`` does, then send requests."""
    sys.path[0:1] = [str(tree / "benchmarks"), str(tree)]  # in place of this script's own folder
    from common import APPID, APPSECRET, copy_session_to_floor, delete_our_keys, redis_client
    import variants
    import flask_wxlogin
    from flask_wxlogin.testing import FakeWeChat

    for module in (variants, flask_wxlogin):
        if not Path(module.__file__).resolve().is_relative_to(tree):
            raise RuntimeError(f"{module.__name__} came from {module.__file__}, not from {tree}")

    client = redis_client()
    delete_our_keys(client)
    options = {"one_time_codes": False} if "one_time_codes" in inspect.signature(FakeWeChat).parameters else {}
    try:
        with FakeWeChat(APPID, APPSECRET, **options) as fake:  # stopped before the counted requests
            if variant == "bare_sk":
                request = variants.bare(with_secret_key=True)
            elif variant == "flask_login":
                request = variants.flask_login_cookie()
            elif variant == "ours_embedded":
                app = variants.ours_app(fake, "ours-embedded")
                request = variants.ours(app, variants.log_in(app))
            else:
                app = variants.ours_app(fake, "ours-redis", **variants.REDIS_CACHE)
                skey = variants.log_in(app)
                copy_session_to_floor(client)
                request = variants.floor(client) if variant == "floor" else variants.ours(app, skey)
        request.expect(200)  # a 401 would count the wrong path
        for _ in range(WARM_UP + requests):
            request()
    finally:
        delete_our_keys(client)


def count(tree: Path, variant: str, requests: int) -> int:
    """Instructions callgrind collected in a whole run of :func:`serve`."""
    run = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         str(Path(__file__).resolve()), "--serve", str(tree), variant, str(requests)],
        capture_output=True, text=True, check=False, env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    found = _COLLECTED.search(run.stderr)
    if run.returncode != 0 or found is None:
        raise RuntimeError(f"{variant}: callgrind run failed:\n{run.stderr[-2000:]}")
    return int(found.group(1))


def per_request(tree: Path, requests: int) -> Dict[str, float]:
    return {v: (count(tree, v, requests) - count(tree, v, 0)) / requests for v in VARIANTS}


def report(counts: Dict[str, float]) -> List[str]:
    base = counts["bare_sk"]
    lines = ["| variant | instructions / request | × bare + SECRET_KEY |", "|---|---:|---:|"]
    lines += [f"| {name} | {value:,.0f} | {value / base:.3f} |" for name, value in counts.items()]
    lines.append(f"- ours, embedded − bare + SECRET_KEY: {counts['ours_embedded'] - base:,.0f}")
    lines.append(f"- ours, Redis − floor: {counts['ours_redis'] - counts['floor']:,.0f}")
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=HERE.parent, help="the checkout to count (default: this one)")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--serve", nargs=3, metavar=("TREE", "VARIANT", "REQUESTS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(Path(args.serve[0]), args.serve[1], int(args.serve[2]))
        return 0
    tree = args.tree.resolve()
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (apt-get install -y valgrind)")
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    if not (tree / "benchmarks" / "variants.py").is_file():
        parser.error(f"{tree} has no benchmarks/variants.py")
    print("\n".join(report(per_request(tree, args.requests))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
