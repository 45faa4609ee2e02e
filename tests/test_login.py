"""POST /auth/login: request shapes, bad input, WeChat's answers, what is stored."""
from __future__ import annotations

import json

import pytest
import requests

from flask_wxlogin import user_logged_in, user_login_failed
from flask_wxlogin.client import ERRCODES

from .conftest import APPID, APPSECRET, CODE, OPENID, SESSION_KEY, UNIONID, login, make_app


def _skey(response):
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["code"] == "200"
    return body["data"]["skey"]


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"json": {"code": CODE}}, id="json-object"),
        pytest.param({"json": CODE}, id="json-string"),
        pytest.param({"data": {"code": CODE}}, id="form-field"),
        pytest.param({"data": CODE, "content_type": "application/json"}, id="seed-bare-body-as-json"),
        pytest.param({"data": CODE, "content_type": "text/plain"}, id="bare-text"),
        pytest.param({"data": CODE + "\n", "content_type": "text/plain"}, id="bare-with-newline"),
    ],
)
def test_code_is_read_from_every_supported_shape(client, wechat, kwargs):
    skey = _skey(client.post("/auth/login", **kwargs))
    assert wechat.last_query["js_code"] == [CODE]
    assert client.get("/me", headers={"X-WX-Skey": skey}).get_json()["openid"] == OPENID


def test_all_digit_bare_code_is_a_code_not_a_json_number(client, wechat):
    _skey(client.post("/auth/login", data="20240417", content_type="application/json"))
    assert wechat.last_query["js_code"] == ["20240417"]


def test_wechat_is_called_with_the_documented_query(client, wechat):
    login(client)
    assert wechat.last_query == {
        "appid": [APPID], "secret": [APPSECRET], "js_code": [CODE],
        "grant_type": ["authorization_code"],
    }
    assert wechat.mocker.last_request.timeout == 5.0


def test_success_answers_the_contract_shape(client, wechat, app):
    response = client.post("/auth/login", json={"code": CODE})
    body = response.get_json()
    assert response.status_code == 200
    assert set(body) == {"code", "data"} and body["code"] == "200"
    assert set(body["data"]) == {"skey", "expires_in", "openid"}
    assert body["data"]["openid"] == OPENID
    assert body["data"]["expires_in"] == app.config["WXLOGIN_SESSION_IDLE_TIMEOUT"]
    assert response.headers["Cache-Control"] == "no-store"
    assert SESSION_KEY not in response.get_data(as_text=True)


@pytest.mark.parametrize("unionid", [None, UNIONID])
def test_session_holds_what_wechat_sent(client, wechat, app, unionid):
    wechat.ok(unionid=unionid)
    skey = login(client)
    assert client.get("/me", headers={"X-WX-Skey": skey}).get_json()["unionid"] == unionid
    with app.test_request_context(headers={"X-WX-Skey": skey}):
        user = app.extensions["wxlogin"].authenticate()
        assert (user.openid, user.session_key, user.unionid) == (OPENID, SESSION_KEY, unionid)
        assert user.created_at == user.refreshed_at > 0
        assert SESSION_KEY not in repr(user)


def test_each_login_gets_a_fresh_session_id_naming_the_user_and_a_random_secret(client, wechat, app):
    skeys = [login(client) for _ in range(20)]
    session_ids = {skey.rpartition(".")[0] for skey in skeys}
    assert len(session_ids) == 20
    for session_id in session_ids:
        openid, secret = session_id.split(".")
        assert openid == OPENID
        assert len(secret) == 22  # 16 random bytes, URL-safe base64
        assert SESSION_KEY.rstrip("=") not in session_id


@pytest.mark.parametrize(
    "kwargs, status, error",
    [
        pytest.param({"json": {}}, 400, "code_missing", id="json-without-code"),
        pytest.param({"json": {"code": ""}}, 400, "code_missing", id="empty-code"),
        pytest.param({"json": {"code": None}}, 400, "code_missing", id="null-code"),
        pytest.param({"data": b"", "content_type": "application/json"}, 400, "code_missing", id="empty-body"),
        pytest.param({"data": {"other": "x"}}, 400, "code_missing", id="form-without-code"),
        pytest.param({"json": {"code": 123}}, 400, "code_malformed", id="number-code"),
        pytest.param({"json": {"code": ["a"]}}, 400, "code_malformed", id="list-code"),
        pytest.param({"json": {"code": "a" * 129}}, 400, "code_too_long", id="oversized-code"),
        pytest.param({"json": {"code": "abc&secret=x"}}, 400, "code_malformed", id="ampersand"),
        pytest.param({"json": {"code": "abc def"}}, 400, "code_malformed", id="space"),
        pytest.param({"json": {"code": "abc\u00e9"}}, 400, "code_malformed", id="non-ascii"),
        pytest.param({"json": {"code": "ab%20c"}}, 400, "code_malformed", id="percent"),
        pytest.param({"data": "abc#frag", "content_type": "text/plain"}, 400, "code_malformed", id="bare-hash"),
        pytest.param({"data": '{"code": ', "content_type": "application/json"}, 400, "body_invalid", id="broken-json"),
        pytest.param({"json": [CODE]}, 400, "body_invalid", id="json-list"),
        pytest.param({"data": "[" * 3000, "content_type": "application/json"}, 400, "body_invalid", id="deeply-nested-json"),
        pytest.param({"json": 42.5}, 400, "body_invalid", id="json-number"),
        pytest.param({"data": b"\xff\xfe\x00", "content_type": "application/json"}, 400, "body_invalid", id="not-utf8"),
        pytest.param({"data": "c" * 5000, "content_type": "text/plain"}, 413, "body_too_large", id="oversized-body"),
    ],
)
def test_bad_login_requests_are_4xx_and_never_reach_wechat(client, wechat, kwargs, status, error):
    response = client.post("/auth/login", **kwargs)
    assert response.status_code == status
    body = response.get_json()
    assert body["code"] == str(status) and body["error"] == error and body["message"]
    assert wechat.calls == 0


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "TRACE", "HEAD"])
@pytest.mark.parametrize("path", ["/auth/login", "/auth/logout"])
def test_wrong_method_is_a_json_405(client, wechat, method, path):
    response = client.open(path, method=method)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST, OPTIONS"
    if method != "HEAD":
        assert response.get_json()["error"] == "method_not_allowed"
    assert wechat.calls == 0


@pytest.mark.parametrize(
    "errcode, status, error",
    [(code, status, error) for code, (status, error, _) in ERRCODES.items()]
    + [(99999, 502, "wechat_error")],
)
def test_every_wechat_errcode_maps_to_a_status_and_error(client, wechat, errcode, status, error):
    wechat.errcode(errcode)
    response = client.post("/auth/login", json={"code": CODE})
    body = response.get_json()
    assert (response.status_code, body["error"], body["errcode"]) == (status, error, errcode)
    assert body["code"] == str(status)
    if status in (429, 502, 503):
        assert int(response.headers["Retry-After"]) > 0


@pytest.mark.parametrize("errcode, status, error", [("40029", 401, "code_invalid"), ("-1", 503, "wechat_busy"), ("0", 200, None)])
def test_an_errcode_sent_as_text_counts_as_the_number(client, wechat, errcode, status, error):
    wechat.answer(json={"errcode": errcode, "openid": OPENID, "session_key": SESSION_KEY})
    response = client.post("/auth/login", json={"code": CODE})
    assert response.status_code == status
    assert response.get_json().get("error") == error


def test_identity_repr_hides_the_session_key():
    from flask_wxlogin import Identity

    text = repr(Identity(OPENID, SESSION_KEY, UNIONID))
    assert OPENID in text and UNIONID in text and SESSION_KEY not in text


def test_the_documented_errcodes_have_the_issues_statuses():
    assert ERRCODES[40029][:2] == (401, "code_invalid")
    assert ERRCODES[40163][:2] == (401, "code_used")
    assert ERRCODES[45011][0] == 429
    assert ERRCODES[40226][0] == 403
    assert ERRCODES[-1][0] == 503


@pytest.mark.parametrize(
    "answer, status, error",
    [
        pytest.param({"status_code": 500, "text": "oops"}, 502, "wechat_bad_response", id="http-500"),
        pytest.param({"status_code": 503, "json": {}}, 502, "wechat_bad_response", id="http-503"),
        pytest.param({"text": "<html>busy</html>"}, 502, "wechat_bad_response", id="non-json"),
        pytest.param({"json": ["openid"]}, 502, "wechat_bad_response", id="json-not-object"),
        pytest.param({"json": {"session_key": SESSION_KEY}}, 502, "wechat_bad_response", id="no-openid"),
        pytest.param({"json": {"openid": OPENID}}, 502, "wechat_bad_response", id="no-session-key"),
        pytest.param({"json": {"openid": "", "session_key": SESSION_KEY}}, 502, "wechat_bad_response", id="empty-openid"),
        pytest.param({"json": {"openid": 12, "session_key": SESSION_KEY}}, 502, "wechat_bad_response", id="openid-not-text"),
        pytest.param({"json": {"openid": OPENID, "session_key": SESSION_KEY, "unionid": 5}}, 502, "wechat_bad_response", id="unionid-not-text"),
        pytest.param({"json": {"openid": "o|x", "session_key": SESSION_KEY}}, 502, "wechat_bad_response", id="openid-odd-chars"),
        pytest.param({"json": {"openid": OPENID, "session_key": "k|ey"}}, 502, "wechat_bad_response", id="session-key-not-base64"),
        pytest.param({"json": {"openid": OPENID, "session_key": SESSION_KEY, "unionid": "u n"}}, 502, "wechat_bad_response", id="unionid-odd-chars"),
        pytest.param({"content": b"{" + b" " * 70000 + b"}"}, 502, "wechat_bad_response", id="oversized-answer"),
        pytest.param({"json": {"errcode": [1], "errmsg": "x"}}, 502, "wechat_bad_response", id="errcode-list"),
        pytest.param({"json": {"errcode": True}}, 502, "wechat_bad_response", id="errcode-bool"),
        pytest.param({"json": {"errcode": "abc"}}, 502, "wechat_bad_response", id="errcode-text"),
        pytest.param({"status_code": 302, "headers": {"Location": "https://evil.test/"}}, 502, "wechat_bad_response", id="redirect-not-followed"),
        pytest.param({"exc": requests.ConnectTimeout}, 504, "wechat_timeout", id="connect-timeout"),
        pytest.param({"exc": requests.ReadTimeout}, 504, "wechat_timeout", id="read-timeout"),
        pytest.param({"exc": requests.ConnectionError}, 502, "wechat_unreachable", id="connection-error"),
        pytest.param({"exc": requests.exceptions.ChunkedEncodingError}, 502, "wechat_bad_response", id="broken-body"),
    ],
)
def test_wechat_faults_are_502_or_504_and_store_nothing(client, wechat, app, answer, status, error):
    wechat.answer(**answer)
    response = client.post("/auth/login", json={"code": CODE})
    assert response.status_code == status
    assert response.get_json()["error"] == error
    assert "skey" not in response.get_data(as_text=True)
    assert response.headers["Retry-After"] == "5"
    cache = app.extensions["cache"]
    assert all(len(backend._cache) == 0 for backend in cache.values())


def test_on_login_hook_keeps_the_apps_user_id(app, wechat):
    seen = []

    @app.extensions["wxlogin"].on_login
    def remember(identity):
        seen.append(identity)
        return 42

    @app.extensions["wxlogin"].user_loader
    def load(user_id):
        return {"id": user_id, "name": "Ada"}

    @app.get("/profile")
    def profile():
        from flask_wxlogin import current_wx_user

        return {"user": current_wx_user.user}

    client = app.test_client()
    skey = login(client)
    assert [(i.openid, i.session_key, i.unionid) for i in seen] == [(OPENID, SESSION_KEY, None)]
    assert client.get("/me", headers={"X-WX-Skey": skey}).get_json()["user_id"] == 42
    assert client.get("/profile", headers={"X-WX-Skey": skey}).get_json()["user"] == {"id": 42, "name": "Ada"}


@pytest.mark.parametrize("returned", [object(), True, 1.5, ["id"]])
def test_on_login_hook_returning_a_non_id_is_refused_before_storing(app, wechat, returned, caplog):
    app.extensions["wxlogin"].on_login(lambda identity: returned)
    response = app.test_client().post("/auth/login", json={"code": CODE})
    assert response.status_code == 500
    assert response.get_json()["error"] == "internal_error"
    assert "str, an int or None" in caplog.text
    assert all(len(b._cache) == 0 for b in app.extensions["cache"].values())


def test_signals_report_login_and_failure(client, wechat, app):
    logged_in, failed = [], []
    with user_logged_in.connected_to(lambda sender, user: logged_in.append(user), app), \
            user_login_failed.connected_to(lambda sender, error: failed.append(error.error), app):
        login(client)
        client.post("/auth/login", json={})
        wechat.errcode(40163)
        client.post("/auth/login", json={"code": CODE})
    assert [u.openid for u in logged_in] == [OPENID]
    assert failed == ["code_missing", "code_used"]


def test_login_with_a_live_skey_ends_that_session(client, wechat):
    old = login(client)
    new = login(client, headers={"X-WX-Skey": old})
    assert client.get("/me", headers={"X-WX-Skey": new}).status_code == 200
    response = client.get("/me", headers={"X-WX-Skey": old})
    assert response.status_code == 401 and response.get_json()["error"] == "session_expired"


def test_login_with_a_junk_skey_still_logs_in(client, wechat):
    assert client.get("/me", headers={"X-WX-Skey": login(client, headers={"X-WX-Skey": "junk"})}).status_code == 200


def test_url_prefix_and_api_base_are_configurable(wechat, requests_mock):
    app = make_app(WXLOGIN_URL_PREFIX="/wx", WXLOGIN_API_BASE="https://wechat.test/", WXLOGIN_HTTP_TIMEOUT=2.5)
    mocked = requests_mock.get("https://wechat.test/sns/jscode2session", json={"openid": OPENID, "session_key": SESSION_KEY})
    client = app.test_client()
    assert client.post("/auth/login", json={"code": CODE}).status_code == 404
    response = client.post("/wx/login", json={"code": CODE})
    assert response.status_code == 200 and mocked.call_count == 1
    assert mocked.last_request.timeout == 2.5
    assert json.loads(response.get_data())["data"]["openid"] == OPENID
