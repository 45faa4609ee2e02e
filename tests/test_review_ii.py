"""Hardening II (issue 10): one reproduction per finding of the outside review, item by item.

Item 2 (malformed bodies under a real gunicorn) lives in ``test_gunicorn_bodies.py``.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from typing import Any, Dict, List

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st

from flask_wxlogin import ConfigurationError, DecryptError, WeChatError, current_wx_user, login_required
from flask_wxlogin.crypto import decrypt
from flask_wxlogin.redact import redact
from flask_wxlogin.store import SessionStore
from flask_wxlogin.testing import FakeWeChat
from flask_wxlogin.tokens import _SIGNATURE, SESSION_ID, SkeySigner, new_session_id, salt_for

from .conftest import APPID, CODE, OPENID, SECRET_KEY, login, make_app

WECHAT = "https://api.weixin.qq.com"
STABLE_TOKEN = WECHAT + "/cgi-bin/stable_token"
PHONE = WECHAT + "/wxa/business/getuserphonenumber"
STAFF = {"staff": {"appid": "wxstaff00000000001", "secret": "staff-secret"}}


def _error(response: Any) -> tuple:
    body = response.get_json()
    assert body is not None, response.get_data()
    assert body["code"] == str(response.status_code), body
    return response.status_code, body["error"]


# -- 1. odd errcode strings ----------------------------------------------------------

@pytest.mark.parametrize("errcode", [
    "\u00b2", "-\u00b9", "1" * 5000, "\u0663", "+1", " 1", "1 ", "12345678901", "-", "", "0x1", 1.0, None, [1],
])
def test_item1_an_odd_errcode_is_a_bad_response_not_a_500(client, wechat, errcode):
    wechat.answer(json={"errcode": errcode, "errmsg": "odd"})

    response = client.post("/auth/login", json={"code": CODE})

    assert _error(response) == (502, "wechat_bad_response")


@pytest.mark.parametrize("errcode, expected", [("40029", (401, "code_invalid")), ("-1", (503, "wechat_busy")),
                                               (40163, (401, "code_used"))])
def test_item1_errcodes_as_ascii_digits_or_ints_still_map(client, wechat, errcode, expected):
    wechat.answer(json={"errcode": errcode, "errmsg": "x"})

    assert _error(client.post("/auth/login", json={"code": CODE})) == expected


def test_item1_an_odd_errcode_from_stable_token_writes_the_failure_marker(requests_mock):
    app = make_app()
    endpoint = requests_mock.post(STABLE_TOKEN, json={"errcode": "\u00b2", "errmsg": "odd"})

    assert _token_errors(app, 3) == [(502, "wechat_bad_response")] * 3
    assert endpoint.call_count == 1


def _token_errors(app: Flask, calls: int) -> List[tuple]:
    """``(status, error)`` of each of ``calls`` calls to ``access_token()``, each of which must fail."""
    errors = []
    for _ in range(calls):
        with app.app_context(), pytest.raises(WeChatError) as caught:
            app.extensions["wxlogin"].access_token()
        errors.append((caught.value.status, caught.value.error))
    return errors


# -- 2. the body limit (the gunicorn cases are in test_gunicorn_bodies.py) ------------------

@pytest.mark.parametrize("size, status", [(4096, 200), (4097, 413)])
def test_item2_the_body_limit_is_4096_bytes_exactly(client, wechat, size, status):
    body = json.dumps({"code": CODE}).encode()
    body = body[:-1] + b" " * (size - len(body)) + b"}"

    response = client.post("/auth/login", data=body, content_type="application/json")

    assert response.status_code == status, response.get_json()


# -- 3. OPTIONS under login_required -------------------------------------------------

def test_item3_options_answers_without_running_the_view(wechat):
    app = make_app(WXLOGIN_MINI_PROGRAMS=STAFF)
    ran: List[Any] = []

    @app.route("/cors", methods=["GET", "OPTIONS"])
    @login_required(program="staff")
    def cors() -> Dict[str, Any]:
        ran.append(current_wx_user.openid)
        return {"openid": current_wx_user.openid}

    client = app.test_client()
    main_skey = login(client)

    response = client.options("/cors", headers={"X-WX-Skey": main_skey})

    assert response.status_code == 200
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}
    assert response.get_data() == b"" and ran == []
    assert _error(client.get("/cors", headers={"X-WX-Skey": main_skey})) == (401, "skey_invalid")


# -- 4. SECRET_KEY_FALLBACKS and the session-id format ---------------------------------

@pytest.mark.parametrize("fallbacks", [
    "old-key", b"old-key", [""], [b""], ["ok", None], ("ok", 3), {"old-key"}, 5, [["nested"]],
])
def test_item4_bad_secret_key_fallbacks_are_refused_at_init(fallbacks):
    with pytest.raises(ConfigurationError, match="SECRET_KEY_FALLBACKS"):
        make_app(SECRET_KEY_FALLBACKS=fallbacks)


@pytest.mark.parametrize("fallbacks", [None, [], ["old-key"], (b"old-key", "older")])
def test_item4_good_secret_key_fallbacks_are_accepted(fallbacks):
    make_app(SECRET_KEY_FALLBACKS=fallbacks)


@pytest.mark.parametrize("session_id", [
    "u:" + OPENID, "k:" + APPID + ":" + OPENID, "staff:" + new_session_id(OPENID), "access_token:{" + APPID + "}",
    new_session_id(OPENID) + "x", new_session_id(OPENID)[:-1], "", "a" * 21 + "=",
])
def test_item4_a_validly_signed_skey_naming_another_key_reads_no_store(client, monkeypatch, session_id):
    loads: List[str] = []
    real_load = SessionStore.load
    monkeypatch.setattr(SessionStore, "load", lambda self, sid: loads.append(sid) or real_load(self, sid))
    skey = SkeySigner(salt_for(APPID)).sign(session_id, SECRET_KEY)

    response = client.get("/me", headers={"X-WX-Skey": skey})

    assert _error(response) == (401, "skey_invalid")
    assert loads == []


def test_item4_the_session_id_format_matches_what_new_session_id_makes():
    assert all(SESSION_ID.fullmatch(new_session_id(OPENID)) for _ in range(200))


# -- 5. decrypt's first block ------------------------------------------------------------

KEY = base64.b64encode(b"first-key-16byte").decode()
IV = b"0123456789abcdef"


def _seal(plain: bytes) -> Dict[str, str]:
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(base64.b64decode(KEY)), modes.CBC(IV)).encryptor()
    sealed = encryptor.update(padder.update(plain) + padder.finalize()) + encryptor.finalize()
    return {"encrypted_data": base64.b64encode(sealed).decode(), "iv": base64.b64encode(IV).decode()}


def _compact(data: Dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _forge_first_block(sealed: Dict[str, str], plain: bytes, wanted: bytes) -> Dict[str, str]:
    """The reviewer's repro: rewrite the first 16 plaintext bytes through the iv."""
    assert len(wanted) == 16
    forged = bytes(a ^ b ^ c for a, b, c in zip(IV, plain[:16], wanted))
    return {**sealed, "iv": base64.b64encode(forged).decode()}


USER_INFO = {"openId": OPENID, "nickName": "Band", "watermark": {"appid": APPID, "timestamp": 1}}


@pytest.mark.parametrize("wanted, error", [
    (b'{"openid":"oGZUI', "data_tampered"),        # renamed key: skipped the openId check before
    (b'{"xpenId":"oGZUI', "data_tampered"),
    (b'{"openId":"EVIL!', "openid_mismatch"),      # changed openid
    (b'{"nick":"EVIL!!!', "data_tampered"),        # a dropped openId, attacker's characters
    (b'{"a":1,"b":"EVIL', "data_tampered"),
])
def test_item5_a_forged_iv_cannot_rewrite_the_first_block(wanted, error):
    plain = _compact(USER_INFO)
    forged = _forge_first_block(_seal(plain), plain, wanted)

    with pytest.raises(DecryptError) as caught:
        decrypt(forged["encrypted_data"], forged["iv"], [KEY], APPID, OPENID)

    assert caught.value.error == error


@pytest.mark.parametrize("data", [
    USER_INFO,
    {**USER_INFO, "unionId": "ocMvos6NjeKLIBqg5Mr9QjxrP1FA"},
    {"phoneNumber": "13800000000", "purePhoneNumber": "13800000000", "countryCode": "86",
     "watermark": {"appid": APPID, "timestamp": 1}},
    {"stepInfoList": [{"timestamp": 1, "step": 100}], "watermark": {"appid": APPID, "timestamp": 1}},
    {"openGId": "tGxxFAk12bCdEfGhI", "watermark": {"appid": APPID, "timestamp": 1}},
])
def test_item5_each_kind_of_open_data_as_wechat_writes_it_decrypts(data):
    sealed = _seal(_compact(data))

    assert decrypt(sealed["encrypted_data"], sealed["iv"], [KEY], APPID, OPENID) == data


def test_item5_what_a_client_still_controls_is_four_characters_of_a_group_id():
    """Documented: after '{"openGId":"' come four characters of a group id we cannot know."""
    plain = _compact(USER_INFO)
    forged = _forge_first_block(_seal(plain), plain, b'{"openGId":"EVIL')

    data = decrypt(forged["encrypted_data"], forged["iv"], [KEY], APPID, OPENID)

    assert data["openGId"] == "EVIL" + OPENID[5:] and "openId" not in data


def test_item5_spaced_json_is_not_what_wechat_writes():
    sealed = _seal(json.dumps(USER_INFO).encode())  # '{"openId": "oGZU': a space WeChat never writes

    with pytest.raises(DecryptError) as caught:
        decrypt(sealed["encrypted_data"], sealed["iv"], [KEY], APPID, OPENID)

    assert caught.value.error == "data_tampered"


# -- 6. the canonical skey ---------------------------------------------------------------

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _variants(skey: str) -> Dict[str, str]:
    session_id, _, signature = skey.rpartition(".")
    last = _ALPHABET.index(signature[-1])
    return {
        "appended junk": skey + "!",
        "appended dot": skey + ".",
        "inner junk": f"{session_id}.{signature[:20]}!{signature[20:]}",
        "inner space": f"{session_id}.{signature[:20]} {signature[20:]}",
        "padding": skey + "=",
        "double padding": skey + "==",
        "non-ASCII": f"{session_id}.{signature[:20]}\u00e9{signature[20:]}",
        "flipped low bit": f"{session_id}.{signature[:-1]}{_ALPHABET[last ^ 1]}",
        "flipped second bit": f"{session_id}.{signature[:-1]}{_ALPHABET[last ^ 2]}",
        "standard alphabet": skey.replace("-", "+").replace("_", "/") if set("-_") & set(signature) else skey + "+",
    }


@pytest.mark.parametrize("variant", list(_variants("a" * 22 + "." + "A" * 43)))
def test_item6_only_the_skey_as_issued_authenticates(client, wechat, variant):
    skey = login(client)
    assert client.get("/me", headers={"X-WX-Skey": skey}).status_code == 200

    response = client.get("/me", environ_base={"HTTP_X_WX_SKEY": _variants(skey)[variant]})

    assert _error(response) == (401, "skey_invalid")


@settings(max_examples=500, deadline=None)
@given(signature=st.text(alphabet=_ALPHABET, min_size=43, max_size=43)
       | st.text(alphabet=_ALPHABET + "=+/.!", min_size=40, max_size=46))
def test_item6_the_signature_form_is_exactly_one_that_re_encodes_to_itself(signature):
    """The cheap check (a regex) accepts exactly the signatures that decode and re-encode unchanged."""
    try:
        decoded = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        round_trips = len(decoded) == 32 and base64.urlsafe_b64encode(decoded).rstrip(b"=").decode() == signature
    except ValueError:
        round_trips = False

    assert bool(_SIGNATURE.fullmatch(signature)) == round_trips


# -- 7. hostile answers from WeChat ------------------------------------------------------

@pytest.mark.parametrize("expires_in", [10 ** 20, 2 ** 63, 2 ** 31, 86401, 0, -5, "7200", 7200.5])
def test_item7_an_absurd_expires_in_is_a_bad_response_with_a_failure_marker(
    redis_app, requests_mock, caplog, expires_in
):
    endpoint = requests_mock.post(STABLE_TOKEN, json={"access_token": "token-1", "expires_in": expires_in})

    assert _token_errors(redis_app, 2) == [(502, "wechat_bad_response")] * 2
    assert endpoint.call_count == 1
    assert not [r for r in caplog.records if "store" in r.getMessage().lower()]


def test_item7_a_day_long_expires_in_is_still_accepted(redis_app, requests_mock):
    requests_mock.post(STABLE_TOKEN, json={"access_token": "token-1", "expires_in": 86400})

    with redis_app.app_context():
        assert redis_app.extensions["wxlogin"].access_token() == "token-1"


GOOD_PHONE = {"phoneNumber": "+86 13800000000", "purePhoneNumber": "13800000000", "countryCode": "86"}


@pytest.mark.parametrize("field, value", [
    ("purePhoneNumber", {"x": [1]}), ("purePhoneNumber", "\u202e123"), ("purePhoneNumber", 13800000000),
    ("purePhoneNumber", "1" * 40), ("purePhoneNumber", ""), ("purePhoneNumber", "138 0000"),
    ("purePhoneNumber", None), ("countryCode", {"x": [1]}), ("countryCode", "8a"), ("countryCode", "+"),
    ("countryCode", "++86"), ("countryCode", 86), ("countryCode", "\u0668\u0666"), ("countryCode", "86\n"),
    ("phoneNumber", "\u202e13800000000"), ("phoneNumber", "<b>1</b>"),
])
def test_item7_odd_phone_fields_are_a_bad_response(requests_mock, field, value):
    app = make_app()
    requests_mock.post(STABLE_TOKEN, json={"access_token": "token-1", "expires_in": 7200})
    requests_mock.post(PHONE, json={"errcode": 0, "phone_info": {**GOOD_PHONE, field: value}})

    with app.app_context(), pytest.raises(WeChatError) as caught:
        app.extensions["wxlogin"].phone_number("phone-code-1")

    assert (caught.value.status, caught.value.error) == (502, "wechat_bad_response")


@pytest.mark.parametrize("country_code", ["86", "+86", "1", "+1264"])
def test_item7_phone_fields_as_wechat_writes_them_pass(requests_mock, country_code):
    app = make_app()
    requests_mock.post(STABLE_TOKEN, json={"access_token": "token-1", "expires_in": 7200})
    requests_mock.post(PHONE, json={"errcode": 0, "phone_info": {**GOOD_PHONE, "countryCode": country_code}})

    with app.app_context():
        assert app.extensions["wxlogin"].phone_number("phone-code-1")["countryCode"] == country_code


# -- 8. values derived from secrets in logs ----------------------------------------------

def test_item8_redact_scrubs_the_checksession_signature():
    line = 'GET /wxa/checksession?access_token=t&signature=9c1f0a&openid=o&sig_method=hmac_sha256 HTTP/1.1'

    assert redact(line) == 'GET /wxa/checksession?access_token=***&signature=***&openid=o&sig_method=hmac_sha256 HTTP/1.1'


def test_item8_checksession_logs_no_signature_of_the_session_key(caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(logging.getLogger("urllib3"), "propagate", True)
    with FakeWeChat(appid=APPID, secret="appsecret-review-ii") as fake:
        app = make_app(WXLOGIN_SECRET=fake.secret, WXLOGIN_API_BASE=fake.url)

        @app.get("/check")
        @login_required
        def check() -> Dict[str, Any]:
            return {"valid": current_wx_user.check_session_key()}

        client = app.test_client()
        skey = login(client)
        with app.test_request_context(headers={"X-WX-Skey": skey}):
            session_key = current_wx_user.session_key
        response = client.get("/check", headers={"X-WX-Skey": skey})

    assert response.status_code == 200, response.get_json()
    signature = hmac.new(session_key.encode(), b"", hashlib.sha256).hexdigest()
    lines = [r.getMessage() for r in caplog.records if "checksession" in r.getMessage()]
    assert lines, "urllib3 logged no checksession line: the check would be vacuous"
    assert not [line for line in lines if signature in line]


# -- 9. methods and paths outside the blueprint's list ------------------------------------

PATHS = ["/auth/login", "/auth/logout", "/auth/staff/login", "/auth/staff/logout", "/auth/default/login"]
OTHER_METHODS = ["PROPFIND", "FOO", "GET", "PUT", "PATCH", "DELETE", "TRACE", "CONNECT"]


@pytest.fixture
def staff_client():
    return make_app(WXLOGIN_MINI_PROGRAMS=STAFF).test_client()


@pytest.mark.parametrize("method", OTHER_METHODS)
@pytest.mark.parametrize("path", PATHS)
def test_item9_every_other_method_is_a_json_405(staff_client, path, method):
    response = staff_client.open(path, method=method)

    assert _error(response) == (405, "method_not_allowed")
    assert response.headers["Allow"] == "POST, OPTIONS"


@pytest.mark.parametrize("path", PATHS)
def test_item9_head_is_a_405_with_the_same_allow(staff_client, path):
    response = staff_client.head(path)

    assert response.status_code == 405 and response.headers["Allow"] == "POST, OPTIONS"


@pytest.mark.parametrize("path", PATHS)
def test_item9_options_advertises_post_and_options_only(staff_client, path):
    response = staff_client.options(path)

    assert response.status_code == 200 and response.headers["Allow"] == "POST, OPTIONS"
    assert response.get_data() == b""


@pytest.mark.parametrize("method", ["POST", "OPTIONS", "HEAD"] + OTHER_METHODS)
@pytest.mark.parametrize("path", ["/auth/nope/login", "/auth/nope/logout", "/auth/Staff/login"])
def test_item9_an_unknown_program_is_404_for_every_method(staff_client, wechat, path, method):
    response = staff_client.open(path, method=method)

    assert response.status_code == 404
    if method != "HEAD":
        assert _error(response) == (404, "mini_program_unknown")
    assert wechat.calls == 0


@pytest.mark.parametrize("prefix", ["/api/wx", "/api/wx/", "/"])
def test_item9_the_other_method_rules_follow_the_url_prefix(wechat, prefix):
    client = make_app(WXLOGIN_URL_PREFIX=prefix).test_client()
    base = prefix.rstrip("/")

    assert _error(client.open(base + "/login", method="PROPFIND")) == (405, "method_not_allowed")
    assert client.options(base + "/logout").headers["Allow"] == "POST, OPTIONS"
    assert client.post(base + "/login", json={"code": CODE}).status_code == 200


# -- 10. bare JSON scalars -----------------------------------------------------------------

@pytest.mark.parametrize("body, error", [
    (b"null", "code_missing"), (b" null ", "code_missing"), (b"true", "body_invalid"), (b"false", "body_invalid"),
    (b"-1", "body_invalid"), (b"-0", "body_invalid"), (b"1.5", "body_invalid"), (b"1e5", "body_invalid"),
    (b"NaN", "body_invalid"), (b"Infinity", "body_invalid"),
    (b"[]", "body_invalid"), (b'["code"]', "body_invalid"), (b'{"code": null}', "code_missing"),
])
@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_item10_a_json_body_that_is_not_an_object_or_string_is_never_sent(client, wechat, body, error, content_type):
    response = client.post("/auth/login", data=body, content_type=content_type)

    assert _error(response) == (400, error)
    assert wechat.calls == 0


@pytest.mark.parametrize("body", [CODE.encode(), json.dumps(CODE).encode(), json.dumps({"code": CODE}).encode()])
def test_item10_a_code_as_a_bare_body_a_json_string_or_an_object_still_logs_in(client, wechat, body):
    response = client.post("/auth/login", data=body, content_type="application/json")

    assert response.status_code == 200 and wechat.last_query["js_code"] == [CODE]


# -- 11. example_app.py: set-but-empty variables: test_example_app.py::test_set_but_empty_settings_are_refused_not_the_demo
