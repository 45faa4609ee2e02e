"""Prometheus metrics, when the ``[metrics]`` extra is installed; no-ops otherwise.

Interface stub for 0.3.0 (issue 13 implements it with ``prometheus_client``).
Labels stay small: never an openid, an IP or an skey.
"""
from __future__ import annotations


def login(program: str, outcome: str) -> None:
    """``wxlogin_logins_total{program, outcome}``: ``outcome`` is "ok" or the error name."""


def wechat_request(endpoint: str, outcome: str, seconds: float) -> None:
    """``wxlogin_wechat_requests_total`` and ``wxlogin_wechat_request_seconds``."""


def store_error(operation: str) -> None:
    """``wxlogin_store_errors_total{operation}``."""


def access_token_refresh(program: str, outcome: str) -> None:
    """``wxlogin_access_token_refreshes_total{program, outcome}``."""


def rejected(program: str, error: str) -> None:
    """``wxlogin_rejected_requests_total{program, error}``: 401s on protected routes."""


def near_cache(event: str) -> None:
    """``wxlogin_near_cache_total{event}``: "hit", "miss" or "flush" (of every entry)."""
