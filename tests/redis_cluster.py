"""Throwaway Redis deployments on loopback, started from redis-server: a Cluster and a Sentinel setup.

:class:`LocalCluster` is three masters and no replicas, each with
``cluster-require-full-coverage no``: when a master is lost, the others keep
serving their own slots. A cluster node also listens on its cluster bus port,
its port + 10000, so both must be free.

:class:`LocalSentinel` is one master, one replica and one sentinel watching
them as ``mymaster``.
"""
from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, TypeVar

import redis

HOST = "127.0.0.1"
BUS_OFFSET = 10000
#: Milliseconds without an answer before the other masters flag a node as failing.
NODE_TIMEOUT_MS = 1000
SENTINEL_MASTER = "mymaster"

S = TypeVar("S", bound="_Servers")


def spec(ports: Sequence[int]) -> str:
    """``CACHE_REDIS_CLUSTER`` for these ports."""
    return ",".join(f"{HOST}:{port}" for port in ports)


def ports(cluster_spec: str) -> List[int]:
    """The ports in ``CACHE_REDIS_CLUSTER``-style ``host:port,host:port`` (all on loopback)."""
    return [int(address.rsplit(":", 1)[1]) for address in cluster_spec.split(",")]


def node(port: int, timeout: float = 2) -> redis.Redis:
    """A plain client for one server, for looking at a deployment from outside."""
    return redis.Redis(HOST, port, socket_timeout=timeout, socket_connect_timeout=timeout)


def healthy(ports: Sequence[int]) -> bool:
    """Whether ``ports`` are exactly the masters of one cluster that serves every slot."""
    try:
        for port in ports:
            client = node(port, timeout=0.5)
            info = client.execute_command("CLUSTER INFO")
            if info["cluster_state"] != "ok" or info["cluster_slots_ok"] != "16384":
                return False
            if {int(row[2][1]) for row in client.execute_command("CLUSTER SLOTS")} != set(ports):
                return False
    except redis.RedisError:
        return False
    return True


def node_of(ports: Sequence[int], key: str) -> int:
    """The port of the master serving ``key``, from CLUSTER KEYSLOT and the slot map."""
    for port in ports:
        try:
            client = node(port)
            slot = client.execute_command("CLUSTER KEYSLOT", key)
            for start, end, master, *_ in client.execute_command("CLUSTER SLOTS"):
                if start <= slot <= end:
                    return int(master[1])
        except redis.ConnectionError:
            continue
    raise LookupError(f"no master serves {key!r}")


def keys(ports: Sequence[int], pattern: str) -> Dict[int, List[bytes]]:
    """The keys matching ``pattern`` on each reachable master."""
    found = {}
    for port in ports:
        try:
            found[port] = list(node(port).scan_iter(match=pattern))
        except redis.ConnectionError:
            continue
    return found


def delete_keys(ports: Sequence[int], pattern: str) -> None:
    """Delete the keys matching ``pattern`` from each reachable master, one per command."""
    for port, names in keys(ports, pattern).items():
        client = node(port)
        for name in names:
            client.delete(name)


def free_ports(count: int, bus: bool = False) -> List[int]:
    """``count`` consecutive free loopback ports; with ``bus``, their ports + 10000 too."""
    for _ in range(200):
        base = random.randrange(20000, 30000)
        ports = list(range(base, base + count))
        if all(_free(port) and (not bus or _free(port + BUS_OFFSET)) for port in ports):
            return ports
    raise RuntimeError("no free loopback ports")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _wait(deadline: float, message: str, check: Callable[[], Any]) -> None:
    while True:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(message)
        time.sleep(0.05)


class _Servers:
    """redis-server processes in one temporary directory; :meth:`stop` kills them all and removes it."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.processes: Dict[int, subprocess.Popen] = {}

    def _launch(self, port: int, *args: str) -> None:
        server = shutil.which("redis-server")
        if not server:
            raise RuntimeError("redis-server is not installed")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.processes[port] = subprocess.Popen(
            [server, *args, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), "--logfile", f"redis-{port}.log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def kill(self, port: int) -> None:
        """SIGKILL one server: no goodbye to its peers, nothing saved."""
        process = self.processes[port]
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def freeze(self, port: int) -> None:
        """SIGSTOP one server: the kernel still accepts connections, nothing answers them."""
        self.processes[port].send_signal(signal.SIGSTOP)

    def __enter__(self: S) -> S:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)  # a frozen server would not act on SIGTERM
            process.wait(10)
        self.processes.clear()
        shutil.rmtree(self.directory, ignore_errors=True)


class LocalCluster(_Servers):
    """Three masters, no replicas, every slot assigned."""

    def __init__(self, directory: Path, ports: Optional[Sequence[int]] = None) -> None:
        super().__init__(directory)
        self.ports = list(ports) if ports is not None else free_ports(3, bus=True)

    @property
    def spec(self) -> str:
        return spec(self.ports)

    def start(self, timeout: float = 20) -> "LocalCluster":
        cli = shutil.which("redis-cli")
        if not cli:
            raise RuntimeError("redis-cli is not installed")
        deadline = time.monotonic() + timeout
        try:
            for port in self.ports:
                self._launch(port, "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                             "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                             "--cluster-require-full-coverage", "no")
            for port in self.ports:
                _wait(deadline, f"node {port} did not start", node(port).ping)
            subprocess.run(
                [cli, "--cluster", "create", *self.spec.split(","), "--cluster-replicas", "0", "--cluster-yes"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout,
            )
            _wait(deadline, "the cluster did not reach cluster_state:ok", lambda: healthy(self.ports))
        except BaseException:
            self.stop()
            raise
        return self

    def node_of(self, key: str) -> int:
        return node_of(self.ports, key)

    def wait_flagged_failed(self, port: int, timeout: float = 15) -> None:
        """Until every other master flags ``port`` as ``fail`` (some node timeouts after it went)."""
        others = [other for other in self.ports if other != port]

        def flagged() -> bool:
            return all(
                "fail" in node(other).execute_command("CLUSTER NODES")[f"{HOST}:{port}"]["flags"].split(",")
                for other in others
            )

        _wait(time.monotonic() + timeout, f"node {port} was not flagged as failed", flagged)


class LocalSentinel(_Servers):
    """A master, its replica, and a sentinel that knows them as ``mymaster``."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.master, self.replica, self.sentinel = free_ports(3)

    def start(self, timeout: float = 20) -> "LocalSentinel":
        deadline = time.monotonic() + timeout
        try:
            self._launch(self.master, "--repl-diskless-sync-delay", "0")
            self._launch(self.replica, "--replicaof", HOST, str(self.master))
            self.directory.mkdir(parents=True, exist_ok=True)
            config = self.directory / "sentinel.conf"
            config.write_text(f"sentinel monitor {SENTINEL_MASTER} {HOST} {self.master} 1\n")
            self._launch(self.sentinel, str(config), "--sentinel")
            _wait(deadline, "the replica did not sync",
                  lambda: node(self.replica).info("replication")["master_link_status"] == "up")
            _wait(deadline, "the sentinel does not know the master",
                  lambda: node(self.sentinel).sentinel_get_master_addr_by_name(SENTINEL_MASTER) == (HOST.encode(), self.master))
        except BaseException:
            self.stop()
            raise
        return self
