"""WxLogin set-up: the ways to initialise it, configuration checks, the cache it uses."""
from __future__ import annotations

import logging

import pytest
from flask import Flask
from flask_caching import Cache

from flask_wxlogin import ConfigurationError, WxLogin, login_required
from flask_wxlogin.config import DEFAULTS

from .conftest import APPID, APPSECRET, OPENID, SECRET_KEY, login, make_app


def _bare_app(**config):
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET_KEY, WXLOGIN_APPID=APPID, WXLOGIN_SECRET=APPSECRET, **config)

    @app.get("/me")
    @login_required
    def me():
        return "ok"

    return app


@pytest.mark.parametrize("style", ["constructor", "init_app"])
def test_both_init_styles_register_the_extension_and_blueprint(style, wechat):
    app = _bare_app()
    if style == "constructor":
        wxlogin = WxLogin(app)
    else:
        wxlogin = WxLogin()
        wxlogin.init_app(app)
    assert app.extensions["wxlogin"] is wxlogin
    client = app.test_client()
    assert client.get("/me", headers={"X-WX-Skey": login(client)}).status_code == 200


def test_one_instance_serves_two_apps_with_separate_sessions(wechat):
    wxlogin = WxLogin()
    first, second = _bare_app(), _bare_app()
    wxlogin.init_app(first)
    wxlogin.init_app(second)
    skey = login(first.test_client())
    assert first.test_client().get("/me", headers={"X-WX-Skey": skey}).status_code == 200
    assert second.test_client().get("/me", headers={"X-WX-Skey": skey}).status_code == 401


def test_an_existing_cache_is_reused(redis_url, redis_prefix, redis_db, wechat):
    app = _bare_app(CACHE_TYPE="RedisCache", CACHE_REDIS_URL=redis_url, CACHE_KEY_PREFIX=redis_prefix)
    cache = Cache(app)
    WxLogin(app, cache=cache)
    skey = login(app.test_client())
    assert redis_db.exists(f"{redis_prefix}wxl:{skey.split('.')[0]}") == 1
    assert list(app.extensions["cache"]) == [cache]


def test_a_cache_not_initialised_on_the_app_is_refused():
    with pytest.raises(ConfigurationError, match="not initialised on this app"):
        WxLogin(_bare_app(), cache=Cache())


@pytest.mark.filterwarnings("ignore:Flask-Caching. CACHE_TYPE is set to NullCache")
@pytest.mark.parametrize("config", [{"CACHE_TYPE": "NullCache"}, {"CACHE_TYPE": "flask_caching.backends.nullcache.NullCache"}])
def test_a_null_cache_is_refused(config):
    with pytest.raises(ConfigurationError, match="NullCache keeps nothing"):
        WxLogin(_bare_app(**config))


@pytest.mark.filterwarnings("ignore:Flask-Caching. CACHE_TYPE is set to NullCache")
def test_a_passed_null_cache_is_refused():
    app = _bare_app(CACHE_TYPE="NullCache")
    with pytest.raises(ConfigurationError, match="NullCache"):
        WxLogin(app, cache=Cache(app))


@pytest.mark.parametrize("key", ["WXLOGIN_APPID", "WXLOGIN_SECRET", "SECRET_KEY"])
@pytest.mark.parametrize("value", [None, ""])
def test_missing_credentials_are_refused_by_name(key, value):
    app = _bare_app()
    app.config[key] = value
    with pytest.raises(ConfigurationError, match=key):
        WxLogin(app)


@pytest.mark.parametrize(
    "key, value",
    [
        ("WXLOGIN_HTTP_TIMEOUT", 0), ("WXLOGIN_HTTP_TIMEOUT", "5s"), ("WXLOGIN_HTTP_TIMEOUT", True),
        ("WXLOGIN_HTTP_TIMEOUT", "-5"), ("WXLOGIN_HTTP_TIMEOUT", "0"), ("WXLOGIN_SESSION_IDLE_TIMEOUT", "0"),
        ("WXLOGIN_SESSION_IDLE_TIMEOUT", "3600.5"), ("WXLOGIN_SESSION_MAX_AGE", "-3600"), ("WXLOGIN_SESSION_MAX_AGE", "1e3"),
        ("WXLOGIN_SESSION_IDLE_TIMEOUT", -1), ("WXLOGIN_SESSION_MAX_AGE", None),
        ("WXLOGIN_SESSION_IDLE_TIMEOUT", 0.5), ("WXLOGIN_SESSION_MAX_AGE", 3600.5), ("WXLOGIN_SESSION_IDLE_TIMEOUT", 0),
        ("WXLOGIN_TOKEN_HEADER", ""), ("WXLOGIN_KEY_PREFIX", 3), ("WXLOGIN_API_BASE", ""),
    ],
)
def test_bad_settings_are_refused_by_name(key, value):
    with pytest.raises(ConfigurationError, match=key):
        WxLogin(_bare_app(**{key: value}))


def test_configuration_errors_do_not_repeat_secret_values():
    with pytest.raises(ConfigurationError) as raised:
        WxLogin(_bare_app(WXLOGIN_HTTP_TIMEOUT="x"))
    assert APPSECRET not in str(raised.value) and SECRET_KEY not in str(raised.value)


def test_defaults_are_filled_in():
    app = _bare_app()
    WxLogin(app)
    for key, value in DEFAULTS.items():
        if value is not None:
            assert app.config[key] == value
    assert app.config["WXLOGIN_URL_PREFIX"] == "/auth"
    assert app.config["WXLOGIN_TOKEN_HEADER"] == "X-WX-Skey"
    assert app.config["WXLOGIN_API_BASE"] == "https://api.weixin.qq.com"


def test_embedded_default_warns_once_and_points_to_redis(caplog):
    with caplog.at_level(logging.WARNING, "flask_wxlogin"):
        WxLogin(_bare_app())
    warnings = [r for r in caplog.records if r.name == "flask_wxlogin"]
    assert len(warnings) == 1
    assert "not shared between processes" in warnings[0].getMessage()
    assert "Redis" in warnings[0].getMessage()


def test_a_redis_cache_we_build_has_bounded_socket_timeouts(redis_url):
    app = _bare_app(CACHE_TYPE="RedisCache", CACHE_REDIS_URL=redis_url)
    WxLogin(app)
    (backend,) = app.extensions["cache"].values()
    settings = backend._write_client.connection_pool.connection_kwargs
    assert settings["socket_timeout"] == 1.0 and settings["socket_connect_timeout"] == 1.0


def test_every_setting_is_documented_in_the_readme():
    import pathlib

    readme = (pathlib.Path(__file__).parent.parent / "README.rst").read_text()
    for key in DEFAULTS:
        assert f"``{key}``" in readme, key


def test_the_seed_backends_bugs_are_not_ours(wechat):
    """The seed article sent grant_type=JSAPI and read openid before checking errcode."""
    client = make_app().test_client()
    login(client)
    assert wechat.last_query["grant_type"] == ["authorization_code"]
    wechat.answer(json={"errcode": 40029, "errmsg": "invalid code", "expires_in": 7200})
    response = client.post("/auth/login", json={"code": "abc"})
    assert response.status_code == 401 and "openid" not in response.get_json()
    assert OPENID not in response.get_data(as_text=True)


@pytest.mark.parametrize("cache_type", ["SimpleCache", "FileSystemCache"])
def test_an_app_chosen_local_cache_keeps_more_sessions_than_cachelibs_threshold(cache_type, tmp_path, wechat):
    app = make_app(CACHE_TYPE=cache_type, CACHE_DIR=str(tmp_path), WXLOGIN_LOGIN_RATE_LIMIT=None)
    client = app.test_client()
    skeys = []
    for i in range(600):
        wechat.ok(openid=f"oUser{i:023d}")
        skeys.append(login(client, code=f"c{i}"))
    assert all(client.get("/me", headers={"X-WX-Skey": skey}).status_code == 200 for skey in skeys[:50])


def test_the_embedded_default_drops_expired_sessions(monkeypatch, wechat):
    from flask_wxlogin import store as store_module

    monkeypatch.setattr(store_module._CacheBackend, "SWEEP_EVERY", 10)
    app = make_app()
    client = app.test_client()
    for i in range(9):
        wechat.ok(openid=f"oOldUser{i:020d}")
        login(client, code=f"old{i}")
    (backend,) = app.extensions["cache"].values()
    sessions = lambda: list(backend._cache)  # noqa: E731  (one key per user)
    assert len(sessions()) == 9

    import time

    class Later:
        @staticmethod
        def time():
            return time.time() + 2 * DEFAULTS["WXLOGIN_SESSION_IDLE_TIMEOUT"]

    monkeypatch.setattr(store_module, "time", Later)
    wechat.ok()
    skey = login(client, code="new")
    assert len(sessions()) == 1
    assert client.get("/me", headers={"X-WX-Skey": skey}).status_code == 200
