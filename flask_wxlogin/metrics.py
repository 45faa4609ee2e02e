"""Prometheus metrics, when the ``[metrics]`` extra (``prometheus_client``) is installed.

The metrics are registered in ``prometheus_client``'s default registry, so
its ``generate_latest()`` on a ``/metrics`` route, or prometheus-flask-exporter,
shows them. Without the extra each function is a call that returns at once.

Labels stay small: a mini program's configured name, an endpoint, an error
name, a store operation; never an openid, an IP or an skey. Successful
requests to protected routes are not counted: only the 401s are, so the hot
path pays nothing.
"""
from __future__ import annotations

import weakref
from typing import Any, Iterator, Optional

try:
    import prometheus_client
except ImportError:  # the extra is not installed: every function below returns at once
    prometheus_client = None  # type: ignore[assignment]


#: The events ``wxlogin_near_cache_total`` counts, and the near caches' ``stats`` keys they come from.
NEAR_CACHE_EVENTS = {"hit": "hits", "miss": "misses", "flush": "flushes", "error": "errors"}


class _Metrics:
    """The metric objects, built once per process in the default registry."""

    def __init__(self, client: Any) -> None:
        self.logins = client.Counter(
            "wxlogin_logins_total", "Logins by mini program and outcome ('ok' or the error name).",
            ["program", "outcome"],
        )
        self.wechat_requests = client.Counter(
            "wxlogin_wechat_requests_total", "Calls to WeChat's API by endpoint and outcome.",
            ["endpoint", "outcome"],
        )
        self.wechat_seconds = client.Histogram(
            "wxlogin_wechat_request_seconds", "Seconds each call to WeChat's API took.", ["endpoint"],
        )
        self.store_errors = client.Counter(
            "wxlogin_store_errors_total", "Session store calls that failed, by operation.", ["operation"],
        )
        self.token_refreshes = client.Counter(
            "wxlogin_access_token_refreshes_total", "access_token fetches from WeChat by outcome.",
            ["program", "outcome"],
        )
        self.rejected = client.Counter(
            "wxlogin_rejected_requests_total", "401s answered on protected routes, by error name.",
            ["program", "error"],
        )
        self.near_caches = _NearCaches(client)
        client.REGISTRY.register(self.near_caches)


class _NearCaches:
    """``wxlogin_near_cache_total``, summed over the near caches' own counters at each collection.

    A hit is on the hot path: a counter of ours would take a lock there, while
    the near cache already counts under its own.
    """

    def __init__(self, client: Any) -> None:
        from prometheus_client.core import CounterMetricFamily

        self._family = CounterMetricFamily
        self.watched: "weakref.WeakSet[Any]" = weakref.WeakSet()

    def collect(self) -> Iterator[Any]:
        family = self._family(
            "wxlogin_near_cache", "Near cache hits, misses, flushes (of every entry) and failed subscriptions.",
            labels=["event"],
        )
        caches = list(self.watched)
        for event, key in NEAR_CACHE_EVENTS.items():
            family.add_metric([event], sum(cache.stats[key] for cache in caches))
        yield family


#: None without the extra; benchmarks/ sets it to None to measure the difference.
registered: Optional[_Metrics] = None if prometheus_client is None else _Metrics(prometheus_client)


def login(program: str, outcome: str) -> None:
    """``wxlogin_logins_total{program, outcome}``: ``outcome`` is "ok" or the error name."""
    if registered is not None:
        registered.logins.labels(program, outcome).inc()


def wechat_request(endpoint: str, outcome: str, seconds: float) -> None:
    """``wxlogin_wechat_requests_total`` and ``wxlogin_wechat_request_seconds``."""
    if registered is not None:
        registered.wechat_requests.labels(endpoint, outcome).inc()
        registered.wechat_seconds.labels(endpoint).observe(seconds)


def store_error(operation: str) -> None:
    """``wxlogin_store_errors_total{operation}``."""
    if registered is not None:
        registered.store_errors.labels(operation).inc()


def access_token_refresh(program: str, outcome: str) -> None:
    """``wxlogin_access_token_refreshes_total{program, outcome}``."""
    if registered is not None:
        registered.token_refreshes.labels(program, outcome).inc()


def rejected(program: str, error: str) -> None:
    """``wxlogin_rejected_requests_total{program, error}``: 401s on protected routes."""
    if registered is not None:
        registered.rejected.labels(program, error).inc()


def watch_near_cache(cache: Any) -> None:
    """Report ``cache.stats`` (``hits``, ``misses``, ``flushes``, ``errors``) in ``wxlogin_near_cache_total{event}``
    while ``cache`` lives."""
    if registered is not None:
        registered.near_caches.watched.add(cache)
