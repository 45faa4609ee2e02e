"""Login bodies under a real gunicorn, over raw sockets: every broken body is a JSON 400, every big one a 413.

Issue 10 item 2 and issue 11's rough edge 8. gunicorn parses chunked bodies
itself, lazily, as the app reads them, so its errors surface inside our view.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Tuple

import pytest

from .conftest import CODE, OPENID, SESSION_KEY

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("gunicorn")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(stub, tmp_path_factory) -> Iterator[Tuple[str, int]]:
    port = _free_port()
    log = (tmp_path_factory.mktemp("gunicorn") / "stderr.log").open("w+b")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WXLOGIN_API_BASE": stub.url}
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "1", "--bind", f"127.0.0.1:{port}",
         "--timeout", "10", "--graceful-timeout", "1", "tests.gunicorn_app:app"],
        cwd=str(ROOT), env=env, stdout=subprocess.DEVNULL, stderr=log,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert process.poll() is None, log.seek(0) or log.read().decode()
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.1)
    yield "127.0.0.1", port
    process.terminate()
    process.wait(10)
    log.close()


def exchange(server: Tuple[str, int], head: bytes, body: bytes, close_write: bool = True) -> Tuple[int, dict, bytes]:
    """Send ``head`` and ``body`` raw, half-close, and read the whole answer: ``(status, headers, body)``."""
    with socket.create_connection(server, timeout=10) as sock:
        sock.sendall(head + body)
        if close_write:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
    raw_head, _, payload = answer.partition(b"\r\n\r\n")
    lines = raw_head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return status, headers, payload


def _head(extra: str) -> bytes:
    return (f"POST /auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Connection: close\r\n{extra}\r\n").encode()


CHUNKED = _head("Transfer-Encoding: chunked\r\n")


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


BODY = json.dumps({"code": CODE}).encode()

BROKEN = {
    "invalid chunk size": CHUNKED + b"zz\r\n" + BODY + b"\r\n0\r\n\r\n",
    "chunk missing terminator": CHUNKED + b"%x\r\n" % len(BODY) + BODY + b"XX0\r\n\r\n",
    "chunked body cut short": CHUNKED + b"%x\r\n" % (len(BODY) + 50) + BODY,
    "chunked with no last chunk": CHUNKED + _chunk(BODY),
    "content-length cut short": _head(f"Content-Length: {len(BODY) + 50}\r\n") + BODY,
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_body_is_a_json_400_body_invalid(server, fake, case):
    status, headers, payload = exchange(server, BROKEN[case], b"")

    assert status == 400, payload
    assert headers["content-type"] == "application/json"
    assert json.loads(payload)["error"] == "body_invalid" and json.loads(payload)["code"] == "400"
    assert fake.calls == []


@pytest.mark.parametrize("chunks", [[b"x" * 5000], [b"x" * 1000] * 5, [BODY[:-1] + b" " * 4100 + b"}"]])
def test_a_chunked_body_over_4096_bytes_is_a_json_413(server, fake, chunks):
    status, headers, payload = exchange(server, CHUNKED, b"".join(map(_chunk, chunks)) + b"0\r\n\r\n")

    assert status == 413, payload
    assert json.loads(payload) == {"code": "413", "error": "body_too_large",
                                   "message": "The request body is over 4096 bytes."}
    assert fake.calls == []


def test_a_content_length_over_4096_bytes_is_a_json_413(server, fake):
    status, _, payload = exchange(server, _head("Content-Length: 5000\r\n"), b"x" * 5000)

    assert (status, json.loads(payload)["error"]) == (413, "body_too_large")


@pytest.mark.parametrize("body", [
    _chunk(BODY) + b"0\r\n\r\n",
    _chunk(BODY[:5]) + _chunk(BODY[5:]) + b"0\r\n\r\n",
    _chunk(b" " * 4000) + _chunk(BODY) + b"0\r\n\r\n",
])
def test_a_well_formed_chunked_body_logs_in(server, fake, body):
    fake.answer = lambda params: (200, {"openid": OPENID, "session_key": SESSION_KEY})

    status, _, payload = exchange(server, CHUNKED, body)

    assert status == 200, payload
    assert json.loads(payload)["data"]["openid"] == OPENID
