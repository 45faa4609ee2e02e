"""Several mini programs on one app: WXLOGIN_MINI_PROGRAMS, a route per program, nothing mixed."""
from __future__ import annotations

from typing import Any, Dict

import pytest
from flask import Flask

from flask_wxlogin import BadLoginRequest, ConfigurationError, current_wx_user, login_required

from .conftest import APPID, APPSECRET, CODE, OPENID, SESSION_KEY, make_app
from .test_open_data import KEY_1, encrypt, user_info

STAFF_APPID = "wxstaff0000000001"
STAFF_SECRET = "staff-appsecret-5c1d"
STAFF = {"staff": {"appid": STAFF_APPID, "secret": STAFF_SECRET}}
STABLE_TOKEN = "https://api.weixin.qq.com/cgi-bin/stable_token"


def two_program_app(**config: Any) -> Flask:
    app = make_app(WXLOGIN_MINI_PROGRAMS=STAFF, **config)

    @app.get("/staff/me")
    @login_required(program="staff")
    def staff_me() -> Dict[str, Any]:
        return {"openid": current_wx_user.openid, "appid": current_wx_user.appid}

    @app.get("/main/me")
    @login_required()
    def main_me() -> Dict[str, Any]:
        return {"openid": current_wx_user.openid, "appid": current_wx_user.appid}

    @app.post("/staff/decrypt")
    @login_required(program="staff")
    def staff_decrypt() -> Dict[str, Any]:
        from flask import request

        return current_wx_user.decrypt(request.json["encryptedData"], request.json["iv"])

    return app


@pytest.fixture(params=["embedded", "redis"])
def app(request: Any) -> Flask:
    if request.param == "embedded":
        return two_program_app()
    return two_program_app(CACHE_TYPE="RedisCache", CACHE_REDIS_URL=request.getfixturevalue("redis_url"),
                           WXLOGIN_KEY_PREFIX=request.getfixturevalue("redis_prefix"))


def skey_from(response: Any) -> Dict[str, str]:
    assert response.status_code == 200, response.get_json()
    return {"X-WX-Skey": response.get_json()["data"]["skey"]}


def test_each_login_route_uses_its_own_appid_and_secret(client, wechat):
    client.post("/auth/staff/login", json={"code": CODE})
    staff_query = wechat.last_query
    client.post("/auth/login", json={"code": CODE})
    main_query = wechat.last_query

    assert (staff_query["appid"], staff_query["secret"]) == ([STAFF_APPID], [STAFF_SECRET])
    assert (main_query["appid"], main_query["secret"]) == ([APPID], [APPSECRET])


def test_a_skey_works_only_on_its_own_programs_routes(client, wechat):
    staff = skey_from(client.post("/auth/staff/login", json={"code": CODE}))
    main = skey_from(client.post("/auth/login", json={"code": CODE}))

    assert client.get("/staff/me", headers=staff).get_json() == {"openid": OPENID, "appid": STAFF_APPID}
    assert client.get("/main/me", headers=main).get_json() == {"openid": OPENID, "appid": APPID}
    for path, headers in [("/main/me", staff), ("/me", staff), ("/staff/me", main)]:
        response = client.get(path, headers=headers)
        assert response.status_code == 401, path
        assert response.get_json()["error"] == "skey_invalid"


def test_logout_routes_are_per_program(client, wechat):
    staff = skey_from(client.post("/auth/staff/login", json={"code": CODE}))

    wrong = client.post("/auth/logout", headers=staff)
    right = client.post("/auth/staff/logout", headers=staff)

    assert (wrong.status_code, wrong.get_json()["error"]) == (401, "skey_invalid")
    assert right.status_code == 200
    assert client.get("/staff/me", headers=staff).status_code == 401


def test_sessions_keys_and_indexes_live_under_the_programs_prefix(app, client, wechat):
    skey_from(client.post("/auth/staff/login", json={"code": CODE}))
    prefix = app.config["WXLOGIN_KEY_PREFIX"]

    with app.app_context():
        state = app.extensions["wxlogin"]._states[app]
        staff_store, main_store = state.programs["staff"].store, state.main.store
        assert staff_store.key_prefix == prefix + "staff:"
        assert staff_store.newest_session_key(OPENID) == SESSION_KEY
        assert main_store.newest_session_key(OPENID) is None
        assert staff_store.user_key(OPENID) == f"{prefix}staff:{OPENID}"
        assert main_store.backend.fields(f"{prefix}{OPENID}") == {}
        assert len(staff_store.sessions(OPENID)) == 1


def test_logout_all_ends_one_programs_sessions_only(app, client, wechat):
    staff = skey_from(client.post("/auth/staff/login", json={"code": CODE}))
    main = skey_from(client.post("/auth/login", json={"code": CODE}))

    result = app.test_cli_runner().invoke(args=["wxlogin", "logout-all", OPENID, "--program", "staff"])

    assert result.exit_code == 0 and "ended 1 session(s)" in result.output
    assert client.get("/staff/me", headers=staff).status_code == 401
    assert client.get("/main/me", headers=main).status_code == 200


def test_access_tokens_are_per_appid(app, requests_mock):
    def token_for(request: Any, context: Any) -> Dict[str, Any]:
        return {"access_token": "token-of-" + request.json()["appid"], "expires_in": 7200}

    endpoint = requests_mock.post(STABLE_TOKEN, json=token_for)

    with app.app_context():
        wxlogin = app.extensions["wxlogin"]
        tokens = [wxlogin.access_token(), wxlogin.access_token("staff"), wxlogin.access_token("staff")]
        prefix = app.config["WXLOGIN_KEY_PREFIX"]
        backend = wxlogin.store.backend
        cached = [backend.get(f"{prefix}access_token:{{{APPID}}}"), backend.get(f"{prefix}staff:access_token:{{{STAFF_APPID}}}")]

    assert tokens == [f"token-of-{APPID}", f"token-of-{STAFF_APPID}", f"token-of-{STAFF_APPID}"]
    assert endpoint.call_count == 2
    assert [v.decode() if isinstance(v, bytes) else v for v in cached] == tokens[:2]


def test_decrypt_checks_the_watermark_against_the_sessions_program(client, wechat):
    wechat.ok(session_key=KEY_1)
    staff = skey_from(client.post("/auth/staff/login", json={"code": CODE}))

    own = client.post("/staff/decrypt", headers=staff, json=encrypt(user_info(STAFF_APPID), KEY_1))
    mains = client.post("/staff/decrypt", headers=staff, json=encrypt(user_info(APPID), KEY_1))

    assert own.status_code == 200
    assert (mains.status_code, mains.get_json()["error"]) == (400, "watermark_mismatch")


def test_the_main_program_answers_under_its_name_too(client, wechat):
    main = skey_from(client.post("/auth/default/login", json={"code": CODE}))

    assert client.get("/me", headers=main).status_code == 200


@pytest.mark.parametrize("path", ["/auth/shop/login", "/auth/shop/logout", "/auth/STAFF/login"])
def test_an_unknown_program_is_a_404_before_any_call(client, wechat, path):
    response = client.post(path, json={"code": CODE})

    assert (response.status_code, response.get_json()["error"]) == (404, "mini_program_unknown")
    assert wechat.calls == 0


def test_a_route_for_an_unconfigured_program_fails_clearly(wechat):
    app = make_app()

    @app.get("/typo")
    @login_required(program="staf")
    def typo() -> Dict[str, Any]:
        return {}

    response = app.test_client().get("/typo", headers={"X-WX-Skey": "x.y"})

    assert (response.status_code, response.get_json()["error"]) == (404, "mini_program_unknown")


def test_other_methods_on_an_unknown_programs_routes_are_404_not_405(client, wechat):
    response = client.get("/auth/shop/login")

    assert (response.status_code, response.get_json()["error"]) == (404, "mini_program_unknown")
    assert client.get("/auth/staff/login").status_code == 405


def test_the_404_does_not_echo_the_name(client, wechat):
    response = client.post("/auth/" + "x" * 3000 + "/login", json={"code": CODE})

    assert response.status_code == 404
    assert "x" * 40 not in response.get_data(as_text=True)


def test_programs_are_read_from_the_config_at_request_time(wechat):
    """As in 0.1, app.config is read per request: credentials can rotate, programs can be added."""
    app = make_app()
    client = app.test_client()
    app.config["WXLOGIN_SECRET"] = "rotated-appsecret"
    client.post("/auth/login", json={"code": CODE})
    assert wechat.last_query["secret"] == ["rotated-appsecret"]

    app.config["WXLOGIN_MINI_PROGRAMS"] = STAFF
    staff = skey_from(client.post("/auth/staff/login", json={"code": CODE}))
    assert wechat.last_query["appid"] == [STAFF_APPID]
    assert client.post("/auth/staff/logout", headers=staff).status_code == 200

    app.config["WXLOGIN_MINI_PROGRAMS"] = {}
    assert client.post("/auth/staff/login", json={"code": CODE}).status_code == 404


@pytest.mark.parametrize("programs, complaint", [
    pytest.param([("staff", STAFF_APPID)], "must be a dict", id="not-a-dict"),
    pytest.param({"default": {"appid": STAFF_APPID, "secret": "s"}}, "not 'default'", id="reserved-name"),
    pytest.param({"Staff App": {"appid": STAFF_APPID, "secret": "s"}}, "a name is", id="bad-name"),
    pytest.param({"staff": {"appid": STAFF_APPID}}, "'appid' and 'secret'", id="no-secret"),
    pytest.param({"staff": {"appid": "", "secret": "s"}}, "'appid' and 'secret'", id="empty-appid"),
    pytest.param({"staff": "wxstaff"}, "'appid' and 'secret'", id="not-a-mapping"),
    pytest.param({"staff": {"appid": APPID, "secret": "s"}}, "its own appid", id="same-appid-as-main"),
    pytest.param({"a": {"appid": STAFF_APPID, "secret": "s"}, "b": {"appid": STAFF_APPID, "secret": "t"}},
                 "its own appid", id="same-appid-twice"),
])
def test_a_bad_mini_program_config_is_refused_at_init(programs, complaint):
    with pytest.raises(ConfigurationError) as caught:
        make_app(WXLOGIN_MINI_PROGRAMS=programs)

    assert complaint in str(caught.value)


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()


@pytest.mark.parametrize("broken", [
    pytest.param({"staff": "wxstaff"}, id="entry-not-a-dict"),
    pytest.param({"staff": {"secret": "s"}}, id="no-appid"),
    pytest.param({"staff": {"appid": 7, "secret": "s"}}, id="appid-not-a-string"),
    pytest.param(["staff"], id="not-a-dict"),
])
def test_a_program_broken_at_run_time_is_404_not_500(wechat, broken):
    app = two_program_app()
    client = app.test_client()
    staff = skey_from(client.post("/auth/staff/login", json={"code": CODE}))
    app.config["WXLOGIN_MINI_PROGRAMS"] = broken

    responses = [client.post("/auth/staff/login", json={"code": CODE}), client.get("/staff/me", headers=staff)]

    assert [(r.status_code, r.get_json()["error"]) for r in responses] == [(404, "mini_program_unknown")] * 2


def test_a_program_removed_while_its_session_is_in_use_is_404_not_500(wechat):
    app = two_program_app()
    client = app.test_client()
    staff = skey_from(client.post("/auth/staff/login", json={"code": CODE}))
    with app.test_request_context():
        store = app.extensions["wxlogin"]._state().program("staff").store
    app.config["WXLOGIN_MINI_PROGRAMS"] = {}

    with app.test_request_context(), pytest.raises(BadLoginRequest) as caught:
        store.load(staff["X-WX-Skey"].rpartition(".")[0])

    assert (caught.value.status, caught.value.error) == (404, "mini_program_unknown")
