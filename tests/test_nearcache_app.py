"""``WXLOGIN_NEAR_CACHE`` in the extension: where it is allowed, what it serves, and revocation across processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict

import pytest
from flask import Flask

from flask_wxlogin import ConfigurationError

from .conftest import make_app
from .local_redis import LocalRedis

ROOT = Path(__file__).resolve().parent.parent


def _near_cache(app: Flask) -> Any:
    with app.app_context():
        return app.extensions["wxlogin"].store.backend.near_cache


def test_off_by_default(redis_app: Flask) -> None:
    assert redis_app.config["WXLOGIN_NEAR_CACHE"] is False
    assert _near_cache(redis_app) is None


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_setting_must_be_a_bool(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="WXLOGIN_NEAR_CACHE must be True or False"):
        make_app(WXLOGIN_NEAR_CACHE=value)


@pytest.mark.parametrize(
    "cache_config, reason",
    [
        ({}, "not SimpleCache: only Redis tells"),
        ({"CACHE_TYPE": "SimpleCache"}, "not SimpleCache: only Redis tells"),
        ({"CACHE_TYPE": "FileSystemCache", "CACHE_DIR": "{tmp}"}, "not FileSystemCache"),
        ({"CACHE_TYPE": "RedisSentinelCache", "CACHE_REDIS_SENTINELS": [("127.0.0.1", 1)],
          "CACHE_REDIS_SENTINEL_MASTER": "mymaster"}, "not through Sentinel: after a failover"),
    ],
    ids=["embedded", "simple", "filesystem", "sentinel"],
)
def test_refused_without_one_redis_node(cache_config: Dict[str, Any], reason: str, tmp_path: Path) -> None:
    config = {key: (value.format(tmp=tmp_path) if isinstance(value, str) else value) for key, value in cache_config.items()}
    with pytest.raises(ConfigurationError, match=reason):
        make_app(WXLOGIN_NEAR_CACHE=True, **config)


def test_refused_on_a_cluster(redis_cluster: str) -> None:
    with pytest.raises(ConfigurationError, match="not a RedisCluster: a Cluster spreads keys"):
        make_app(WXLOGIN_NEAR_CACHE=True, CACHE_TYPE="RedisClusterCache", CACHE_REDIS_CLUSTER=redis_cluster)


def _me_until_hit(client: Any, skey: str, near_cache: Any) -> None:
    for _ in range(500):
        hits = near_cache.stats["hits"]
        assert client.get("/me", headers={"X-WX-Skey": skey}).status_code == 200
        if near_cache.stats["hits"] > hits:
            return
    raise AssertionError("no request was served from the near cache")


def test_repeated_requests_are_served_from_memory_and_logout_ends_them(tmp_path: Path, wechat: Any) -> None:
    from .conftest import login

    with LocalRedis(tmp_path / "redis").start() as server:  # its own: commandstats count only ours
        app = make_app(CACHE_TYPE="RedisCache", CACHE_REDIS_URL=server.url, WXLOGIN_NEAR_CACHE=True)
        client, near_cache, redis_db = app.test_client(), _near_cache(app), server.client()
        skey = login(client)
        _me_until_hit(client, skey, near_cache)
        gets, hits = _gets(redis_db), near_cache.stats["hits"]
        for _ in range(5):
            assert client.get("/me", headers={"X-WX-Skey": skey}).status_code == 200
        served_from_memory = near_cache.stats["hits"] - hits
        assert served_from_memory >= 1 and served_from_memory + _gets(redis_db) - gets == 5
        assert client.post("/auth/logout", headers={"X-WX-Skey": skey}).status_code == 200
        response = client.get("/me", headers={"X-WX-Skey": skey})
        assert response.status_code == 401 and response.get_json()["error"] == "session_expired"


@pytest.mark.parametrize(
    "limits, reached",
    [({"WXLOGIN_SESSION_IDLE_TIMEOUT": 600}, 600),
     ({"WXLOGIN_SESSION_IDLE_TIMEOUT": 3600, "WXLOGIN_SESSION_MAX_AGE": 900}, 900)],
    ids=["idle-timeout", "max-age"],
)
def test_an_expired_session_is_refused_though_its_record_is_served_from_memory(
    redis_url: str, redis_prefix: str, wechat: Any, limits: Dict[str, int], reached: int
) -> None:
    """Expiry needs no write to tell anyone: each hit judges the record's own timestamps."""
    from .conftest import login

    app = make_app(CACHE_TYPE="RedisCache", CACHE_REDIS_URL=redis_url, WXLOGIN_KEY_PREFIX=redis_prefix,
                   WXLOGIN_NEAR_CACHE=True, **limits)
    client, near_cache = app.test_client(), _near_cache(app)
    skey = login(client)
    logged_in_by = time.time()
    _me_until_hit(client, skey, near_cache)
    hits = near_cache.stats["hits"]
    with app.app_context():
        app.extensions["wxlogin"].store.clock = lambda: logged_in_by + reached
    response = client.get("/me", headers={"X-WX-Skey": skey})
    assert response.status_code == 401 and response.get_json()["error"] == "session_expired"
    assert near_cache.stats["hits"] == hits + 1  # refused on the record in memory, not on a fresh read


def _gets(redis_db: Any) -> int:
    """Session reads so far: one HMGET each."""
    return int(redis_db.info("commandstats").get("cmdstat_hmget", {}).get("calls", 0))


def test_redis_killed_is_503_then_restarted_empty_is_401(tmp_path: Path, redis_prefix: str, wechat: Any) -> None:
    from .conftest import login

    with LocalRedis(tmp_path / "redis").start() as server:
        app = make_app(CACHE_TYPE="RedisCache", CACHE_REDIS_URL=server.url, WXLOGIN_KEY_PREFIX=redis_prefix,
                       WXLOGIN_NEAR_CACHE=True)
        client, near_cache = app.test_client(), _near_cache(app)
        skey = login(client)
        _me_until_hit(client, skey, near_cache)
        server.kill(server.port)
        response = client.get("/me", headers={"X-WX-Skey": skey})
        assert response.status_code == 503 and response.get_json()["error"] == "session_store_unavailable"
        server.start()  # empty: the session is gone
        assert client.get("/me", headers={"X-WX-Skey": skey}).status_code == 401


@pytest.mark.parametrize("hogs", [0, 2], ids=["idle", "cpu-hogs"])
def test_logout_logout_all_end_session_and_eviction_in_one_process_refused_by_another(redis_url: str, redis_prefix: str, hogs: int) -> None:
    """Two real app processes; the full run is ``benchmarks/revocation.py --through app``."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "revocation.py"), "--through", "app", "--redis-url", redis_url,
         "--trials", "400", "--hogs", str(hogs), "--prefix", redis_prefix],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["stale_accepts"] == 0, result
    assert result["warm_hits"] >= 0.9 * result["trials"], result


def test_logout_ends_with_the_revokers_barrier_ping(tmp_path: Path, wechat: Any) -> None:
    """After a revoking write, one PING on the writer's connection: other processes are told first."""
    from .conftest import login

    with LocalRedis(tmp_path / "redis").start() as server:
        app = make_app(CACHE_TYPE="RedisCache", CACHE_REDIS_URL=server.url, WXLOGIN_NEAR_CACHE=True)
        client, observer = app.test_client(), server.client()
        skey = login(client)
        assert client.get("/me", headers={"X-WX-Skey": skey}).status_code == 200

        def last_data_commands() -> set:
            return {c["cmd"] for c in observer.client_list() if "P" not in c["flags"] and c["id"] != str(observer.client_id())}

        assert last_data_commands() == {"hmget"}
        assert client.post("/auth/logout", headers={"X-WX-Skey": skey}).status_code == 200
        assert last_data_commands() == {"ping"}
