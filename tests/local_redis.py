"""A private redis-server for one test, which it may kill, restart empty, freeze or reconfigure."""
from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Sequence

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .redis_cluster import HOST, _Servers, _wait, free_ports


class LocalRedis(_Servers):
    """One server on a free port; ``args`` are extra redis-server options, kept across restarts."""

    def __init__(self, directory: Path, args: Sequence[str] = ()) -> None:
        super().__init__(directory)
        self.port = free_ports(1)[0]
        self.args = list(args)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def client(self, **options: object) -> redis.Redis:
        options.setdefault("socket_timeout", 1.0)
        options.setdefault("socket_connect_timeout", 1.0)
        options.setdefault("retry", Retry(NoBackoff(), 0))
        return redis.Redis(HOST, self.port, **options)

    def start(self, timeout: float = 10) -> "LocalRedis":
        self._launch(self.port, *self.args)
        _wait(time.monotonic() + timeout, f"redis-server on {self.port} did not start", self.client().ping)
        return self

    def restart(self) -> None:
        """Kill it and start an empty one on the same port."""
        self.kill(self.port)
        self.start()

    def thaw(self) -> None:
        self.processes[self.port].send_signal(signal.SIGCONT)
