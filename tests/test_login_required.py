"""login_required, current_wx_user, logout, and attacks on the skey."""
from __future__ import annotations

import hashlib

import pytest
from flask import jsonify
from itsdangerous import Signer

from flask_wxlogin import Unauthorized, WxLoginError, current_wx_user, login_required, user_logged_out
from flask_wxlogin.tokens import SALT, salt_for

from .conftest import APPID, OPENID, SECRET_KEY, login, make_app


def test_protected_views_accept_the_header_and_bearer(client, wechat):
    skey = login(client)
    for headers in ({"X-WX-Skey": skey}, {"Authorization": f"Bearer {skey}"}, {"Authorization": f"bearer  {skey}"}):
        for path in ("/me", "/shop/orders", "/async-me"):
            response = client.get(path, headers=headers)
            assert response.status_code == 200, (path, headers)
            assert response.get_json()["openid"] == OPENID


def test_the_header_name_is_configurable(wechat):
    client = make_app(WXLOGIN_TOKEN_HEADER="X-Session").test_client()
    skey = login(client)
    assert client.get("/me", headers={"X-WX-Skey": skey}).status_code == 401
    assert client.get("/me", headers={"X-Session": skey}).status_code == 200


def _forge(session_id: str, key=SECRET_KEY, salt=salt_for(APPID)) -> str:
    signer = Signer(key, salt=salt, key_derivation="hmac", digest_method=hashlib.sha256)
    return signer.sign(session_id).decode()


def _junk_skeys(skey: str):
    session_id, _, signature = skey.rpartition(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    return [
        pytest.param("", "skey_missing", id="empty"),
        pytest.param("   ", "skey_missing", id="blank"),
        pytest.param(session_id, "skey_invalid", id="no-signature"),
        pytest.param(session_id + "." + flipped, "skey_invalid", id="tampered-signature"),
        pytest.param("x" + skey[1:], "skey_invalid", id="tampered-session-id"),
        pytest.param(skey[:-5], "skey_invalid", id="truncated"),
        pytest.param(skey + "A", "skey_invalid", id="extended"),
        pytest.param(_forge(session_id, key="another-apps-key"), "skey_invalid", id="foreign-key"),
        pytest.param(_forge(session_id, salt="another-salt"), "skey_invalid", id="foreign-salt"),
        pytest.param(_forge(session_id, salt=salt_for("wx00000000another")), "skey_invalid", id="foreign-appid"),
        pytest.param(_forge(session_id, salt=SALT), "skey_invalid", id="0.2-salt-without-appid"),
        pytest.param(_forge("not-a-session-we-made"), "skey_invalid", id="signed-id-of-another-format"),
        pytest.param(_forge(OPENID + "." + "A" * 22), "session_expired", id="signed-unknown-secret"),
        pytest.param("a" * 10_000, "skey_invalid", id="oversized"),
        pytest.param(skey + "." + "b" * 300, "skey_invalid", id="oversized-near-valid"),
        pytest.param("\u00e9\u00e8.\u00ff\u00fe", "skey_invalid", id="latin1-bytes"),
        pytest.param("....", "skey_invalid", id="only-separators"),
        pytest.param("\x00\x01\x02", "skey_invalid", id="control-chars"),
    ]


# The skey a parametrized junk list is derived from is made once per module.
_BASE_APP = make_app()


def _base_skey():
    import requests_mock

    with requests_mock.Mocker() as mocker:
        mocker.get("https://api.weixin.qq.com/sns/jscode2session",
                   json={"openid": OPENID, "session_key": "k" * 24})
        return login(_BASE_APP.test_client())


@pytest.mark.parametrize("junk, error", _junk_skeys(_base_skey()))
def test_junk_skeys_are_401_never_500(junk, error):
    client = _BASE_APP.test_client()
    for path in ("/me", "/shop/orders"):
        response = client.get(path, environ_base={"HTTP_X_WX_SKEY": junk})
        assert response.status_code == 401
        body = response.get_json()
        assert body == {"code": "401", "error": error, "message": body["message"]}
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_no_skey_is_401_skey_missing(client):
    response = client.get("/me")
    assert response.status_code == 401
    assert response.get_json()["error"] == "skey_missing"


def test_unicode_in_the_header_is_401(client):
    response = client.get("/me", environ_base={"HTTP_X_WX_SKEY": "\u4f60\u597d.\u4e16\u754c".encode().decode("latin-1")})
    assert response.status_code == 401


def test_options_preflight_passes_without_a_session(client):
    response = client.options("/me")
    assert response.status_code == 200


def test_secret_key_rotation_keeps_old_skeys_valid(wechat):
    old_app = make_app(SECRET_KEY="old-key")
    skey = login(old_app.test_client())
    rotated = make_app(SECRET_KEY="new-key", SECRET_KEY_FALLBACKS=["old-key"], cache=_shared_cache(old_app))
    client = rotated.test_client()
    assert client.get("/me", headers={"X-WX-Skey": skey}).status_code == 200
    dropped = make_app(SECRET_KEY="new-key", cache=_shared_cache(old_app))
    assert dropped.test_client().get("/me", headers={"X-WX-Skey": skey}).get_json()["error"] == "skey_invalid"
    new_skey = login(client)
    assert old_app.test_client().get("/me", headers={"X-WX-Skey": new_skey}).status_code == 401


def _shared_cache(app):
    (backend,) = app.extensions["cache"].values()
    return backend


def test_current_wx_user_outside_login_required(client, wechat):
    assert client.get("/whoami").get_json() == {"authenticated": False, "openid": None}
    assert client.get("/whoami", headers={"X-WX-Skey": "junk"}).get_json()["authenticated"] is False
    skey = login(client)
    assert client.get("/whoami", headers={"X-WX-Skey": skey}).get_json() == {"authenticated": True, "openid": OPENID}


def test_current_wx_user_outside_a_request_is_anonymous(app):
    with app.app_context():
        assert not current_wx_user
        assert current_wx_user.openid is None


def test_unauthorized_handler_answers_401s(app, wechat):
    @app.extensions["wxlogin"].unauthorized_handler
    def please_login(error):
        return jsonify(login_url="/auth/login", reason=error.error), 401

    client = app.test_client()
    assert client.get("/me").get_json() == {"login_url": "/auth/login", "reason": "skey_missing"}
    assert client.get("/me", headers={"X-WX-Skey": "a.b"}).get_json()["reason"] == "skey_invalid"


def test_an_app_errorhandler_overrides_ours_whenever_registered(wechat):
    from flask import Flask

    from flask_wxlogin import WxLogin

    app = Flask(__name__)
    app.config.update(SECRET_KEY="k", WXLOGIN_APPID="a", WXLOGIN_SECRET="s")
    app.register_error_handler(WxLoginError, lambda e: ({"mine": e.error}, e.status))
    WxLogin(app)

    @app.get("/p")
    @login_required
    def p():
        return "ok"

    assert app.test_client().get("/p").get_json() == {"mine": "skey_missing"}


def test_logout_ends_the_session_and_is_idempotent(client, wechat, app):
    skey = login(client)
    other = login(client)
    ended = []
    with user_logged_out.connected_to(lambda sender, user: ended.append(user.openid), app):
        for _ in range(2):
            response = client.post("/auth/logout", headers={"X-WX-Skey": skey})
            assert response.status_code == 200
            assert response.get_json() == {"code": "200", "data": {}}
    assert ended == [OPENID]
    assert client.get("/me", headers={"X-WX-Skey": skey}).get_json()["error"] == "session_expired"
    assert client.get("/me", headers={"X-WX-Skey": other}).status_code == 200


@pytest.mark.parametrize("headers, error", [({}, "skey_missing"), ({"X-WX-Skey": "forged.sig"}, "skey_invalid")])
def test_logout_without_a_valid_skey_is_401(client, headers, error):
    response = client.post("/auth/logout", headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"] == error


def test_unauthorized_is_a_wxlogin_error():
    assert issubclass(Unauthorized, WxLoginError)
    assert Unauthorized().to_dict() == {"code": "401", "error": "skey_missing", "message": Unauthorized.message}
