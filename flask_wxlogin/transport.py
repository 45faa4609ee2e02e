"""One bounded HTTP exchange with WeChat: time, size, and no URL in any error.

The appsecret and access_token travel in query strings and bodies, so nothing
here puts a URL, a query or a library's exception text into a message: errors
are raised outside the ``except`` block (not even ``__context__`` keeps
requests' text) and the urllib3 logger is scrubbed (see :mod:`.redact`).
"""
from __future__ import annotations

import time
from typing import Any, Dict, Optional, Tuple

import requests

from .errors import WeChatError

#: WeChat's answers are a few hundred bytes; anything past this is not WeChat.
MAX_RESPONSE_BYTES = 64 * 1024


def fetch(
    http: requests.Session,
    method: str,
    url: str,
    timeout: float,
    params: Optional[Dict[str, Any]] = None,
    json: Optional[Dict[str, Any]] = None,
) -> Tuple[bytes, int]:
    """``(body, status)`` of one request, or a :class:`WeChatError` with no trace of the URL."""
    try:
        with http.request(
            method, url, params=params, json=json, timeout=timeout, stream=True, allow_redirects=False
        ) as response:
            return _read_bounded(response, time.monotonic() + timeout), response.status_code
    except requests.Timeout:
        error = wechat_error(504, "wechat_timeout", "WeChat did not answer in time.")
    except requests.ConnectionError:
        error = wechat_error(502, "wechat_unreachable", "WeChat could not be reached.")
    except requests.RequestException:
        error = bad_response("The call to WeChat failed.")
    raise error


def _read_bounded(response: requests.Response, deadline: float) -> bytes:
    """At most :data:`MAX_RESPONSE_BYTES` of the body, read before ``deadline``."""
    body = b""
    for chunk in response.iter_content(chunk_size=1024):
        body += chunk
        if len(body) > MAX_RESPONSE_BYTES:
            raise requests.RequestException("response too large")
        if time.monotonic() > deadline:
            raise requests.Timeout("response too slow")
    return body


def bad_response(message: str) -> WeChatError:
    return wechat_error(502, "wechat_bad_response", message)


def wechat_error(status: int, error: str, message: str, errcode: Optional[int] = None) -> WeChatError:
    return WeChatError(message, error=error, status=status, errcode=errcode)
