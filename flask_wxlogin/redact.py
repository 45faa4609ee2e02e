"""Keep secrets that travel in URLs out of log records.

WeChat's API takes the appsecret (and the access_token) in the query
string; urllib3 logs request URLs at DEBUG and retry warnings with the URL.
checksession's ``signature`` is ``hmac_sha256(session_key, "")``: not the key,
but a stable verifier of it, so it goes too.
"""
from __future__ import annotations

import logging
import re

#: Query parameters whose values never reach a log record.
SECRET_PARAMS = ("secret", "access_token", "js_code", "code", "session_key", "signature")

_PARAM = re.compile(
    r"((?:^|[?&;\s\"'(]|%26|%3F)(?:" + "|".join(SECRET_PARAMS) + r")(?:=|%3D))"
    r"(?:(?!%26)[^&\s\"'#;)])*",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with the value of every secret query parameter replaced by ``***``."""
    return _PARAM.sub(r"\1***", text)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message through :func:`redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_FILTER = RedactingFilter()


def install() -> None:
    """Attach the filter to urllib3's connection-pool logger, once."""
    logger = logging.getLogger("urllib3.connectionpool")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
