"""Login rate limits: per client IP and mini program, before WeChat, in the session store."""
from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import limits.storage.memory
import limits.storage.redis
import pytest
import redis

from flask_wxlogin import ConfigurationError
from flask_wxlogin import ratelimit as ratelimit_module

from .conftest import CODE, make_app
from .redis_cluster import HOST, SENTINEL_MASTER, node
from .test_secrets import closed_port

STAFF = {"staff": {"appid": "wxstaff000000000001", "secret": "staff-secret-0123456789"}}
ROOT = Path(__file__).resolve().parent.parent


def attempt(client: Any, ip: str = "127.0.0.1", program: Optional[str] = None, **kwargs: Any) -> Any:
    path = "/auth/login" if program is None else f"/auth/{program}/login"
    return client.post(path, json={"code": CODE}, environ_base={"REMOTE_ADDR": ip}, **kwargs)


def statuses(client: Any, count: int, **kwargs: Any) -> list:
    return [attempt(client, **kwargs).status_code for _ in range(count)]


class Clock:
    """``time`` for limits' storages and our Retry-After: moves only when told."""

    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: Any) -> Clock:
    fake = Clock()
    for module in (limits.storage.memory, limits.storage.redis, ratelimit_module):
        monkeypatch.setattr(module, "time", fake)
    return fake


def test_the_31st_attempt_in_a_minute_is_429_and_never_reaches_wechat(app, wechat):
    client = app.test_client()
    assert statuses(client, 30) == [200] * 30
    response = attempt(client)
    assert response.status_code == 429
    body = response.get_json()
    assert (body["code"], body["error"]) == ("429", "login_rate_limited")
    assert body["message"]
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert response.headers["Cache-Control"] == "no-store"
    assert wechat.calls == 30


def test_retry_after_is_when_the_oldest_attempt_leaves_the_window(clock, wechat):
    client = make_app(WXLOGIN_LOGIN_RATE_LIMIT="3/minute").test_client()
    assert statuses(client, 1) == [200]
    clock.now += 20
    assert statuses(client, 2) == [200, 200]
    clock.now += 15
    assert attempt(client).headers["Retry-After"] == "26"  # whole seconds until it is out, not just at the edge
    clock.now += 26
    assert statuses(client, 2) == [200, 429]  # the first left; the two at +20 are still in


def test_another_address_is_unaffected(app, wechat):
    client = app.test_client()
    statuses(client, 30)
    assert attempt(client).status_code == 429
    assert attempt(client, ip="127.0.0.2").status_code == 200
    assert attempt(client, ip="2001:db8::1").status_code == 200


def test_each_mini_program_counts_on_its_own(wechat, requests_mock):
    client = make_app(WXLOGIN_MINI_PROGRAMS=STAFF, WXLOGIN_LOGIN_RATE_LIMIT="2/minute").test_client()
    assert statuses(client, 3) == [200, 200, 429]
    assert statuses(client, 3, program="staff") == [200, 200, 429]
    assert statuses(client, 1, program="default") == [429]  # the main one by its name: the same counter


def test_attempts_wechat_refuses_count_too(wechat):
    client = make_app(WXLOGIN_LOGIN_RATE_LIMIT="3/minute").test_client()
    wechat.errcode(40029, "invalid code")
    assert statuses(client, 3) == [401, 401, 401]
    wechat.ok()
    assert statuses(client, 1) == [429]
    assert wechat.calls == 3


@pytest.mark.parametrize("body", [{}, {"code": ""}, {"code": "bad code!"}, {"code": 7}], ids=repr)
def test_requests_refused_before_wechat_do_not_count(wechat, body):
    client = make_app(WXLOGIN_LOGIN_RATE_LIMIT="2/minute").test_client()
    for _ in range(5):
        assert client.post("/auth/login", json=body).status_code == 400
    assert statuses(client, 3) == [200, 200, 429]


def test_an_unknown_mini_program_is_404_and_counts_nothing(wechat):
    client = make_app(WXLOGIN_LOGIN_RATE_LIMIT="2/minute").test_client()
    assert statuses(client, 3, program="nosuch") == [404] * 3
    assert statuses(client, 3) == [200, 200, 429]


def test_forwarded_headers_do_not_change_the_address(wechat):
    client = make_app(WXLOGIN_LOGIN_RATE_LIMIT="2/minute").test_client()
    codes = [
        attempt(client, headers={"X-Forwarded-For": f"10.1.1.{i}", "X-Real-IP": f"10.1.1.{i}"}).status_code
        for i in range(3)
    ]
    assert codes == [200, 200, 429]


def test_none_switches_it_off(wechat):
    client = make_app(WXLOGIN_LOGIN_RATE_LIMIT=None).test_client()
    assert statuses(client, 40) == [200] * 40


def test_the_limit_is_read_at_each_request(app, wechat):
    client = app.test_client()
    app.config["WXLOGIN_LOGIN_RATE_LIMIT"] = "1/minute"
    assert statuses(client, 2) == [200, 429]
    app.config["WXLOGIN_LOGIN_RATE_LIMIT"] = None
    assert statuses(client, 2) == [200, 200]


def test_several_limits_apply_together(clock, wechat):
    client = make_app(WXLOGIN_LOGIN_RATE_LIMIT="2/second;3/minute").test_client()
    assert statuses(client, 3) == [200, 200, 429]
    clock.now += 2
    assert statuses(client, 2) == [200, 429]


@pytest.mark.parametrize("value", ["", "lots", "0/minute", "-1/minute", 30, True, ["30/minute"]], ids=repr)
def test_a_limit_that_is_not_one_is_a_configuration_error(value):
    with pytest.raises(ConfigurationError, match="WXLOGIN_LOGIN_RATE_LIMIT"):
        make_app(WXLOGIN_LOGIN_RATE_LIMIT=value)


# -- where the counters live ----------------------------------------------------


def test_on_redis_the_counter_is_one_key_under_the_prefix_with_a_ttl(redis_app, redis_db, redis_prefix, wechat):
    attempt(redis_app.test_client())
    key = f"{redis_prefix}ratelimit:LIMITER/default/127.0.0.1/30/1/minute"
    assert redis_db.llen(key) == 1
    assert 0 < redis_db.ttl(key) <= 60


def test_two_apps_on_one_redis_share_the_count(redis_url, redis_prefix, wechat):
    config = dict(CACHE_TYPE="RedisCache", CACHE_REDIS_URL=redis_url, WXLOGIN_KEY_PREFIX=redis_prefix,
                  WXLOGIN_LOGIN_RATE_LIMIT="4/minute")
    one, two = make_app(**config).test_client(), make_app(**config).test_client()
    assert [attempt(c).status_code for c in (one, two, one, two, one, two)] == [200, 200, 200, 200, 429, 429]


def test_on_redis_the_storage_uses_the_sessions_connection_pool(redis_app, wechat):
    with redis_app.app_context():
        state = redis_app.extensions["wxlogin"]._state()
    attempt(redis_app.test_client())
    (limiter,) = state.rate_limit._limiters.values()
    assert limiter.storage.storage.connection_pool is state.backend.redis.connection_pool


def test_a_cluster_keeps_the_count_on_the_sessions_own_client(redis_cluster, cluster_prefix, wechat):
    config = dict(CACHE_TYPE="RedisClusterCache", CACHE_REDIS_CLUSTER=redis_cluster,
                  WXLOGIN_KEY_PREFIX=cluster_prefix, WXLOGIN_LOGIN_RATE_LIMIT="3/minute")
    first, second = make_app(**config), make_app(**config)
    assert [attempt(app.test_client()).status_code for app in (first, second, first, second)] == [200, 200, 200, 429]
    with first.app_context():
        state = first.extensions["wxlogin"]._state()
    (limiter,) = state.rate_limit._limiters.values()
    assert limiter.storage.storage is state.backend.redis
    key = f"{cluster_prefix}ratelimit:LIMITER/default/127.0.0.1/3/1/minute"
    from redis.cluster import RedisCluster

    assert RedisCluster.from_url(f"redis://{redis_cluster.split(',')[0]}").llen(key) == 3


def test_a_sentinel_keeps_the_count_on_the_master(redis_sentinel, wechat):
    config = dict(CACHE_TYPE="RedisSentinelCache", CACHE_REDIS_SENTINELS=[(HOST, redis_sentinel.sentinel)],
                  CACHE_REDIS_SENTINEL_MASTER=SENTINEL_MASTER, WXLOGIN_KEY_PREFIX="wxltest:",
                  WXLOGIN_LOGIN_RATE_LIMIT="2/minute")
    first, second = make_app(**config), make_app(**config)
    assert [attempt(app.test_client()).status_code for app in (first, second, first)] == [200, 200, 429]
    assert node(redis_sentinel.master).llen("wxltest:ratelimit:LIMITER/default/127.0.0.1/2/1/minute") == 2


# -- a store that cannot count: fail closed ---------------------------------------


def test_a_redis_outage_is_503_before_wechat_with_one_log_line_and_no_password(wechat, caplog):
    url = f"redis://:hunter2-redis-password@127.0.0.1:{closed_port()}/0"
    client = make_app(CACHE_TYPE="RedisCache", CACHE_REDIS_URL=url).test_client()
    with caplog.at_level(logging.DEBUG):
        response = attempt(client)
    assert response.status_code == 503
    assert response.get_json()["error"] == "session_store_unavailable"
    assert response.headers["Retry-After"] == "5"
    assert wechat.calls == 0
    assert [r.levelname for r in caplog.records if r.name == "flask_wxlogin"] == ["ERROR"]
    assert "hunter2" not in caplog.text and "hunter2" not in response.get_data(as_text=True)


def test_logins_resume_when_the_store_is_back(tmp_path, wechat):
    server = RedisServer(tmp_path)
    try:
        client = make_app(CACHE_TYPE="RedisCache", CACHE_REDIS_URL=server.url,
                          WXLOGIN_LOGIN_RATE_LIMIT="2/minute").test_client()
        assert statuses(client, 1) == [200]
        server.stop()
        assert statuses(client, 2) == [503, 503]
        server.start()
        assert statuses(client, 3) == [200, 200, 429]  # it restarted empty, and counts again
    finally:
        server.stop()


class RedisServer:
    """A private redis-server this test may stop and start on the same port."""

    def __init__(self, directory: Path) -> None:
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            self.port = sock.getsockname()[1]
        self.directory = directory
        self.url = f"redis://{HOST}:{self.port}/0"
        self.process: Optional[subprocess.Popen] = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)], stdout=subprocess.DEVNULL,
        )
        wait_for(lambda: _pings(self.port))

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


def _pings(port: int) -> bool:
    try:
        return bool(node(port, timeout=0.5).ping())
    except redis.ConnectionError:
        return False


def wait_for(ready: Any, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, "not ready in time"
        time.sleep(0.05)


# -- gunicorn, 2 workers, one Redis -------------------------------------------------


@pytest.fixture
def served(fake, redis_url, redis_prefix) -> Iterator[int]:
    """The test app under gunicorn with 2 sync workers on the shared Redis: its port."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WXLT_API_BASE": fake.url,
           "WXLT_REDIS_URL": redis_url, "WXLT_PREFIX": redis_prefix}
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"{HOST}:{port}",
         "--log-level", "warning", "tests.served_app:create()"],
        cwd=ROOT, env=env,
    )
    try:
        wait_for(lambda: process.poll() is None and post(port, "warm-up-probe", method="GET")[0] == 405)
        yield port
    finally:
        process.terminate()
        process.wait(15)


def post(port: int, code: str, source: str = "127.0.0.1", method: str = "POST") -> Tuple[int, Dict[str, str], Any]:
    """One request from loopback address ``source``: status, headers, JSON body (0 if no connection)."""
    connection = http.client.HTTPConnection(HOST, port, timeout=10, source_address=(source, 0))
    try:
        connection.request(method, "/auth/login", json.dumps({"code": code}), {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read() or b"null")
    except ConnectionRefusedError:
        return 0, {}, None
    finally:
        connection.close()


def test_under_gunicorn_the_31st_login_from_one_address_is_429_whichever_worker_answers(fake, served):
    # The first two logins are held at WeChat until both are in: two workers, each counting some.
    both_in = threading.Barrier(2, timeout=10)
    answer = fake.answer

    def held(params: Dict[str, str]) -> Any:
        if params["js_code"].startswith("held-"):
            both_in.wait()
        return answer(params)

    fake.answer = held
    with ThreadPool(2) as pool:
        first = pool.map(lambda i: post(served, f"held-{i}"), range(2))
    rest = [post(served, f"code-{i}") for i in range(28)]
    assert [status for status, _, _ in first + rest] == [200] * 30
    assert len({headers["X-Worker"] for _, headers, _ in first}) == 2  # so each counted under 30 itself

    over = [post(served, f"over-{i}") for i in range(5)]
    assert [(status, body["error"]) for status, _, body in over] == [(429, "login_rate_limited")] * 5
    assert all(1 <= int(headers["Retry-After"]) <= 60 for _, headers, _ in over)
    assert len(fake.calls) == 30

    status, _, body = post(served, "other-address", source="127.0.0.2")
    assert status == 200 and body["data"]["skey"]
