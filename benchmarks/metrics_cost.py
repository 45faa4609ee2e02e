"""Section 6: what the Prometheus metrics add to a protected request, on and off side by side.

"Off" is what an install without the ``[metrics]`` extra runs: the metric
functions find no registry and return. Both variants run in one process on
the embedded cache (the fastest request, so the largest share for any added
cost): a valid skey (counted nowhere) and a forged one (a 401, counted in
``wxlogin_rejected_requests_total``). The machine is shared and busy, so the
variants are timed in pairs, one request each, back to back in alternating
order: load that comes and goes hits both halves of a pair alike, and the
median of the pairs' differences is the cost.
"""
from __future__ import annotations

import logging
import statistics
import time
from typing import Any, Callable, Dict, List

import variants
from common import APPID, APPSECRET, Settings, WsgiRequest
from flask_wxlogin import metrics
from flask_wxlogin.testing import FakeWeChat

log = logging.getLogger("benchmarks")

LABELS = {
    "valid": "protected request, valid skey",
    "forged": "protected request, forged skey → 401",
    "call": "one `metrics.rejected()` call",
}
#: The functions the library calls to count something.
METRIC_FUNCTIONS = ("login", "wechat_request", "store_error", "access_token_refresh", "rejected")
#: Requests over which calls into the metrics are counted.
COUNTED_REQUESTS = 100


def run(settings: Settings) -> Dict[str, Any]:
    if metrics.registered is None:
        raise RuntimeError("the metrics section needs prometheus_client: pip install -e '.[metrics]'")
    pairs = settings.rounds * settings.batch
    with FakeWeChat(APPID, APPSECRET) as fake:
        app = variants.ours_app(fake, "ours-metrics")
        skey = variants.log_in(app)
        valid, forged = variants.ours(app, skey), variants.ours(app, variants.forge(skey))
        valid.expect(200)
        forged.expect(401)
        calls = {"valid": _metric_calls(valid), "forged": _metric_calls(forged)}
        log.info("metrics: %d pairs per variant, on and off", pairs)
        cases = {"valid": valid, "forged": forged, "call": lambda: metrics.rejected("default", "skey_invalid")}
        timed = {name: _paired(call, pairs) for name, call in cases.items()}
    return {"pairs": pairs, "calls_per_request": calls, **timed}


def _paired(call: Callable[[], Any], pairs: int) -> Dict[str, float]:
    """Medians in µs of ``call`` with the metrics on, off, and of each pair's difference (on - off)."""
    registered = metrics.registered
    on: List[int] = []
    off: List[int] = []
    clock = time.perf_counter_ns
    try:
        for pair in range(pairs):
            for metrics_on in ((True, False) if pair % 2 else (False, True)):
                metrics.registered = registered if metrics_on else None
                start = clock()
                call()
                (on if metrics_on else off).append(clock() - start)
    finally:
        metrics.registered = registered
    added = sorted(a - b for a, b in zip(on, off))
    quartile = len(added) // 4
    return {
        "on": statistics.median(on) / 1000, "off": statistics.median(off) / 1000,
        "added": statistics.median(added) / 1000,
        "added_q1": added[quartile] / 1000, "added_q3": added[-quartile - 1] / 1000,
    }


def _metric_calls(request: WsgiRequest) -> float:
    """Calls into :mod:`flask_wxlogin.metrics` per request, over :data:`COUNTED_REQUESTS` requests."""
    counted: List[str] = []
    real = {name: getattr(metrics, name) for name in METRIC_FUNCTIONS}

    def counting(name: str) -> Callable[..., None]:
        def call(*args: Any) -> None:
            counted.append(name)
            real[name](*args)

        return call

    for name in METRIC_FUNCTIONS:
        setattr(metrics, name, counting(name))
    try:
        for _ in range(COUNTED_REQUESTS):
            request()
    finally:
        for name, function in real.items():
            setattr(metrics, name, function)
    return len(counted) / COUNTED_REQUESTS


def markdown(result: Dict[str, Any]) -> List[str]:
    return [
        "## 6. What the metrics cost",
        "",
        f"The same app with the metrics on, and off as without the `[metrics]` extra; {result['pairs']} pairs "
        "of one request each, timed back to back in alternating order. µs, medians; the added cost is the "
        "median of the pairs' differences (interquartile range in brackets).",
        "",
        "| variant | on | off | added by the metrics |",
        "|---|---:|---:|---:|",
        *[
            f"| {label} | {result[name]['on']:.2f} | {result[name]['off']:.2f} | **{result[name]['added']:.2f}** "
            f"({result[name]['added_q1']:.2f} to {result[name]['added_q3']:.2f}) |"
            for name, label in LABELS.items()
        ],
        "",
        f"Calls into `flask_wxlogin.metrics` per request: valid skey {result['calls_per_request']['valid']:.0f}, "
        f"forged skey {result['calls_per_request']['forged']:.0f}.",
        "",
    ]
