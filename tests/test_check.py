"""``flask wxlogin check`` end to end against FakeWeChat: good and bad credentials, the store down."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, List

import pytest

from flask_wxlogin.check import PROBE_CODE

from .conftest import APPID, APPSECRET, SECRET_KEY, make_app
from .test_secrets import closed_port

STAFF = {"staff": {"appid": "wxstaff000000000001", "secret": "staff-secret-0123456789"}}
ROOT = Path(__file__).resolve().parent.parent
REDIS_PASSWORD = "hunter2-redis-password"


def check(app: Any) -> Any:
    return app.test_cli_runner().invoke(args=["wxlogin", "check"])


def lines(result: Any) -> List[str]:
    return result.output.splitlines()


def never_a_secret(result: Any) -> None:
    for secret in (APPSECRET, SECRET_KEY, STAFF["staff"]["secret"], REDIS_PASSWORD):
        assert secret not in result.output


def test_good_credentials_and_a_working_store_pass(fake):
    result = check(make_app(WXLOGIN_API_BASE=fake.url))
    assert lines(result) == [
        f"OK   default: config: AppID {APPID}",
        "OK   default: session store: a probe key written, read and deleted",
        "OK   default: WeChat: AppID and AppSecret accepted (errcode 40029 for a probe code)",
    ]
    assert result.exit_code == 0
    assert [call["js_code"] for call in fake.calls] == [PROBE_CODE]  # no user's code, no quota-counted API


def test_the_store_probe_leaves_no_key_behind(fake, redis_url, redis_prefix, redis_db):
    app = make_app(WXLOGIN_API_BASE=fake.url, CACHE_TYPE="RedisCache", CACHE_REDIS_URL=redis_url,
                   WXLOGIN_KEY_PREFIX=redis_prefix)
    assert check(app).exit_code == 0
    assert list(redis_db.scan_iter(match=redis_prefix + "*")) == []


@pytest.mark.parametrize(
    "config, reason",
    [
        ({"WXLOGIN_SECRET": "a-wrong-secret"}, "wechat_config_rejected (errcode 40125): WeChat rejected the server's AppSecret."),
        ({"WXLOGIN_APPID": "wxwrongappid00000"}, "wechat_config_rejected (errcode 40013): WeChat rejected the server's AppID."),
    ],
    ids=["bad-secret", "bad-appid"],
)
def test_rejected_credentials_fail_with_the_reason(fake, config, reason):
    result = check(make_app(WXLOGIN_API_BASE=fake.url, **config))
    assert lines(result)[2] == f"FAIL default: WeChat: {reason}"
    assert result.exit_code == 1
    never_a_secret(result)
    assert "a-wrong-secret" not in result.output


def test_each_mini_program_is_checked_on_its_own(fake):
    result = check(make_app(WXLOGIN_API_BASE=fake.url, WXLOGIN_MINI_PROGRAMS=STAFF))
    assert [line.split(": ")[:2] for line in lines(result)] == [
        ["OK   default", "config"], ["OK   default", "session store"], ["OK   default", "WeChat"],
        ["OK   staff", "config"], ["OK   staff", "session store"], ["FAIL staff", "WeChat"],  # the fake knows one AppID
    ]
    assert "errcode 40013" in lines(result)[5]
    assert result.exit_code == 1
    never_a_secret(result)


def test_a_store_that_is_down_fails_its_line(fake):
    url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{closed_port()}/0"
    result = check(make_app(WXLOGIN_API_BASE=fake.url, CACHE_TYPE="RedisCache", CACHE_REDIS_URL=url))
    assert lines(result)[1] == (
        "FAIL default: session store: session_store_unavailable: The session store is unavailable; try again shortly."
    )
    assert lines(result)[2].startswith("OK   default: WeChat")
    assert result.exit_code == 1
    never_a_secret(result)


def test_an_unreachable_wechat_fails_its_line():
    result = check(make_app(WXLOGIN_API_BASE=f"http://127.0.0.1:{closed_port()}"))
    assert lines(result)[2].startswith("FAIL default: WeChat: wechat_unreachable: ")
    assert result.exit_code == 1


@pytest.mark.parametrize(
    "answer, reason",
    [
        (lambda params: (200, {"errcode": 40164, "errmsg": "invalid ip"}),
         "wechat_config_rejected (errcode 40164): WeChat refused this server's IP address (whitelist)."),
        (lambda params: (200, {"errcode": -1, "errmsg": "system busy"}),
         "wechat_busy (errcode -1): WeChat is busy; try again shortly."),
        (lambda params: (200, {"openid": "oAnyone", "session_key": "tiihtNczf5v6AKRyjwEUhQ=="}),
         "a made-up code was accepted: is WXLOGIN_API_BASE really WeChat?"),
        (lambda params: (500, b"oops"), "wechat_bad_response: WeChat answered HTTP 500."),
    ],
    ids=["ip-whitelist", "busy", "accepted", "http-500"],
)
def test_any_other_answer_is_reported_as_it_is(fake, answer, reason):
    fake.answer = answer
    result = check(make_app(WXLOGIN_API_BASE=fake.url))
    assert lines(result)[2] == f"FAIL default: WeChat: {reason}"
    assert result.exit_code == 1


def test_a_config_broken_after_start_fails_the_config_line(fake):
    app = make_app(WXLOGIN_API_BASE=fake.url)
    app.config["WXLOGIN_HTTP_TIMEOUT"] = -1
    result = check(app)
    assert lines(result) == ["FAIL default: config: WXLOGIN_HTTP_TIMEOUT must be a positive number of seconds, not -1"]
    assert result.exit_code == 1
    assert fake.calls == []


@pytest.mark.parametrize("secret, status", [(APPSECRET, 0), ("a-wrong-secret", 1)], ids=["good", "bad"])
def test_the_flask_command_line(fake, monkeypatch, secret, status):
    monkeypatch.setattr(fake, "secret", secret)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WXLT_API_BASE": fake.url}
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "tests.served_app:create()", "wxlogin", "check"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == status, done.stderr
    assert [line[:4] for line in done.stdout.splitlines()] == ["OK  ", "OK  ", "OK  " if status == 0 else "FAIL"]
    assert APPSECRET not in done.stdout + done.stderr


def test_with_the_near_cache_on_it_probes_client_tracking(fake, tmp_path, redis_url, redis_prefix):
    from .local_redis import LocalRedis
    from .test_nearcache import NO_CLIENT

    good = make_app(WXLOGIN_API_BASE=fake.url, CACHE_TYPE="RedisCache", CACHE_REDIS_URL=redis_url,
                    WXLOGIN_KEY_PREFIX=redis_prefix, WXLOGIN_NEAR_CACHE=True)
    result = check(good)
    assert "OK   default: near cache: CLIENT TRACKING and SUBSCRIBE accepted" in lines(result)
    assert result.exit_code == 0
    with LocalRedis(tmp_path / "redis", NO_CLIENT).start() as server:
        url = f"redis://app:{REDIS_PASSWORD}@127.0.0.1:{server.port}/0"
        server.client().execute_command("ACL", "SETUSER", "app", f">{REDIS_PASSWORD}")
        refused = make_app(WXLOGIN_API_BASE=fake.url, CACHE_TYPE="RedisCache", CACHE_REDIS_URL=url,
                           WXLOGIN_NEAR_CACHE=True)
        result = check(refused)
    assert [line for line in lines(result) if "near cache" in line] == [
        "FAIL default: near cache: cannot track keys: error reply (NoPermissionError); "
        "the Redis user needs +client (CLIENT TRACKING) and +subscribe"
    ]
    assert "OK   default: session store: a probe key written, read and deleted" in lines(result)
    assert result.exit_code == 1
    never_a_secret(result)
