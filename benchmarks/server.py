"""Section 3: gunicorn (2 sync workers) under wrk on loopback, every route in the same run.

Both programs are bounded: wrk runs for a fixed number of seconds under a
subprocess timeout, and gunicorn is stopped (SIGTERM, then SIGKILL) by the
process id this module started.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import IO, Any, Dict, Iterator, List, Optional, Tuple

import requests

from common import (
    APPID, APPSECRET, BENCH_DIR, BUSY_WAIT_US, SECRET_KEY, SHUFFLE_SEED, Settings, Spread, copy_session_to_floor,
    delete_our_keys, ratios, redis_client,
)
from flask_wxlogin.testing import FakeWeChat
from variants import LOGIN_CODE

log = logging.getLogger("benchmarks")

HOST = "127.0.0.1"
LABELS = {
    "bare": "bare route",
    "floor": "floor: bare + 1 raw HMGET",
    "floor_spin": f"control: floor + {BUSY_WAIT_US} µs busy-wait",
    "jwt": "Flask-JWT-Extended",
    "ours": "ours, Redis",
    "near": "ours, Redis + near cache",
}
#: Paths of routes not named like their label.
PATHS = {"near": "near/ours"}
WORKERS = 2
#: wrk's open connections: enough to keep both sync workers busy.
CONNECTIONS = 4
WARM_UP_SECONDS = 1


def run(settings: Settings) -> Dict[str, Any]:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk")
    client = redis_client()
    delete_our_keys(client)
    try:
        with FakeWeChat(APPID, APPSECRET, one_time_codes=False) as fake, gunicorn(fake.url) as (base, output):
            headers = _credentials(base, client)
            for name in LABELS:
                _wrk(base, name, WARM_UP_SECONDS, headers)
            runs = _rounds(base, headers, settings)
            server_log = _tail(output)
    finally:
        delete_our_keys(client)
        client.close()
    return {"rounds": settings.server_rounds, "seconds": settings.server_seconds, "runs": runs,
            "server_log": server_log, **_summarise(runs)}


def _rounds(base: str, headers: Dict[str, Dict[str, str]], settings: Settings) -> Dict[str, List[Dict[str, float]]]:
    log.info("gunicorn: %d rounds of %d s per route", settings.server_rounds, settings.server_seconds)
    runs: Dict[str, List[Dict[str, float]]] = {name: [] for name in LABELS}
    order = list(LABELS)
    shuffle = random.Random(SHUFFLE_SEED).shuffle
    for _ in range(settings.server_rounds):
        shuffle(order)
        for name in order:
            runs[name].append(_wrk(base, name, settings.server_seconds, headers))
    return runs


def _summarise(runs: Dict[str, List[Dict[str, float]]]) -> Dict[str, Any]:
    rps = {name: [run["rps"] for run in results] for name, results in runs.items()}
    return {
        "rps": {name: Spread.of(values) for name, values in rps.items()},
        "x_bare": {name: ratios(values, rps["bare"]) for name, values in rps.items()},
        "x_floor": {name: ratios(values, rps["floor"]) for name, values in rps.items()},
        "p50_ms": {name: Spread.of([run["p50_ms"] for run in results]) for name, results in runs.items()},
        "p99_ms": {name: Spread.of([run["p99_ms"] for run in results]) for name, results in runs.items()},
        "non_2xx": {name: sum(run["non_2xx"] for run in results) for name, results in runs.items()},
        "socket_errors": {name: sum(run["socket_errors"] for run in results) for name, results in runs.items()},
    }


# -- gunicorn ---------------------------------------------------------------------


@contextlib.contextmanager
def gunicorn(api_base: str, workers: int = WORKERS, **env: str) -> Iterator[Tuple[str, IO[str]]]:
    """Serve ``server_app`` on a free loopback port in its own process group.

    Yields its base URL and its log; always stops the whole group. ``env``
    adds ``WXLBENCH_*`` settings (see ``server_app``).
    """
    port = _free_port()
    env = {**os.environ, "WXLBENCH_SECRET_KEY": SECRET_KEY, "WXLBENCH_APPID": APPID,
           "WXLBENCH_APPSECRET": APPSECRET, "WXLBENCH_API_BASE": api_base, **env}
    command = [
        sys.executable, "-m", "gunicorn", "--workers", str(workers), "--worker-class", "sync",
        "--bind", f"{HOST}:{port}", "--chdir", str(BENCH_DIR), "--log-level", "warning",
        "--worker-tmp-dir", "/dev/shm", "server_app:create_app()",
    ]
    with tempfile.TemporaryFile(mode="w+") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            base = f"http://{HOST}:{port}"
            _wait_ready(base, process, output)
            yield base, output
        finally:
            _stop_group(process)


def _tail(output: IO[str], lines: int = 20) -> List[str]:
    output.seek(0)
    return output.read().splitlines()[-lines:]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _wait_ready(base: str, process: "subprocess.Popen[bytes]", output: Any, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        with contextlib.suppress(requests.ConnectionError):
            if requests.get(base + "/bare", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    output.seek(0)
    raise RuntimeError(f"gunicorn did not come up:\n{output.read()[-2000:]}")


def _stop_group(process: "subprocess.Popen[bytes]") -> None:
    """SIGTERM the process group, then SIGKILL whatever is left of it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=5)


def _credentials(base: str, client: Any) -> Dict[str, Dict[str, str]]:
    """Request headers per route: an skey from our login route, a JWT, nothing for the rest."""
    skey = requests.post(base + "/auth/login", json={"code": LOGIN_CODE}, timeout=5).json()["data"]["skey"]
    copy_session_to_floor(client)
    token = requests.post(base + "/jwt/token", timeout=5).json()["token"]
    headers = {"bare": {}, "floor": {}, "floor_spin": {}, "jwt": {"Authorization": f"Bearer {token}"},
               "ours": {"X-WX-Skey": skey}, "near": {"X-WX-Skey": skey}}
    for name, extra in headers.items():
        response = requests.get(f"{base}/{PATHS.get(name, name)}", headers=extra, timeout=5)
        if response.status_code != 200:
            raise RuntimeError(f"/{name} answered HTTP {response.status_code}")
    return headers


# -- wrk ----------------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk(base: str, name: str, seconds: int, headers: Dict[str, Dict[str, str]]) -> Dict[str, float]:
    """One wrk run against ``/name``: req/s, p50 and p99 in ms, and failed requests."""
    command = ["wrk", "--threads", "1", "--connections", str(CONNECTIONS), "--duration", f"{seconds}s",
               "--timeout", "2s", "--latency"]
    for header, value in headers[name].items():
        command += ["--header", f"{header}: {value}"]
    command.append(f"{base}/{PATHS.get(name, name)}")
    text = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    return {
        "rps": float(_find(r"Requests/sec:\s+([\d.]+)", text)),
        "p50_ms": _latency(text, "50"),
        "p99_ms": _latency(text, "99"),
        "requests": int(_find(r"(\d+) requests in", text)),
        "non_2xx": int(_find(r"Non-2xx or 3xx responses: (\d+)", text, default="0")),
        "socket_errors": _socket_errors(text),
    }


def _find(pattern: str, text: str, default: Optional[str] = None) -> str:
    match = re.search(pattern, text, re.MULTILINE)
    if match:
        return match.group(1)
    if default is None:
        raise RuntimeError(f"{pattern!r} not in wrk's output:\n{text}")
    return default


def _latency(text: str, percentile: str) -> float:
    match = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no {percentile}% latency in wrk's output:\n{text}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _socket_errors(text: str) -> int:
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return sum(int(n) for n in match.groups()) if match else 0


def markdown(result: Dict[str, Any]) -> List[str]:
    lines = [
        "## 3. Under gunicorn and load",
        "",
        f"gunicorn, {WORKERS} sync workers, one app serving every route (SECRET_KEY set, sessions in Redis); "
        f"wrk, 1 thread, {CONNECTIONS} connections, on {HOST}; {result['rounds']} interleaved rounds of "
        f"{result['seconds']} s per route. Median (min–max) over rounds; ratios per round.",
        "",
        "| route | req/s | × bare | × floor | p50 ms | p99 ms | non-2xx | socket errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, label in LABELS.items():
        lines.append(
            f"| {label} | {result['rps'][name].text(0)} | {result['x_bare'][name].text(2)} "
            f"| {result['x_floor'][name].text(2)} | {result['p50_ms'][name].text(2)} "
            f"| {result['p99_ms'][name].text(2)} | {result['non_2xx'][name]} | {result['socket_errors'][name]} |"
        )
    lines += [
        "",
        f"The busy-wait control shows what {BUSY_WAIT_US} µs of CPU that touches almost no memory costs "
        "in req/s here, next to the floor.",
        "",
        "The near-cache route is the best case: one session, repeated, so after the first request each "
        "worker serves it from memory. Every login and miss still pays the round trip, and every worker "
        "receives every write under the prefix.",
        "",
    ]
    if result["server_log"]:
        lines += ["gunicorn's log (last lines):", "", "```", *result["server_log"], "```", ""]
    return lines
