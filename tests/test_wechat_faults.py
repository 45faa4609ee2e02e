"""A WeChat that drips, resets or floods: each login ends in time, reads little, stores nothing.

The stub is a real HTTP server on loopback, so requests, urllib3 and the sockets
underneath behave as they would against the real WeChat.
"""
from __future__ import annotations

import json
import socket
import socketserver
import struct
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from .conftest import CODE, OPENID, SESSION_KEY, make_app

TIMEOUT = 1.0
#: How far past WXLOGIN_HTTP_TIMEOUT a login may end.
SLACK = 0.5
BIG = 50 * 1024 * 1024
#: Far below BIG: what loopback's socket buffers can hold before the client hangs up.
FLOOD_LIMIT = 16 * 1024 * 1024
ANSWER = json.dumps({"openid": OPENID, "session_key": SESSION_KEY}).encode()
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"


class Handler(socketserver.StreamRequestHandler):
    """Answers each request on the connection well until the server's ``fault`` is set."""

    server: "FaultyWeChat"

    def handle(self) -> None:
        while self._read_request():
            fault = self.server.fault
            if fault is None:
                self.connection.sendall(HEAD % len(ANSWER) + ANSWER)
                continue
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
            try:
                FAULTS[fault][0](self)
            except OSError:
                pass  # the client hung up: what the faults are for
            finally:
                self.server.fault_ended.set()
            return

    def _read_request(self) -> bool:
        line = self.rfile.readline()
        while line not in (b"\r\n", b"\n", b""):
            line = self.rfile.readline()
        return line != b""

    def drip(self, data: bytes, interval: float) -> None:
        for byte in data:
            if self.server.stopping.wait(interval):
                return
            self.connection.sendall(bytes([byte]))

    def reset(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def flood(self, head: bytes, frame: Callable[[bytes], bytes], end: bytes) -> None:
        self.connection.sendall(head)
        piece = b"x" * (64 * 1024)
        while self.server.sent < BIG and not self.server.stopping.is_set():
            self.connection.sendall(frame(piece))
            self.server.sent += len(piece)
        self.connection.sendall(end)


def drip_headers(handler: Handler) -> None:
    handler.drip(HEAD % len(ANSWER), 0.05)
    handler.connection.sendall(ANSWER)


def drip_body(handler: Handler) -> None:
    handler.connection.sendall(HEAD % len(ANSWER))
    handler.drip(ANSWER, 0.2)


def reset_before_answer(handler: Handler) -> None:
    handler.reset()


def reset_mid_body(handler: Handler) -> None:
    handler.connection.sendall(HEAD % (len(ANSWER) * 4) + ANSWER)
    time.sleep(0.1)
    handler.reset()


def flood_with_length(handler: Handler) -> None:
    handler.flood(HEAD % BIG, lambda piece: piece, b"")


def flood_chunked(handler: Handler) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    handler.flood(head, lambda piece: b"%x\r\n%s\r\n" % (len(piece), piece), b"0\r\n\r\n")


#: fault -> (what the server does, HTTP status, ``error`` the mini program sees)
FAULTS: Dict[str, Tuple[Callable[[Handler], None], int, str]] = {
    "drip-headers": (drip_headers, 504, "wechat_timeout"),
    "drip-body": (drip_body, 504, "wechat_timeout"),
    "reset-before-answer": (reset_before_answer, 502, "wechat_unreachable"),
    "reset-mid-body": (reset_mid_body, 502, "wechat_unreachable"),
    "50mb-content-length": (flood_with_length, 502, "wechat_bad_response"),
    "50mb-chunked": (flood_chunked, 502, "wechat_bad_response"),
}


class FaultyWeChat(socketserver.ThreadingTCPServer):
    """jscode2session on loopback; ``fault`` names how the next request is answered."""

    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.fault: Optional[str] = None
        #: Body bytes of a flood the client accepted before it hung up.
        self.sent = 0
        self.fault_ended = threading.Event()
        self.stopping = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def arm(self, fault: Optional[str]) -> None:
        self.fault, self.sent = fault, 0
        self.fault_ended.clear()


@pytest.fixture(scope="module")
def faulty_server() -> Iterator[FaultyWeChat]:
    server = FaultyWeChat()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.stopping.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def faulty(faulty_server: FaultyWeChat) -> Iterator[FaultyWeChat]:
    faulty_server.arm(None)
    yield faulty_server
    faulty_server.arm(None)


def timed_login(client: Any) -> Tuple[Any, float]:
    started = time.monotonic()
    response = client.post("/auth/login", json={"code": CODE})
    return response, time.monotonic() - started


def watchdogs() -> List[threading.Thread]:
    """The watchdog threads: one per process at most, however many calls were made."""
    return [thread for thread in threading.enumerate() if thread.name == "wxlogin-watchdog"]


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_faulty_wechat_fails_the_login_in_time_and_stores_nothing(faulty, fault):
    app = make_app(WXLOGIN_API_BASE=faulty.url, WXLOGIN_HTTP_TIMEOUT=TIMEOUT)
    faulty.arm(fault)

    response, elapsed = timed_login(app.test_client())

    _, status, error = FAULTS[fault]
    assert (response.status_code, response.get_json()["error"]) == (status, error)
    assert response.headers["Retry-After"] == "5"
    assert elapsed <= TIMEOUT + SLACK, f"{fault}: the login took {elapsed:.2f}s"
    assert "skey" not in response.get_data(as_text=True)
    assert all(len(backend._cache) == 0 for backend in app.extensions["cache"].values())
    assert faulty.fault_ended.wait(2), "the client kept the faulty connection open"
    assert faulty.sent < FLOOD_LIMIT
    assert len(watchdogs()) <= 1


@pytest.mark.parametrize("fault", ["50mb-content-length", "50mb-chunked"])
def test_a_flood_is_cut_off_far_short_of_its_end(faulty, fault):
    """The server's count would reach BIG if the client read the whole answer."""
    app = make_app(WXLOGIN_API_BASE=faulty.url, WXLOGIN_HTTP_TIMEOUT=30.0)
    faulty.arm(fault)

    response, _ = timed_login(app.test_client())

    assert response.get_json()["error"] == "wechat_bad_response"
    assert faulty.fault_ended.wait(2)
    assert faulty.sent < FLOOD_LIMIT


@pytest.mark.parametrize("fault", list(FAULTS))
def test_the_connection_pool_serves_the_next_login_after_a_fault(faulty, fault):
    app = make_app(WXLOGIN_API_BASE=faulty.url, WXLOGIN_HTTP_TIMEOUT=TIMEOUT)
    client = app.test_client()
    # A kept-alive connection in the pool first, so the fault strikes a reused one.
    assert timed_login(client)[0].status_code == 200
    faulty.arm(fault)
    assert timed_login(client)[0].status_code == FAULTS[fault][1]
    assert faulty.fault_ended.wait(2)
    faulty.arm(None)

    responses = [timed_login(client) for _ in range(3)]

    assert [r.status_code for r, _ in responses] == [200, 200, 200]
    assert all(elapsed < TIMEOUT for _, elapsed in responses)
    skey = responses[-1][0].get_json()["data"]["skey"]
    assert client.get("/me", headers={"X-WX-Skey": skey}).get_json()["openid"] == OPENID
    assert len(watchdogs()) <= 1


def test_a_call_whose_deadline_passes_while_it_hands_back_its_connection_succeeds(faulty, monkeypatch):
    """The watchdog is disarmed before the connection returns to the pool, where another call may take it."""
    import requests

    app = make_app(WXLOGIN_API_BASE=faulty.url, WXLOGIN_HTTP_TIMEOUT=0.3)
    client = app.test_client()
    close = requests.Response.close

    def slow_close(response: Any) -> None:
        time.sleep(0.5)  # the whole answer is read; the deadline passes before the release
        close(response)

    monkeypatch.setattr(requests.Response, "close", slow_close)
    first = timed_login(client)[0]
    monkeypatch.undo()
    second = timed_login(client)[0]

    assert (first.status_code, second.status_code) == (200, 200), first.get_json()
    assert len(watchdogs()) <= 1


def test_a_pooled_connection_is_out_of_its_last_watchdogs_reach(faulty, monkeypatch):
    """urllib3 pools a connection once its body is read, before fetch disarms: the pool detaches it first,
    so a watchdog firing late cannot shut a connection another call has taken meanwhile."""
    from flask_wxlogin import transport

    made: List[Any] = []
    original = transport._Watchdog

    def recording(timeout: float) -> Any:
        made.append(original(timeout))
        return made[-1]

    monkeypatch.setattr(transport, "_Watchdog", recording)
    app = make_app(WXLOGIN_API_BASE=faulty.url, WXLOGIN_HTTP_TIMEOUT=TIMEOUT)
    assert timed_login(app.test_client())[0].status_code == 200

    adapter = app.extensions["wxlogin"]._states[app].client.http.get_adapter(faulty.url)
    pools = adapter.poolmanager.pools
    pooled = [conn for key in pools.keys() for conn in pools[key].pool.queue if conn is not None]
    (watchdog,) = made
    assert pooled and all(conn.watchdog is None for conn in pooled)
    assert watchdog._connection is None
