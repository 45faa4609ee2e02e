"""A stand-in for WeChat's ``sns/jscode2session`` on loopback, over real HTTP.

Used by the example app's demo mode and the integration tests. It binds only
to loopback addresses, so it cannot stand in for WeChat on a real network.
"""
from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple, Union
from urllib.parse import parse_qsl, urlsplit

#: ``answer(params)`` returns ``(HTTP status, JSON-able dict or raw bytes)``.
Answer = Callable[[Dict[str, str]], Tuple[int, Union[Dict[str, Any], bytes]]]


class FakeWeChat:
    """Answers jscode2session for one appid/secret; every non-empty code logs in.

    The user's openid is derived from the code (``demo-`` + a hash), so the same
    code always gives the same user; each login gets a fresh random session_key.
    Replace ``answer`` to script other replies. ``calls`` records each query.
    """

    def __init__(self, appid: str, secret: str, host: str = "127.0.0.1", port: int = 0) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError("FakeWeChat serves on loopback addresses only")
        self.appid, self.secret = appid, secret
        self.answer: Answer = self.demo_answer
        self.calls: List[Dict[str, str]] = []
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        """The base URL to use as ``WXLOGIN_API_BASE``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def demo_answer(self, params: Dict[str, str]) -> Tuple[int, Dict[str, Any]]:
        if params.get("appid") != self.appid:
            return 200, {"errcode": 40013, "errmsg": "invalid appid"}
        if params.get("secret") != self.secret:
            return 200, {"errcode": 40125, "errmsg": "invalid appsecret"}
        if params.get("grant_type") != "authorization_code":
            return 200, {"errcode": 40002, "errmsg": "invalid grant_type"}
        code = params.get("js_code", "")
        if not code:
            return 200, {"errcode": 41008, "errmsg": "missing code"}
        digest = hashlib.sha256(f"{self.appid}:{code}".encode()).hexdigest()
        return 200, {
            "openid": "demo-" + digest[:24],
            "session_key": base64.b64encode(os.urandom(16)).decode(),
        }

    def start(self) -> "FakeWeChat":
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "FakeWeChat":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def _handler_for(fake: FakeWeChat) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            params = dict(parse_qsl(url.query))
            status: int
            body: Union[Dict[str, Any], bytes]
            if url.path != "/sns/jscode2session":
                status, body = 404, {"errcode": 404, "errmsg": "not found"}
            else:
                fake.calls.append(params)
                status, body = fake.answer(params)
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            """Silent: the request line carries the appsecret."""

    return Handler
