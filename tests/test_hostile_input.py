"""Property tests: whatever the login body or the skey header holds, no 500, no session, no call."""
from __future__ import annotations

import json
import re

import requests_mock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
