"""The audit trail: one record per login event on the ``flask_wxlogin.audit`` logger.

Interface stub for 0.3.0 (issue 13 fills in the fields: ip, user agent, the
hashed openid). Callers name the event and pass its facts as keywords; never a
secret (skey, session_key, AppSecret, access_token).

Events: ``login`` (``outcome`` "ok" or the error name, ``errcode``),
``logout``, ``logout_all`` (``count``), ``session_ended`` (``by``: "self",
"other_device", "admin", "eviction"), ``rate_limited``.
"""
from __future__ import annotations

import logging
from typing import Any, Optional

log = logging.getLogger("flask_wxlogin.audit")


def record(event: str, *, program: str, openid: Optional[str] = None, **fields: Any) -> None:
    """Write one audit record for ``event`` of mini ``program``'s user ``openid``."""
    log.info("%s", event, extra={"wxlogin_event": event, "program": program, "openid": openid, **fields})
