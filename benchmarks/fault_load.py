"""Redis dies under load: gunicorn keeps answering 503, never 500, and recovers at once.

    python benchmarks/fault_load.py                              # 20,000 requests, 5 s outage
    python benchmarks/fault_load.py --requests 3000 --outage 2   # the CI variant, about 7 s

What runs, all on loopback and all started and stopped by this script:

- a redis-server of its own on a free port (``--save "" --appendonly no``: nothing
  survives a restart), in a temporary directory; the suite's Redis on 6379 is not used;
- the extension's ``FakeWeChat`` in this process, accepting any code;
- gunicorn serving ``server_app.py`` (sessions in that Redis, ``GET /ours`` under
  ``login_required``) with ``--workers`` **sync** workers: a worker holds one request at a
  time, so a Redis call that hung would stall a whole worker and show at once in the
  latencies and in the hang bound below (gthread would hide it behind other threads);
- :data:`CLIENTS` client threads, each a mini program user with its own
  ``requests.Session``: log in, :data:`PROTECTED_CALLS` calls to ``/ours``, log out, and
  again. As the README tells clients to: after a 503 (or a failed connection) pause and
  retry the same step; after a 401 log in again. Every request takes a ticket from one
  budget of ``--requests``, so the run sends exactly that many, then stops.

The pause after a 503 is far shorter than the ``Retry-After: 5`` a real client would honour:
it is set so the clients together send about a third of the budget during the outage,
whatever its length, and leave the rest for afterwards.

Phases. When a third of the budget is taken, Redis is SIGKILLed (a crash: no shutdown,
no save), kept down ``--outage`` seconds, and started again on the same port, empty.
The clock marks four moments: *kill* (signal sent), *down* (process reaped, its port
closed), *restart* (new process spawned) and *up* (it answers PING). A request belongs to
the phase it was sent in, unless it was in flight across a moment at which Redis changed
state; those go to two transition buckets, since either answer is right for them:

- ``before``: answered before *kill*;
- ``at stop``: sent before *down* and answered after *kill*;
- ``outage``: sent after *down*, answered before *restart*;
- ``at restart``: sent before *up* and answered after *restart*;
- ``after``: sent after *up*.

A witness, one more scripted user on the same budget, makes every check meet at least one
request: it logs in just before the kill; during the outage it calls ``/ours``, logs out
and logs in; after *up* it does the same again.

Checks (the exit status is 1 if any fails, 2 if the harness itself broke):

- no answer other than 200, 401 and 503; no connection error or client timeout;
- ``before``: everything 200; ``outage``: everything 503 ``session_store_unavailable``,
  logins, protected calls and logouts alike, each seen at least once;
- transitions: 200, 401 ``session_expired`` or 503 ``session_store_unavailable``;
- ``after``: no 503; logins and logouts 200; a protected call 200 with a session made
  after the restart and 401 ``session_expired`` with one made before the outage (lost with
  the non-persistent Redis), the latter seen at least once;
- the first login answered 200 within :data:`FIRST_LOGIN_LIMIT` of *restart*;
- no request took longer than :data:`HANG_LIMIT`;
- no traceback, unhandled exception or worker timeout in gunicorn's log.

The table goes to stdout and, with the JSON, to ``--output`` (``results/fault-load.md``).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import redis
import requests

from common import APPID, APPSECRET, RESULTS_DIR
from flask_wxlogin.testing import FakeWeChat
from server import HOST, _free_port, gunicorn

log = logging.getLogger("benchmarks")

#: Concurrent users: several per worker, so requests queue and some are always in flight.
CLIENTS = 12
#: Calls to the protected route per session, between login and logout.
PROTECTED_CALLS = 4
#: The client's (connect, read) timeouts; anything near them already fails :data:`HANG_LIMIT`.
CLIENT_TIMEOUT = (5.0, 10.0)
#: Longest acceptable answer: the extension's 1 s Redis timeouts, one retry, and queueing.
HANG_LIMIT = 3.5
#: Longest acceptable wait, from spawning the new Redis, for the first login answered 200.
FIRST_LOGIN_LIMIT = 1.0
#: Bound on the whole load, so a stuck client cannot hold the run.
LOAD_LIMIT = 600.0
#: Seconds redis-server may take to answer PING after it is spawned.
REDIS_START_LIMIT = 10.0
ROUTES = {"login": ("POST", "/auth/login"), "protected": ("GET", "/ours"), "logout": ("POST", "/auth/logout")}
PHASES = ("before", "at stop", "outage", "at restart", "after")
OK, EXPIRED, UNAVAILABLE = (200, ""), (401, "session_expired"), (503, "session_store_unavailable")
#: What gunicorn's log must not hold: an unhandled exception in a view, or a worker killed for hanging.
ALARMS = ("Traceback", "Exception on", "WORKER TIMEOUT")


@dataclass(frozen=True)
class Record:
    """One request: what, when (``time.monotonic``), the answer, and the session it used."""

    kind: str
    sent: float
    done: float
    status: int
    #: The answer's ``error``, or the client exception's name (``status`` 0).
    error: str
    #: When the login that issued the skey was sent (protected calls and logouts).
    issued: Optional[float]

    @property
    def answer(self) -> Tuple[int, str]:
        return self.status, self.error


@dataclass
class Timeline:
    """The moments Redis changed state, on the ``time.monotonic`` clock."""

    start: float
    kill: float = math.inf
    down: float = math.inf
    restart: float = math.inf
    up: float = math.inf
    end: float = math.inf

    def phase(self, record: Record) -> str:
        if record.done < self.kill:
            return "before"
        if record.sent < self.down:
            return "at stop"
        if record.done < self.restart:
            return "outage"
        if record.sent < self.up:
            return "at restart"
        return "after"

    def seconds(self) -> Dict[str, float]:
        """Each moment in seconds since the start."""
        return {name: round(getattr(self, name) - self.start, 3) for name in ("kill", "down", "restart", "up", "end")}


class Budget:
    """A fixed number of tickets shared by all senders: one per request."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.taken = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.taken >= self.total:
                return False
            self.taken += 1
            return True


class Client:
    """One mini program user: a ``requests.Session``, its skey, and the requests it sent."""

    def __init__(self, name: str, base: str, budget: Budget) -> None:
        self.name, self.base, self.budget = name, base, budget
        self.http = requests.Session()
        self.skey: Optional[str] = None
        self.issued: Optional[float] = None
        self.records: List[Record] = []
        self._logins = 0

    def send(self, kind: str) -> Optional[Record]:
        """Send one request of ``kind`` and record it; ``None`` once the budget is spent."""
        if not self.budget.take():
            return None
        method, path = ROUTES[kind]
        options: Dict[str, Any] = {"timeout": CLIENT_TIMEOUT}
        if kind == "login":
            self._logins += 1
            options["json"] = {"code": f"{self.name}-{self._logins}"}
        else:
            options["headers"] = {"X-WX-Skey": self.skey or ""}
        sent = time.monotonic()
        try:
            response = self.http.request(method, self.base + path, **options)
            status, body = response.status_code, _json(response)
        except requests.RequestException as exc:
            status, body = 0, {"error": type(exc).__name__}
        record = Record(kind, sent, time.monotonic(), status, str(body.get("error") or ""),
                        None if kind == "login" else self.issued)
        self.records.append(record)
        if kind == "login" and status == 200:
            self.skey, self.issued = body["data"]["skey"], sent
        return record

    def close(self) -> None:
        self.http.close()


def _json(response: requests.Response) -> Dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _load(client: Client, pause: float, stop: threading.Event) -> None:
    """Log in, call ``/ours`` :data:`PROTECTED_CALLS` times, log out, until the budget is spent."""
    left = 0
    while not stop.is_set():
        kind = "login" if client.skey is None else "protected" if left else "logout"
        record = client.send(kind)
        if record is None:
            return
        if record.status in (0, 503):
            stop.wait(pause)
        elif kind == "login" and record.status == 200:
            left = PROTECTED_CALLS
        elif kind == "protected" and record.status == 200:
            left -= 1
        else:
            client.skey = None


# -- processes ------------------------------------------------------------------


class RedisServer:
    """A private, non-persistent redis-server on a free loopback port: start, kill, start again."""

    def __init__(self, directory: Path) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not on PATH: apt-get install -y redis-server")
        self.port = _free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self._command = [
            executable, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no",
            "--dir", str(directory), "--logfile", "redis.log",
        ]
        self._process: Optional["subprocess.Popen[bytes]"] = None

    def start(self) -> None:
        """Spawn redis-server and return once it answers PING."""
        self._process = process = subprocess.Popen(
            self._command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        client = redis.Redis(host=HOST, port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5)
        deadline = time.monotonic() + REDIS_START_LIMIT
        try:
            while True:
                with contextlib.suppress(redis.RedisError):
                    if client.ping():
                        return
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}")
                time.sleep(0.005)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL and reap: once this returns, the port is closed."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait(timeout=10)

    def __enter__(self) -> "RedisServer":
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.kill()


# -- the run --------------------------------------------------------------------


def run(total: int, outage: float, workers: int) -> Dict[str, Any]:
    """Start everything, drive the load through the outage, stop everything; the summary."""
    with contextlib.ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wxl-fault-")))
        redis_server = stack.enter_context(RedisServer(directory))
        fake = stack.enter_context(FakeWeChat(APPID, APPSECRET))
        base, output = stack.enter_context(gunicorn(fake.url, workers, WXLBENCH_REDIS_URL=redis_server.url))
        log.info("redis-server on port %d, gunicorn (%d sync workers) at %s", redis_server.port, workers, base)
        budget = Budget(total)
        clients = [Client(f"load{number}", base, budget) for number in range(CLIENTS)]
        witness = Client("witness", base, budget)
        for client in (*clients, witness):
            stack.callback(client.close)
        timeline = _drive(redis_server, clients, witness, budget, outage)
        output.seek(0)
        server_log = output.read().splitlines()
    records = sorted((record for client in (*clients, witness) for record in client.records), key=lambda r: r.sent)
    return _summarise(records, timeline, server_log, total=total, outage=outage, workers=workers)


def _drive(server: RedisServer, clients: List[Client], witness: Client, budget: Budget, outage: float) -> Timeline:
    pause = CLIENTS * outage / (budget.total / 3)
    stop = threading.Event()
    threads = [threading.Thread(target=_load, args=(client, pause, stop), name=client.name, daemon=True)
               for client in clients]
    timeline = Timeline(start=time.monotonic())
    try:
        for thread in threads:
            thread.start()
        while budget.taken < budget.total // 3:
            if not any(thread.is_alive() for thread in threads):
                raise RuntimeError("the clients stopped before a third of the budget was sent")
            time.sleep(0.001)
        witness.send("login")
        log.info("%d requests sent; killing redis-server for %.1f s", budget.taken, outage)
        timeline.kill = time.monotonic()
        server.kill()
        timeline.down = time.monotonic()
        _witness(witness)
        time.sleep(max(0.0, timeline.kill + outage - time.monotonic()))
        log.info("%d requests sent; restarting redis-server", budget.taken)
        timeline.restart = time.monotonic()
        server.start()
        timeline.up = time.monotonic()
        _witness(witness)
        deadline = time.monotonic() + LOAD_LIMIT
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in threads):
            raise RuntimeError(f"the load did not finish within {LOAD_LIMIT:.0f} s")
        timeline.end = time.monotonic()
        log.info("%d requests sent in %.1f s", budget.taken, timeline.end - timeline.start)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=CLIENT_TIMEOUT[0] + CLIENT_TIMEOUT[1])
    return timeline


def _witness(witness: Client) -> None:
    """Use the session from before the outage, log it out, log in and out afresh; keep the old skey."""
    old = witness.skey, witness.issued
    witness.send("protected")
    witness.send("logout")
    witness.send("login")
    if (witness.skey, witness.issued) != old:
        witness.send("logout")
    witness.skey, witness.issued = old


# -- the summary ----------------------------------------------------------------


def _summarise(records: List[Record], timeline: Timeline, server_log: List[str], **settings: Any) -> Dict[str, Any]:
    phases = {record: timeline.phase(record) for record in records}
    counts: Dict[str, Dict[str, Counter[str]]] = {
        phase: {kind: Counter() for kind in ROUTES} for phase in PHASES
    }
    for record in records:
        counts[phases[record]][record.kind][_label(record.answer)] += 1
    latencies = {phase: sorted(r.done - r.sent for r in records if phases[r] == phase) for phase in PHASES}
    logins_after = [r.done for r in records if r.kind == "login" and r.status == 200 and r.done >= timeline.restart]
    first_login = min(logins_after) - timeline.restart if logins_after else None
    return {
        "settings": {**settings, "clients": CLIENTS, "protected_calls": PROTECTED_CALLS, "worker_class": "sync",
                     "cpus": os.cpu_count()},
        "timeline_s": timeline.seconds(),
        "requests": len(records),
        "counts": {phase: {kind: dict(c) for kind, c in kinds.items()} for phase, kinds in counts.items()},
        "latency_ms": {phase: _latency(values) for phase, values in latencies.items()},
        "first_login_after_restart_ms": None if first_login is None else round(first_login * 1000, 1),
        "server_log_lines": len(server_log),
        "checks": _checks(records, phases, timeline, server_log, first_login),
    }


def _label(answer: Tuple[int, str]) -> str:
    status, error = answer
    if status == 0:
        return f"no answer ({error})"
    return f"{status} {error}".strip()


def _latency(values: List[float]) -> Dict[str, Optional[float]]:
    def rank(q: float) -> Optional[float]:
        return round(values[max(0, math.ceil(q * len(values)) - 1)] * 1000, 1) if values else None

    return {"p50": rank(0.5), "p99": rank(0.99), "max": rank(1.0)}


def _checks(
    records: List[Record], phases: Dict[Record, str], timeline: Timeline, server_log: List[str],
    first_login: Optional[float],
) -> List[Dict[str, Any]]:
    """Each check: what it asks, whether it holds, and the offending answers if not."""
    def lost(record: Record) -> bool:
        return record.issued is not None and record.issued < timeline.down

    def expected_after(record: Record) -> Tuple[int, str]:
        return EXPIRED if record.kind == "protected" and lost(record) else OK

    in_phase = {phase: [r for r in records if phases[r] == phase] for phase in PHASES}
    transitions = in_phase["at stop"] + in_phase["at restart"]
    found: List[Tuple[str, List[Record], bool]] = [
        ("every answer is 200, 401 or 503, with no connection error",
         [r for r in records if r.status not in (200, 401, 503)], True),
        ("before: every request 200", [r for r in in_phase["before"] if r.answer != OK], True),
        ("outage: every request 503 session_store_unavailable",
         [r for r in in_phase["outage"] if r.answer != UNAVAILABLE], True),
        ("outage: logins, protected calls and logouts each seen", [],
         {r.kind for r in in_phase["outage"]} == set(ROUTES)),
        ("transitions: 200, 401 session_expired (never to a login) or 503 session_store_unavailable",
         [r for r in transitions
          if r.answer not in (OK, EXPIRED, UNAVAILABLE) or (r.kind == "login" and r.status == 401)], True),
        ("after: no 503; logins and logouts 200; protected calls 200, "
         "or 401 session_expired with a session from before the outage",
         [r for r in in_phase["after"] if r.answer != expected_after(r)], True),
        ("after: protected calls with a session from before the outage were made", [],
         any(r.kind == "protected" and lost(r) for r in in_phase["after"])),
        (f"first login after the restart answered 200 within {FIRST_LOGIN_LIMIT:.1f} s", [],
         first_login is not None and first_login <= FIRST_LOGIN_LIMIT),
        (f"no request took longer than {HANG_LIMIT:.1f} s",
         [r for r in records if r.done - r.sent > HANG_LIMIT], True),
    ]
    checks = [
        {"check": name, "ok": held and not bad, "failures": len(bad),
         "examples": [_describe(r, phases[r], timeline) for r in bad[:5]]}
        for name, bad, held in found
    ]
    alarming = [line for line in server_log if any(word in line for word in ALARMS)]
    checks.append({"check": "gunicorn logged no traceback, unhandled exception or worker timeout",
                   "ok": not alarming, "failures": len(alarming), "examples": alarming[:5]})
    return checks


def _describe(record: Record, phase: str, timeline: Timeline) -> str:
    session = "" if record.issued is None else f", session from {record.issued - timeline.start:.3f} s"
    return (f"{record.kind} sent at {record.sent - timeline.start:.3f} s ({phase}), "
            f"{(record.done - record.sent) * 1000:.1f} ms: {_label(record.answer)}{session}")


def markdown(result: Dict[str, Any]) -> List[str]:
    settings, moments = result["settings"], result["timeline_s"]
    labels = sorted({label for kinds in result["counts"].values() for c in kinds.values() for label in c})
    lines = [
        "## Redis outage under load",
        "",
        f"gunicorn, {settings['workers']} sync workers, on {settings['cpus']} CPUs; {settings['clients']} client "
        f"threads, {result['requests']:,} requests (login, {settings['protected_calls']} × `GET /ours`, logout; "
        f"retry after 503, log in again after 401). A private non-persistent redis-server SIGKILLed at "
        f"{moments['kill']:.2f} s, reaped at {moments['down']:.2f} s, restarted at {moments['restart']:.2f} s "
        f"(answering PING at {moments['up']:.2f} s); last answer at {moments['end']:.2f} s. First login answered "
        f"200 {result['first_login_after_restart_ms']} ms after the restart.",
        "",
        "Each request counts in the phase it was sent in; one in flight while Redis was being killed "
        "or restarted counts under *at stop* or *at restart*.",
        "",
        "| phase | kind | requests | " + " | ".join(labels) + " |",
        "|---|---|---:|" + "---:|" * len(labels),
    ]
    for phase, kinds in result["counts"].items():
        for kind, c in [*kinds.items(), ("**all**", sum(map(Counter, kinds.values()), Counter()))]:
            cells = [f"{c.get(label, 0):,}" for label in labels]
            lines.append(f"| {phase} | {kind} | {sum(c.values()):,} | " + " | ".join(cells) + " |")
    lines += ["", "Latency as the clients saw it, queueing for a worker included:", "",
              "| phase | p50 ms | p99 ms | max ms |", "|---|---:|---:|---:|"]
    for phase, latency in result["latency_ms"].items():
        lines.append(f"| {phase} | {latency['p50']} | {latency['p99']} | {latency['max']} |")
    lines += [""]
    for check in result["checks"]:
        lines.append(f"- {'PASS' if check['ok'] else 'FAIL'}: {check['check']}")
        lines += [f"  - {example}" for example in check["examples"]]
    return lines + [""]


def main(argv: Optional[List[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.requests < 10 * CLIENTS or args.outage <= 0 or args.workers < 1:
        parser.error(f"needs --requests >= {10 * CLIENTS}, --outage > 0 and --workers >= 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        result = run(args.requests, args.outage, args.workers)
    except RuntimeError as exc:
        log.error("the run broke: %s", exc)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted; everything it started is stopped")
        return 130
    text = "\n".join(markdown(result))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    args.output.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    print(text)
    log.info("report written to %s (+ .json)", args.output)
    failed = [check["check"] for check in result["checks"] if not check["ok"]]
    for name in failed:
        log.error("FAILED: %s", name)
    return 1 if failed else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Kill Redis under load and check every answer.")
    parser.add_argument("--requests", type=int, default=20_000, help="requests in all (default: 20000)")
    parser.add_argument("--outage", type=float, default=5.0, help="seconds Redis stays down (default: 5)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (default: 2)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "fault-load.md",
                        help="the Markdown report; the JSON goes beside it (default: results/fault-load.md)")
    return parser


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    """Turn SIGTERM into SystemExit, so every ``finally`` stops what it started."""
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
