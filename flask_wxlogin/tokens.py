"""The skey: a random session id signed with itsdangerous.

The token carries nothing but the id; everything else lives server-side, so a
session can be revoked at once. Keys come from ``SECRET_KEY``, and skeys signed
with a key in ``SECRET_KEY_FALLBACKS`` still verify (the newest key signs).
"""
from __future__ import annotations

import hashlib
import secrets
from typing import Any, Optional, Sequence, Tuple

from itsdangerous import BadSignature, Signer

from .errors import Unauthorized

#: Distinct from every other use of SECRET_KEY (Flask's cookie session, CSRF...).
SALT = "flask-wxlogin.skey"
#: Bytes of randomness in a session id: 128 bits.
SESSION_ID_BYTES = 16
#: Longer headers are refused before any crypto; a real skey is 66 characters.
MAX_SKEY_LENGTH = 256


def new_session_id() -> str:
    """A fresh random id (URL-safe, 22 characters), unrelated to any user data."""
    return secrets.token_urlsafe(SESSION_ID_BYTES)


class SkeySigner:
    """Signs session ids and verifies skeys with the app's current keys."""

    def __init__(self) -> None:
        self._cached: Tuple[Tuple[Any, ...], Optional[Signer]] = ((), None)

    def _for(self, secret_key: Any, fallbacks: Sequence[Any]) -> Signer:
        keys = (*fallbacks, secret_key)
        cached_keys, signer = self._cached
        if signer is None or keys != cached_keys:
            signer = Signer(
                list(keys), salt=SALT, key_derivation="hmac", digest_method=hashlib.sha256
            )
            self._cached = (keys, signer)
        return signer

    def sign(self, session_id: str, secret_key: Any, fallbacks: Sequence[Any] = ()) -> str:
        return self._for(secret_key, fallbacks).sign(session_id).decode("ascii")

    def unsign(self, skey: str, secret_key: Any, fallbacks: Sequence[Any] = ()) -> str:
        """The session id inside ``skey``, or :class:`Unauthorized` (``skey_invalid``)."""
        if len(skey) > MAX_SKEY_LENGTH:
            raise _invalid()
        try:
            return self._for(secret_key, fallbacks).unsign(skey).decode("ascii")
        except (BadSignature, UnicodeError):
            raise _invalid() from None


def _invalid() -> Unauthorized:
    return Unauthorized("The skey is not valid; log in again.", error="skey_invalid")
