"""Prometheus metrics: values after scripted logins and calls; small labels; nothing without the extra."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY, generate_latest

from flask_wxlogin.tokens import new_session_id

from .conftest import APPID, APPSECRET, OPENID, SESSION_KEY, login, make_app
from .test_secrets import closed_port

STAFF = {"staff": {"appid": "wxstaff000000000001", "secret": "staff-secret-0123456789"}}
ROOT = Path(__file__).resolve().parent.parent


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Deltas:
    """Metric values since the test began."""

    def __init__(self) -> None:
        self._start = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in _samples()}

    def __call__(self, name: str, **labels: str) -> float:
        return value(name, **labels) - self._start.get((name, tuple(sorted(labels.items()))), 0.0)

    def total(self, name: str) -> float:
        """The change summed over every label set of ``name``."""
        now = sum(s.value for s in _samples() if s.name == name)
        return now - sum(v for (n, _), v in self._start.items() if n == name)


def _samples() -> Any:
    return [sample for metric in REGISTRY.collect() if metric.name.startswith("wxlogin")
            for sample in metric.samples]


@pytest.fixture
def deltas() -> Deltas:
    return Deltas()


@pytest.fixture
def fake_app(fake) -> Any:
    return make_app(WXLOGIN_API_BASE=fake.url, WXLOGIN_MINI_PROGRAMS=STAFF, WXLOGIN_LOGIN_RATE_LIMIT="3/minute")


def test_logins_are_counted_by_program_and_outcome(fake_app, fake, deltas):
    client = fake_app.test_client()
    login(client, code="first")
    login(client, code="second")
    fake.answer = lambda params: (200, {"errcode": 40029, "errmsg": "invalid code"})
    assert client.post("/auth/login", json={"code": "third"}).status_code == 401
    assert client.post("/auth/login", json={"code": "fourth"}).status_code == 429
    assert client.post("/auth/login", json={}).status_code == 400
    assert client.post("/auth/staff/login", json={"code": "staff-1"}).status_code == 401
    assert client.post("/auth/nosuch/login", json={"code": "x"}).status_code == 404

    assert deltas("wxlogin_logins_total", program="default", outcome="ok") == 2
    assert deltas("wxlogin_logins_total", program="default", outcome="code_invalid") == 1
    assert deltas("wxlogin_logins_total", program="default", outcome="login_rate_limited") == 1
    assert deltas("wxlogin_logins_total", program="default", outcome="code_missing") == 1
    assert deltas("wxlogin_logins_total", program="staff", outcome="code_invalid") == 1
    assert deltas.total("wxlogin_logins_total") == 6  # the unknown program's 404 names no program


def test_wechat_calls_are_counted_and_timed_by_endpoint(fake_app, fake, deltas):
    client = fake_app.test_client()
    skey = login(client, code="timed")
    fake.answer = lambda params: (200, {"errcode": 40163, "errmsg": "code been used"})
    client.post("/auth/login", json={"code": "used"})
    with fake_app.test_request_context(headers={"X-WX-Skey": skey}):
        wxlogin = fake_app.extensions["wxlogin"]
        wxlogin.phone_number("phone-code")
        from flask_wxlogin import current_wx_user

        assert current_wx_user.check_session_key() is True

    for endpoint, outcome in [("jscode2session", "ok"), ("jscode2session", "code_used"), ("stable_token", "ok"),
                              ("getuserphonenumber", "ok"), ("checksession", "ok")]:
        assert deltas("wxlogin_wechat_requests_total", endpoint=endpoint, outcome=outcome) == 1, (endpoint, outcome)
    assert deltas("wxlogin_wechat_request_seconds_count", endpoint="jscode2session") == 2
    assert 0 < deltas("wxlogin_wechat_request_seconds_sum", endpoint="jscode2session") < 5
    assert deltas("wxlogin_access_token_refreshes_total", program="default", outcome="ok") == 1


def test_an_unreachable_wechat_is_counted_under_its_error(deltas):
    client = make_app(WXLOGIN_API_BASE=f"http://127.0.0.1:{closed_port()}").test_client()
    assert client.post("/auth/login", json={"code": "abc"}).status_code == 502
    assert deltas("wxlogin_wechat_requests_total", endpoint="jscode2session", outcome="wechat_unreachable") == 1
    assert deltas("wxlogin_logins_total", program="default", outcome="wechat_unreachable") == 1


def test_a_failed_access_token_refresh_is_counted_with_its_error(fake_app, fake, deltas):
    fake.answers["/cgi-bin/stable_token"] = lambda params: (200, {"errcode": 40125, "errmsg": "invalid appsecret"})
    with fake_app.app_context():
        with pytest.raises(Exception, match="AppSecret"):
            fake_app.extensions["wxlogin"].access_token("staff")
    assert deltas("wxlogin_access_token_refreshes_total", program="staff", outcome="wechat_config_rejected") == 1
    assert deltas("wxlogin_wechat_requests_total", endpoint="stable_token", outcome="wechat_config_rejected") == 1


def test_store_errors_are_counted_by_operation(deltas, wechat):
    app = make_app(CACHE_TYPE="RedisCache", CACHE_REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0")
    client = app.test_client()
    assert client.post("/auth/login", json={"code": "abc"}).status_code == 503
    assert client.get("/me", headers={"X-WX-Skey": _signed(app)}).status_code == 503
    assert deltas("wxlogin_store_errors_total", operation="hit") == 1  # the login's rate-limit count
    assert deltas("wxlogin_store_errors_total", operation="hmget") == 1  # the session read


def _signed(app: Any) -> str:
    """A well-signed skey of a session the store would have to look up."""
    with app.app_context():
        return app.extensions["wxlogin"]._state().main.sign(new_session_id(OPENID), app.config)


def test_only_rejections_on_protected_routes_are_counted(app, wechat, deltas):
    client = app.test_client()
    skey = login(client)
    for _ in range(3):
        assert client.get("/me", headers={"X-WX-Skey": skey}).status_code == 200
    assert deltas.total("wxlogin_rejected_requests_total") == 0
    assert client.get("/me").status_code == 401
    assert client.get("/me", headers={"X-WX-Skey": "junk"}).status_code == 401
    client.post("/auth/logout", headers={"X-WX-Skey": skey})
    assert client.get("/shop/orders", headers={"X-WX-Skey": skey}).status_code == 401
    assert deltas("wxlogin_rejected_requests_total", program="default", error="skey_missing") == 1
    assert deltas("wxlogin_rejected_requests_total", program="default", error="skey_invalid") == 1
    assert deltas("wxlogin_rejected_requests_total", program="default", error="session_expired") == 1


def test_a_valid_protected_request_calls_no_metric_function(app, wechat, monkeypatch):
    from flask_wxlogin import metrics

    calls = []
    for name in ("login", "wechat_request", "store_error", "access_token_refresh", "rejected"):
        monkeypatch.setattr(metrics, name, lambda *args, name=name: calls.append(name))
    client = app.test_client()
    skey = login(client)
    calls.clear()
    for path in ("/me", "/async-me", "/shop/orders"):
        assert client.get(path, headers={"X-WX-Skey": skey}).status_code == 200
    assert calls == []
    assert client.get("/me").status_code == 401
    assert calls == ["rejected"]


def test_near_cache_events_are_counted():
    from flask_wxlogin import metrics

    class Cache:
        stats = {"hits": 0, "misses": 0, "flushes": 0, "reconnects": 0, "errors": 0}

    cache = Cache()
    before = {event: value("wxlogin_near_cache_total", event=event) for event in metrics.NEAR_CACHE_EVENTS}
    metrics.watch_near_cache(cache)
    cache.stats.update(hits=2, misses=1, flushes=1, reconnects=5, errors=1)
    after = {event: value("wxlogin_near_cache_total", event=event) for event in metrics.NEAR_CACHE_EVENTS}
    assert {event: after[event] - before[event] for event in after} == {"hit": 2, "miss": 1, "flush": 1, "error": 1}


def test_near_cache_counts_leave_with_the_cache():
    import gc

    from flask_wxlogin import metrics

    class Cache:
        stats = {"hits": 7, "misses": 0, "flushes": 0, "errors": 0}

    before = value("wxlogin_near_cache_total", event="hit")
    cache = Cache()
    metrics.watch_near_cache(cache)
    assert value("wxlogin_near_cache_total", event="hit") == before + 7
    del cache
    gc.collect()
    assert value("wxlogin_near_cache_total", event="hit") == before


def test_no_label_holds_an_openid_an_ip_a_secret_or_an_skey(app, wechat):
    client = app.test_client()
    skey = login(client, environ_base={"REMOTE_ADDR": "203.0.113.7"})
    client.get("/me", headers={"X-WX-Skey": skey + "x"})
    text = generate_latest(REGISTRY).decode()
    for secret in (OPENID, "203.0.113.7", SESSION_KEY, APPSECRET, skey.split(".")[0], APPID):
        assert secret not in text


def test_a_metrics_route_shows_them(app, wechat):
    @app.get("/metrics")
    def metrics_route() -> Any:
        return generate_latest(REGISTRY), 200, {"Content-Type": "text/plain; version=0.0.4"}

    client = app.test_client()
    login(client)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'wxlogin_logins_total{outcome="ok",program="default"}' in text
    assert "# TYPE wxlogin_wechat_request_seconds histogram" in text


WITHOUT_THE_EXTRA = """
import sys
sys.modules["prometheus_client"] = None  # as if the extra were not installed: import fails
from flask_wxlogin import metrics
from flask_wxlogin.testing import FakeWeChat
from tests.conftest import make_app
with FakeWeChat("wx0123456789abcdef", "appsecret-9f8e7d6c5b4a39281706f5e4d3c2b1a0") as fake:
    client = make_app(WXLOGIN_API_BASE=fake.url).test_client()
    ok = client.post("/auth/login", json={"code": "abc"})
    skey = ok.get_json()["data"]["skey"]
    assert client.get("/me", headers={"X-WX-Skey": skey}).status_code == 200
    assert client.get("/me").status_code == 401
    fake.answer = lambda params: (200, {"errcode": 40029})
    assert client.post("/auth/login", json={"code": "abc"}).status_code == 401
assert metrics.registered is None
assert sys.modules["prometheus_client"] is None
print("fine without prometheus_client")
"""


def test_without_the_extra_nothing_is_imported_and_everything_works():
    done = subprocess.run([sys.executable, "-c", WITHOUT_THE_EXTRA], cwd=ROOT, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "fine without prometheus_client"
