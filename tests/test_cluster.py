"""Sessions on a Redis Cluster and behind Redis Sentinel: the whole flow, lost and hung nodes.

The shared cluster (``redis_cluster``) is never harmed; tests that kill or
freeze a node start a private one (``doomed_cluster``).
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any, Dict, Iterator, List, Tuple

import pytest
import redis
from flask import Flask

from flask_wxlogin.store import _RedisBackend
from flask_wxlogin.tokens import session_ref

from .conftest import APPID, OPENID, login, make_app
from .redis_cluster import HOST, SENTINEL_MASTER, node, node_of, ports
from .test_access_token import STABLE_TOKEN
from .test_access_token import test_twenty_concurrent_first_callers_cause_one_fetch as twenty_first_callers
from .test_store import Clock

IDLE, MAX_AGE = 1000, 5000
#: Seconds a request may take when its master is dead or hung: 1 s socket timeout, one retry.
BOUND = 3.5


def cluster_app(cluster_spec: str, prefix: str, **config: Any) -> Flask:
    # Many logins from one address; the limit on a cluster is in test_ratelimit.py.
    config.setdefault("WXLOGIN_LOGIN_RATE_LIMIT", None)
    app = make_app(CACHE_TYPE="RedisClusterCache", CACHE_REDIS_CLUSTER=cluster_spec,
                   WXLOGIN_KEY_PREFIX=prefix, **config)
    app.clock = Clock()  # type: ignore[attr-defined]
    with app.app_context():
        app.extensions["wxlogin"].store.clock = app.clock  # type: ignore[attr-defined]
    return app


@pytest.fixture
def app(redis_cluster: str, cluster_prefix: str) -> Flask:
    return cluster_app(redis_cluster, cluster_prefix,
                       WXLOGIN_SESSION_IDLE_TIMEOUT=IDLE, WXLOGIN_SESSION_MAX_AGE=MAX_AGE)


@pytest.fixture
def cluster_db(redis_cluster: str) -> Iterator[redis.RedisCluster]:
    client = redis.RedisCluster(startup_nodes=[redis.cluster.ClusterNode(HOST, port) for port in ports(redis_cluster)])
    yield client
    client.close()


def session_key(app: Flask, skey: str) -> str:
    """The key holding the session of ``skey``: its user's."""
    return app.config["WXLOGIN_KEY_PREFIX"] + skey.split(".")[0]


def ref_of(skey: str) -> str:
    return session_ref(skey.rpartition(".")[0])


def me(app: Flask, skey: str) -> Tuple[int, float]:
    """``GET /me`` with ``skey``: the status and the seconds it took; fails rather than hang."""
    answer: Dict[str, Any] = {}

    def request() -> None:
        started = time.monotonic()
        answer["status"] = app.test_client().get("/me", headers={"X-WX-Skey": skey}).status_code
        answer["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=request, daemon=True)
    thread.start()
    thread.join(15)
    assert answer, "the request was still waiting for Redis after 15 s"
    return answer["status"], answer["seconds"]


def spread_sessions(app: Flask, wechat: Any, cluster_ports: List[int], at_least: int) -> Dict[int, List[str]]:
    """Log in users until every master holds ``at_least`` of them: the skeys, by the port holding them."""
    client = app.test_client()
    by_node: Dict[int, List[str]] = {port: [] for port in cluster_ports}
    for user in range(60 * at_least):
        if min(map(len, by_node.values())) >= at_least:
            return by_node
        wechat.ok(openid=f"oSpread{user:021d}")
        skey = login(client)
        by_node[node_of(cluster_ports, session_key(app, skey))].append(skey)
    raise AssertionError(f"sessions never reached every node: {by_node}")


# -- configuration -------------------------------------------------------------


def test_a_cluster_cache_gets_the_redis_backend_and_bounded_connections(app):
    with app.app_context():
        backend = app.extensions["wxlogin"].store.backend
    assert isinstance(backend, _RedisBackend)
    cluster = backend._client
    assert isinstance(cluster, redis.RedisCluster)
    assert cluster.retry.get_retries() == 1
    for cluster_node in cluster.get_nodes():
        options = cluster_node.redis_connection.connection_pool.connection_kwargs
        assert (options["socket_timeout"], options["socket_connect_timeout"]) == (1.0, 1.0)


# -- the whole flow on a healthy cluster ------------------------------------------


def test_login_check_slide_and_logout(app, cluster_db, wechat):
    client = app.test_client()
    skey = login(client)
    key, ref = session_key(app, skey), ref_of(skey)
    assert key.endswith(OPENID)
    assert me(app, skey)[0] == 200
    assert cluster_db.hget(key, ref).decode().split("|")[1:3] == [str(int(app.clock.now)), "0"]
    assert 0 < cluster_db.ttl(key) <= IDLE

    app.clock.now += IDLE * 0.6
    assert me(app, skey)[0] == 200
    assert cluster_db.hget(key, ref).decode().split("|")[2] == str(int(IDLE * 0.6))

    assert client.post("/auth/logout", headers={"X-WX-Skey": skey}).status_code == 200
    assert cluster_db.hexists(key, ref) == 0
    assert me(app, skey)[0] == 401


def test_an_idle_session_expires(app, wechat):
    skey = login(app.test_client())
    app.clock.now += IDLE
    assert me(app, skey)[0] == 401


def test_users_spread_over_every_master_and_logout_all_is_one_key(app, redis_cluster, cluster_db, wechat):
    spread = spread_sessions(app, wechat, ports(redis_cluster), at_least=1)
    assert all(spread.values())  # users land on every master: one key per user, no hot node
    wechat.ok(openid="oSomeoneElse000000000000000")
    theirs = login(app.test_client())
    wechat.ok()
    mine = [login(app.test_client()) for _ in range(3)]

    with app.app_context():
        assert app.extensions["wxlogin"].logout_all(OPENID) == 3

    assert [me(app, skey)[0] for skey in mine] == [401] * 3
    assert me(app, theirs)[0] == 200
    assert cluster_db.exists(f"{app.config['WXLOGIN_KEY_PREFIX']}{OPENID}") == 0
    assert me(app, login(app.test_client()))[0] == 200


def test_the_access_token_is_fetched_once_for_twenty_threads(app, cluster_db, requests_mock):
    twenty_first_callers(app, requests_mock)
    key = f"{app.config['WXLOGIN_KEY_PREFIX']}access_token:{{{APPID}}}"
    assert cluster_db.get(key) == b"token-1"
    assert cluster_db.exists(key + ":lock") == 0


# -- lost and hung masters -------------------------------------------------------


def test_a_killed_master_makes_its_sessions_503_and_no_others(doomed_cluster, wechat):
    app = cluster_app(doomed_cluster.spec, "wxltest:")
    sessions = spread_sessions(app, wechat, doomed_cluster.ports, at_least=5)
    victim = doomed_cluster.ports[0]
    doomed_cluster.kill(victim)

    # Right after the kill, then once the other masters have flagged it as failed.
    for when in ("killed", "flagged"):
        if when == "flagged":
            doomed_cluster.wait_flagged_failed(victim)
        answers = {port: [me(app, skey) for skey in skeys] for port, skeys in sessions.items()}
        assert [status for status, _ in answers[victim]] == [503] * len(sessions[victim]), when
        for port in doomed_cluster.ports[1:]:
            assert [status for status, _ in answers[port]] == [200] * len(sessions[port]), when
        slowest = max(took for port_answers in answers.values() for _, took in port_answers)
        assert slowest <= BOUND, when


def test_with_a_killed_master_a_login_is_503_exactly_for_its_users(doomed_cluster, wechat):
    app = cluster_app(doomed_cluster.spec, "wxltest:")
    victim = doomed_cluster.ports[1]
    homes = {f"oUser{user:023d}": doomed_cluster.node_of(f"wxltest:oUser{user:023d}") for user in range(40)}
    doomed_cluster.kill(victim)
    client = app.test_client()
    for openid, home in homes.items():  # a login writes its user's one key
        wechat.ok(openid=openid)
        response = client.post("/auth/login", json={"code": "abc"})
        assert response.status_code == (503 if home == victim else 200), openid
        if response.status_code == 200:
            assert me(app, response.get_json()["data"]["skey"])[0] == 200
    assert victim in homes.values() and set(homes.values()) != {victim}


def test_with_a_killed_master_the_access_token_on_the_others_still_works(doomed_cluster, requests_mock):
    app = cluster_app(doomed_cluster.spec, "wxltest:")
    key = f"wxltest:access_token:{{{APPID}}}"
    holders = {doomed_cluster.node_of(key + suffix) for suffix in ("", ":lock", ":failed")}
    assert len(holders) == 1  # the hash tag keeps the token's keys on one node
    doomed_cluster.kill(next(port for port in doomed_cluster.ports if port not in holders))
    requests_mock.post(STABLE_TOKEN, json={"access_token": "token-1", "expires_in": 7200})
    with app.app_context():
        assert app.extensions["wxlogin"].access_token() == "token-1"


def test_with_every_master_gone_every_request_is_503(doomed_cluster, wechat):
    app = cluster_app(doomed_cluster.spec, "wxltest:")
    skeys = [login(app.test_client()) for _ in range(3)]
    for port in doomed_cluster.ports:
        doomed_cluster.kill(port)
    assert [me(app, skey)[0] for skey in skeys] == [503] * 3
    response = app.test_client().post("/auth/login", json={"code": "abc"})
    assert response.status_code == 503
    assert response.get_json()["error"] == "session_store_unavailable"


def test_a_hung_master_is_503_within_the_socket_timeouts(doomed_cluster, wechat):
    app = cluster_app(doomed_cluster.spec, "wxltest:")
    sessions = spread_sessions(app, wechat, doomed_cluster.ports, at_least=2)
    victim = doomed_cluster.ports[2]
    doomed_cluster.freeze(victim)

    hung = [me(app, skey) for skey in sessions.pop(victim)]
    assert [status for status, _ in hung] == [503] * len(hung)
    assert all(0.9 < took <= BOUND for _, took in hung), hung
    assert all(me(app, skey)[0] == 200 for skeys in sessions.values() for skey in skeys)


# -- Sentinel ----------------------------------------------------------------------


def test_a_sentinel_cache_keeps_sessions_on_the_master(redis_sentinel, wechat):
    app = make_app(CACHE_TYPE="RedisSentinelCache", CACHE_REDIS_SENTINELS=[(HOST, redis_sentinel.sentinel)],
                   CACHE_REDIS_SENTINEL_MASTER=SENTINEL_MASTER, WXLOGIN_KEY_PREFIX="wxltest:")
    with app.app_context():
        backend = app.extensions["wxlogin"].store.backend
    assert isinstance(backend, _RedisBackend)
    assert backend._client.connection_pool.get_master_address() == (HOST, redis_sentinel.master)

    client = app.test_client()
    skey = login(client)
    assert node(redis_sentinel.master).hexists(session_key(app, skey), ref_of(skey)) == 1
    assert me(app, skey)[0] == 200
    assert client.post("/auth/logout", headers={"X-WX-Skey": skey}).status_code == 200
    assert node(redis_sentinel.master).hexists(session_key(app, skey), ref_of(skey)) == 0
    assert me(app, skey)[0] == 401


@pytest.fixture
def hung_server() -> Iterator[int]:
    """A port that accepts connections and never answers: a hung Redis or sentinel."""
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(64)
    held: List[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()
    for connection in held:
        connection.close()


def test_a_hung_sentinel_cannot_hang_a_worker(hung_server, wechat):
    app = make_app(CACHE_TYPE="RedisSentinelCache", CACHE_REDIS_SENTINELS=[(HOST, hung_server)])
    answer: Dict[str, Any] = {}

    def log_in() -> None:
        started = time.monotonic()
        answer["status"] = app.test_client().post("/auth/login", json={"code": "abc"}).status_code
        answer["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=log_in, daemon=True)
    thread.start()
    thread.join(15)
    assert answer, "the login was still waiting for the sentinel after 15 s"
    assert answer["status"] == 503
    assert answer["seconds"] <= BOUND


# -- a user's sessions: one key, so one slot, so every script is atomic ---------------------


def test_a_users_sessions_are_listed_capped_and_ended_on_the_cluster(app, cluster_db, wechat):
    app.config["WXLOGIN_MAX_SESSIONS_PER_USER"] = 2
    client = app.test_client()
    first = login(client)
    app.clock.now += 1
    second, third = login(client), login(client)  # the first is evicted
    with app.test_request_context(headers={"X-WX-Skey": third}):
        wxlogin = app.extensions["wxlogin"]
        assert {(info.ref, info.current) for info in wxlogin.sessions(OPENID)} == {
            (ref_of(second), False), (ref_of(third), True),
        }
        assert wxlogin.end_session(OPENID, ref_of(second)) is True
    assert [me(app, skey)[0] for skey in (first, second, third)] == [401, 401, 200]
    assert cluster_db.hlen(session_key(app, third)) == 4  # the third's record, k, and its two device fields


def test_logout_all_racing_logins_leaves_no_orphan_on_the_cluster(app, wechat):
    from .test_sessions import RACE_TRIALS, logout_all, race

    orphans = 0
    for _ in range(RACE_TRIALS // 3):
        raced, _ = race(app)
        logout_all(app)
        orphans += me(app, raced)[0] == 200
    assert orphans == 0


def test_a_lost_master_holding_rate_limit_counters_blocks_no_user_whose_key_is_up(doomed_cluster, wechat, caplog):
    from prometheus_client import REGISTRY

    def store_errors() -> float:
        return REGISTRY.get_sample_value("wxlogin_store_errors_total", {"operation": "hit"}) or 0.0

    app = cluster_app(doomed_cluster.spec, "wxltest:", WXLOGIN_LOGIN_RATE_LIMIT="30/minute")  # the default
    victim = doomed_cluster.ports[1]
    lost = [ip for ip in (f"10.0.0.{i}" for i in range(1, 100))
            if doomed_cluster.node_of(f"wxltest:ratelimit:LIMITER/default/{ip}/30/1/minute") == victim][:3]
    spared = next(ip for ip in (f"10.0.1.{i}" for i in range(1, 100))
                  if doomed_cluster.node_of(f"wxltest:ratelimit:LIMITER/default/{ip}/30/1/minute") != victim)
    users = {home == victim: openid for openid, home in (
        (f"oUser{user:023d}", doomed_cluster.node_of(f"wxltest:oUser{user:023d}")) for user in range(40))}
    with app.app_context():
        limiter = app.extensions["wxlogin"]._state().rate_limit
    limiter.clock = Clock()

    def attempt(ip: str, openid: str) -> int:
        wechat.ok(openid=openid)
        response = app.test_client().post("/auth/login", json={"code": "abc"}, environ_base={"REMOTE_ADDR": ip})
        if response.status_code == 200:
            assert me(app, response.get_json()["data"]["skey"])[0] == 200
        return response.status_code

    # limits loads its script on every master at first use: with one gone, that first use would fail.
    assert attempt(spared, users[False]) == 200
    doomed_cluster.kill(victim)
    before = store_errors()
    with caplog.at_level(logging.WARNING, "flask_wxlogin"):
        assert [attempt(ip, users[False]) for ip in [*lost, spared]] == [200] * 4
        assert attempt(spared, users[True]) == 503  # the lost master's own users, and only they
        warned = [record for record in caplog.records if "rate limit not counted" in record.getMessage()]
        assert len(warned) == 1 and warned[0].levelno == logging.WARNING
        limiter.clock.now += 60
        assert attempt(lost[0], users[False]) == 200
        warned = [record for record in caplog.records if "rate limit not counted" in record.getMessage()]
    assert len(warned) == 2
    assert store_errors() - before == len(lost) + 1
