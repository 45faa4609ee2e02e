"""example_app.py: demo mode without credentials, the real WeChat with them."""
from __future__ import annotations

import base64
import io
import logging
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

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

    assert login(client, "any-demo-code-2")["openid"] == data["openid"]
    assert login(client, "another-demo-code")["openid"] != data["openid"]

    assert client.post("/auth/logout", headers={"X-WX-Skey": data["skey"]}).status_code == 200
    after = client.get("/me", headers={"X-WX-Skey": data["skey"]})
    assert after.status_code == 401
    assert after.get_json()["code"] == "401"


def test_demo_codes_work_once(demo_env):
    client = example_app.create_app().test_client()
    login(client, "alice-1")

    again = client.post("/auth/login", json={"code": "alice-1"})

    assert again.status_code == 401
    assert again.get_json()["error"] == "code_used"


def test_demo_models_phones_a_user_logging_in_again_is_the_same_user(demo_env):
    client = example_app.create_app().test_client()

    alice = [login(client, code)["openid"] for code in ("alice-1", "alice-2", "alice-x-y")]
    bob = login(client, "bob-1")["openid"]
    default = [login(client, code)["openid"] for code in ("hello", "0a3Ab1ll2Qw9Tf4Yhlml2R0qSz1Ab1lO", "-x")]

    assert len(set(alice)) == 1
    assert len(set(default)) == 1
    assert len({alice[0], bob, default[0]}) == 3


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


@pytest.mark.parametrize("argv, environ, port", [
    pytest.param([], {}, 5000, id="default"),
    pytest.param([], {"PORT": "5123"}, 5123, id="PORT"),
    pytest.param(["--port", "5124"], {"PORT": "5123"}, 5124, id="--port-wins"),
    pytest.param(["--port=5125"], {}, 5125, id="--port="),
    pytest.param(["--port", "0"], {"PORT": "5123"}, 0, id="zero-any-free-port"),
])
def test_the_port_comes_from_the_argument_then_the_environment(argv, environ, port):
    assert example_app.port_from(argv, environ) == port


@pytest.mark.parametrize("argv, environ", [
    pytest.param(["--port", "web"], {}, id="not-a-number"),
    pytest.param([], {"PORT": "http"}, id="PORT-not-a-number"),
    pytest.param(["--port", "-1"], {}, id="negative"),
    pytest.param([], {"PORT": "70000"}, id="too-large"),
])
def test_a_bad_port_stops_with_a_usage_error(argv, environ, capsys):
    with pytest.raises(SystemExit) as stopped:
        example_app.port_from(argv, environ)
    assert stopped.value.code == 2
    assert "port" in capsys.readouterr().err.lower()


def test_python_example_app_port_serves_there(demo_env):
    """The real command line, as the client SDK's tests start it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in example_app.REAL_SETTINGS}
    env["PYTHONPATH"] = ROOT
    server = subprocess.Popen([sys.executable, "example_app.py", "--port", str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(200):
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/me", timeout=1)
                break
            except requests.ConnectionError:
                assert server.poll() is None, server.stderr.read()
                time.sleep(0.05)
        assert answer.status_code == 401
        assert answer.json()["error"] == "skey_missing"
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=10)
    assert '"GET /me HTTP/1.1" 401' in stderr.replace("\x1b[31m\x1b[1m", "").replace("\x1b[0m", "")


def test_python_example_app_port_0_serves_on_the_port_it_prints(demo_env):
    """``--port 0``: the OS picks a free port, and the log says which (the client SDK's tests read it)."""
    env = {k: v for k, v in os.environ.items() if k not in example_app.REAL_SETTINGS}
    env["PYTHONPATH"] = ROOT
    server = subprocess.Popen([sys.executable, "example_app.py", "--port", "0"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        running = None
        for line in server.stderr:
            running = re.match(r" \* Running on (http://127\.0\.0\.1:(\d+))$", line.rstrip("\n"))
            if running:
                break
        assert running is not None, "no 'Running on' line before the server's output ended"
        assert int(running.group(2)) != 0
        answer = requests.get(running.group(1) + "/me", timeout=5)
        assert (answer.status_code, answer.json()["error"]) == (401, "skey_missing")
    finally:
        server.terminate()
        server.communicate(timeout=10)


@pytest.mark.parametrize("code, status, error", [
    pytest.param("demo-fail--1-x", 503, "wechat_busy", id="busy"),
    pytest.param("demo-fail-40029", 401, "code_invalid", id="invalid"),
    pytest.param("demo-fail-40163-y", 401, "code_used", id="used"),
    pytest.param("demo-fail-45011-z", 429, "wechat_rate_limited", id="rate-limited"),
    pytest.param("demo-fail-40226-w", 403, "user_blocked", id="blocked"),
])
def test_demo_fail_codes_get_that_errcode_from_the_fake_wechat(demo_env, code, status, error):
    client = example_app.create_app().test_client()

    response = client.post("/auth/login", json={"code": code})

    assert (response.status_code, response.get_json()["error"]) == (status, error)


def test_demo_codes_that_only_look_alike_log_in(demo_env):
    client = example_app.create_app().test_client()
    for code in ("demo-failing", "demo-fail-", "demo-fail-12ab", "x-demo-fail-40029"):
        assert login(client, code)["openid"]


def test_demo_open_data_that_does_not_decrypt_is_session_key_stale(demo_env):
    client = example_app.create_app().test_client()
    skey = login(client, "demo-code-open-data")["skey"]
    junk = {"encryptedData": base64.b64encode(bytes(32)).decode(), "iv": base64.b64encode(bytes(16)).decode()}

    stale = client.post("/open-data", json=junk, headers={"X-WX-Skey": skey})
    malformed = client.post("/open-data", json={}, headers={"X-WX-Skey": skey})

    assert (stale.status_code, stale.get_json()["error"]) == (400, "session_key_stale")
    assert (malformed.status_code, malformed.get_json()["error"]) == (400, "data_malformed")
    assert client.post("/open-data", json=junk).status_code == 401


def test_demo_avatar_takes_an_upload_from_a_logged_in_user(demo_env):
    client = example_app.create_app().test_client()
    data = login(client, "demo-code-avatar")

    upload = client.post("/avatar", headers={"X-WX-Skey": data["skey"]},
                         data={"album": "me", "file": (io.BytesIO(b"x" * 321), "a.png")})
    missing = client.post("/avatar", headers={"X-WX-Skey": data["skey"]}, data={"album": "me"})
    too_large = client.post("/avatar", headers={"X-WX-Skey": data["skey"]},
                            data={"file": (io.BytesIO(b"x" * (example_app.MAX_AVATAR_BYTES + 1)), "a.png")})
    anonymous = client.post("/avatar", data={"file": (io.BytesIO(b"x"), "a.png")})

    assert upload.get_json() == {"code": "200", "data": {"openid": data["openid"], "size": 321, "form": {"album": "me"}}}
    assert (missing.status_code, missing.get_json()["error"]) == (400, "file_missing")
    assert (too_large.status_code, too_large.get_json()["error"]) == (413, "body_too_large")
    assert missing.headers["Cache-Control"] == too_large.headers["Cache-Control"] == "no-store"  # the house handler
    assert anonymous.status_code == 401
