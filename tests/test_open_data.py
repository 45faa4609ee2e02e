"""current_wx_user.decrypt / check_signature / check_session_key, through protected routes."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from typing import Any, Dict

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from flask import Flask, request

from flask_wxlogin import DecryptError, WxLoginError, current_wx_user, login_required
from flask_wxlogin.crypto import decrypt, login_state_signature

from .conftest import APPID, OPENID, login, make_app

# WeChat's published decryption sample (the demo in their "open data" docs).
SAMPLE_APPID = "wx4f4bc4dec97d474b"
SAMPLE_SESSION_KEY = "tiihtNczf5v6AKRyjwEUhQ=="
SAMPLE_ENCRYPTED = (
    "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+"
    "3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6"
    "/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs"
    "8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns"
    "/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG"
    "20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew=="
)
SAMPLE_IV = "r7BXXKkLb8qrSNn05n0qiA=="
# WeChat's published rawData signature sample.
SAMPLE_SIGNED_KEY = "HyVFkGl5F5OQWJZZaNzBBg=="
SAMPLE_RAW_DATA = (
    '{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong",'
    '"country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQx'
    'KARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0"}'
)
SAMPLE_SIGNATURE = "75e81ceda165f4ffa64f4068af58c64b8f54b88c"

KEY_1 = base64.b64encode(b"first-key-16byte").decode()
KEY_2 = base64.b64encode(b"newer-key-16byte").decode()
CHECKSESSION = "https://api.weixin.qq.com/wxa/checksession"
STABLE_TOKEN = "https://api.weixin.qq.com/cgi-bin/stable_token"


def encrypt(data: Any, session_key: str, iv: bytes = b"0123456789abcdef", raw: bool = False) -> Dict[str, str]:
    """What WeChat sends: ``data`` (compact JSON unless ``raw``) AES-128-CBC encrypted, PKCS#7 padded."""
    plain = data if raw else json.dumps(data, separators=(",", ":")).encode()
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(base64.b64decode(session_key)), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    return {"encryptedData": base64.b64encode(ciphertext).decode(), "iv": base64.b64encode(iv).decode()}


def user_info(appid: str = APPID) -> Dict[str, Any]:
    return {"openId": OPENID, "nickName": "Band", "watermark": {"appid": appid, "timestamp": 1700000000}}


def open_data_app(**config: Any) -> Flask:
    app = make_app(**config)

    @app.post("/decrypt")
    @login_required
    def decrypt_view() -> Dict[str, Any]:
        body = request.get_json()
        return {"data": current_wx_user.decrypt(body.get("encryptedData"), body.get("iv"))}

    @app.post("/check-signature")
    @login_required
    def check_signature_view() -> Dict[str, Any]:
        body = request.get_json()
        return {"ok": current_wx_user.check_signature(body["rawData"], body["signature"])}

    @app.get("/check-session-key")
    @login_required
    def check_session_key_view() -> Dict[str, Any]:
        return {"valid": current_wx_user.check_session_key()}

    return app


@pytest.fixture
def app() -> Flask:
    return open_data_app()


def login_with_key(client: Any, wechat: Any, session_key: str, code: str = "code-1") -> Dict[str, str]:
    wechat.ok(session_key=session_key)
    return {"X-WX-Skey": login(client, code=code)}


# -- decrypt ------------------------------------------------------------------

def test_wechats_published_sample_decrypts():
    data = decrypt(SAMPLE_ENCRYPTED, SAMPLE_IV, [SAMPLE_SESSION_KEY], SAMPLE_APPID, "oGZUI0egBJY1zhBYw2KhdUfwVJJE")

    assert data["openId"] == "oGZUI0egBJY1zhBYw2KhdUfwVJJE"
    assert data["unionId"] == "ocMvos6NjeKLIBqg5Mr9QjxrP1FA"
    assert data["nickName"] == "Band"
    assert data["watermark"] == {"timestamp": 1477314187, "appid": SAMPLE_APPID}


def test_wechats_published_sample_decrypts_in_a_session(wechat):
    app = open_data_app(WXLOGIN_APPID=SAMPLE_APPID)
    client = app.test_client()
    headers = login_with_key(client, wechat, SAMPLE_SESSION_KEY)

    response = client.post("/decrypt", headers=headers, json={"encryptedData": SAMPLE_ENCRYPTED, "iv": SAMPLE_IV})

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["data"]["openId"] == "oGZUI0egBJY1zhBYw2KhdUfwVJJE"


def test_data_we_encrypt_with_the_sessions_key_decrypts(client, wechat):
    headers = login_with_key(client, wechat, KEY_1)
    payload = {**user_info(), "phoneNumber": "13800000000", "名字": "测试"}

    response = client.post("/decrypt", headers=headers, json=encrypt(payload, KEY_1, os.urandom(16)))

    assert response.status_code == 200
    assert response.get_json()["data"] == payload


def test_data_for_the_newer_key_decrypts_in_the_older_session(client, wechat):
    """Two logins of one user: WeChat now encrypts with the second key; the first session still reads it."""
    first = login_with_key(client, wechat, KEY_1, code="device-a")
    second = login_with_key(client, wechat, KEY_2, code="device-b")
    sealed = encrypt(user_info(), KEY_2)

    in_first = client.post("/decrypt", headers=first, json=sealed)
    in_second = client.post("/decrypt", headers=second, json=sealed)

    assert in_first.status_code == 200, in_first.get_json()
    assert in_first.get_json()["data"] == user_info()
    assert in_second.status_code == 200


def test_the_newest_key_is_per_user(client, wechat):
    """Another user's newer key is no candidate: their data stays unreadable here."""
    mine = login_with_key(client, wechat, KEY_1, code="me")
    wechat.ok(openid="oSomeoneElse000000000000001", session_key=KEY_2)
    login(client, code="someone-else")

    response = client.post("/decrypt", headers=mine, json=encrypt(user_info(), KEY_2))

    assert response.status_code == 400
    assert response.get_json()["error"] == "session_key_stale"


def test_the_newest_key_is_read_only_when_the_sessions_own_key_fails(app, client, wechat, monkeypatch):
    headers = login_with_key(client, wechat, KEY_1)
    reads = []
    store = app.extensions["wxlogin"]._states[app].main.store
    original = store.newest_session_key
    monkeypatch.setattr(store, "newest_session_key", lambda openid: reads.append(openid) or original(openid))

    assert client.post("/decrypt", headers=headers, json=encrypt(user_info(), KEY_1)).status_code == 200
    assert reads == []
    assert client.post("/decrypt", headers=headers, json=encrypt(user_info(), KEY_2)).status_code == 400
    assert reads == [OPENID]


@pytest.mark.parametrize("mutate, error", [
    pytest.param(lambda d: {**d, "encryptedData": "not base64!"}, "data_malformed", id="data-not-base64"),
    pytest.param(lambda d: {**d, "iv": "***"}, "data_malformed", id="iv-not-base64"),
    pytest.param(lambda d: {**d, "iv": base64.b64encode(b"short").decode()}, "data_malformed", id="iv-too-short"),
    pytest.param(lambda d: {**d, "iv": base64.b64encode(b"x" * 32).decode()}, "data_malformed", id="iv-too-long"),
    pytest.param(lambda d: {**d, "encryptedData": base64.b64encode(b"x" * 20).decode()}, "data_malformed",
                 id="data-not-whole-blocks"),
    pytest.param(lambda d: {**d, "encryptedData": ""}, "data_malformed", id="data-empty"),
    pytest.param(lambda d: {**d, "encryptedData": None}, "data_malformed", id="data-missing"),
    pytest.param(lambda d: {**d, "encryptedData": ["a"]}, "data_malformed", id="data-not-a-string"),
    pytest.param(lambda d: {**d, "encryptedData": "QUFB" * 20000}, "data_malformed", id="data-huge"),
    pytest.param(lambda d: {**d, "iv": base64.b64encode(b"fedcba9876543210").decode()}, "session_key_stale",
                 id="tampered-iv"),
    pytest.param(lambda d: {**d, "encryptedData": _flip_last_block(d["encryptedData"])}, "session_key_stale",
                 id="tampered-ciphertext"),
    pytest.param(lambda d: encrypt(user_info(), KEY_2), "session_key_stale", id="another-key"),
    pytest.param(lambda d: encrypt(b"not json at all", KEY_1, raw=True), "session_key_stale", id="not-json"),
    pytest.param(lambda d: encrypt([1, 2, 3], KEY_1), "session_key_stale", id="json-not-an-object"),
    pytest.param(lambda d: encrypt(b"\xff\xfe{}", KEY_1, raw=True), "session_key_stale", id="not-utf8"),
    pytest.param(lambda d: encrypt(user_info("wxanotherapp00000"), KEY_1), "watermark_mismatch", id="other-app"),
    pytest.param(lambda d: encrypt({"openId": OPENID}, KEY_1), "watermark_mismatch", id="no-watermark"),
    pytest.param(lambda d: encrypt({"watermark": "x"}, KEY_1), "watermark_mismatch", id="watermark-not-object"),
])
def test_every_decrypt_failure_is_a_400_in_the_house_shape(client, wechat, mutate, error):
    headers = login_with_key(client, wechat, KEY_1)

    response = client.post("/decrypt", headers=headers, json=mutate(encrypt(user_info(), KEY_1)))

    assert response.status_code == 400
    body = response.get_json()
    assert (body["code"], body["error"]) == ("400", error)
    assert KEY_1 not in response.get_data(as_text=True)
    assert base64.b64decode(KEY_1).decode() not in response.get_data(as_text=True)


def test_a_forged_iv_cannot_change_the_openid(client, wechat):
    """CBC lets the client rewrite the first block through the iv: the openid check catches it."""
    headers = login_with_key(client, wechat, KEY_1)
    iv = b"0123456789abcdef"
    sealed = encrypt(user_info(), KEY_1, iv)
    first_block = json.dumps(user_info(), separators=(",", ":")).encode()[:16]  # '{"openId":"oGZUI'
    wanted = first_block[:-4] + b"EVIL"
    forged_iv = bytes(a ^ b ^ c for a, b, c in zip(iv, first_block, wanted))

    response = client.post("/decrypt", headers=headers, json={**sealed, "iv": base64.b64encode(forged_iv).decode()})

    assert (response.status_code, response.get_json()["error"]) == (400, "openid_mismatch")


def test_data_without_an_openid_is_not_refused_for_it(client, wechat):
    headers = login_with_key(client, wechat, KEY_1)
    phone = {"phoneNumber": "13800000000", "watermark": {"appid": APPID, "timestamp": 1}}

    response = client.post("/decrypt", headers=headers, json=encrypt(phone, KEY_1))

    assert response.get_json()["data"] == phone


def test_a_session_key_that_is_not_16_bytes_decrypts_nothing(client, wechat):
    """AES-128 only: a 32-byte "session_key" from a bad answer is not used as an AES-256 key."""
    long_key = base64.b64encode(b"k" * 32).decode()
    headers = login_with_key(client, wechat, long_key)

    response = client.post("/decrypt", headers=headers, json=encrypt(user_info(), long_key))

    assert (response.status_code, response.get_json()["error"]) == (400, "session_key_stale")


def _flip_last_block(encrypted: str) -> str:
    raw = bytearray(base64.b64decode(encrypted))
    raw[-1] ^= 0x55
    return base64.b64encode(bytes(raw)).decode()


def test_bad_padding_is_stale_not_a_crash():
    """Garbage with the wrong key fails the PKCS#7 check: one error type, no key in it."""
    sealed = encrypt(user_info(), KEY_1)
    with pytest.raises(DecryptError) as caught:
        decrypt(sealed["encryptedData"], sealed["iv"], [KEY_2], APPID, OPENID)

    assert caught.value.error == "session_key_stale"
    assert isinstance(caught.value, WxLoginError)
    assert KEY_2 not in str(caught.value) and caught.value.__context__ is None


def test_anonymous_user_cannot_decrypt(client):
    app = client.application

    @app.post("/optional-decrypt")
    def optional() -> Dict[str, Any]:
        return {"data": current_wx_user.decrypt("a", "b")}

    response = client.post("/optional-decrypt")

    assert response.status_code == 401
    assert response.get_json()["error"] == "skey_missing"


# -- check_signature ------------------------------------------------------------

def test_wechats_published_signature_sample_checks(client, wechat):
    headers = login_with_key(client, wechat, SAMPLE_SIGNED_KEY)

    good = client.post("/check-signature", headers=headers,
                       json={"rawData": SAMPLE_RAW_DATA, "signature": SAMPLE_SIGNATURE})
    upper = client.post("/check-signature", headers=headers,
                        json={"rawData": SAMPLE_RAW_DATA, "signature": SAMPLE_SIGNATURE.upper()})

    assert good.get_json() == {"ok": True}
    assert upper.get_json() == {"ok": True}


@pytest.mark.parametrize("raw_data, signature", [
    pytest.param(SAMPLE_RAW_DATA + " ", SAMPLE_SIGNATURE, id="raw-data-changed"),
    pytest.param(SAMPLE_RAW_DATA, SAMPLE_SIGNATURE[:-1] + "d", id="signature-changed"),
    pytest.param(SAMPLE_RAW_DATA, "", id="signature-empty"),
    pytest.param(SAMPLE_RAW_DATA, "签名", id="signature-not-ascii"),
    pytest.param(SAMPLE_RAW_DATA, hashlib.sha1(SAMPLE_RAW_DATA.encode()).hexdigest(), id="no-key-in-hash"),
    pytest.param("\ud800", SAMPLE_SIGNATURE, id="lone-surrogate"),
    pytest.param(["not", "a", "string"], SAMPLE_SIGNATURE, id="raw-data-not-a-string"),
])
def test_a_wrong_signature_does_not_check(client, wechat, raw_data, signature):
    headers = login_with_key(client, wechat, SAMPLE_SIGNED_KEY)

    response = client.post("/check-signature", headers=headers, json={"rawData": raw_data, "signature": signature})

    assert response.get_json() == {"ok": False}


def test_signature_made_with_the_newer_key_checks_in_the_older_session(client, wechat):
    first = login_with_key(client, wechat, KEY_1, code="device-a")
    login_with_key(client, wechat, KEY_2, code="device-b")
    signature = hashlib.sha1((SAMPLE_RAW_DATA + KEY_2).encode()).hexdigest()

    response = client.post("/check-signature", headers=first, json={"rawData": SAMPLE_RAW_DATA, "signature": signature})

    assert response.get_json() == {"ok": True}


def test_signatures_are_compared_in_constant_time(monkeypatch):
    from flask_wxlogin import crypto

    compared = []
    monkeypatch.setattr(crypto.hmac, "compare_digest", lambda a, b: compared.append((a, b)) or a == b)

    assert crypto.raw_data_signature_ok(SAMPLE_RAW_DATA, SAMPLE_SIGNATURE, [SAMPLE_SIGNED_KEY])
    assert compared == [(SAMPLE_SIGNATURE.encode(), SAMPLE_SIGNATURE.encode())]


# -- check_session_key ------------------------------------------------------------

def test_login_state_signature_matches_wechats_documented_example():
    assert login_state_signature("o0q0otL8aEzpcZL/FT9WsQ==", '{"foo":"bar"}') == (
        "654571f79995b2ce1e149e53c0a33dc39c0a74090db514261454e8dbe432aa0b"
    )


@pytest.mark.parametrize("answer, valid", [
    pytest.param({"errcode": 0, "errmsg": "ok"}, True, id="valid"),
    pytest.param({"errcode": 87009, "errmsg": "invalid signature"}, False, id="invalid-signature"),
])
def test_check_session_key_asks_wechat_with_an_hmac_of_the_key(client, wechat, requests_mock, answer, valid):
    headers = login_with_key(client, wechat, KEY_1)
    requests_mock.post(STABLE_TOKEN, json={"access_token": "token-1", "expires_in": 7200})
    check = requests_mock.get(CHECKSESSION, json=answer)

    response = client.get("/check-session-key", headers=headers)

    assert response.get_json() == {"valid": valid}
    assert check.last_request.qs == {
        "access_token": ["token-1"], "openid": [OPENID], "sig_method": ["hmac_sha256"],
        "signature": [hmac.new(KEY_1.encode(), b"", hashlib.sha256).hexdigest()],
    }


@pytest.mark.parametrize("answer, status, error", [
    pytest.param({"errcode": -1, "errmsg": "busy"}, 503, "wechat_busy", id="busy"),
    pytest.param({"errcode": 99999, "errmsg": "what"}, 502, "wechat_error", id="unknown"),
    pytest.param({"status_code": 500, "text": "oops"}, 502, "wechat_bad_response", id="http-500"),
])
def test_check_session_key_fails_clearly_when_wechat_does(client, wechat, requests_mock, answer, status, error):
    headers = login_with_key(client, wechat, KEY_1)
    requests_mock.post(STABLE_TOKEN, json={"access_token": "token-1", "expires_in": 7200})
    kwargs = answer if "status_code" in answer else {"json": answer}
    requests_mock.get(CHECKSESSION, **kwargs)

    response = client.get("/check-session-key", headers=headers)

    assert (response.status_code, response.get_json()["error"]) == (status, error)
