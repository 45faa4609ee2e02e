"""Sessions in the cache: create, read, slide, expire, revoke, outages. Embedded and Redis."""
from __future__ import annotations

import json
import logging
import os
import pickle
import time

import pytest
from cachelib import SimpleCache

from flask_wxlogin.tokens import session_ref

from .conftest import OPENID, SESSION_KEY, UNIONID, login, make_app

IDLE, MAX_AGE = 1000, 5000
#: A session id as the store issues them, of a session that does not exist.
WELL_FORMED = OPENID + ".AAAAAAAAAAAAAAAAAAAAAA"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["embedded", "redis"])
def store_app(request):
    config = {"WXLOGIN_SESSION_IDLE_TIMEOUT": IDLE, "WXLOGIN_SESSION_MAX_AGE": MAX_AGE}
    if request.param == "redis":
        config.update(CACHE_TYPE="RedisCache", CACHE_REDIS_URL=request.getfixturevalue("redis_url"),
                      WXLOGIN_KEY_PREFIX=request.getfixturevalue("redis_prefix"))
    app = make_app(**config)
    app.clock = Clock()
    with app.app_context():
        app.extensions["wxlogin"].store.clock = app.clock
    return app


def _load(app, skey):
    return app.test_client().get("/me", headers={"X-WX-Skey": skey})


def _store(app):
    with app.app_context():
        return app.extensions["wxlogin"].store


def _key_and_ref(app, skey):
    """The user's key and the session's field in it."""
    session_id = skey.rpartition(".")[0]
    return app.config["WXLOGIN_KEY_PREFIX"] + session_id.split(".")[0], session_ref(session_id)


def _record(app, skey):
    """What the cache holds for the session, as text."""
    return _store(app).backend.read(*_key_and_ref(app, skey))[0]


def test_create_then_read(store_app, wechat):
    skey = login(store_app.test_client())
    assert _load(store_app, skey).get_json()["openid"] == OPENID
    assert _record(store_app, skey) == f"{SESSION_KEY}|{int(store_app.clock.now)}|0|"


@pytest.mark.parametrize("user_id", [None, 7, "u|7", "\u7528\u6237"])
def test_the_record_round_trips_every_user_id(store_app, wechat, user_id):
    store_app.extensions["wxlogin"].on_login(lambda identity: user_id)
    client = store_app.test_client()
    skey = login(client)
    store_app.clock.now += IDLE * 0.5  # a slide rewrites the record
    assert client.get("/me", headers={"X-WX-Skey": skey}).get_json()["user_id"] == user_id
    assert client.get("/me", headers={"X-WX-Skey": skey}).get_json()["user_id"] == user_id
    assert _record(store_app, skey).endswith("|500|" + ("" if user_id is None else json.dumps(user_id)))


#: A real WeChat iPhone User-Agent: 170 characters.
IPHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148 MicroMessenger/8.0.44(0x18002c2f) NetType/WIFI Language/zh_CN"
)


def test_redis_holds_one_compact_hash_per_user_with_the_idle_ttl(redis_app, redis_db, redis_prefix, wechat):
    wechat.ok(unionid=UNIONID)
    redis_app.extensions["wxlogin"].on_login(lambda identity: 1234567)
    skey = login(redis_app.test_client(), headers={"User-Agent": IPHONE_UA},
                 environ_base={"REMOTE_ADDR": "203.208.160.123"})
    key, ref = _key_and_ref(redis_app, skey)
    assert key == redis_prefix + OPENID
    assert {name.decode(): value.decode() for name, value in redis_db.hgetall(key).items()} == {
        ref: f"{SESSION_KEY}|{redis_db.hget(key, ref).decode().split('|')[1]}|0|1234567",
        "k": SESSION_KEY,
        "u": UNIONID,
        "@" + ref: IPHONE_UA[:64],
        "#" + ref: "203.208.160.123",
    }
    assert redis_db.object("encoding", key) == b"listpack"  # every value within 64 bytes
    assert 0 < redis_db.ttl(key) <= redis_app.config["WXLOGIN_SESSION_IDLE_TIMEOUT"]
    assert sorted(redis_db.scan_iter(match=redis_prefix + "*")) == sorted(
        [key.encode(), f"{redis_prefix}ratelimit:LIMITER/default/203.208.160.123/30/1/minute".encode()]
    )
    assert skey.rpartition(".")[0].split(".")[1] not in str(redis_db.hgetall(key))  # no bearer secret stored


def test_reads_within_a_tenth_of_the_idle_timeout_write_nothing(store_app, wechat):
    skey = login(store_app.test_client())
    created = _record(store_app, skey)
    store_app.clock.now += IDLE * 0.09
    assert _load(store_app, skey).status_code == 200
    assert _record(store_app, skey) == created


def test_a_read_after_a_tenth_of_the_idle_timeout_slides_the_expiry(store_app, wechat):
    skey = login(store_app.test_client())
    start = store_app.clock.now
    for _ in range(8):  # 8 x 0.6 idle = 4.8 idle: alive throughout because it is used
        store_app.clock.now += IDLE * 0.6
        assert _load(store_app, skey).status_code == 200
    created, refreshed_after = _record(store_app, skey).split("|")[1:3]
    assert (int(created), int(refreshed_after)) == (int(start), int(store_app.clock.now - start))


def test_an_idle_session_expires_and_the_next_login_prunes_it(store_app, wechat):
    skey = login(store_app.test_client())
    store_app.clock.now += IDLE
    response = _load(store_app, skey)
    assert response.status_code == 401 and response.get_json()["error"] == "session_expired"
    assert _record(store_app, skey) is not None  # a read writes nothing
    login(store_app.test_client())
    assert _record(store_app, skey) is None


def test_max_age_ends_a_session_in_use(store_app, wechat):
    skey = login(store_app.test_client())
    for _ in range(9):  # up to 4.5 idle = 4500 s < MAX_AGE
        store_app.clock.now += IDLE * 0.5
        assert _load(store_app, skey).status_code == 200
    store_app.clock.now += IDLE * 0.5  # 5000 s: max age reached
    assert _load(store_app, skey).status_code == 401


def test_a_slide_extends_the_keys_ttl_to_the_sessions_life_and_never_shortens_it(redis_app, redis_db, wechat):
    redis_app.config.update(WXLOGIN_SESSION_IDLE_TIMEOUT=IDLE, WXLOGIN_SESSION_MAX_AGE=1500)
    clock = Clock()
    _store(redis_app).clock = clock
    skey = login(redis_app.test_client())
    key, _ = _key_and_ref(redis_app, skey)
    redis_db.expire(key, 5)
    clock.now += 900
    assert _load(redis_app, skey).status_code == 200
    assert 590 <= redis_db.ttl(key) <= 600  # near the max age: 600 s left, not the idle timeout
    redis_db.expire(key, 3000)  # as if another session of the user lived longer
    clock.now += 100
    assert _load(redis_app, skey).status_code == 200
    assert redis_db.ttl(key) > 2900


def test_revoked_session_is_gone(store_app, wechat):
    client = store_app.test_client()
    skey = login(client)
    client.post("/auth/logout", headers={"X-WX-Skey": skey})
    assert _record(store_app, skey) is None
    assert _load(store_app, skey).status_code == 401


def test_redis_really_expires_an_idle_session(redis_url, redis_prefix, redis_db, wechat):
    app = make_app(CACHE_TYPE="RedisCache", CACHE_REDIS_URL=redis_url, WXLOGIN_KEY_PREFIX=redis_prefix,
                   WXLOGIN_SESSION_IDLE_TIMEOUT=1, WXLOGIN_SESSION_MAX_AGE=60)
    skey = login(app.test_client())
    assert redis_db.exists(redis_prefix + OPENID) == 1
    time.sleep(1.6)
    assert redis_db.exists(redis_prefix + OPENID) == 0
    assert _load(app, skey).status_code == 401


def test_embedded_default_keeps_more_users_than_cachelibs_default_threshold(wechat):
    app = make_app(WXLOGIN_LOGIN_RATE_LIMIT=None)  # 600 logins from one address
    client = app.test_client()
    skeys = []
    for i in range(600):
        wechat.ok(openid=f"oUser{i:023d}")
        skeys.append(login(client, code=f"code{i}"))
    assert all(_load(app, skey).status_code == 200 for skey in skeys[:5] + skeys[-5:])
    (backend,) = app.extensions["cache"].values()
    assert len(backend._cache) == 600  # one key per user


@pytest.fixture
def counted_commands(redis_app, monkeypatch):
    commands = []
    client = _store(redis_app).backend._client
    real = client.execute_command

    def counting(*args, **kwargs):
        commands.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(client, "execute_command", counting)
    return commands


def test_one_redis_command_per_protected_request_and_none_for_a_forged_skey(redis_app, wechat, counted_commands):
    client = redis_app.test_client()
    skey = login(client)
    counted_commands.clear()
    for _ in range(5):
        assert client.get("/me", headers={"X-WX-Skey": skey}).status_code == 200
    assert counted_commands == ["HMGET"] * 5
    counted_commands.clear()
    assert client.get("/me", headers={"X-WX-Skey": skey[:-3] + "abc"}).status_code == 401
    assert counted_commands == []


def test_a_slide_is_one_script_once_per_tenth_of_the_idle_timeout(redis_app, wechat, counted_commands):
    clock = Clock()
    _store(redis_app).clock = clock
    client = redis_app.test_client()
    skey = login(client)
    clock.now += redis_app.config["WXLOGIN_SESSION_IDLE_TIMEOUT"] * 0.1
    counted_commands.clear()
    for _ in range(3):
        assert client.get("/me", headers={"X-WX-Skey": skey}).status_code == 200
    assert counted_commands == ["HMGET", "EVAL", "HMGET", "HMGET"]


@pytest.mark.parametrize(
    "path, method", [("/auth/login", "post"), ("/me", "get"), ("/whoami", "get"), ("/auth/logout", "post")]
)
def test_unreachable_redis_is_503_never_401(wechat, path, method):
    app = make_app(CACHE_TYPE="RedisCache", CACHE_REDIS_URL="redis://127.0.0.1:1/0")
    with app.test_request_context():
        skey = app.extensions["wxlogin"]._state().main.sign(WELL_FORMED, app.config)
    started = time.monotonic()
    response = getattr(app.test_client(), method)(path, json={"code": "abc"}, headers={"X-WX-Skey": skey})
    assert time.monotonic() - started < 3
    assert response.status_code == 503
    assert response.get_json()["error"] == "session_store_unavailable"
    assert response.headers["Retry-After"] == "5"


def test_a_store_outage_error_carries_no_backend_exception(wechat):
    from flask_wxlogin import user_login_failed

    app = make_app(CACHE_TYPE="RedisCache", CACHE_REDIS_URL="redis://:hunter2@127.0.0.1:1/0")
    errors = []
    with user_login_failed.connected_to(lambda sender, error: errors.append(error), app):
        assert app.test_client().post("/auth/login", json={"code": "abc"}).status_code == 503
    (error,) = errors
    assert error.__cause__ is None and error.__context__ is None


class RefusingCache(SimpleCache):
    def set(self, key, value, timeout=None):
        return False


def test_a_write_the_cache_refuses_is_503_and_no_skey(wechat, caplog):
    app = make_app(cache=RefusingCache())
    response = app.test_client().post("/auth/login", json={"code": "abc"})
    assert response.status_code == 503
    assert response.get_json()["error"] == "session_store_unavailable"
    assert "skey" not in response.get_data(as_text=True)
    assert "refused to keep a write" in caplog.text


@pytest.mark.parametrize("value", [
    b"not a record", b"a|b|c", b"|1|0|", b"k|x|0|", b"k|1|y|", b"k|1|0|{bad json", b"\xff|1|0|",
    b'["o","k",null,null,1,1]',
    # user ids other than a str or an int: the parsed record is cached and shared, so only immutable ones pass
    b'k|1|0|["a"]', b'k|1|0|{"a": 1}', b"k|1|0|true", b"k|1|0|1.5",
])
def test_an_unreadable_record_is_no_session(redis_app, redis_db, redis_prefix, wechat, value, caplog):
    skey = login(redis_app.test_client())
    redis_db.hset(*_key_and_ref(redis_app, skey), value)
    with caplog.at_level(logging.WARNING, "flask_wxlogin"):
        assert _load(redis_app, skey).status_code == 401
    assert "unreadable session record" in caplog.text


class _Exploit:
    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_a_pickle_planted_under_a_session_key_is_never_loaded(redis_app, redis_db, redis_prefix, wechat, tmp_path):
    skey = login(redis_app.test_client())
    exploit = _Exploit()
    exploit.path = str(tmp_path / "pwned")
    redis_db.hset(*_key_and_ref(redis_app, skey), b"!" + pickle.dumps(exploit))
    assert _load(redis_app, skey).status_code == 401
    assert not (tmp_path / "pwned").exists()


def test_a_logout_on_one_worker_is_seen_by_the_next_request_on_another(redis_url, redis_prefix, wechat):
    config = dict(CACHE_TYPE="RedisCache", CACHE_REDIS_URL=redis_url, WXLOGIN_KEY_PREFIX=redis_prefix)
    worker_a, worker_b = make_app(**config).test_client(), make_app(**config).test_client()
    skey = login(worker_a)
    assert worker_b.get("/me", headers={"X-WX-Skey": skey}).status_code == 200
    assert worker_a.post("/auth/logout", headers={"X-WX-Skey": skey}).status_code == 200
    assert worker_b.get("/me", headers={"X-WX-Skey": skey}).status_code == 401


def test_logout_all_ends_every_session_of_one_user_and_no_one_elses(store_app, wechat):
    client = store_app.test_client()
    mine = [login(client) for _ in range(3)]
    wechat.ok(openid="oSomeoneElse000000000000000")
    theirs = login(client)
    with store_app.app_context():
        assert store_app.extensions["wxlogin"].logout_all(OPENID) == 3
        assert store_app.extensions["wxlogin"].logout_all(OPENID) == 0
    assert [_load(store_app, skey).status_code for skey in mine] == [401, 401, 401]
    assert _load(store_app, theirs).status_code == 200
    wechat.ok()
    assert _load(store_app, login(client)).status_code == 200


def test_logout_all_is_one_script_and_scans_nothing(redis_app, redis_db, redis_prefix, wechat, counted_commands):
    client = redis_app.test_client()
    for _ in range(2):
        login(client)
    counted_commands.clear()
    with redis_app.app_context():
        assert redis_app.extensions["wxlogin"].logout_all(OPENID) == 2
    assert counted_commands == ["EVAL"]
    assert redis_db.exists(redis_prefix + OPENID) == 0


def test_logout_all_cli_command(redis_app, wechat):
    skey = login(redis_app.test_client())
    result = redis_app.test_cli_runner().invoke(args=["wxlogin", "logout-all", OPENID])
    assert result.exit_code == 0 and "ended 1 session(s)" in result.output
    assert _load(redis_app, skey).status_code == 401


def test_a_hung_redis_cannot_hang_a_worker():
    """A server that accepts and never answers: the request ends in 503 within the socket timeouts."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held = []
    threading.Thread(target=lambda: [held.append(listener.accept()) for _ in range(4)], daemon=True).start()
    app = make_app(CACHE_TYPE="RedisCache", CACHE_REDIS_URL=f"redis://127.0.0.1:{listener.getsockname()[1]}/0")
    with app.test_request_context():
        skey = app.extensions["wxlogin"]._state().main.sign(WELL_FORMED, app.config)
    started = time.monotonic()
    response = app.test_client().get("/me", headers={"X-WX-Skey": skey})
    elapsed = time.monotonic() - started
    listener.close()
    assert response.status_code == 503
    assert 0.9 < elapsed < 3.5  # 1 s socket timeout, one retry
