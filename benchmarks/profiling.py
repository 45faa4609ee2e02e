"""Section 5: where a protected request spends its time inside flask_wxlogin.

cProfile over the same replayed requests as section 1 gives the call tree
under ``login_required`` (cProfile inflates code made of many small calls, so
read its shares, not its microseconds); unprofiled micro-timings of the
building blocks, through public APIs only, give the absolute costs.
"""
from __future__ import annotations

import base64
import cProfile
import hashlib
import hmac
import logging
import pstats
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

from flask import current_app, g, request
from itsdangerous import Signer

import flask_wxlogin
import variants
from common import (
    APPID, APPSECRET, RESULTS_DIR, SECRET_KEY, Settings, WsgiRequest, copy_session_to_floor,
    delete_our_keys, floor_read, redis_client, time_batch,
)
from flask_wxlogin.testing import FakeWeChat

log = logging.getLogger("benchmarks")

PACKAGE_DIR = str(Path(flask_wxlogin.__file__).resolve().parent)
LABELS = {"ours_embedded": "ours, embedded default cache", "ours_redis": "ours, Redis"}
#: Micro-timings keep the best of this many runs.
REPEATS = 5
#: Redis round trips are slow: they get this fraction of the calls.
ROUND_TRIP_SHARE = 0.1
#: Tree edges below this share of the root are left out.
MIN_SHARE = 0.02
TREE_DEPTH = 6
#: A pstats key: (file, line, function name).
Func = Tuple[str, int, str]


def run(settings: Settings) -> Dict[str, Any]:
    client = redis_client()
    delete_our_keys(client)
    try:
        with FakeWeChat(APPID, APPSECRET, one_time_codes=False) as fake:  # logins replay one code
            embedded = variants.ours_app(fake, "ours-embedded")
            on_redis = variants.ours_app(fake, "ours-redis", **variants.REDIS_CACHE)
            requests = {
                "ours_embedded": variants.ours(embedded, variants.log_in(embedded)),
                "ours_redis": variants.ours(on_redis, variants.log_in(on_redis)),
            }
            copy_session_to_floor(client)
        # Stopped first, as in section 1: its server thread would take the GIL at every socket call.
        log.info("profile: %d requests per variant", settings.profile_requests)
        profiles = {name: _profile(name, request, settings) for name, request in requests.items()}
        steps = _steps(requests["ours_redis"], client, settings.profile_requests)
    finally:
        delete_our_keys(client)
        client.close()
    return {"requests": settings.profile_requests, "profiles": profiles, "steps": steps}


def _profile(name: str, replay: WsgiRequest, settings: Settings) -> Dict[str, Any]:
    count = settings.profile_requests
    time_batch(replay, 500)
    unprofiled = time_batch(replay, count)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(count):
        replay()
    profiler.disable()
    stats = pstats.Stats(profiler)
    entries: Dict[Func, Any] = stats.stats  # type: ignore[attr-defined]
    ours = {func: entry for func, entry in entries.items() if func[0].startswith(PACKAGE_DIR)}
    root = max(ours, key=lambda func: ours[func][3])
    profiled = stats.total_tt / count  # type: ignore[attr-defined]
    dump = RESULTS_DIR / f"profile-{settings.name}-{name}.txt"
    _write_dump(dump, stats, entries, root, count)
    return {
        "unprofiled_us": unprofiled,
        "profiled_us": profiled * 1e6,
        "root": _label(root),
        "root_share": entries[root][3] / stats.total_tt,  # type: ignore[attr-defined]
        "functions": _package_rows(ours, count),
        "tree": _tree(entries, root, count),
        "dump": dump.name,
    }


def _package_rows(ours: Dict[Func, Any], count: int) -> List[Dict[str, Any]]:
    rows = [
        {"function": _label(func), "calls": entry[1] / count, "own_us": entry[2] / count * 1e6,
         "incl_us": entry[3] / count * 1e6}
        for func, entry in ours.items()
    ]
    return sorted(rows, key=lambda row: -row["incl_us"])


def _callees(entries: Dict[Func, Any], caller: Func) -> List[Tuple[Func, float, int]]:
    """Who ``caller`` called: (function, cumulative seconds spent from this caller, calls)."""
    found = []
    for func, entry in entries.items():
        edge = entry[4].get(caller)
        if edge is not None:
            found.append((func, edge[3], edge[1]))
    return sorted(found, key=lambda item: -item[1])


def _tree(entries: Dict[Func, Any], root: Func, count: int) -> List[str]:
    """An indented call tree under ``root``: µs per request (profiled), share of the root, calls.

    cProfile keeps one level of callers, so the tree opens a function only when
    every call to it comes from its parent; below a shared helper (a
    ``LocalProxy`` lookup, say) the split between callers is unknown.
    """
    total = entries[root][3]
    lines = [f"{_label(root)}  {total / count * 1e6:.1f} µs  100%"]

    def walk(func: Func, depth: int) -> None:
        for callee, seconds, calls in _callees(entries, func):
            if seconds / total < MIN_SHARE:
                continue
            lines.append(f"{'  ' * depth}{_label(callee)}  {seconds / count * 1e6:.1f} µs  "
                         f"{seconds / total:.0%}  ×{calls / count:g}")
            if depth < TREE_DEPTH and len(entries[callee][4]) == 1:
                walk(callee, depth + 1)

    walk(root, 1)
    return lines


def _label(func: Func) -> str:
    path, line, name = func
    if path == "~":
        return name
    short = path[len(PACKAGE_DIR) - len("flask_wxlogin"):] if path.startswith(PACKAGE_DIR) else Path(path).name
    return f"{short}:{line}({name})"


def _write_dump(path: Path, stats: pstats.Stats, entries: Dict[Func, Any], root: Func, count: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        out.write(f"cProfile of {count} requests; call tree under {_label(root)} per request:\n\n")
        out.write("\n".join(_tree(entries, root, count)) + "\n\n")
        stats.stream = out  # type: ignore[attr-defined]
        stats.sort_stats("cumulative").print_stats(60)


# -- building blocks, unprofiled ---------------------------------------------------


def _steps(replay: WsgiRequest, client: Any, calls: int) -> Dict[str, float]:
    """Microseconds per call of what a protected request is made of, each alone in a tight loop."""
    signer = Signer(SECRET_KEY, salt="wxlbench", key_derivation="hmac", digest_method=hashlib.sha256)
    skey = signer.sign("A" * 22)
    derived = signer.derive_key()
    prepared = hmac.new(derived, digestmod=hashlib.sha256)
    if not (_verify(derived, skey) and _verify_prepared(prepared, skey)):
        raise AssertionError("a hand-made HMAC check disagrees with itsdangerous")

    def best(call: Callable[[], Any], share: float = 1.0) -> float:
        return min(time_batch(call, int(calls * share)) for _ in range(REPEATS))

    steps = {
        "itsdangerous Signer.unsign (hmac key derivation)": best(lambda: signer.unsign(skey)),
        "Signer.derive_key alone (repeated inside every unsign)": best(signer.derive_key),
        "HMAC-SHA256 verify, cached derived key (new HMAC, signature decoded)": best(lambda: _verify(derived, skey)),
        "HMAC-SHA256 verify, prepared HMAC copied, compared in base64": best(lambda: _verify_prepared(prepared, skey)),
        "redis-py HMGET, tight loop": best(lambda: floor_read(client), ROUND_TRIP_SHARE),
    }
    steps.update(_request_steps(replay, best))
    return steps


def _verify_prepared(prepared: "hmac.HMAC", skey: bytes) -> bool:
    value, _, signature = skey.rpartition(b".")
    mac = prepared.copy()
    mac.update(value)
    return hmac.compare_digest(base64.urlsafe_b64encode(mac.digest()).rstrip(b"="), signature)


def _verify(key: bytes, skey: bytes) -> bool:
    value, _, signature = skey.rpartition(b".")
    expected = hmac.new(key, value, hashlib.sha256).digest()
    return hmac.compare_digest(expected, base64.urlsafe_b64decode(signature + b"=" * (-len(signature) % 4)))


def _request_steps(replay: WsgiRequest, best: Callable[[Callable[[], Any]], float]) -> Dict[str, float]:
    """Costs of Flask's context-local lookups, inside one request with the skey header."""
    app = replay.app
    header = app.config["WXLOGIN_TOKEN_HEADER"]
    with app.request_context(replay.environ()):
        g.probe = 1
        view = app.view_functions["me"]
        return {
            "request.headers.get(skey header)": best(lambda: request.headers.get(header)),
            "request.headers.get('Authorization') (absent)": best(lambda: request.headers.get("Authorization")),
            "request.method via the proxy": best(lambda: request.method),
            "current_app.config[key] via the proxy": best(lambda: current_app.config["WXLOGIN_TOKEN_HEADER"]),
            "current_app.extensions['wxlogin']": best(lambda: current_app.extensions["wxlogin"]),
            "current_app._get_current_object()": best(current_app._get_current_object),  # type: ignore[attr-defined]
            "g.get(name)": best(lambda: g.get("probe")),
            "current_app.ensure_sync(view)": best(lambda: current_app.ensure_sync(view)),
            "current_wx_user.openid (user on g)": best(lambda: flask_wxlogin.current_wx_user.openid),
        }


def markdown(result: Dict[str, Any]) -> List[str]:
    lines = [
        "## 5. Profile of a protected request",
        "",
        f"cProfile over {result['requests']:,} replayed requests per variant. Times in the tree are "
        "profiled µs (inflated by cProfile); the shares are what to read.",
        "",
    ]
    for name, label in LABELS.items():
        profile = result["profiles"][name]
        lines += [
            f"### {label}",
            "",
            f"Unprofiled {profile['unprofiled_us']:.1f} µs per request; profiled {profile['profiled_us']:.1f} µs, "
            f"of which {profile['root_share']:.0%} under `{profile['root']}` (view included). "
            f"Full dump: `{profile['dump']}`.",
            "",
            "```",
            *profile["tree"],
            "```",
            "",
        ]
    lines += [
        f"### Building blocks, unprofiled (best of {REPEATS} runs of {result['requests']:,} calls; "
        f"Redis HMGET: {int(result['requests'] * ROUND_TRIP_SHARE):,})",
        "",
        "| step | µs / call |",
        "|---|---:|",
        *[f"| {step} | {us:.2f} |" for step, us in result["steps"].items()],
        "",
    ]
    return lines
