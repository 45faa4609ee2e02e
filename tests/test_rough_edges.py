"""The rough edges a new user hit (issue 11), one test or table each."""
from __future__ import annotations

import logging
import re
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, abort

from flask_wxlogin import ConfigurationError, Unauthorized, WxLogin, current_wx_user, login_required

from .conftest import APPID, APPSECRET, CODE, SECRET_KEY, login, make_app

ROOT = Path(__file__).resolve().parents[1]


def bare_app(**config: Any) -> Flask:
    app = Flask("rough-edges")
    app.config.update(TESTING=True, SECRET_KEY=SECRET_KEY, WXLOGIN_APPID=APPID, WXLOGIN_SECRET=APPSECRET, **config)
    return app


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# 1. Redis without the redis package -------------------------------------------------


@pytest.mark.parametrize("cache_type", ["RedisCache", "RedisClusterCache", "RedisSentinelCache"])
def test_redis_without_the_redis_package_names_the_extra(monkeypatch, cache_type):
    for name in [name for name in sys.modules if name == "redis" or name.startswith("redis.")]:
        monkeypatch.setitem(sys.modules, name, None)

    with pytest.raises(ConfigurationError, match=re.escape('pip install "flask-wxlogin[redis]"')) as raised:
        WxLogin(bare_app(CACHE_TYPE=cache_type, CACHE_REDIS_URL="redis://:pw@127.0.0.1:6379/0"))

    assert cache_type in str(raised.value) and "pw@" not in str(raised.value)


# 2. A max age below the idle timeout caps the session ---------------------------------


def test_max_age_below_the_idle_timeout_is_accepted_and_caps_expires_in(wechat):
    app = make_app(WXLOGIN_SESSION_IDLE_TIMEOUT=3600, WXLOGIN_SESSION_MAX_AGE=600)

    body = app.test_client().post("/auth/login", json={"code": CODE}).get_json()

    assert body["data"]["expires_in"] == 600


def test_a_session_ends_at_its_max_age_below_the_idle_timeout(wechat):
    app = make_app(WXLOGIN_SESSION_IDLE_TIMEOUT=3600, WXLOGIN_SESSION_MAX_AGE=600)
    store = app.extensions["wxlogin"]._states[app].main.store
    now = [1_000_000.0]
    store.clock = lambda: now[0]
    skey = login(app.test_client())

    now[0] += 599
    alive = app.test_client().get("/me", headers={"X-WX-Skey": skey})
    now[0] += 1
    ended = app.test_client().get("/me", headers={"X-WX-Skey": skey})

    assert alive.status_code == 200
    assert (ended.status_code, ended.get_json()["error"]) == (401, "session_expired")


def test_in_redis_the_new_session_key_lives_no_longer_than_the_max_age(wechat, redis_url, redis_prefix, redis_db):
    app = make_app(CACHE_TYPE="RedisCache", CACHE_REDIS_URL=redis_url, WXLOGIN_KEY_PREFIX=redis_prefix,
                   WXLOGIN_SESSION_IDLE_TIMEOUT=3600, WXLOGIN_SESSION_MAX_AGE=60)

    skey = login(app.test_client())

    assert 0 < redis_db.ttl(redis_prefix + skey.split(".")[0]) <= 60


# 3. Numbers from the environment --------------------------------------------------------


def test_numeric_strings_are_accepted_and_converted(wechat):
    app = make_app(WXLOGIN_SESSION_IDLE_TIMEOUT="3600", WXLOGIN_SESSION_MAX_AGE=" 7200 ", WXLOGIN_HTTP_TIMEOUT="2.5")

    assert (app.config["WXLOGIN_SESSION_IDLE_TIMEOUT"], app.config["WXLOGIN_SESSION_MAX_AGE"]) == (3600, 7200)
    assert app.config["WXLOGIN_HTTP_TIMEOUT"] == 2.5
    assert app.test_client().post("/auth/login", json={"code": CODE}).get_json()["data"]["expires_in"] == 3600


def test_from_prefixed_env_works_too(monkeypatch, wechat):
    monkeypatch.setenv("FLASK_WXLOGIN_SESSION_MAX_AGE", "1800")
    app = bare_app()
    app.config.from_prefixed_env()
    WxLogin(app)

    assert app.config["WXLOGIN_SESSION_MAX_AGE"] == 1800


# 4. Misspelt keys ------------------------------------------------------------------------


def test_a_misspelt_key_is_warned_about_once_with_the_closest_known_one(caplog):
    with caplog.at_level(logging.WARNING, "flask_wxlogin"):
        WxLogin(bare_app(WXLOGIN_SESION_MAX_AGE=60, WXLOGIN_FROBNICATE=True, CACHE_TYPE="SimpleCache"))

    warnings = [r.getMessage() for r in caplog.records if "unknown config key" in r.getMessage()]
    assert warnings == [
        "flask-wxlogin ignores the unknown config key WXLOGIN_FROBNICATE",
        "flask-wxlogin ignores the unknown config key WXLOGIN_SESION_MAX_AGE; did you mean WXLOGIN_SESSION_MAX_AGE?",
    ]


def test_known_keys_draw_no_warning(caplog):
    with caplog.at_level(logging.WARNING, "flask_wxlogin"):
        WxLogin(bare_app(WXLOGIN_SESSION_MAX_AGE=60 * 60 * 24 * 30, CACHE_TYPE="SimpleCache"))

    assert not [r for r in caplog.records if "unknown config key" in r.getMessage()]


# 5. A URL prefix without its leading slash ---------------------------------------------------


@pytest.mark.parametrize("prefix, hint", [("api/auth", "try '/api/auth'"), (None, "not None"), (5, "not 5")])
def test_a_url_prefix_without_a_leading_slash_is_a_configuration_error(prefix, hint):
    with pytest.raises(ConfigurationError, match="WXLOGIN_URL_PREFIX") as raised:
        WxLogin(bare_app(WXLOGIN_URL_PREFIX=prefix))

    assert hint in str(raised.value)


def test_an_empty_url_prefix_mounts_at_the_root(wechat):
    app = make_app(WXLOGIN_URL_PREFIX="")

    assert app.test_client().post("/login", json={"code": CODE}).status_code == 200


# 6. An exception in on_login or user_loader ------------------------------------------------------


def boom(argument: Any) -> Any:
    raise RuntimeError("database password=hunter2 rejected")


def test_a_failing_on_login_answers_json_500_logs_the_traceback_and_stores_nothing(
    wechat, redis_app, redis_db, redis_prefix, caplog
):
    redis_app.extensions["wxlogin"].on_login(boom)

    response = redis_app.test_client().post("/auth/login", json={"code": CODE})

    assert response.status_code == 500
    assert response.get_json() == {
        "code": "500", "error": "internal_error", "message": "The server failed to complete the request."}
    assert "hunter2" not in response.get_data(as_text=True)
    [record] = [r for r in caplog.records if "on_login" in r.getMessage()]
    assert record.levelno == logging.ERROR and record.exc_info[0] is RuntimeError
    # Only the attempt's count (it reached WeChat): no session, no user key.
    assert list(redis_db.scan_iter(match=redis_prefix + "*")) == [
        f"{redis_prefix}ratelimit:LIMITER/default/127.0.0.1/30/1/minute".encode()
    ]


def test_a_failing_user_loader_answers_json_500(wechat, caplog):
    app = make_app()
    wxlogin = app.extensions["wxlogin"]
    wxlogin.on_login(lambda identity: 1)
    wxlogin.user_loader(boom)

    @app.get("/profile")
    @login_required
    def profile() -> Any:
        return {"user": current_wx_user.user}

    response = app.test_client().get("/profile", headers={"X-WX-Skey": login(app.test_client())})

    assert (response.status_code, response.get_json()["error"]) == (500, "internal_error")
    assert any(r.exc_info and r.exc_info[0] is RuntimeError for r in caplog.records)


@pytest.mark.parametrize("refuse, status", [
    pytest.param(lambda: (_ for _ in ()).throw(Unauthorized("Banned.", error="user_banned")), 401, id="WxLoginError"),
    pytest.param(lambda: abort(403), 403, id="abort"),
])
def test_on_login_may_still_refuse_a_login_its_own_way(wechat, refuse, status):
    app = make_app()
    app.extensions["wxlogin"].on_login(lambda identity: refuse())

    response = app.test_client().post("/auth/login", json={"code": CODE})

    assert response.status_code == status
    assert all(len(b._cache) == 0 for b in app.extensions["cache"].values())


# 7. Log lines that name the cause ----------------------------------------------------------------


def unreachable_login(caplog: Any, **config: Any) -> str:
    app = make_app(WXLOGIN_HTTP_TIMEOUT=2, **config)
    with caplog.at_level(logging.WARNING, "flask_wxlogin"):
        response = app.test_client().post("/auth/login", json={"code": CODE})
    assert (response.status_code, response.get_json()["error"]) == (502, "wechat_unreachable")
    [line] = [r.getMessage() for r in caplog.records if "could not be reached" in r.getMessage()]
    assert APPSECRET not in caplog.text and CODE not in caplog.text and "http" not in line
    return line


def test_wechat_unreachable_names_a_refused_connection(caplog):
    port = closed_port()
    line = unreachable_login(caplog, WXLOGIN_API_BASE=f"http://127.0.0.1:{port}")

    assert line.startswith("WeChat could not be reached: connection refused (")
    assert line.endswith("ConnectionRefusedError)") and str(port) not in line


def test_wechat_unreachable_names_a_dns_failure(caplog, monkeypatch):
    real = socket.getaddrinfo

    def no_such_host(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "wechat.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    line = unreachable_login(caplog, WXLOGIN_API_BASE="http://wechat.invalid")

    assert line.startswith("WeChat could not be reached: DNS resolution failed (")
    assert line.endswith("gaierror)") and "wechat.invalid" not in line


def test_wechat_unreachable_names_a_tls_error(caplog, fake):
    line = unreachable_login(caplog, WXLOGIN_API_BASE=fake.url.replace("http://", "https://"))

    assert line.startswith("WeChat could not be reached: TLS error (")
    assert "SSLError" in line


def test_a_store_outage_names_the_backend_address_and_cause_but_not_the_password(wechat, caplog):
    port = closed_port()
    app = make_app(CACHE_TYPE="RedisCache", CACHE_REDIS_URL=f"redis://:hunter2-pw@127.0.0.1:{port}/0")

    response = app.test_client().post("/auth/login", json={"code": CODE})

    assert response.status_code == 503
    [line] = {r.getMessage() for r in caplog.records if "session store unavailable" in r.getMessage()}
    assert line.startswith(f"session store unavailable at Redis 127.0.0.1:{port}: connection refused (")
    assert line.endswith("ConnectionRefusedError)")
    assert "hunter2" not in caplog.text and "redis://" not in caplog.text


def test_a_sentinel_outage_names_the_master_and_the_sentinels(wechat, caplog):
    port = closed_port()
    app = make_app(CACHE_TYPE="RedisSentinelCache", CACHE_REDIS_SENTINELS=[("127.0.0.1", port)],
                   CACHE_REDIS_SENTINEL_MASTER="mymaster", CACHE_REDIS_PASSWORD="hunter2-pw")

    response = app.test_client().post("/auth/login", json={"code": CODE})

    assert response.status_code == 503
    assert f"session store unavailable at Redis master 'mymaster' of sentinels 127.0.0.1:{port}: " in caplog.text
    assert "hunter2" not in caplog.text


def test_a_cluster_outage_would_name_its_nodes(redis_cluster, cluster_prefix):
    app = make_app(CACHE_TYPE="RedisClusterCache", CACHE_REDIS_CLUSTER=redis_cluster, WXLOGIN_KEY_PREFIX=cluster_prefix)

    where = app.extensions["wxlogin"]._states[app].backend.where()

    assert where.startswith("Redis Cluster ")
    assert all(node in where for node in redis_cluster.split(",")[:1])


def test_another_cache_is_named_by_its_class(wechat, caplog, tmp_path, monkeypatch):
    app = make_app(CACHE_TYPE="FileSystemCache", CACHE_DIR=str(tmp_path))
    cache = next(iter(app.extensions["cache"].values()))
    monkeypatch.setattr(cache, "set", lambda *args, **kwargs: (_ for _ in ()).throw(PermissionError(13, "denied")))

    assert app.test_client().post("/auth/login", json={"code": CODE}).status_code == 503
    assert "session store unavailable at FileSystemCache: connection failed (PermissionError)" in caplog.text


# 10. The README names its seed article -------------------------------------------------------------


def test_the_readme_says_what_the_seed_article_is():
    readme = " ".join((ROOT / "README.rst").read_text().split())

    mentions = [m.start() for m in re.finditer("seed article", readme)]
    assert mentions
    for start in mentions:
        assert "the article this project started from" in readme[start:start + 80]
    assert "posts the bare code" in readme
