"""The appsecret, WeChat's session_key and SECRET_KEY reach no log record, response or exception."""
from __future__ import annotations

import logging
import socket
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple
from urllib.parse import quote, quote_plus

import pytest
from flask import Flask

from flask_wxlogin import user_login_failed
from flask_wxlogin.client import ERRCODES
from flask_wxlogin.redact import redact
from flask_wxlogin.testing import FakeWeChat
from flask_wxlogin.tokens import SkeySigner, salt_for

from .conftest import make_app

APPID = "wxsecretstest0001"
#: Only URL-unreserved characters, so the secret travels verbatim in the query string.
APPSECRET = "AppSecret-NEVER-LOG-7f3a9c1e5b2d"
SESSION_KEY = "SessKey+NEVER/LOG+5e8d1c=="
SECRET_KEY = "flask-SECRET_KEY-never-log-0c4f"
OPENID = "oSecretsTestOpenid0000000001"
CODE = "0c3Xy9Ga1SecretsTestCode00"
ACCESS_TOKEN = "ACCESS_TOKEN-never-log-93_kd8Xq2"

#: Each secret as it could appear: raw, and URL-encoded the ways requests and urllib3 write it.
NEEDLES = sorted({
    APPSECRET, SESSION_KEY, quote(SESSION_KEY, safe=""), quote_plus(SESSION_KEY), SECRET_KEY, ACCESS_TOKEN,
})

URLLIB3_LOGGERS = ("urllib3", "urllib3.connectionpool", "urllib3.util.retry", "urllib3.response")


def leaks(text: str) -> List[str]:
    return [needle for needle in NEEDLES if needle in text]


def record_texts(record: logging.LogRecord) -> Iterator[str]:
    yield record.getMessage()
    yield str(record.msg)
    yield repr(record.args)
    if record.exc_info:
        yield logging.Formatter().formatException(record.exc_info)
        yield from exception_texts(record.exc_info[1])
    if record.exc_text:
        yield record.exc_text


def exception_texts(error: Optional[BaseException]) -> Iterator[str]:
    """The message and args of ``error`` and of everything chained to it."""
    seen = set()
    pending = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield f"{type(current).__name__}: {current}"
        yield repr(current.args)
        pending += [current.__cause__, current.__context__]


def assert_no_leak(where: str, texts: Iterable[str]) -> None:
    found = [(needle, text) for text in texts for needle in leaks(text)]
    assert not found, f"secret in {where}: {found[:3]}"


@pytest.fixture
def debug_logs(caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    for name in URLLIB3_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)
    return caplog


@pytest.fixture
def failures() -> Iterator[List[BaseException]]:
    """Every error ``user_login_failed`` is sent with."""
    errors: List[BaseException] = []

    def remember(sender: Any, error: BaseException, **extra: Any) -> None:
        errors.append(error)

    user_login_failed.connect(remember)
    yield errors
    user_login_failed.disconnect(remember)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def secret_app(fake: FakeWeChat, **config: Any) -> Flask:
    settings = dict(SECRET_KEY=SECRET_KEY, WXLOGIN_APPID=APPID, WXLOGIN_SECRET=APPSECRET,
                    WXLOGIN_API_BASE=fake.url)
    settings.update(config)
    return make_app(**settings)


# -- the scenarios -----------------------------------------------------------------

Answer = Callable[[FakeWeChat], Callable[[Dict[str, str]], Tuple[int, Any]]]


def fixed(status: int, body: Any) -> Answer:
    return lambda fake: lambda params: (status, body)


def slow(fake: FakeWeChat) -> Callable[[Dict[str, str]], Tuple[int, Any]]:
    def answer(params: Dict[str, str]) -> Tuple[int, Any]:
        fake.release.wait(2)  # type: ignore[attr-defined]
        return 200, {"openid": OPENID, "session_key": SESSION_KEY}

    return answer


OK = fixed(200, {"openid": OPENID, "session_key": SESSION_KEY})
#: Stands for the URL of a port nothing listens on, chosen when the test runs.
CLOSED_PORT = "closed-port"

#: id -> (stub's answer, config, HTTP status, error, urllib3 logs the request line)
LOGIN_CASES: Dict[str, Tuple[Answer, Dict[str, Any], int, str, bool]] = {
    **{
        f"errcode{code}": (fixed(200, {"errcode": code, "errmsg": f"{error}, rid: 6650-1"}),
                           {}, status, error, True)
        for code, (status, error, _) in ERRCODES.items()
    },
    "errcode-unknown": (fixed(200, {"errcode": 99999, "errmsg": "what"}), {}, 502, "wechat_error", True),
    "http-500": (fixed(500, f"<h1>500</h1> session_key={SESSION_KEY}".encode()), {}, 502,
                 "wechat_bad_response", True),
    "non-json": (fixed(200, f"<html>session_key={SESSION_KEY}</html>".encode()), {}, 502,
                 "wechat_bad_response", True),
    "missing-openid": (fixed(200, {"session_key": SESSION_KEY}), {}, 502, "wechat_bad_response", True),
    "timeout": (slow, {"WXLOGIN_HTTP_TIMEOUT": 0.3}, 504, "wechat_timeout", False),
    "connection-refused": (OK, {"WXLOGIN_API_BASE": CLOSED_PORT}, 502, "wechat_unreachable", False),
    # Without the rate limit, which would answer 503 before WeChat is called (test_ratelimit.py).
    "redis-down": (OK, {"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": "redis://127.0.0.1:1/0",
                        "WXLOGIN_LOGIN_RATE_LIMIT": None}, 503, "session_store_unavailable", True),
}


def request_lines(caplog) -> List[str]:
    return [
        r.getMessage() for r in caplog.records
        if r.name.startswith("urllib3") and "/sns/jscode2session" in r.getMessage()
    ]


def assert_nothing_leaked(caplog, responses, errors) -> None:
    for record in caplog.records:
        assert_no_leak(f"log record {record.name}:{record.levelname}", record_texts(record))
    for response in responses:
        assert_no_leak(f"{response.request.path} body", [response.get_data(as_text=True)])
        assert_no_leak(f"{response.request.path} headers", [f"{k}: {v}" for k, v in response.headers.items()])
    for error in errors:
        assert_no_leak("exception chain", exception_texts(error))


def test_success_leaks_nothing(debug_logs, fake, failures):
    fake.answer = OK(fake)
    client = secret_app(fake).test_client()

    login = client.post("/auth/login", data=CODE, content_type="application/json")
    assert login.status_code == 200, login.get_json()
    skey = login.get_json()["data"]["skey"]
    me = client.get("/me", headers={"X-WX-Skey": skey})
    logout = client.post("/auth/logout", headers={"Authorization": f"Bearer {skey}"})

    assert me.get_json()["openid"] == OPENID and logout.status_code == 200
    assert fake.calls and fake.calls[0]["secret"] == APPSECRET
    lines = request_lines(debug_logs)
    assert lines, "urllib3 logged no request line: the leak check would be vacuous"
    assert all("secret=" in line for line in lines)
    assert failures == []
    assert_nothing_leaked(debug_logs, [login, me, logout], failures)


@pytest.mark.parametrize("case", list(LOGIN_CASES))
def test_failed_login_leaks_nothing(debug_logs, fake, failures, case):
    answer, config, status, error, logs_request_line = LOGIN_CASES[case]
    fake.answer = answer(fake)
    if config.get("WXLOGIN_API_BASE") == CLOSED_PORT:
        config = {**config, "WXLOGIN_API_BASE": f"http://127.0.0.1:{closed_port()}"}
    client = secret_app(fake, **config).test_client()

    response = client.post("/auth/login", data=CODE, content_type="application/json")

    assert (response.status_code, response.get_json()["error"]) == (status, error)
    assert [e.error for e in failures] == [error]
    urllib3_records = [r for r in debug_logs.records if r.name.startswith("urllib3")]
    assert urllib3_records, "urllib3 logged nothing: the leak check would be vacuous"
    assert bool(request_lines(debug_logs)) == logs_request_line
    assert_nothing_leaked(debug_logs, [response], failures)


REDIS_DOWN = {"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": "redis://127.0.0.1:1/0"}
#: A well-formed session id of a session that does not exist, signed as this app signs.
WELL_SIGNED = SkeySigner(salt_for(APPID)).sign("oNoSuchUser000000000000000000.AAAAAAAAAAAAAAAAAAAAAA", SECRET_KEY)
FOREIGN_KEY = SkeySigner(salt_for(APPID)).sign("oNoSuchUser000000000000000000.AAAAAAAAAAAAAAAAAAAAAA", "another-key")


@pytest.mark.parametrize(
    "config, skey, statuses",
    [
        pytest.param({}, "garbage", (401, 401), id="garbage"),
        pytest.param({}, FOREIGN_KEY, (401, 401), id="foreign-key"),
        pytest.param({}, WELL_SIGNED, (401, 200), id="no-such-session"),
        pytest.param(REDIS_DOWN, "garbage", (401, 401), id="garbage-redis-down"),
        pytest.param(REDIS_DOWN, WELL_SIGNED, (503, 503), id="redis-down"),
    ],
)
def test_rejected_skey_leaks_nothing(debug_logs, fake, failures, config, skey, statuses):
    client = secret_app(fake, **config).test_client()

    responses = [
        client.get("/me", headers={"X-WX-Skey": skey}),
        client.post("/auth/logout", headers={"Authorization": f"Bearer {skey}"}),
    ]

    assert tuple(r.status_code for r in responses) == statuses
    assert_nothing_leaked(debug_logs, responses, failures)


def test_the_leak_check_catches_an_unfiltered_urllib3_record(debug_logs, fake, monkeypatch):
    """Without flask_wxlogin.redact's filter, urllib3's request line carries the appsecret."""
    fake.answer = OK(fake)
    client = secret_app(fake).test_client()
    monkeypatch.setattr(logging.getLogger("urllib3.connectionpool"), "filters", [])

    assert client.post("/auth/login", json={"code": CODE}).status_code == 200

    assert any(APPSECRET in line for line in request_lines(debug_logs))
    with pytest.raises(AssertionError, match="secret in log record urllib3.connectionpool"):
        assert_nothing_leaked(debug_logs, [], [])


# -- redact() ---------------------------------------------------------------------

S = "S3cr3tValue-x_y.z~9"


@pytest.mark.parametrize(
    "raw, expected",
    [
        pytest.param(f"https://api.weixin.qq.com/sns/jscode2session?secret={S}&appid=wx1",
                     "https://api.weixin.qq.com/sns/jscode2session?secret=***&appid=wx1", id="first"),
        pytest.param(f"/sns/jscode2session?appid=wx1&secret={S}&grant_type=authorization_code",
                     "/sns/jscode2session?appid=wx1&secret=***&grant_type=authorization_code", id="middle"),
        pytest.param(f"/sns/jscode2session?appid=wx1&secret={S}",
                     "/sns/jscode2session?appid=wx1&secret=***", id="last"),
        pytest.param(f"/sns/jscode2session?appid=wx1&SECRET={S}&grant_type=x",
                     "/sns/jscode2session?appid=wx1&SECRET=***&grant_type=x", id="uppercase-name"),
        pytest.param(f"/sns/jscode2session?appid=wx1&Secret={S}",
                     "/sns/jscode2session?appid=wx1&Secret=***", id="mixed-case-name"),
        pytest.param(f"/path?appid=wx1&secret=ab%2Bcd%2F{S}%3D%3D&grant_type=x",
                     "/path?appid=wx1&secret=***&grant_type=x", id="encoded-value"),
        pytest.param(f"url=https%3A%2F%2Fh%2Fp%3Fappid%3Dwx1%26secret%3D{S}%26grant_type%3Dx",
                     "url=https%3A%2F%2Fh%2Fp%3Fappid%3Dwx1%26secret%3D***%26grant_type%3Dx",
                     id="url-encoded-middle"),
        pytest.param(f"next=%2Fp%3Fsecret%3D{S}%26appid%3Dwx1",
                     "next=%2Fp%3Fsecret%3D***%26appid%3Dwx1", id="url-encoded-first"),
        pytest.param(f"next=%2fp%3fappid%3dwx1%26secret%3d{S}",
                     "next=%2fp%3fappid%3dwx1%26secret%3d***", id="url-encoded-lowercase-last"),
        pytest.param(f'http://127.0.0.1:8000 "GET /sns/jscode2session?appid=wx1&secret={S}&js_code=abc '
                     'HTTP/1.1" 200 95',
                     'http://127.0.0.1:8000 "GET /sns/jscode2session?appid=wx1&secret=***&js_code=*** '
                     'HTTP/1.1" 200 95', id="urllib3-request-line"),
        pytest.param(f'https://api.weixin.qq.com:443 "GET /sns/jscode2session?appid=wx1&secret={S} '
                     'HTTP/1.1" 200 None',
                     'https://api.weixin.qq.com:443 "GET /sns/jscode2session?appid=wx1&secret=*** '
                     'HTTP/1.1" 200 None', id="request-line-secret-last"),
        pytest.param(f"Incremented Retry for (url='/sns/jscode2session?appid=wx1&secret={S}'): "
                     "Retry(total=0)",
                     "Incremented Retry for (url='/sns/jscode2session?appid=wx1&secret=***'): "
                     "Retry(total=0)", id="retry-log"),
        pytest.param(f"Max retries exceeded with url: /sns/jscode2session?appid=wx1&secret={S} "
                     "(Caused by NewConnectionError('refused'))",
                     "Max retries exceeded with url: /sns/jscode2session?appid=wx1&secret=*** "
                     "(Caused by NewConnectionError('refused'))", id="max-retries-message"),
        pytest.param(f"/cgi-bin/x?access_token={S}#frag", "/cgi-bin/x?access_token=***#frag",
                     id="access-token"),
        pytest.param(f"/a?appid=wx1;secret={S};grant_type=x", "/a?appid=wx1;secret=***;grant_type=x",
                     id="semicolon-separated"),
    ],
)
def test_redact_removes_the_secret_and_keeps_the_rest(raw, expected):
    assert S in raw
    cleaned = redact(raw)
    assert S not in cleaned
    assert cleaned == expected


@pytest.mark.parametrize(
    "text",
    [
        "/sns/jscode2session?appid=wx1&grant_type=authorization_code",
        "/path?client_id=1&mysecret_count=2",
        "Starting new HTTP connection (1): 127.0.0.1:8000",
        "",
    ],
)
def test_redact_leaves_text_without_a_secret_alone(text):
    assert redact(text) == text


# -- open data and server APIs ------------------------------------------------------

def test_token_phone_number_and_checksession_leak_nothing(debug_logs, fake):
    """The access_token rides in query strings; the appsecret in stable_token's body."""
    fake.answer = OK(fake)
    fake._token = ACCESS_TOKEN
    rejected = iter([True])

    def phone(params: Dict[str, Any]) -> Tuple[int, Any]:
        if next(rejected, False):  # the first call: WeChat rejects the token once
            return 200, {"errcode": 40001, "errmsg": f"invalid credential, access_token is {params['access_token']}"}
        return fake.demo_phone_number(params)

    fake.answers["/wxa/business/getuserphonenumber"] = phone
    app = secret_app(fake)

    @app.post("/phone")
    def phone_route() -> Dict[str, Any]:
        return app.extensions["wxlogin"].phone_number("phone-code-1")

    @app.get("/check")
    def check_route() -> Dict[str, Any]:
        from flask_wxlogin import current_wx_user

        return {"valid": current_wx_user.check_session_key(), "decrypt": _decrypt_error(current_wx_user)}

    client = app.test_client()
    skey = client.post("/auth/login", json={"code": CODE}).get_json()["data"]["skey"]
    responses = [client.post("/phone"), client.get("/check", headers={"X-WX-Skey": skey})]

    assert [r.status_code for r in responses] == [200, 200], [r.get_json() for r in responses]
    paths = [path for path, _ in fake.requests]
    assert paths.count("/wxa/business/getuserphonenumber") == 2 and "/wxa/checksession" in paths
    lines = [r.getMessage() for r in debug_logs.records if "access_token=" in r.getMessage()]
    assert lines, "urllib3 logged no line with the token's parameter: the leak check would be vacuous"
    assert_nothing_leaked(debug_logs, responses, [])


def _decrypt_error(user: Any) -> str:
    from flask_wxlogin import DecryptError

    try:
        user.decrypt("AAAAAAAAAAAAAAAAAAAAAA==", "AAAAAAAAAAAAAAAAAAAAAA==")
    except DecryptError as error:
        assert_no_leak("decrypt error", exception_texts(error))
        return error.error
    return "decrypted?"
