"""The audit trail: one record per login event on ``flask_wxlogin.audit``, its facts in ``extra``."""
from __future__ import annotations

import json
import logging
from typing import Any, List

import pytest

from flask_wxlogin import ConfigurationError, audit

from .conftest import APPSECRET, CODE, OPENID, SECRET_KEY, SESSION_KEY, login, make_app

STAFF = {"staff": {"appid": "wxstaff000000000001", "secret": "staff-secret-0123456789"}}
#: What a LogRecord holds before ``extra`` adds to it.
PLAIN = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


@pytest.fixture
def trail(caplog: Any) -> Any:
    caplog.set_level(logging.INFO, logger="flask_wxlogin.audit")
    return caplog


def events(caplog: Any) -> List[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "flask_wxlogin.audit"]


def facts(record: logging.LogRecord) -> dict:
    """What a JSON formatter adds from ``extra``: every attribute a plain record lacks."""
    return {key: value for key, value in vars(record).items() if key not in PLAIN}


def test_a_login_writes_one_record_with_who_and_from_where(app, wechat, trail):
    login(app.test_client(), environ_base={"REMOTE_ADDR": "203.0.113.7"}, headers={"User-Agent": "MiniProgram/8.0"})
    (record,) = events(trail)
    assert record.levelno == logging.INFO
    assert facts(record) == {
        "wxlogin_event": "login", "program": "default", "openid": OPENID, "outcome": "ok",
        "ip": "203.0.113.7", "user_agent": "MiniProgram/8.0",
    }
    assert record.getMessage() == f"login program=default openid={OPENID} outcome=ok ip=203.0.113.7 user_agent=MiniProgram/8.0"


def test_a_failed_login_names_the_error_and_errcode(wechat, trail):
    wechat.errcode(40029, "invalid code")
    client = make_app(WXLOGIN_MINI_PROGRAMS=STAFF).test_client()
    assert client.post("/auth/staff/login", json={"code": CODE}).status_code == 401
    (record,) = events(trail)
    assert (record.wxlogin_event, record.program, record.outcome, record.error, record.errcode, record.openid) == (
        "login", "staff", "failed", "code_invalid", 40029, None
    )


def test_a_refused_request_is_a_failed_login_without_errcode(app, wechat, trail):
    app.test_client().post("/auth/login", json={"code": "not a code"})
    (record,) = events(trail)
    assert (record.outcome, record.error, record.errcode) == ("failed", "code_malformed", None)


def test_each_rate_limited_attempt_is_one_rate_limited_record(wechat, trail):
    client = make_app(WXLOGIN_LOGIN_RATE_LIMIT="1/minute").test_client()
    login(client)
    for _ in range(2):
        assert client.post("/auth/login", json={"code": CODE}).status_code == 429
    assert [r.wxlogin_event for r in events(trail)] == ["login", "rate_limited", "rate_limited"]
    limited = events(trail)[1]
    assert (limited.program, limited.ip) == ("default", "127.0.0.1")
    assert 1 <= limited.retry_after <= 60


def test_an_unknown_program_writes_nothing(app, wechat, trail):
    app.test_client().post("/auth/nosuch/login", json={"code": CODE})
    assert events(trail) == []


def test_hashed_openids_are_keyed_stable_and_not_the_openid(wechat, trail):
    client = make_app(WXLOGIN_AUDIT_HASH_OPENID=True).test_client()
    login(client)
    login(client)
    first, second = events(trail)
    assert first.openid == second.openid == audit.hash_openid(OPENID, SECRET_KEY)
    assert len(first.openid) == 64 and OPENID not in first.getMessage()
    assert audit.hash_openid(OPENID, "another-secret-key") != first.openid  # keyed: no table of known openids helps


def test_no_record_holds_a_secret(wechat, trail):
    client = make_app().test_client()
    skey = login(client)
    wechat.errcode(40125, "invalid appsecret")
    client.post("/auth/login", json={"code": CODE})
    text = json.dumps([{**facts(r), "message": r.getMessage()} for r in events(trail)], default=str)
    openid, secret_part, signature = skey.split(".")  # the openid is no secret: the audit names it
    for secret in (APPSECRET, SESSION_KEY, SECRET_KEY, skey, secret_part, signature):
        assert secret not in text


def test_a_hostile_user_agent_is_cut_and_quoted_in_the_message(app, wechat, trail):
    agent = "evil\tlogin program=default outcome=ok \x7f" + "x" * 500
    login(app.test_client(), headers={"User-Agent": agent})
    (record,) = events(trail)
    assert record.user_agent == agent[: audit.MAX_USER_AGENT]
    assert "\t" not in record.getMessage() and "\x7f" not in record.getMessage()
    assert json.dumps(agent[: audit.MAX_USER_AGENT]) in record.getMessage()


def test_outside_an_app_context_the_openid_is_left_out(trail):
    audit.record("logout_all", program="default", openid=OPENID, count=2)
    (record,) = events(trail)
    assert (record.openid, record.count) == (None, 2)
    assert not hasattr(record, "ip")


def test_nothing_is_built_when_the_audit_logger_is_off(app, wechat, caplog, monkeypatch):
    caplog.set_level(logging.WARNING, logger="flask_wxlogin.audit")
    monkeypatch.setattr(audit, "hash_openid", pytest.fail)
    app.config["WXLOGIN_AUDIT_HASH_OPENID"] = True
    login(app.test_client())
    assert events(caplog) == []


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_the_hash_switch_must_be_a_bool(value):
    with pytest.raises(ConfigurationError, match="WXLOGIN_AUDIT_HASH_OPENID"):
        make_app(WXLOGIN_AUDIT_HASH_OPENID=value)


@pytest.mark.parametrize("name", ["name", "msg", "args", "message", "levelname"])
def test_a_fact_named_like_a_log_record_attribute_is_refused_at_once(app, name, trail, monkeypatch):
    monkeypatch.setattr(audit.log, "disabled", True)  # refused even when nothing would be written
    with app.test_request_context(), pytest.raises(TypeError, match=name):
        audit.record("logout", program="default", openid=OPENID, **{name: "x"})


def test_without_device_tracking_no_record_holds_the_ip_or_user_agent(wechat, trail):
    app = make_app(WXLOGIN_TRACK_DEVICES=False)
    client = app.test_client()
    device = {"environ_base": {"REMOTE_ADDR": "203.0.113.9"}, "headers": {"User-Agent": "iPhone; device-0042"}}
    skey = login(client, **device)
    again = login(client, environ_base=device["environ_base"],
                  headers={**device["headers"], "X-WX-Skey": skey})  # ends the first: session_ended by=self
    assert client.post("/auth/logout", headers={**device["headers"], "X-WX-Skey": again},
                       environ_base=device["environ_base"]).status_code == 200
    records = events(trail)
    assert [record.wxlogin_event for record in records] == ["login", "session_ended", "login", "logout"]
    for record in records:
        assert "ip" not in facts(record) and "user_agent" not in facts(record)
        assert "203.0.113.9" not in record.getMessage() and "device-0042" not in record.getMessage()
