"""Name the cause of a failed connection for a log line, by exception class only.

Libraries put URLs (with the AppSecret in the query) and hosts with passwords
into their exception texts, so a log line names the classes in the chain of
causes and what they mean, never their text.
"""
from __future__ import annotations

import socket
import ssl
from typing import List, Optional, Tuple, Type

#: What the innermost known class in a chain means, checked in this order.
_KINDS: Tuple[Tuple[Tuple[Type[BaseException], ...], str], ...] = (
    ((socket.gaierror,), "DNS resolution failed"),
    ((ssl.SSLError, ssl.CertificateError), "TLS error"),
    ((ConnectionRefusedError,), "connection refused"),
    ((ConnectionResetError, ConnectionAbortedError, BrokenPipeError), "connection reset"),
    ((TimeoutError,), "timed out"),
)


def chain(exc: Optional[BaseException]) -> List[BaseException]:
    """``exc`` and what lies beneath it: causes, contexts, urllib3's ``reason``, wrapped args."""
    seen: List[BaseException] = []
    pending = [exc]
    while pending:
        current = pending.pop(0)
        if current is None or any(current is known for known in seen):
            continue
        seen.append(current)
        reason = getattr(current, "reason", None)
        pending.extend(arg for arg in (reason, *current.args) if isinstance(arg, BaseException))
        pending.extend((current.__cause__, current.__context__))
    return seen


def describe(exc: BaseException) -> str:
    """``"connection refused (ConnectionError > NewConnectionError > ConnectionRefusedError)"``.

    A server that answered with an error (redis-py's ``ResponseError``: a
    command against a key of the wrong type, a missing permission) is an
    ``"error reply"``: the connection itself was fine.
    """
    causes = chain(exc)
    kind = next(
        (meaning for classes, meaning in _KINDS for cause in reversed(causes) if isinstance(cause, classes)),
        "error reply" if any(_is_error_reply(cause) for cause in causes) else "connection failed",
    )
    return f"{kind} ({' > '.join(type(cause).__name__ for cause in causes)})"


def _is_error_reply(exc: BaseException) -> bool:
    """Whether ``exc`` is redis-py's ``ResponseError`` (or a subclass), without importing redis."""
    return any(klass.__name__ == "ResponseError" and klass.__module__.startswith("redis") for klass in type(exc).__mro__)
