"""wxlogin.access_token() and phone_number(): one shared token, one refresh, one retry."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List

import pytest
from flask import Flask

from flask_wxlogin.access_token import cache_ttl

from .conftest import APPID, APPSECRET, make_app

WECHAT = "https://api.weixin.qq.com"
STABLE_TOKEN = WECHAT + "/cgi-bin/stable_token"
PHONE = WECHAT + "/wxa/business/getuserphonenumber"
PHONE_INFO = {"phoneNumber": "+86 13800000000", "purePhoneNumber": "13800000000", "countryCode": "86"}


@pytest.fixture(params=["embedded", "redis"])
def token_app(request: Any) -> Flask:
    """An app with a /phone route, on the embedded cache or on the real Redis."""
    config: Dict[str, Any] = {}
    if request.param == "redis":
        config = dict(CACHE_TYPE="RedisCache", CACHE_REDIS_URL=request.getfixturevalue("redis_url"),
                      WXLOGIN_KEY_PREFIX=request.getfixturevalue("redis_prefix"))
    app = make_app(**config)

    @app.post("/phone")
    def phone() -> Dict[str, Any]:
        return {"code": "200", "data": app.extensions["wxlogin"].phone_number("phone-code-1")}

    return app


def token_key(app: Flask) -> str:
    return f"{app.config['WXLOGIN_KEY_PREFIX']}access_token:{{{APPID}}}"


def cached(app: Flask, key: str) -> Any:
    with app.app_context():
        value = app.extensions["wxlogin"].store.backend.get(key)
    return value.decode() if isinstance(value, bytes) else value


def access_token(app: Flask) -> str:
    with app.app_context():
        return app.extensions["wxlogin"].access_token()


def all_at_once(call: Callable[[], Any], callers: int = 20) -> List[Any]:
    """``call()`` from ``callers`` threads released together; their results."""
    start = threading.Barrier(callers)
    results: List[Any] = []

    def caller() -> None:
        start.wait()
        results.append(call())

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return results


def phone_answer(valid_tokens: List[str], calls: List[str]) -> Any:
    """getuserphonenumber: the number for a valid token, 40001 for any other."""
    def answer(request: Any, context: Any) -> Dict[str, Any]:
        token = request.qs["access_token"][0]
        calls.append(token)
        if token not in valid_tokens:
            return {"errcode": 40001, "errmsg": "invalid credential"}
        return {"errcode": 0, "errmsg": "ok", "phone_info": {**PHONE_INFO, "watermark": {"appid": APPID}}}
    return answer


def test_the_token_comes_from_stable_token_never_forced(token_app, requests_mock):
    endpoint = requests_mock.post(STABLE_TOKEN, json={"access_token": "token-1", "expires_in": 7200})

    assert access_token(token_app) == "token-1"
    assert endpoint.call_count == 1
    assert endpoint.last_request.json() == {
        "grant_type": "client_credential", "appid": APPID, "secret": APPSECRET, "force_refresh": False,
    }
    assert endpoint.last_request.qs == {}  # the appsecret is in the body, not the URL
    assert [r.url.split("?")[0] for r in requests_mock.request_history] == [STABLE_TOKEN]


def test_the_token_is_cached_under_a_key_with_the_appid(token_app, requests_mock):
    endpoint = requests_mock.post(STABLE_TOKEN, json={"access_token": "token-1", "expires_in": 7200})

    tokens = [access_token(token_app) for _ in range(5)]

    assert tokens == ["token-1"] * 5
    assert endpoint.call_count == 1
    assert cached(token_app, token_key(token_app)) == "token-1"


def test_the_token_expires_from_redis_five_minutes_early(requests_mock, redis_url, redis_prefix, redis_db):
    app = make_app(CACHE_TYPE="RedisCache", CACHE_REDIS_URL=redis_url, WXLOGIN_KEY_PREFIX=redis_prefix)
    requests_mock.post(STABLE_TOKEN, json={"access_token": "token-1", "expires_in": 7200})

    access_token(app)

    assert 6890 <= redis_db.ttl(token_key(app)) <= 6900
    assert not redis_db.exists(token_key(app) + ":lock")


@pytest.mark.parametrize("expires_in, ttl", [(7200, 6900), (600, 300), (30, 15), (1, 1)])
def test_cache_ttl_keeps_a_safety_margin(expires_in, ttl):
    assert cache_ttl(expires_in) == ttl


def test_twenty_concurrent_first_callers_cause_one_fetch(token_app, requests_mock):
    def slow_token(request: Any, context: Any) -> Dict[str, Any]:
        time.sleep(0.3)  # every other caller arrives while this fetch is in flight
        return {"access_token": "token-1", "expires_in": 7200}

    endpoint = requests_mock.post(STABLE_TOKEN, json=slow_token)

    results = all_at_once(lambda: access_token(token_app))

    assert results == ["token-1"] * 20
    assert endpoint.call_count == 1


def test_a_rejected_token_is_dropped_refreshed_and_the_call_retried_once(token_app, requests_mock):
    tokens = requests_mock.post(STABLE_TOKEN, [
        {"json": {"access_token": "token-old", "expires_in": 7200}},
        {"json": {"access_token": "token-new", "expires_in": 7200}},
    ])
    calls: List[str] = []
    requests_mock.post(PHONE, json=phone_answer(["token-new"], calls))

    response = token_app.test_client().post("/phone")

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["data"] == PHONE_INFO
    assert calls == ["token-old", "token-new"]
    assert tokens.call_count == 2
    assert cached(token_app, token_key(token_app)) == "token-new"


def test_a_newer_token_from_another_worker_is_not_dropped(token_app, requests_mock):
    """The failed token is dropped only if the cache still holds it."""
    requests_mock.post(STABLE_TOKEN, json={"access_token": "token-old", "expires_in": 7200})
    access_token(token_app)
    tokens = requests_mock.post(STABLE_TOKEN, json={"access_token": "token-from-us", "expires_in": 7200})
    calls: List[str] = []
    answer = phone_answer(["token-other-worker"], calls)

    def rejected_while_another_worker_refreshes(request: Any, context: Any) -> Dict[str, Any]:
        with token_app.app_context():
            token_app.extensions["wxlogin"].store.backend.set(token_key(token_app), "token-other-worker", 600)
        return answer(request, context)

    requests_mock.post(PHONE, json=rejected_while_another_worker_refreshes)

    response = token_app.test_client().post("/phone")

    assert response.status_code == 200, response.get_json()
    assert calls == ["token-old", "token-other-worker"]
    assert tokens.call_count == 0
    assert cached(token_app, token_key(token_app)) == "token-other-worker"


def test_a_token_rejected_twice_is_not_retried_again(token_app, requests_mock):
    tokens = requests_mock.post(STABLE_TOKEN, json={"access_token": "token-bad", "expires_in": 7200})
    calls: List[str] = []
    requests_mock.post(PHONE, json=phone_answer([], calls))

    response = token_app.test_client().post("/phone")

    assert response.status_code == 502
    assert response.get_json()["error"] == "access_token_rejected"
    assert len(calls) == 2 and tokens.call_count == 2


@pytest.mark.parametrize("errcode", [40001, 40014, 42001])
def test_each_invalid_token_errcode_triggers_the_refresh(token_app, requests_mock, errcode):
    requests_mock.post(STABLE_TOKEN, [
        {"json": {"access_token": "token-old", "expires_in": 7200}},
        {"json": {"access_token": "token-new", "expires_in": 7200}},
    ])
    phone = requests_mock.post(PHONE, [
        {"json": {"errcode": errcode, "errmsg": "token"}},
        {"json": {"errcode": 0, "phone_info": PHONE_INFO}},
    ])

    assert token_app.test_client().post("/phone").status_code == 200
    assert [r.qs["access_token"] for r in phone.request_history] == [["token-old"], ["token-new"]]


def test_other_errors_are_not_retried(token_app, requests_mock):
    tokens = requests_mock.post(STABLE_TOKEN, json={"access_token": "token-1", "expires_in": 7200})
    phone = requests_mock.post(PHONE, json={"errcode": -1, "errmsg": "system busy"})

    response = token_app.test_client().post("/phone")

    assert (response.status_code, response.get_json()["error"]) == (503, "wechat_busy")
    assert phone.call_count == 1 and tokens.call_count == 1


@pytest.mark.parametrize("answer, status, error", [
    pytest.param({"errcode": 40164, "errmsg": "invalid ip"}, 502, "wechat_config_rejected", id="ip-whitelist"),
    pytest.param({"errcode": 40125, "errmsg": "invalid secret"}, 502, "wechat_config_rejected", id="bad-secret"),
    pytest.param({"errcode": -1, "errmsg": "busy"}, 503, "wechat_busy", id="busy"),
    pytest.param({"errcode": 45009, "errmsg": "reach max api daily quota limit"}, 503, "wechat_quota_exceeded",
                 id="daily-quota"),
    pytest.param({"access_token": "", "expires_in": 7200}, 502, "wechat_bad_response", id="empty-token"),
    pytest.param({"access_token": "t", "expires_in": "7200"}, 502, "wechat_bad_response", id="expires-not-int"),
    pytest.param({"access_token": "bad token&x=1", "expires_in": 7200}, 502, "wechat_bad_response",
                 id="token-odd-chars"),
])
def test_a_failed_token_fetch_fails_clearly_and_frees_the_lock(token_app, requests_mock, answer, status, error):
    requests_mock.post(STABLE_TOKEN, json=answer)

    response = token_app.test_client().post("/phone")

    assert (response.status_code, response.get_json()["error"]) == (status, error)
    assert cached(token_app, token_key(token_app) + ":lock") is None
    assert cached(token_app, token_key(token_app)) is None
    assert "Retry-After" in response.headers


def test_a_failed_fetch_is_shared_not_repeated_by_every_waiting_caller(token_app, requests_mock):
    def busy(request: Any, context: Any) -> Dict[str, Any]:
        time.sleep(0.3)  # the others arrive and wait meanwhile
        return {"errcode": -1, "errmsg": "system busy"}

    endpoint = requests_mock.post(STABLE_TOKEN, json=busy)

    errors = all_at_once(lambda: token_app.test_client().post("/phone").get_json()["error"])

    assert errors == ["wechat_busy"] * 20
    assert endpoint.call_count == 1


def test_after_a_failure_the_next_fetch_waits_out_the_backoff(token_app, requests_mock, monkeypatch):
    from flask_wxlogin import access_token as module

    monkeypatch.setattr(module, "FAILURE_SECONDS", 1)
    endpoint = requests_mock.post(STABLE_TOKEN, [
        {"json": {"errcode": 40164, "errmsg": "invalid ip"}},
        {"json": {"access_token": "token-1", "expires_in": 7200}},
    ])
    requests_mock.post(PHONE, json={"errcode": 0, "phone_info": PHONE_INFO})
    client = token_app.test_client()

    statuses = [client.post("/phone").status_code, client.post("/phone").status_code]
    time.sleep(1.1)
    statuses.append(client.post("/phone").status_code)

    assert statuses == [502, 502, 200]
    assert endpoint.call_count == 2


def test_a_lock_held_elsewhere_makes_callers_wait_then_503(token_app, requests_mock):
    endpoint = requests_mock.post(STABLE_TOKEN, json={"access_token": "token-1", "expires_in": 7200})
    token_app.config["WXLOGIN_HTTP_TIMEOUT"] = 0.5  # callers wait ceil(0.5) + 1 = 2 s
    with token_app.app_context():
        token_app.extensions["wxlogin"].store.backend.add(token_key(token_app) + ":lock", "someone-else", 60)

    started = time.monotonic()
    response = token_app.test_client().post("/phone")
    waited = time.monotonic() - started

    assert (response.status_code, response.get_json()["error"]) == (503, "access_token_unavailable")
    assert 1.9 <= waited <= 3.0
    assert endpoint.call_count == 0


def test_a_lock_left_by_a_dead_holder_expires_and_the_next_caller_fetches(token_app, requests_mock):
    endpoint = requests_mock.post(STABLE_TOKEN, json={"access_token": "token-1", "expires_in": 7200})
    requests_mock.post(PHONE, json={"errcode": 0, "phone_info": PHONE_INFO})
    with token_app.app_context():
        token_app.extensions["wxlogin"].store.backend.add(token_key(token_app) + ":lock", "dead-worker", 1)

    response = token_app.test_client().post("/phone")

    assert response.status_code == 200
    assert endpoint.call_count == 1


def test_a_token_that_arrives_while_waiting_is_used(token_app, requests_mock):
    endpoint = requests_mock.post(STABLE_TOKEN, json={"access_token": "token-ours", "expires_in": 7200})
    with token_app.app_context():
        backend = token_app.extensions["wxlogin"].store.backend
        backend.add(token_key(token_app) + ":lock", "other-worker", 60)
    threading.Timer(0.3, lambda: backend.set(token_key(token_app), "token-theirs", 600)).start()

    assert access_token(token_app) == "token-theirs"
    assert endpoint.call_count == 0


# -- phone numbers --------------------------------------------------------------------

def test_phone_number_returns_phone_info_without_the_watermark(token_app, requests_mock):
    requests_mock.post(STABLE_TOKEN, json={"access_token": "token-1", "expires_in": 7200})
    phone = requests_mock.post(PHONE, json={"errcode": 0, "errmsg": "ok", "phone_info": {
        **PHONE_INFO, "watermark": {"appid": APPID, "timestamp": 1}}})

    response = token_app.test_client().post("/phone")

    assert response.get_json() == {"code": "200", "data": PHONE_INFO}
    assert phone.last_request.qs == {"access_token": ["token-1"]}
    assert phone.last_request.json() == {"code": "phone-code-1"}


@pytest.mark.parametrize("answer, status, error", [
    pytest.param({"errcode": 40029, "errmsg": "invalid code"}, 400, "phone_code_invalid", id="code-invalid"),
    pytest.param({"errcode": 40163, "errmsg": "code been used"}, 400, "phone_code_used", id="code-used"),
    pytest.param({"errcode": -1, "errmsg": "system error"}, 503, "wechat_busy", id="busy"),
    pytest.param({"errcode": 45011, "errmsg": "api minute-quota reach limit"}, 429, "wechat_rate_limited",
                 id="rate-limited"),
    pytest.param({"errcode": 40013, "errmsg": "invalid appid"}, 502, "wechat_config_rejected", id="bad-appid"),
    pytest.param({"errcode": 99999, "errmsg": "what"}, 502, "wechat_error", id="unknown"),
    pytest.param({"errcode": 0, "errmsg": "ok"}, 502, "wechat_bad_response", id="no-phone-info"),
    pytest.param({"errcode": 0, "phone_info": {"phoneNumber": 138}}, 502, "wechat_bad_response",
                 id="number-not-a-string"),
])
def test_phone_number_errcodes_map_to_the_house_shape(token_app, requests_mock, answer, status, error):
    requests_mock.post(STABLE_TOKEN, json={"access_token": "token-1", "expires_in": 7200})
    requests_mock.post(PHONE, json=answer)

    response = token_app.test_client().post("/phone")

    body = response.get_json()
    assert (response.status_code, body["code"], body["error"]) == (status, str(status), error)
    assert body.get("errcode") == (answer["errcode"] or None)


@pytest.mark.parametrize("code, error", [
    ("", "code_missing"), (None, "code_missing"), ("a&b", "code_malformed"), ("a b", "code_malformed"),
    ("%00", "code_malformed"), ("x" * 129, "code_too_long"), (7, "code_malformed"),
])
def test_a_malformed_phone_code_is_refused_before_any_call(requests_mock, code, error):
    app = make_app()

    @app.post("/phone-raw")
    def phone_raw() -> Dict[str, Any]:
        return app.extensions["wxlogin"].phone_number(code)

    response = app.test_client().post("/phone-raw")

    assert (response.status_code, response.get_json()["error"]) == (400, error)
    assert requests_mock.call_count == 0
