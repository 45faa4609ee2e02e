"""The app on a real loopback server, against a real HTTP stub of jscode2session, driven by requests."""
from __future__ import annotations

import base64

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest
import redis
import requests
from flask import Flask
from werkzeug.serving import make_server

from flask_wxlogin.testing import FakeWeChat

from .conftest import make_app

APPID = "wxintegration0001"
APPSECRET = "integration-appsecret-5d2e8b"
SEED_CODE = "081Kq1Ga1pQwLG0vUxHa1VtZ3X2Kq1GK"


def openid_for(code: str) -> str:
    return "openid-of-" + code


def session_key_for(code: str) -> str:
    return base64.b64encode(code[::-1].encode()).decode()


def per_code_answer(fake: FakeWeChat) -> Callable[[Dict[str, str]], Tuple[int, Dict[str, Any]]]:
    """WeChat's checks (via the stub's own), then an openid that names the code it came from."""

    def answer(params: Dict[str, str]) -> Tuple[int, Dict[str, Any]]:
        status, body = fake.demo_answer(params)
        if "openid" in body:
            body = {"openid": openid_for(params["js_code"]),
                    "session_key": session_key_for(params["js_code"])}
        return status, body

    return answer


@pytest.fixture
def serve() -> Iterator[Callable[[Flask], str]]:
    """``serve(app)`` runs ``app`` on a threaded loopback server and returns its base URL."""
    running: List[Tuple[Any, threading.Thread]] = []

    def start(app: Flask) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        running.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server, thread in running:
        server.shutdown()
        server.server_close()
        thread.join(5)


def app_for(fake_url: str, **config: Any) -> Flask:
    return make_app(WXLOGIN_API_BASE=fake_url, WXLOGIN_APPID=APPID, WXLOGIN_SECRET=APPSECRET, **config)


def seed_login(base: str, code: str) -> requests.Response:
    """What wx.request({method: "POST", url, data: res.code}) puts on the wire."""
    return requests.post(
        base + "/auth/login", data=code, headers={"Content-Type": "application/json"}, timeout=10
    )


def skey_of(response: requests.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["data"]["skey"]


def me(base: str, skey: str, bearer: bool = False) -> requests.Response:
    header = {"Authorization": f"Bearer {skey}"} if bearer else {"X-WX-Skey": skey}
    return requests.get(base + "/me", headers=header, timeout=10)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the seed article's request ---------------------------------------------------


def test_seed_article_request_logs_in_and_the_skey_works_until_logout(fake, serve):
    fake.answer = per_code_answer(fake)
    base = serve(app_for(fake.url))

    response = seed_login(base, SEED_CODE)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == "200"
    assert set(body["data"]) == {"skey", "expires_in", "openid"}
    assert body["data"]["openid"] == openid_for(SEED_CODE)
    assert isinstance(body["data"]["expires_in"], int) and body["data"]["expires_in"] > 0
    assert session_key_for(SEED_CODE) not in response.text
    skey = body["data"]["skey"]

    for bearer in (False, True):
        answer = me(base, skey, bearer=bearer)
        assert answer.status_code == 200, answer.text
        assert answer.json()["openid"] == openid_for(SEED_CODE)

    logout = requests.post(base + "/auth/logout", headers={"X-WX-Skey": skey}, timeout=10)
    assert logout.status_code == 200
    assert logout.json() == {"code": "200", "data": {}}

    for bearer in (False, True):
        answer = me(base, skey, bearer=bearer)
        assert answer.status_code == 401
        assert answer.json()["code"] == "401"
        assert answer.json()["error"] == "session_expired"


def test_stub_receives_the_documented_query(fake, serve):
    base = serve(app_for(fake.url))

    skey_of(seed_login(base, SEED_CODE))

    assert fake.calls == [
        {"appid": APPID, "secret": APPSECRET, "js_code": SEED_CODE,
         "grant_type": "authorization_code"}
    ]


# -- many users at once ----------------------------------------------------------


@pytest.fixture(params=["embedded-cache", "redis"])
def cache_config(request) -> Dict[str, Any]:
    if request.param == "embedded-cache":
        return {}
    return {
        "CACHE_TYPE": "RedisCache",
        "CACHE_REDIS_URL": request.getfixturevalue("redis_url"),
        "WXLOGIN_KEY_PREFIX": request.getfixturevalue("redis_prefix"),
    }


def test_fifty_parallel_logins_get_distinct_working_skeys(fake, serve, cache_config):
    fake.answer = per_code_answer(fake)
    base = serve(app_for(fake.url, WXLOGIN_LOGIN_RATE_LIMIT=None, **cache_config))  # 50 from one address
    codes = [f"parallel-{i:02d}-{SEED_CODE[:12]}" for i in range(50)]

    with ThreadPoolExecutor(max_workers=50) as pool:
        logins = list(pool.map(lambda code: seed_login(base, code), codes))
        assert [r.status_code for r in logins] == [200] * 50, [r.text for r in logins if r.status_code != 200]
        skeys = [r.json()["data"]["skey"] for r in logins]
        assert [r.json()["data"]["openid"] for r in logins] == [openid_for(c) for c in codes]
        assert len(set(skeys)) == 50
        checks = list(pool.map(lambda skey: me(base, skey), skeys))

    assert [r.status_code for r in checks] == [200] * 50
    assert [r.json()["openid"] for r in checks] == [openid_for(c) for c in codes]
    assert sorted(call["js_code"] for call in fake.calls) == sorted(codes)
    if cache_config:
        prefix = cache_config["WXLOGIN_KEY_PREFIX"]
        db = redis.Redis.from_url(cache_config["CACHE_REDIS_URL"])
        assert {key.decode() for key in db.scan_iter(match=prefix + "*")} == (
            {prefix + openid_for(code) for code in codes}
        )


# -- the HTTP client underneath --------------------------------------------------


def test_sequential_logins_reuse_one_pooled_connection_to_wechat(fake, serve):
    connections: List[Tuple[str, int]] = []
    plain_handler = fake._server.RequestHandlerClass

    class CountingHandler(plain_handler):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            super().setup()
            connections.append(self.client_address)

    fake._server.RequestHandlerClass = CountingHandler
    base = serve(app_for(fake.url))

    for i in range(5):
        skey_of(seed_login(base, f"pooled-{i}"))

    assert len(fake.calls) == 5
    assert len(connections) == 1, f"{len(connections)} connections for 5 calls: {connections}"


def test_slow_wechat_answers_504_within_the_timeout(fake, serve):
    def slow(params: Dict[str, str]) -> Tuple[int, Dict[str, Any]]:
        fake.release.wait(2)
        return 200, {"openid": "late-openid", "session_key": "lateSessionKey=="}

    fake.answer = slow
    base = serve(app_for(fake.url, WXLOGIN_HTTP_TIMEOUT=0.5))

    started = time.monotonic()
    response = seed_login(base, SEED_CODE)
    elapsed = time.monotonic() - started

    assert response.status_code == 504
    body = response.json()
    assert body["code"] == "504" and body["error"] == "wechat_timeout" and body["message"]
    assert 0.4 <= elapsed < 1.5, elapsed
    assert len(fake.calls) == 1


def test_after_a_timeout_the_next_login_gets_its_own_answer(fake, serve):
    def slow_then_fast(params: Dict[str, str]) -> Tuple[int, Dict[str, Any]]:
        if params["js_code"] == "slow-code":
            fake.release.wait(2)
        return per_code_answer(fake)(params)

    fake.answer = slow_then_fast
    base = serve(app_for(fake.url, WXLOGIN_HTTP_TIMEOUT=0.5))

    assert seed_login(base, "slow-code").status_code == 504
    fake.release.set()
    response = seed_login(base, "fast-code")

    assert response.status_code == 200
    assert response.json()["data"]["openid"] == openid_for("fast-code")
    assert me(base, skey_of(response)).json()["openid"] == openid_for("fast-code")


@pytest.mark.parametrize("where", ["stub-stopped", "closed-port"])
def test_unreachable_wechat_answers_502(serve, where):
    if where == "stub-stopped":
        stub = FakeWeChat(appid=APPID, secret=APPSECRET).start()
        url = stub.url
        stub.stop()
    else:
        url = f"http://127.0.0.1:{closed_port()}"
    base = serve(app_for(url, WXLOGIN_HTTP_TIMEOUT=0.5))

    started = time.monotonic()
    response = seed_login(base, SEED_CODE)

    assert time.monotonic() - started < 1.5
    assert response.status_code == 502
    body = response.json()
    assert body["code"] == "502" and body["error"] == "wechat_unreachable" and body["message"]
    assert "skey" not in response.text
