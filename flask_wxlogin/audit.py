"""The audit trail: one record per login event on the ``flask_wxlogin.audit`` logger.

Callers name the event and pass its facts as keywords; inside a request the
client's IP (``request.remote_addr``) and User-Agent are added, unless
``WXLOGIN_TRACK_DEVICES`` is off (then no record holds either). Every fact is
an attribute of the record (``extra``), so a JSON formatter writes them as
fields; the message repeats them as ``key=value`` for plain-text logs. Never a
secret (skey, session_key, AppSecret, access_token).

Events: ``login`` (``outcome`` "ok" or "failed", ``error``, ``errcode``),
``logout``, ``logout_all`` (``count``), ``session_ended`` (``by``: "self",
"other_device", "admin", "eviction"), ``rate_limited``.

With ``WXLOGIN_AUDIT_HASH_OPENID`` the ``openid`` field holds a keyed hash
(HMAC-SHA256 under ``SECRET_KEY``, hex): records of one user still match each
other, but the log alone does not tell who the user is.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any, Optional

from flask import current_app, has_app_context, has_request_context, request

log = logging.getLogger("flask_wxlogin.audit")

#: Keeps the openid hashes apart from any other use of SECRET_KEY.
HASH_SALT = b"flask-wxlogin.audit.openid"
#: Characters of the User-Agent header kept; the client sets it to anything it likes.
MAX_USER_AGENT = 256
#: Attributes every LogRecord has: a fact of that name would make ``logging`` raise.
RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def record(event: str, *, program: str, openid: Optional[str] = None, **fields: Any) -> None:
    """Write one audit record for ``event`` of mini ``program``'s user ``openid``.

    A fact named like a LogRecord attribute (``name``, ``msg``...) is a
    :class:`TypeError` at once, logger on or off, so no caller finds out in production.
    """
    clash = RESERVED.intersection(fields)
    if clash:
        raise TypeError(f"audit facts may not be named {', '.join(sorted(clash))}: LogRecord has them")
    if not log.isEnabledFor(logging.INFO):
        return
    facts = {"program": program, "openid": None if openid is None else _written(openid), **fields}
    if has_request_context() and current_app.config.get("WXLOGIN_TRACK_DEVICES", True):
        facts.setdefault("ip", request.remote_addr)
        facts.setdefault("user_agent", request.user_agent.string[:MAX_USER_AGENT] or None)
    text = " ".join(f"{key}={_plain(value)}" for key, value in facts.items() if value is not None)
    log.info("%s %s", event, text, extra={"wxlogin_event": event, **facts})


def hash_openid(openid: str, secret_key: "str | bytes") -> str:
    """The keyed hash written for ``openid`` when ``WXLOGIN_AUDIT_HASH_OPENID`` is on."""
    key = secret_key.encode() if isinstance(secret_key, str) else secret_key
    derived = hmac.new(key, HASH_SALT, hashlib.sha256).digest()
    return hmac.new(derived, openid.encode(), hashlib.sha256).hexdigest()


def _written(openid: str) -> Optional[str]:
    """``openid`` as the config wants it written; None outside an app context, where that is unknown."""
    if not has_app_context():
        return None
    config = current_app.config
    if config.get("WXLOGIN_AUDIT_HASH_OPENID"):
        return hash_openid(openid, config["SECRET_KEY"])
    return openid


def _plain(value: Any) -> str:
    """``value`` for the text message: quoted if it holds a space or a control character."""
    text = str(value)
    return json.dumps(text) if any(char.isspace() or not char.isprintable() for char in text) else text
