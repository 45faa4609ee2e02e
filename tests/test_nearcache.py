"""The near cache against real Redis servers: hits, bounds, the invariants of nearcache.py, and faults.

Destructive tests (kill, restart, freeze, flush, output-buffer drop) run on a
private redis-server of their own (tests/local_redis.py); the others track a
per-test prefix on the shared server.
"""
from __future__ import annotations

import ctypes
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional

import pytest
import redis

from flask_wxlogin import nearcache
from flask_wxlogin.nearcache import NearCache, barrier

from .local_redis import LocalRedis

ROOT = Path(__file__).resolve().parent.parent
FIELD = "ref"


class Harness:
    """A near cache over one Redis, its untracked data client, and a second client that writes."""

    def __init__(self, client: redis.Redis, writer: redis.Redis, prefix: str, **options: Any) -> None:
        self.client, self.writer, self.prefix = client, writer, prefix
        self.cache = NearCache.for_client(client, prefix, **options)
        self.loads = 0

    def key(self, name: str = "u") -> str:
        return self.prefix + name

    def load(self, name: str = "u") -> Callable[[], Optional[bytes]]:
        def hget() -> Optional[bytes]:
            self.loads += 1
            return self.client.hget(self.key(name), FIELD)  # type: ignore[no-any-return]
        return hget

    def read(self, name: str = "u") -> Optional[bytes]:
        return self.cache.read(self.key(name), FIELD, self.load(name))

    def hit(self, name: str = "u") -> "tuple[Optional[bytes], bool]":
        """Read once; the value and whether it came from memory."""
        loads = self.loads
        value = self.read(name)
        return value, self.loads == loads

    def write(self, value: Optional[str], name: str = "u") -> None:
        """Set or (with None) end the field from the other client, with the revoker's barrier."""
        if value is None:
            self.writer.hdel(self.key(name), FIELD)
        else:
            self.writer.hset(self.key(name), FIELD, value)
        barrier(self.writer)

    def warm(self, name: str = "u", timeout: float = 3.0) -> bytes:
        """Read until the value is served from memory (the first PONG must come back first)."""
        deadline = time.monotonic() + timeout
        while True:
            value, hit = self.hit(name)
            if hit:
                assert value is not None
                return value
            assert time.monotonic() < deadline, "the near cache never served a hit"
            time.sleep(0.002)

    def invalidation_client_id(self) -> int:
        """The server's id of this cache's invalidation connection, found by its address (the
        shared Redis may have other subscribers)."""
        host, port = self.cache._conn._sock.getsockname()[:2]  # type: ignore[union-attr]
        (entry,) = [c for c in self.writer.client_list() if c["addr"] == f"{host}:{port}" and "P" in c["flags"]]
        return int(entry["id"])


@pytest.fixture
def shared(redis_url: str, redis_prefix: str) -> Iterator[Harness]:
    harness = Harness(redis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url), redis_prefix)
    yield harness
    harness.cache.close()


def _private(tmp_path: Path, *args: str) -> Iterator[LocalRedis]:
    with LocalRedis(tmp_path / "redis", args).start() as server:
        yield server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LocalRedis]:
    yield from _private(tmp_path)


@pytest.fixture
def private(server: LocalRedis) -> Iterator[Harness]:
    harness = Harness(server.client(), server.client(), "nc:")
    yield harness
    harness.cache.close()


# -- hits, counts, bounds --------------------------------------------------


def test_hit_served_from_memory_and_dropped_on_write(shared: Harness) -> None:
    shared.write("one")
    assert shared.warm() == b"one"
    shared.write("two")
    assert shared.hit() == (b"two", False)
    assert shared.warm() == b"two"
    shared.write(None)
    assert shared.hit() == (None, False)


def test_a_hit_reads_the_socket_only_when_something_arrived(shared: Harness) -> None:
    shared.write("one")
    shared.warm()
    cache = shared.cache
    cache.clock = lambda: cache._lease_from + 0.1  # type: ignore[operator]  (inside the lease, no PING due)
    conn = cache._conn
    reads: List[int] = []
    can_read = conn.can_read  # type: ignore[union-attr]
    conn.can_read = lambda *args, **kwargs: reads.append(1) or can_read(*args, **kwargs)  # type: ignore[union-attr]
    for _ in range(5):
        assert shared.hit() == (b"one", True)
    assert reads == [], "a hit tried to read although nothing had arrived"
    shared.write("two")  # its invalidation is on the socket once the barrier returns
    assert shared.hit() == (b"two", False)
    assert reads, "the invalidation was not read before the hit"


def test_missing_fields_are_not_cached(shared: Harness) -> None:
    shared.write("one")
    shared.warm()
    for _ in range(3):
        assert shared.cache.read(shared.key(), "other", shared.load()) is not None  # the loader's field
    assert shared.cache.read(shared.key("nobody"), FIELD, lambda: None) is None
    assert shared.cache.read(shared.key("nobody"), FIELD, lambda: b"x") == b"x"


def test_keys_outside_the_tracked_prefix_are_never_kept(shared: Harness) -> None:
    outside = "wxltest:untracked:" + shared.prefix
    loads = []
    for _ in range(20):
        shared.cache.read(outside, FIELD, lambda: loads.append(1) or b"v")
        time.sleep(0.002)
    assert len(loads) == 20 and len(shared.cache) == 0


def test_counts_hits_and_misses_and_reports_them_as_metrics(shared: Harness) -> None:
    from prometheus_client import REGISTRY

    def reported(event: str) -> float:
        return REGISTRY.get_sample_value("wxlogin_near_cache_total", {"event": event}) or 0.0

    before = {event: reported(event) for event in ("hit", "miss")}
    shared.write("one")
    shared.warm()
    assert (shared.cache.stats["hits"], shared.cache.stats["misses"]) == (1, shared.loads) and shared.loads >= 1
    shared.read()
    assert shared.cache.stats["hits"] == 2
    assert reported("hit") - before["hit"] == 2 and reported("miss") - before["miss"] == shared.loads


def test_bounded_by_entries_least_recently_used_first(shared: Harness) -> None:
    shared.cache.max_entries = 3
    for name in "abcd":
        shared.write(name, name)
    shared.warm("a")
    for name in "bc":
        shared.warm(name)
    shared.read("a")  # a is now the most recently used
    shared.warm("d")
    assert len(shared.cache) == 3
    assert shared.hit("a")[1] and shared.hit("c")[1] and shared.hit("d")[1]
    assert not shared.hit("b")[1]


def test_bounded_by_bytes(shared: Harness) -> None:
    shared.cache.max_bytes = 3 * (nearcache.ENTRY_OVERHEAD + 200)
    for name in "abcdef":
        shared.write("x" * 150, name)
        shared.warm(name)
        assert shared.cache.size <= shared.cache.max_bytes
    assert len(shared.cache) == 3
    shared.write("y" * (shared.cache.max_bytes + 1), "huge")
    shared.read("huge"), shared.read("huge")
    assert not shared.hit("huge")[1]
    assert shared.cache.size <= shared.cache.max_bytes


# -- the invariants --------------------------------------------------------


def test_no_insert_when_the_key_was_invalidated_during_the_read(shared: Harness) -> None:
    shared.write("old")
    shared.warm()
    shared.write("older-than-cache")  # drop the entry: the next read is a miss

    def read_then_overwritten() -> Optional[bytes]:
        value = shared.client.hget(shared.key(), FIELD)
        shared.write("new")  # lands after the GET, before the miss could insert
        return value  # type: ignore[no-any-return]

    assert shared.cache.read(shared.key(), FIELD, read_then_overwritten) == b"older-than-cache"
    assert shared.hit() == (b"new", False)


def test_no_insert_when_the_connection_was_replaced_during_the_read(private: Harness) -> None:
    private.write("old")
    private.warm()
    private.write("stale-soon")

    def read_then_disconnected() -> Optional[bytes]:
        value = private.client.hget(private.key(), FIELD)
        private.writer.client_kill_filter(_id=private.invalidation_client_id())
        private.writer.hset(private.key(), FIELD, "new")  # nobody is listening now
        return value  # type: ignore[no-any-return]

    assert private.cache.read(private.key(), FIELD, read_then_disconnected) == b"stale-soon"
    assert private.hit() == (b"new", False)
    assert private.warm() == b"new"  # reconnected: what it serves from memory is current


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _pong_arrives(cache: NearCache) -> None:
    """Wait until the PING's answer is on the socket, without reading it (the next read drains it)."""
    deadline = time.monotonic() + 2
    while not select.select([cache._conn._sock], [], [], 0.01)[0]:  # type: ignore[union-attr]
        assert time.monotonic() < deadline


def test_lease_counts_from_the_send_time_of_the_acknowledged_ping(server: LocalRedis, private: Harness) -> None:
    clock = Clock()
    private.cache.clock = clock
    private.write("one")
    private.read()  # a miss that connects and sends the first PING at 100.0
    _pong_arrives(private.cache)
    clock.now = 100.2
    assert private.hit() == (b"one", False)  # PONG drained: lease from 100.0; the miss inserts
    assert private.hit() == (b"one", True)
    clock.now = 100.5
    assert private.hit() == (b"one", True)  # half the lease gone: a PING is sent at 100.5
    _pong_arrives(private.cache)
    server.freeze(server.port)  # no later PONG
    try:
        clock.now = 101.4
        assert private.hit() == (b"one", True)  # the PONG read at 101.4 counts from 100.5
        clock.now = 101.5
        loaded = private.cache.read(private.key(), FIELD, lambda: b"from the loader")
        assert loaded == b"from the loader", "a hit 1 s after the last acknowledged PING was sent"
    finally:
        server.thaw()


def test_frozen_redis_no_hit_past_the_lease(server: LocalRedis, private: Harness) -> None:
    private.client = server.client(socket_timeout=0.2)  # the loader's reads fail fast while frozen
    private.write("one")
    private.warm()
    server.freeze(server.port)
    frozen_at = time.monotonic()
    hits: List[float] = []
    try:
        while time.monotonic() < frozen_at + 1.6 * private.cache.lease:
            try:
                if private.hit()[1]:
                    hits.append(time.monotonic())
            except redis.RedisError:
                pass
            time.sleep(0.01)
    finally:
        server.thaw()
    assert hits, "no hit while the lease lasted: the test proves nothing"
    assert max(hits) < frozen_at + private.cache.lease
    private.write("two")
    assert private.warm() == b"two"


def test_killed_redis_no_hits_then_restarted_empty_no_stale(server: LocalRedis, private: Harness) -> None:
    private.write("one")
    private.warm()
    server.kill(server.port)
    for _ in range(3):
        with pytest.raises(redis.ConnectionError):
            private.read()
    assert not private.cache.connected and len(private.cache) == 0
    server.start()
    assert private.read() is None  # the restarted server is empty: the session is gone
    private.write("fresh")
    assert private.warm() == b"fresh"
    private.write(None)
    assert private.hit() == (None, False)


def test_invalidation_connection_killed_no_stale_then_reconnects(private: Harness) -> None:
    private.write("one")
    private.warm()
    private.writer.client_kill_filter(_id=private.invalidation_client_id())
    private.write("two")  # its invalidation has nobody to go to
    assert private.hit() == (b"two", False)
    assert private.cache.stats["flushes"] >= 1
    assert private.warm() == b"two"  # reconnected: hits again
    private.write(None)
    assert private.hit() == (None, False)


@pytest.fixture
def small_buffers(tmp_path: Path) -> Iterator[LocalRedis]:
    yield from _private(tmp_path, "--client-output-buffer-limit", "pubsub 65536 0 0")


def test_subscriber_dropped_for_its_output_buffer(small_buffers: LocalRedis) -> None:
    harness = Harness(small_buffers.client(), small_buffers.client(), "nc:")
    harness.write("one")
    harness.warm()
    subscriber = harness.invalidation_client_id()
    pipe = harness.writer.pipeline(transaction=False)
    for number in range(20_000):  # invalidations the cache does not read meanwhile
        pipe.set(harness.key(f"filler:{number:05d}:" + "x" * 300), 1)
    pipe.execute()
    assert subscriber not in [int(c["id"]) for c in harness.writer.client_list()], "not dropped"
    harness.write("two")
    assert harness.hit() == (b"two", False)
    assert harness.warm() == b"two"
    harness.cache.close()


def test_flushdb_flushes_everything(private: Harness) -> None:
    for name in "ab":
        private.write("one", name)
        private.warm(name)
    private.writer.flushdb()
    barrier(private.writer)
    assert private.hit("a") == (None, False) and private.hit("b") == (None, False)
    assert private.cache.connected, "the flush message was read, not taken for a broken connection"


def test_flush_announced_as_resp3_null_to_a_resp2_subscriber(private: Harness) -> None:
    """Redis 7.0 sends ``_`` when the flushing client is itself tracked; a RESP2 parser chokes on it."""
    private.write("one")
    private.warm()
    flusher = private.writer
    flusher.execute_command(
        "CLIENT", "TRACKING", "ON", "REDIRECT", private.invalidation_client_id(), "BCAST", "PREFIX", "zz:"
    )
    flusher.flushdb()
    barrier(flusher)
    reconnects = private.cache.stats["reconnects"]
    assert private.hit() == (None, False)
    assert private.cache.stats["reconnects"] == reconnects and private.cache.connected


def test_after_fork_the_child_caches_nothing_until_it_has_its_own_connection(shared: Harness) -> None:
    shared.write("one")
    shared.warm()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running pytest's teardown
        try:
            first = shared.hit()
            connected_after = shared.cache.connected
            report = {"first_hit": first[1], "first": first[0].decode(), "own": connected_after,
                      "then_hit": shared.warm() == b"one"}
            os.write(write_end, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    report = json.loads(os.read(read_end, 4096))
    os.close(read_end)
    assert status == 0
    assert report == {"first_hit": False, "first": "one", "own": True, "then_hit": True}
    assert shared.hit() == (b"one", True), "the child's exit disturbed the parent's connection"


def test_after_a_fork_without_pythons_hooks_a_revoked_entry_is_not_served(shared: Harness) -> None:
    """uWSGI forks through C's fork() and, by default, runs no ``os.register_at_fork`` hook."""
    shared.write("one")
    shared.warm()
    read_end, write_end = os.pipe()
    pid = ctypes.PyDLL(None).fork()  # PyDLL: the GIL stays held across the call, as in a C server
    if pid == 0:
        try:
            os.read(read_end, 1)  # wait until the parent has revoked (and drained the shared socket)
            value, hit = shared.hit()
            os.write(write_end, json.dumps({"value": None if value is None else value.decode(), "hit": hit}).encode())
        finally:
            os._exit(0)
    shared.write(None)  # HDEL + barrier PING
    assert shared.hit() == (None, False)  # the parent drained the invalidation the child shares
    os.write(write_end, b"g")
    deadline = time.monotonic() + 10
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the child hung")
        time.sleep(0.01)
    report = json.loads(os.read(read_end, 4096))
    os.close(read_end)
    os.close(write_end)
    assert report == {"value": None, "hit": False}


def test_refuses_sentinel_cluster_and_unknown_clients(redis_cluster: str) -> None:
    sentinel = redis.sentinel.Sentinel([("127.0.0.1", 1)]).master_for("mymaster")
    with pytest.raises(ValueError, match="Sentinel"):
        NearCache.for_client(sentinel, "p:")
    host, port = redis_cluster.split(",")[0].split(":")
    cluster = redis.RedisCluster(host=host, port=int(port))
    with pytest.raises(ValueError, match="Cluster"):
        NearCache.for_client(cluster, "p:")
    with pytest.raises(ValueError, match="single Redis node"):
        NearCache.for_client(object(), "p:")
    with pytest.raises(ValueError, match="prefix"):
        NearCache.for_client(redis.Redis(), "")


# -- revocation across two real OS processes -------------------------------


@pytest.mark.parametrize("hogs", [0, 2], ids=["idle", "cpu-hogs"])
def test_revocation_in_one_process_is_refused_by_the_other(redis_url: str, redis_prefix: str, hogs: int) -> None:
    """The short variant of ``benchmarks/revocation.py`` (40,000 trials by default there)."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "revocation.py"), "--redis-url", redis_url,
         "--trials", "4000", "--hogs", str(hogs), "--prefix", redis_prefix],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["stale_accepts"] == 0, result
    assert result["warm_hits"] >= 0.95 * result["trials"], "too few hits before revoking: the proof proves little"


# -- a near cache that cannot subscribe (review of issue 16) -------------------------------

#: An ACL user that may read and write but not run CLIENT (so no CLIENT TRACKING).
NO_CLIENT = ("--user", "app", "on", ">app-password-0042", "~*", "&*", "+@all", "-client")


@pytest.fixture
def acl_server(tmp_path: Path) -> Iterator[LocalRedis]:
    yield from _private(tmp_path, *NO_CLIENT)


def test_a_near_cache_that_cannot_subscribe_says_why_once_a_minute_and_counts_it(
    acl_server: LocalRedis, monkeypatch: Any, caplog: Any
) -> None:
    client = acl_server.client(username="app", password="app-password-0042")
    client.hset("nc:u", FIELD, "one")
    clock = Clock()
    cache = NearCache.for_client(client, "nc:", clock=clock)
    with caplog.at_level(logging.DEBUG, "flask_wxlogin"):
        for _ in range(3):  # each read retries the subscription once RECONNECT_EVERY has passed
            assert cache.read("nc:u", FIELD, lambda: client.hget("nc:u", FIELD)) == b"one"
            clock.now += 1
        clock.now += 60
        assert cache.read("nc:u", FIELD, lambda: client.hget("nc:u", FIELD)) == b"one"
    warnings = [record for record in caplog.records if record.name == "flask_wxlogin"]
    assert [record.levelno for record in warnings] == [logging.WARNING] * 2
    assert "near cache cannot subscribe" in warnings[0].getMessage()
    assert "error reply (NoPermissionError)" in warnings[0].getMessage()
    assert "app-password-0042" not in caplog.text
    assert cache.stats["errors"] == 4 and not cache.connected  # wxlogin_near_cache_total{event="error"}


def test_invalidate_in_a_forked_child_drops_everything_inherited_and_leaves_the_parent_alone(shared: Harness) -> None:
    shared.write("one")
    shared.write("two", name="v")
    shared.warm()
    shared.warm("v")
    parent_id = shared.invalidation_client_id()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            shared.cache.invalidate(shared.key())  # the child's first call: it must start afresh
            report = {"entries": len(shared.cache), "connected": shared.cache.connected}
            os.write(write_end, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    report = json.loads(os.read(read_end, 4096))
    os.close(read_end)
    assert status == 0 and report == {"entries": 0, "connected": False}  # not "v", not the parent's socket
    assert shared.hit() == (b"one", True) and shared.invalidation_client_id() == parent_id
