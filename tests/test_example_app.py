"""example_app.py: demo mode without credentials, the real WeChat with them."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import example_app  # noqa: E402

WECHAT = "https://api.weixin.qq.com"
REAL_ENV = {
    "WXLOGIN_APPID": "wxexamplerealappid",
    "WXLOGIN_SECRET": "example-real-appsecret-2b7f",
    "SECRET_KEY": "example-real-secret-key-91ad",
}


def demo_warnings(caplog):
    return [r for r in caplog.records if "DEMO MODE" in r.getMessage()]


def login(client, code):
    response = client.post("/auth/login", json={"code": code})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["code"] == "200"
    return body["data"]


@pytest.fixture
def demo_env(monkeypatch):
    for name in example_app.REAL_SETTINGS:
        monkeypatch.delenv(name, raising=False)


def test_demo_mode_is_announced_with_a_warning(demo_env, caplog):
    demo_app = example_app.create_app()

    warnings = demo_warnings(caplog)
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert warnings[0].name == "example_app"
    assert urlsplit(demo_app.config["WXLOGIN_API_BASE"]).hostname == "127.0.0.1"
    assert demo_app.config["WXLOGIN_API_BASE"] in warnings[0].getMessage()


def test_demo_login_me_and_logout(demo_env):
    client = example_app.create_app().test_client()

    data = login(client, "any-demo-code-1")
    me = client.get("/me", headers={"X-WX-Skey": data["skey"]})
    assert me.status_code == 200
    assert me.get_json() == {"code": "200", "data": {"openid": data["openid"]}}
    assert data["openid"]

    assert login(client, "any-demo-code-1")["openid"] == data["openid"]
    assert login(client, "another-demo-code")["openid"] != data["openid"]

    assert client.post("/auth/logout", headers={"X-WX-Skey": data["skey"]}).status_code == 200
    after = client.get("/me", headers={"X-WX-Skey": data["skey"]})
    assert after.status_code == 401
    assert after.get_json()["code"] == "401"


def test_demo_apps_are_independent(demo_env, caplog):
    first, second = example_app.create_app(), example_app.create_app()

    skey = login(first.test_client(), "shared-code")["skey"]

    assert first.config["SECRET_KEY"] != second.config["SECRET_KEY"]
    assert first.test_client().get("/me", headers={"X-WX-Skey": skey}).status_code == 200
    assert second.test_client().get("/me", headers={"X-WX-Skey": skey}).status_code == 401
    assert len(demo_warnings(caplog)) == 2


@pytest.fixture
def real_env(monkeypatch):
    for name, value in REAL_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CACHE_REDIS_URL", raising=False)


def test_with_credentials_there_is_no_demo_mode(real_env, caplog):
    caplog.set_level(logging.DEBUG)

    app = example_app.create_app()

    assert demo_warnings(caplog) == []
    assert app.config["WXLOGIN_API_BASE"] == WECHAT
    assert (app.config["WXLOGIN_APPID"], app.config["WXLOGIN_SECRET"], app.config["SECRET_KEY"]) == (
        REAL_ENV["WXLOGIN_APPID"], REAL_ENV["WXLOGIN_SECRET"], REAL_ENV["SECRET_KEY"]
    )


def test_with_credentials_logins_go_to_the_real_wechat(real_env, requests_mock):
    requests_mock.get(WECHAT + "/sns/jscode2session",
                      json={"openid": "oRealOpenid0001", "session_key": "cmVhbC1zZXNzaW9uLWtleQ=="})
    client = example_app.create_app().test_client()

    data = login(client, "real-code-1")

    assert requests_mock.call_count == 1
    assert requests_mock.last_request.qs == {
        "appid": [REAL_ENV["WXLOGIN_APPID"]], "secret": [REAL_ENV["WXLOGIN_SECRET"]],
        "js_code": ["real-code-1"], "grant_type": ["authorization_code"],
    }
    me = client.get("/me", headers={"X-WX-Skey": data["skey"]})
    assert me.get_json() == {"code": "200", "data": {"openid": "oRealOpenid0001"}}


def test_with_credentials_and_redis_url_sessions_go_to_redis(real_env, monkeypatch, redis_url):
    monkeypatch.setenv("CACHE_REDIS_URL", redis_url)

    app = example_app.create_app()

    assert (app.config["CACHE_TYPE"], app.config["CACHE_REDIS_URL"]) == ("RedisCache", redis_url)


@pytest.mark.parametrize("missing", ["WXLOGIN_APPID", "WXLOGIN_SECRET", "SECRET_KEY"])
def test_half_configured_credentials_fail_instead_of_falling_back_to_demo(real_env, monkeypatch, caplog, missing):
    monkeypatch.delenv(missing)

    with pytest.raises(SystemExit, match=f"set {missing} too"):
        example_app.create_app()

    assert demo_warnings(caplog) == []


@pytest.mark.parametrize("empty", ["all", "WXLOGIN_APPID", "WXLOGIN_SECRET", "SECRET_KEY", "CACHE_REDIS_URL"])
def test_set_but_empty_settings_are_refused_not_the_demo(monkeypatch, caplog, empty):
    """``WXLOGIN_APPID=${WXLOGIN_APPID}`` in a template, the variable missing: not the demo."""
    real = {**REAL_ENV, "CACHE_REDIS_URL": "redis://127.0.0.1:6379/13"}
    for name in example_app.REAL_SETTINGS:
        monkeypatch.setenv(name, "" if empty in ("all", name) else real[name])

    with pytest.raises(SystemExit, match="set but empty"):
        example_app.create_app()

    assert demo_warnings(caplog) == []


@pytest.mark.parametrize("only", ["SECRET_KEY", "CACHE_REDIS_URL"])
def test_any_real_setting_alone_rules_out_demo_mode(monkeypatch, caplog, only):
    for name in example_app.REAL_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(only, "x")

    with pytest.raises(SystemExit, match="WXLOGIN_APPID"):
        example_app.create_app()

    assert demo_warnings(caplog) == []


def test_demo_phone_route_returns_a_number_for_a_logged_in_user(demo_env):
    client = example_app.create_app().test_client()
    skey = login(client, "demo-code-phone")["skey"]

    first = client.post("/phone", json={"code": "phone-code-1"}, headers={"X-WX-Skey": skey})
    again = client.post("/phone", json={"code": "phone-code-1"}, headers={"X-WX-Skey": skey})
    other = client.post("/phone", json={"code": "phone-code-2"}, headers={"X-WX-Skey": skey})

    assert first.status_code == 200, first.get_json()
    data = first.get_json()["data"]
    assert set(data) == {"phoneNumber", "purePhoneNumber", "countryCode"}
    assert data["phoneNumber"].isdigit() and len(data["phoneNumber"]) == 11
    assert again.get_json()["data"] == data
    assert other.get_json()["data"]["phoneNumber"] != data["phoneNumber"]


@pytest.mark.parametrize("body, error", [
    pytest.param({}, "code_missing", id="no-code"),
    pytest.param({"code": "a&b"}, "code_malformed", id="ampersand"),
    pytest.param({"code": 42}, "code_malformed", id="not-a-string"),
])
def test_demo_phone_route_refuses_a_bad_code(demo_env, body, error):
    client = example_app.create_app().test_client()
    skey = login(client, "demo-code-phone")["skey"]

    response = client.post("/phone", json=body, headers={"X-WX-Skey": skey})

    assert response.status_code == 400
    assert response.get_json()["error"] == error


def test_phone_route_needs_a_session(demo_env):
    response = example_app.create_app().test_client().post("/phone", json={"code": "phone-code-1"})

    assert response.status_code == 401


def test_with_credentials_the_phone_route_asks_the_real_wechat(real_env, requests_mock):
    requests_mock.get(WECHAT + "/sns/jscode2session",
                      json={"openid": "oRealOpenid0001", "session_key": "cmVhbC1zZXNzaW9uLWtleQ=="})
    token = requests_mock.post(WECHAT + "/cgi-bin/stable_token", json={"access_token": "real-token-1", "expires_in": 7200})
    phone = requests_mock.post(WECHAT + "/wxa/business/getuserphonenumber", json={
        "errcode": 0, "errmsg": "ok", "phone_info": {
            "phoneNumber": "+86 13800000000", "purePhoneNumber": "13800000000", "countryCode": "86",
            "watermark": {"appid": REAL_ENV["WXLOGIN_APPID"], "timestamp": 1700000000}}})
    client = example_app.create_app().test_client()
    skey = login(client, "real-code-1")["skey"]

    response = client.post("/phone", json={"code": "real-phone-code"}, headers={"X-WX-Skey": skey})

    assert response.get_json() == {"code": "200", "data": {
        "phoneNumber": "+86 13800000000", "purePhoneNumber": "13800000000", "countryCode": "86"}}
    assert token.last_request.json() == {
        "grant_type": "client_credential", "appid": REAL_ENV["WXLOGIN_APPID"],
        "secret": REAL_ENV["WXLOGIN_SECRET"], "force_refresh": False}
    assert phone.last_request.qs == {"access_token": ["real-token-1"]}
    assert phone.last_request.json() == {"code": "real-phone-code"}
