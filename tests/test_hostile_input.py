"""Property tests: whatever the login body, the skey header or the open data holds: no 500, no session, no call."""
from __future__ import annotations

import base64
import json
import re
from typing import Any, Dict

import requests_mock
from flask import request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_wxlogin import current_wx_user, login_required

from .conftest import API, OPENID, SESSION_KEY, make_app

APP = make_app()
VALID_CODE = re.compile(r"[A-Za-z0-9_-]{1,128}")
CONTENT_TYPES = st.sampled_from([
    "application/json", "application/json; charset=utf-8", "text/plain", "application/octet-stream",
    "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "", "application/xml",
])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
BODIES = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.builds(lambda c: json.dumps({"code": c}).encode(), JSON_VALUES),
    st.builds(lambda c: json.dumps({"code": c}).encode(), st.text(max_size=200)),
    st.binary(min_size=4097, max_size=6000),
)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(body=BODIES, content_type=CONTENT_TYPES)
def test_no_login_body_causes_a_500_or_an_outbound_call_for_a_bad_code(body, content_type):
    with requests_mock.Mocker() as wechat:
        wechat.get(API, json={"openid": OPENID, "session_key": SESSION_KEY})
        response = APP.test_client().post("/auth/login", data=body, content_type=content_type)
    assert response.status_code in (200, 400, 413), response.get_data()
    payload = response.get_json()
    if response.status_code == 200:
        code = wechat.last_request.qs["js_code"][0]
        assert VALID_CODE.fullmatch(code) and wechat.call_count == 1
        assert payload["data"]["openid"] == OPENID
    else:
        assert wechat.call_count == 0
        assert payload["code"] == str(response.status_code) and payload["error"]
        assert "skey" not in response.get_data(as_text=True)


SKEYS = st.one_of(
    st.text(max_size=400),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    st.from_regex(r"[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}", fullmatch=True),
    st.text(alphabet="abcXYZ019-_.", max_size=120),
)


@SETTINGS
@given(skey=SKEYS)
def test_no_skey_header_causes_a_500_or_touches_the_store(skey):
    store = _store()
    reads = []
    real = store.backend.get
    store.backend.get = lambda key: reads.append(key) or real(key)
    try:
        response = APP.test_client().get("/me", environ_base={"HTTP_X_WX_SKEY": skey})
    finally:
        del store.backend.get
    assert response.status_code == 401
    assert response.get_json()["error"] in ("skey_missing", "skey_invalid")
    assert reads == []


def _store():
    with APP.app_context():
        return APP.extensions["wxlogin"].store


# -- open data: whatever encryptedData, iv, rawData and signature hold -----------------

OPEN_DATA_APP = make_app()


@OPEN_DATA_APP.post("/decrypt")
@login_required
def _decrypt() -> Dict[str, Any]:
    body = request.get_json()
    return {"data": current_wx_user.decrypt(body.get("encryptedData"), body.get("iv"))}


@OPEN_DATA_APP.post("/check-signature")
@login_required
def _check_signature() -> Dict[str, Any]:
    body = request.get_json()
    return {"ok": current_wx_user.check_signature(body.get("rawData"), body.get("signature"))}


def _open_data_skey() -> str:
    with requests_mock.Mocker() as wechat:
        wechat.get(API, json={"openid": OPENID, "session_key": SESSION_KEY})
        response = OPEN_DATA_APP.test_client().post("/auth/login", json={"code": "hostile-open-data"})
    return response.get_json()["data"]["skey"]


OPEN_DATA_SKEY = _open_data_skey()
BASE64ISH = st.one_of(
    st.text(max_size=120),
    st.binary(max_size=90).map(lambda b: base64.b64encode(b).decode()),
    st.text(alphabet="ABCDEFGHabcdefgh0123456789+/=", max_size=64),
)
OPEN_DATA_VALUES = st.one_of(BASE64ISH, JSON_VALUES)


@SETTINGS
@given(encrypted_data=OPEN_DATA_VALUES, iv=OPEN_DATA_VALUES)
def test_no_encrypted_data_or_iv_causes_a_500_or_decrypts(encrypted_data, iv):
    response = OPEN_DATA_APP.test_client().post(
        "/decrypt", json={"encryptedData": encrypted_data, "iv": iv}, headers={"X-WX-Skey": OPEN_DATA_SKEY}
    )
    assert response.status_code == 400, response.get_data()
    assert response.get_json()["error"] in ("data_malformed", "session_key_stale", "watermark_mismatch")
    assert SESSION_KEY not in response.get_data(as_text=True)


@SETTINGS
@given(raw_data=OPEN_DATA_VALUES, signature=OPEN_DATA_VALUES)
def test_no_raw_data_or_signature_causes_a_500_or_checks(raw_data, signature):
    response = OPEN_DATA_APP.test_client().post(
        "/check-signature", json={"rawData": raw_data, "signature": signature}, headers={"X-WX-Skey": OPEN_DATA_SKEY}
    )
    assert response.status_code == 200, response.get_data()
    assert response.get_json() == {"ok": False}
