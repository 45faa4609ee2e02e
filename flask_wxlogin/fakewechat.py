"""A stand-in for WeChat's API on loopback, over real HTTP.

It answers ``sns/jscode2session``, ``cgi-bin/stable_token``,
``wxa/business/getuserphonenumber`` and ``wxa/checksession``, and behaves like
WeChat where a test would notice: a login code works once, codes minted for
one user log in that user, errors can be scripted. It binds only to loopback
addresses, so it cannot stand in for WeChat on a real network. Import it from
:mod:`flask_wxlogin.testing`.
"""
from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import re
import secrets
import sys
import threading
from collections import OrderedDict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple, Union
from urllib.parse import parse_qsl, urlsplit

#: ``answer(params)`` returns ``(HTTP status, JSON-able dict or raw bytes)``.
Answer = Callable[[Dict[str, str]], Tuple[int, Union[Dict[str, Any], bytes]]]

#: The AppID a FakeWeChat made without one answers to.
DEFAULT_APPID = "wxfake0000000000"
#: The largest request body it reads; a larger ``Content-Length`` is answered 400 unread.
MAX_BODY_BYTES = 16 * 1024
#: ``calls`` and ``requests`` keep this many entries, the newest.
MAX_RECORDS = 1000
#: It remembers this many used codes, and this many minted ones, the newest.
MAX_CODES = 100_000
#: What WeChat's login codes look like; anything else is ``40029``.
WELL_FORMED_CODE = re.compile(r"[A-Za-z0-9_-]{1,128}")

LOGIN = "/sns/jscode2session"
TOKEN = "/cgi-bin/stable_token"
PHONE = "/wxa/business/getuserphonenumber"
CHECK_SESSION = "/wxa/checksession"

#: WeChat's errmsg for the errcodes a test is likely to script.
ERRMSGS = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40013: "invalid appid",
    40014: "invalid access_token",
    40029: "invalid code",
    40125: "invalid appsecret",
    40163: "code been used",
    40164: "invalid ip, not in whitelist",
    40226: "invalid user: high risk",
    42001: "access_token expired",
    45009: "reach max api daily quota limit",
    45011: "api minute-quota reach limit, retry next minute",
}


def new_openid() -> str:
    """A fresh openid of WeChat's shape: ``o`` and 27 URL-safe characters."""
    return "o" + secrets.token_urlsafe(21)[:27]


class FakeWeChat:
    """Answers WeChat's API for one AppID/AppSecret, checking them in WeChat's order.

    jscode2session checks the AppID (``40013``), then the AppSecret
    (``40125``), then the code: none is ``41008``, one not of WeChat's shape
    (letters, digits, ``-``, ``_``; at most 128) is ``40029``, and a code
    already exchanged is ``40163``. A code from :meth:`code_for` logs in the
    user it was minted for; any other code logs in the user of its *phone*:
    ``phone_of(code)`` (by default the code itself: ``str``), whose openid is
    ``demo-`` and a hash of the AppID and the phone. Each login gets a fresh
    random session_key. A phone number code gives a made-up number derived
    from it.

    ``calls`` records each jscode2session query and ``requests`` every path
    with its parameters (JSON body included), the newest :data:`MAX_RECORDS`
    of each. :meth:`fail_next` scripts WeChat's errors; for anything else,
    replace ``answer`` (jscode2session) or an entry of ``answers``.
    ``one_time_codes=False`` accepts a code again, for benchmarks that
    replay one request.
    """

    def __init__(
        self,
        appid: str = DEFAULT_APPID,
        secret: Optional[str] = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        phone_of: Callable[[str], str] = str,
        one_time_codes: bool = True,
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError("FakeWeChat serves on loopback addresses only")
        self.appid = appid
        self.secret = secret or secrets.token_hex(16)
        self.phone_of = phone_of
        self.one_time_codes = one_time_codes
        self.answers: Dict[str, Answer] = {
            LOGIN: self.demo_answer,
            TOKEN: self.demo_token,
            PHONE: self.demo_phone_number,
            CHECK_SESSION: lambda params: (200, {"errcode": 0, "errmsg": "ok"}),
        }
        self.calls: List[Dict[str, str]] = []
        self.requests: List[Tuple[str, Dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._used: "OrderedDict[str, None]" = OrderedDict()
        self._minted: "OrderedDict[str, Tuple[str, Optional[str]]]" = OrderedDict()
        self._failures: Dict[str, Deque[int]] = {}
        self._token = "demo-token-" + secrets.token_hex(16)
        self._server = _Server((host, port), _handler_for(self))
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        """The base URL to use as ``WXLOGIN_API_BASE``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def config(self) -> Dict[str, str]:
        """``WXLOGIN_APPID``, ``WXLOGIN_SECRET`` and ``WXLOGIN_API_BASE`` for an app to use this fake."""
        return {"WXLOGIN_APPID": self.appid, "WXLOGIN_SECRET": self.secret, "WXLOGIN_API_BASE": self.url}

    @property
    def answer(self) -> Answer:
        """The jscode2session answer."""
        return self.answers[LOGIN]

    @answer.setter
    def answer(self, answer: Answer) -> None:
        self.answers[LOGIN] = answer

    # -- scripting -----------------------------------------------------------

    def code_for(self, openid: Optional[str] = None, unionid: Optional[str] = None) -> str:
        """A fresh one-time code that logs in ``openid`` (a new user when None), as ``wx.login`` does."""
        code = secrets.token_urlsafe(24)
        with self._lock:
            _remember(self._minted, code, (openid or new_openid(), unionid))
        return code

    def fail_next(self, errcode: int, path: str = LOGIN, times: int = 1) -> None:
        """Answer the next ``times`` calls to ``path`` with WeChat's ``errcode``, before any check.

        A scripted failure does not use up the code, as when WeChat is busy.
        """
        if isinstance(errcode, bool) or not isinstance(errcode, int) or errcode == 0:
            raise ValueError(f"errcode must be a non-zero int, not {errcode!r}")
        if path not in self.answers:
            raise ValueError(f"FakeWeChat answers {', '.join(self.answers)}, not {path!r}")
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._failures.setdefault(path, deque()).extend([errcode] * times)

    def reset(self) -> None:
        """Forget records, used and minted codes, and scripted failures."""
        with self._lock:
            self.calls.clear()
            self.requests.clear()
            self._used.clear()
            self._minted.clear()
            self._failures.clear()

    # -- the answers -----------------------------------------------------------

    def demo_token(self, params: Dict[str, Any]) -> Tuple[int, Dict[str, Any]]:
        if params.get("appid") != self.appid:
            return 200, _error(40013)
        if params.get("secret") != self.secret:
            return 200, _error(40125)
        return 200, {"access_token": self._token, "expires_in": 7200}

    def demo_phone_number(self, params: Dict[str, Any]) -> Tuple[int, Dict[str, Any]]:
        if params.get("access_token") != self._token:
            return 200, _error(40001)
        if not params.get("code"):
            return 200, _error(40029)
        digits = str(int(hashlib.sha256(str(params["code"]).encode()).hexdigest(), 16))[-8:]
        number = "139" + digits
        return 200, {"errcode": 0, "errmsg": "ok", "phone_info": {
            "phoneNumber": number, "purePhoneNumber": number, "countryCode": "86",
            "watermark": {"appid": self.appid, "timestamp": 0},
        }}

    def demo_answer(self, params: Dict[str, str]) -> Tuple[int, Dict[str, Any]]:
        """jscode2session: AppID, AppSecret, grant_type, then the code, in WeChat's order."""
        if params.get("appid") != self.appid:
            return 200, _error(40013)
        if params.get("secret") != self.secret:
            return 200, _error(40125)
        if params.get("grant_type") != "authorization_code":
            return 200, {"errcode": 40002, "errmsg": "invalid grant_type"}
        code = params.get("js_code", "")
        if not code:
            return 200, {"errcode": 41008, "errmsg": "missing code"}
        if not WELL_FORMED_CODE.fullmatch(code):
            return 200, _error(40029)
        with self._lock:
            if self.one_time_codes:
                if code in self._used:
                    return 200, _error(40163)
                _remember(self._used, code, None)
                minted = self._minted.pop(code, None)
            else:
                minted = self._minted.get(code)
        if minted is None:
            digest = hashlib.sha256(f"{self.appid}:{self.phone_of(code)}".encode()).hexdigest()
            minted = ("demo-" + digest[:24], None)
        openid, unionid = minted
        body = {"openid": openid, "session_key": base64.b64encode(os.urandom(16)).decode()}
        if unionid is not None:
            body["unionid"] = unionid
        return 200, body

    def _next_failure(self, path: str) -> Optional[int]:
        with self._lock:
            failures = self._failures.get(path)
            return failures.popleft() if failures else None

    def _record(self, path: str, params: Dict[str, Any]) -> None:
        with self._lock:
            _append_bounded(self.requests, (path, params))
            if path == LOGIN:
                _append_bounded(self.calls, params)

    # -- running -----------------------------------------------------------------

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


def _error(errcode: int) -> Dict[str, Any]:
    return {"errcode": errcode, "errmsg": ERRMSGS.get(errcode, "scripted error")}


def _remember(memory: "OrderedDict[str, Any]", key: str, value: Any) -> None:
    memory[key] = value
    if len(memory) > MAX_CODES:
        memory.popitem(last=False)


def _append_bounded(records: List[Any], item: Any) -> None:
    records.append(item)
    if len(records) > MAX_RECORDS:
        del records[0]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up or stalled is no error of ours: no traceback on stderr."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def _handler_for(fake: FakeWeChat) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        #: Seconds a client may stall mid-request before the connection is dropped.
        timeout = 10

        def do_GET(self) -> None:
            self._answer({})

        def do_POST(self) -> None:
            declared = self.headers.get("Content-Length", "0").strip()
            if self.headers.get("Transfer-Encoding") or not declared.isdigit() or int(declared) > MAX_BODY_BYTES:
                self.close_connection = True
                self._send(400, {"errcode": 400, "errmsg": f"send a Content-Length of 0 to {MAX_BODY_BYTES}"})
                return
            try:
                body = json.loads(self.rfile.read(int(declared)) or b"{}")
            except ValueError:
                body = None
            self._answer(body if isinstance(body, dict) else {"": "not a JSON object"})

        def _answer(self, body: Dict[str, Any]) -> None:
            url = urlsplit(self.path)
            params: Dict[str, Any] = {**dict(parse_qsl(url.query)), **body}
            answer = fake.answers.get(url.path)
            if answer is None:
                self._send(404, {"errcode": 404, "errmsg": "not found"})
                return
            fake._record(url.path, params)
            failure = fake._next_failure(url.path)
            self._send(*((200, _error(failure)) if failure is not None else answer(params)))

        def _send(self, status: int, reply: Union[Dict[str, Any], bytes]) -> None:
            payload = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            """Silent: the request line carries the appsecret."""

    return Handler
