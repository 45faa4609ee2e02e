"""FakeWeChat behaves like WeChat where a test would notice."""
from __future__ import annotations

import hashlib
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict

import pytest
import requests

from flask_wxlogin import fakewechat
from flask_wxlogin.testing import FakeWeChat

from .conftest import make_app

APPID = "wxfaketests000001"
APPSECRET = "fake-tests-appsecret-77a1"


def exchange(fake: FakeWeChat, code: str, appid: str = APPID, secret: str = APPSECRET) -> Dict[str, Any]:
    response = requests.get(fake.url + "/sns/jscode2session", timeout=5, params={
        "appid": appid, "secret": secret, "js_code": code, "grant_type": "authorization_code"})
    assert response.status_code == 200
    return response.json()


def login(app: Any, code: str) -> Any:
    return app.test_client().post("/auth/login", json={"code": code})


def test_a_code_works_once_and_a_second_use_is_40163(fake):
    first = exchange(fake, "code-once-1")
    second = exchange(fake, "code-once-1")

    assert "openid" in first and "errcode" not in first
    assert second["errcode"] == 40163


def test_a_used_code_answers_401_code_used_through_the_login_route(fake):
    app = make_app(**fake.config)

    assert login(app, "route-code").status_code == 200
    again = login(app, "route-code")

    assert again.status_code == 401
    assert again.get_json()["error"] == "code_used"


def test_twenty_concurrent_uses_of_one_code_log_in_exactly_once(fake):
    barrier = threading.Barrier(20)

    def use(_: int) -> Dict[str, Any]:
        barrier.wait(5)
        return exchange(fake, "raced-code")

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(use, range(20)))

    assert sum("openid" in answer for answer in answers) == 1
    assert sorted(answer.get("errcode", 0) for answer in answers) == [0] + [40163] * 19


def test_codes_minted_for_one_openid_are_distinct_and_log_in_that_user(fake):
    codes = [fake.code_for("oAlice0001", unionid="uAlice0001") for _ in range(3)]
    answers = [exchange(fake, code) for code in codes]

    assert len(set(codes)) == 3
    assert {(a["openid"], a["unionid"]) for a in answers} == {("oAlice0001", "uAlice0001")}
    assert len({a["session_key"] for a in answers}) == 3
    assert exchange(fake, codes[0])["errcode"] == 40163


def test_code_for_without_an_openid_is_a_new_user_each_time(fake):
    openids = [exchange(fake, fake.code_for())["openid"] for _ in range(3)]

    assert len(set(openids)) == 3
    assert all(openid.startswith("o") and len(openid) == 28 for openid in openids)


def test_other_codes_keep_the_openid_derived_from_the_code(fake):
    expected = "demo-" + hashlib.sha256(f"{APPID}:plain-code".encode()).hexdigest()[:24]

    assert exchange(fake, "plain-code")["openid"] == expected
    assert "unionid" not in exchange(fake, "plain-code-2")


@pytest.mark.parametrize("appid, secret, code, errcode", [
    pytest.param("wxother", "wrong", "!bad", 40013, id="appid-first"),
    pytest.param(APPID, "wrong", "!bad", 40125, id="then-appsecret"),
    pytest.param(APPID, APPSECRET, "!bad", 40029, id="then-a-malformed-code"),
    pytest.param(APPID, APPSECRET, "x" * 129, 40029, id="then-a-too-long-code"),
    pytest.param(APPID, APPSECRET, "", 41008, id="then-a-missing-code"),
])
def test_checks_come_in_wechats_order(fake, appid, secret, code, errcode):
    assert exchange(fake, code, appid, secret)["errcode"] == errcode


def test_a_refused_credential_does_not_use_up_the_code(fake):
    assert exchange(fake, "kept-code", secret="wrong")["errcode"] == 40125
    assert "openid" in exchange(fake, "kept-code")


@pytest.mark.parametrize("errcode, status, error", [
    (40029, 401, "code_invalid"),
    (40163, 401, "code_used"),
    (45011, 429, "wechat_rate_limited"),
    (40226, 403, "user_blocked"),
    (-1, 503, "wechat_busy"),
])
def test_fail_next_scripts_wechats_errors_once_without_using_the_code(fake, errcode, status, error):
    app = make_app(**fake.config)
    fake.fail_next(errcode)

    failed = login(app, "scripted-code")
    retried = login(app, "scripted-code")

    assert (failed.status_code, failed.get_json()["error"], failed.get_json()["errcode"]) == (status, error, errcode)
    assert retried.status_code == 200


def test_fail_next_times_on_the_phone_path_reaches_the_token_retry(fake):
    app = make_app(**fake.config)
    fake.fail_next(40001, path=fakewechat.PHONE, times=2)

    with app.app_context():
        wxlogin = app.extensions["wxlogin"]
        with pytest.raises(Exception) as raised:
            wxlogin.phone_number("phone-code")
        number = wxlogin.phone_number("phone-code")

    assert raised.value.error == "access_token_rejected"
    assert [path for path, _ in fake.requests].count(fakewechat.PHONE) == 3
    assert number["phoneNumber"].startswith("139")


def test_fail_next_on_the_token_path(fake):
    app = make_app(**fake.config)
    fake.fail_next(45009, path=fakewechat.TOKEN)

    with app.app_context(), pytest.raises(Exception) as raised:
        app.extensions["wxlogin"].access_token()

    assert (raised.value.status, raised.value.error) == (503, "wechat_quota_exceeded")


@pytest.mark.parametrize("kwargs", [
    {"errcode": 0}, {"errcode": "40029"}, {"errcode": True},
    {"errcode": 40029, "path": "/sns/nothing"}, {"errcode": 40029, "times": 0},
])
def test_fail_next_refuses_what_it_cannot_script(fake, kwargs):
    with pytest.raises(ValueError):
        fake.fail_next(**kwargs)


def test_reset_forgets_used_codes_and_scripted_errors(fake):
    exchange(fake, "reset-code")
    fake.fail_next(-1)

    fake.reset()

    assert "openid" in exchange(fake, "reset-code")
    assert fake.calls and len(fake.calls) == 1


def test_records_keep_only_the_newest(fake, monkeypatch):
    monkeypatch.setattr(fakewechat, "MAX_RECORDS", 5)

    for i in range(8):
        exchange(fake, f"recorded-{i}")

    assert [call["js_code"] for call in fake.calls] == [f"recorded-{i}" for i in range(3, 8)]
    assert len(fake.requests) == 5


def test_used_codes_are_remembered_up_to_a_bound(fake, monkeypatch):
    monkeypatch.setattr(fakewechat, "MAX_CODES", 3)

    for i in range(4):
        exchange(fake, f"bounded-{i}")

    assert len(fake._used) == 3
    assert exchange(fake, "bounded-3")["errcode"] == 40163


def test_config_names_the_three_keys(fake):
    assert fake.config == {"WXLOGIN_APPID": APPID, "WXLOGIN_SECRET": APPSECRET, "WXLOGIN_API_BASE": fake.url}


def test_defaults_give_an_appid_and_a_random_secret():
    first, second = FakeWeChat(), FakeWeChat()
    try:
        assert first.appid == fakewechat.DEFAULT_APPID
        assert len(first.secret) == 32 and first.secret != second.secret
    finally:
        for fake in (first, second):
            fake._server.server_close()


def test_one_time_codes_can_be_turned_off_for_replayed_requests():
    with FakeWeChat(APPID, APPSECRET, one_time_codes=False) as fake:
        assert exchange(fake, "replayed")["openid"] == exchange(fake, "replayed")["openid"]


# -- reading the request body ----------------------------------------------------


def raw_request(fake: FakeWeChat, head: str, body: bytes = b"") -> bytes:
    """The status line the fake answers to ``head`` (request line and headers) and ``body``."""
    host, port = fake._server.server_address[:2]
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(head.encode() + b"\r\n\r\n" + body)
        return sock.makefile("rb").readline()


@pytest.mark.parametrize("headers", [
    pytest.param("Content-Length: -1", id="negative"),
    pytest.param("Content-Length: abc", id="not-a-number"),
    pytest.param("Content-Length: 99999999999999", id="absurd"),
    pytest.param(f"Content-Length: {fakewechat.MAX_BODY_BYTES + 1}", id="over-the-limit"),
    pytest.param("Transfer-Encoding: chunked", id="chunked"),
])
def test_a_body_length_it_will_not_read_is_400_at_once(fake, headers):
    status = raw_request(fake, f"POST /cgi-bin/stable_token HTTP/1.1\r\nHost: x\r\n{headers}")

    assert status.startswith(b"HTTP/1.1 400"), status
    assert fake.requests == []


def test_a_body_within_the_limit_is_read(fake):
    body = b'{"appid": "%s", "secret": "%s"}' % (APPID.encode(), APPSECRET.encode())
    status = raw_request(fake, f"POST /cgi-bin/stable_token HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}", body)

    assert status.startswith(b"HTTP/1.1 200"), status
    assert fake.requests == [(fakewechat.TOKEN, {"appid": APPID, "secret": APPSECRET})]


def test_a_client_that_hangs_up_before_the_answer_prints_no_traceback(fake, capfd):
    """Rough edge 9: the stub's BrokenPipeError traceback on stderr while tests pass."""
    answering, finished = threading.Event(), threading.Event()

    def late(params: Dict[str, str]) -> Any:
        answering.set()
        fake.release.wait(5)
        return 200, {"openid": "late", "session_key": "bGF0ZQ=="}

    shutdown_request = fake._server.shutdown_request

    def shutdown_and_tell(request: Any) -> None:
        shutdown_request(request)
        finished.set()

    fake.answer = late
    fake._server.shutdown_request = shutdown_and_tell  # type: ignore[method-assign]
    host, port = fake._server.server_address[:2]
    try:
        sock = socket.create_connection((host, port), timeout=5)
        sock.sendall(b"GET /sns/jscode2session?js_code=x HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answering.wait(5)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # a reset: the fake's write fails at once
        fake.release.set()
        assert finished.wait(5)
    finally:
        del fake._server.shutdown_request

    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize("appid, secret, errcode", [
    pytest.param("wxother", "wrong", 40013, id="appid-first"),
    pytest.param(APPID, "wrong", 40125, id="then-appsecret"),
])
def test_stable_token_checks_the_appid_before_the_appsecret(fake, appid, secret, errcode):
    answer = requests.post(f"{fake.url}/cgi-bin/stable_token", json={"appid": appid, "secret": secret}, timeout=5)

    assert answer.json()["errcode"] == errcode
