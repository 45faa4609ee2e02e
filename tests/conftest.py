"""Fixtures: an app factory, a fake WeChat over requests-mock, a real Redis."""
from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
import uuid
from typing import Any, Callable, Dict, Iterator, Optional

import pytest
import redis
from flask import Blueprint, Flask

from flask_wxlogin import WxLogin, current_wx_user, login_required
from flask_wxlogin.testing import FakeWeChat

APPID = "wx0123456789abcdef"
APPSECRET = "appsecret-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
SECRET_KEY = "flask-secret-key-do-not-leak-4b1d"
SESSION_KEY = "tiihtNczf5v6AKRyjwEUhQ=="
OPENID = "oGZUI0egBJY1zhBYw2KhdUfwVJJE"
UNIONID = "ocMvos6NjeKLIBqg5Mr9QjxrP1FA"
CODE = "0a3Ab1ll2Qw9Tf4Yhlml2R0qSz1Ab1lO"
API = "https://api.weixin.qq.com/sns/jscode2session"
#: Our own DB on the shared server; every key we write carries a per-test prefix.
REDIS_DB = 13


def make_app(**config: Any) -> Flask:
    """An app with WxLogin and a few protected routes; ``config`` overrides."""
    cache = config.pop("cache", None)
    app = Flask("wxlogin-test")
    app.config.update(
        TESTING=True, SECRET_KEY=SECRET_KEY, WXLOGIN_APPID=APPID, WXLOGIN_SECRET=APPSECRET
    )
    app.config.update(config)
    WxLogin(app, cache=cache)

    @app.get("/me")
    @login_required
    def me() -> Dict[str, Any]:
        return {"openid": current_wx_user.openid, "unionid": current_wx_user.unionid,
                "user_id": current_wx_user.user_id}

    @app.get("/whoami")
    def whoami() -> Dict[str, Any]:
        return {"authenticated": current_wx_user.is_authenticated, "openid": current_wx_user.openid}

    @app.get("/async-me")
    @login_required
    async def async_me() -> Dict[str, Any]:
        return {"openid": current_wx_user.openid}

    shop = Blueprint("shop", __name__)

    @shop.get("/orders")
    @login_required
    def orders() -> Dict[str, Any]:
        return {"orders": [], "openid": current_wx_user.openid}

    app.register_blueprint(shop, url_prefix="/shop")
    return app


@pytest.fixture
def app() -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask):
    return app.test_client()


class FakeWeChatAPI:
    """jscode2session answers scripted over requests-mock."""

    def __init__(self, mocker: Any) -> None:
        self.mocker = mocker

    def ok(self, openid: str = OPENID, session_key: str = SESSION_KEY, unionid: Optional[str] = None) -> None:
        body = {"openid": openid, "session_key": session_key}
        if unionid is not None:
            body["unionid"] = unionid
        self.mocker.get(API, json=body)

    def answer(self, **kwargs: Any) -> None:
        self.mocker.get(API, **kwargs)

    def errcode(self, errcode: int, errmsg: str = "error") -> None:
        self.mocker.get(API, json={"errcode": errcode, "errmsg": errmsg})

    @property
    def calls(self) -> int:
        return self.mocker.call_count

    @property
    def last_query(self) -> Dict[str, Any]:
        return self.mocker.last_request.qs


@pytest.fixture
def wechat(requests_mock: Any) -> FakeWeChatAPI:
    fake = FakeWeChatAPI(requests_mock)
    fake.ok()
    return fake


@pytest.fixture(scope="module")
def stub(request: Any) -> Iterator[FakeWeChat]:
    """A real loopback stub of jscode2session for the module's ``APPID``/``APPSECRET``."""
    module = request.module
    with FakeWeChat(appid=getattr(module, "APPID", APPID), secret=getattr(module, "APPSECRET", APPSECRET)) as running:
        yield running


@pytest.fixture
def fake(stub: FakeWeChat) -> Iterator[FakeWeChat]:
    """The module's stub, reset (records, codes, scripted errors); ``fake.release`` frees an answer still waiting at the end."""
    handler = stub._server.RequestHandlerClass
    answers = dict(stub.answers)
    stub.release = threading.Event()  # type: ignore[attr-defined]
    stub.reset()
    yield stub
    stub.release.set()  # type: ignore[attr-defined]
    stub._server.RequestHandlerClass = handler
    stub.answers.update(answers)


def login(client: Any, code: str = CODE, **kwargs: Any) -> str:
    """Log in through the route and return the skey."""
    response = client.post("/auth/login", json={"code": code}, **kwargs)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]["skey"]


def _answers(port: int) -> bool:
    try:
        return redis.Redis(port=port, socket_connect_timeout=0.5).ping()
    except redis.ConnectionError:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: Any) -> Iterator[str]:
    """The local server on 6379, or a private one started on a free port when none answers."""
    if _answers(6379):
        yield f"redis://127.0.0.1:6379/{REDIS_DB}"
        return
    server = shutil.which("redis-server")
    assert server, "no Redis answers on 127.0.0.1:6379 and redis-server is not installed"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path_factory.mktemp("redis"))],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not _answers(port):
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/{REDIS_DB}"
    process.terminate()
    process.wait(10)


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"wxltest:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def redis_db(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.fixture
def redis_app(redis_url: str, redis_prefix: str) -> Flask:
    return make_app(CACHE_TYPE="RedisCache", CACHE_REDIS_URL=redis_url, WXLOGIN_KEY_PREFIX=redis_prefix)


Factory = Callable[..., Flask]


# -- Redis Cluster and Sentinel (tests/redis_cluster.py starts them) ----------

import os  # noqa: E402

from .redis_cluster import LocalCluster, LocalSentinel, delete_keys, healthy, ports  # noqa: E402

#: The cluster `.ci/redis-cluster` keeps running; WXLOGIN_TEST_CLUSTER may name another.
CI_CLUSTER = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: Any) -> Iterator[str]:
    """``CACHE_REDIS_CLUSTER`` of a healthy cluster: the one named, CI's, or a private one started here.

    Tests share it and must not stop its nodes: see ``doomed_cluster``.
    """
    named = os.environ.get("WXLOGIN_TEST_CLUSTER")
    if named:
        assert healthy(ports(named)), f"WXLOGIN_TEST_CLUSTER={named} is not the masters of a healthy cluster"
        yield named
    elif healthy(ports(CI_CLUSTER)):
        yield CI_CLUSTER
    else:
        with LocalCluster(tmp_path_factory.mktemp("cluster")).start() as cluster:
            yield cluster.spec


@pytest.fixture
def cluster_prefix(redis_cluster: str) -> Iterator[str]:
    """A key prefix of this test's own on the shared cluster; its keys are deleted afterwards."""
    prefix = f"wxltest:{uuid.uuid4().hex[:12]}:"
    yield prefix
    delete_keys(ports(redis_cluster), prefix + "*")


@pytest.fixture
def doomed_cluster(tmp_path: Any) -> Iterator[LocalCluster]:
    """A private cluster for this test alone, whose nodes it may kill or freeze."""
    with LocalCluster(tmp_path / "cluster").start() as cluster:
        yield cluster


@pytest.fixture
def redis_sentinel(tmp_path: Any) -> Iterator[LocalSentinel]:
    """A master, its replica and one sentinel that calls them ``mymaster``."""
    with LocalSentinel(tmp_path / "sentinel").start() as sentinel:
        yield sentinel
