"""A stand-in for WeChat's API on loopback, over real HTTP.

It answers ``sns/jscode2session``, ``cgi-bin/stable_token``,
``wxa/business/getuserphonenumber`` and ``wxa/checksession``. Used by the
example app's demo mode and the integration tests. It binds only to loopback
addresses, so it cannot stand in for WeChat on a real network.
"""
from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple, Union
from urllib.parse import parse_qsl, urlsplit

#: What WeChat's login codes look like; anything else is ``40029``.
WELL_FORMED_CODE = re.compile(r"[A-Za-z0-9_-]{1,128}")

#: ``answer(params)`` returns ``(HTTP status, JSON-able dict or raw bytes)``.
Answer = Callable[[Dict[str, str]], Tuple[int, Union[Dict[str, Any], bytes]]]


class FakeWeChat:
    """Answers WeChat's API for one appid/secret; every code of WeChat's shape logs in.

    Like WeChat, jscode2session checks the AppID (40013), then the AppSecret
    (40125), then the code: one not of WeChat's shape is 40029.

    The user's openid is derived from the code (``demo-`` + a hash), so the same
    code always gives the same user; each login gets a fresh random session_key.
    A phone number code gives a made-up number derived from it. Replace
    ``answer`` to script other jscode2session replies (``calls`` records each
    query), or an entry of ``answers`` for another path (``requests`` records
    every path and its parameters, JSON body included).
    """

    def __init__(self, appid: str, secret: str, host: str = "127.0.0.1", port: int = 0) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError("FakeWeChat serves on loopback addresses only")
        self.appid, self.secret = appid, secret
        self.answers: Dict[str, Answer] = {
            "/sns/jscode2session": self.demo_answer,
            "/cgi-bin/stable_token": self.demo_token,
            "/wxa/business/getuserphonenumber": self.demo_phone_number,
            "/wxa/checksession": lambda params: (200, {"errcode": 0, "errmsg": "ok"}),
        }
        self.calls: List[Dict[str, str]] = []
        self.requests: List[Tuple[str, Dict[str, Any]]] = []
        self._token = "demo-token-" + secrets.token_hex(16)
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        """The base URL to use as ``WXLOGIN_API_BASE``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def answer(self) -> Answer:
        """The jscode2session answer."""
        return self.answers["/sns/jscode2session"]

    @answer.setter
    def answer(self, answer: Answer) -> None:
        self.answers["/sns/jscode2session"] = answer

    def demo_token(self, params: Dict[str, Any]) -> Tuple[int, Dict[str, Any]]:
        if (params.get("appid"), params.get("secret")) != (self.appid, self.secret):
            return 200, {"errcode": 40125, "errmsg": "invalid appid or secret"}
        return 200, {"access_token": self._token, "expires_in": 7200}

    def demo_phone_number(self, params: Dict[str, Any]) -> Tuple[int, Dict[str, Any]]:
        if params.get("access_token") != self._token:
            return 200, {"errcode": 40001, "errmsg": "invalid credential"}
        if not params.get("code"):
            return 200, {"errcode": 40029, "errmsg": "invalid code"}
        digits = str(int(hashlib.sha256(str(params["code"]).encode()).hexdigest(), 16))[-8:]
        number = "139" + digits
        return 200, {"errcode": 0, "errmsg": "ok", "phone_info": {
            "phoneNumber": number, "purePhoneNumber": number, "countryCode": "86",
            "watermark": {"appid": self.appid, "timestamp": 0},
        }}

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
        if not WELL_FORMED_CODE.fullmatch(code):
            return 200, {"errcode": 40029, "errmsg": "invalid code"}
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
            self._answer({})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                body = None
            self._answer(body if isinstance(body, dict) else {"": "not a JSON object"})

        def _answer(self, body: Dict[str, Any]) -> None:
            url = urlsplit(self.path)
            params: Dict[str, Any] = {**dict(parse_qsl(url.query)), **body}
            status: int
            reply: Union[Dict[str, Any], bytes]
            answer = fake.answers.get(url.path)
            if answer is None:
                status, reply = 404, {"errcode": 404, "errmsg": "not found"}
            else:
                fake.requests.append((url.path, params))
                if url.path == "/sns/jscode2session":
                    fake.calls.append(params)
                status, reply = answer(params)
            payload = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            """Silent: the request line carries the appsecret."""

    return Handler
