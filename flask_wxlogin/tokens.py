"""The skey: a random session id signed with itsdangerous.

The token carries nothing but the id; everything else lives server-side, so a
session can be revoked at once. Keys come from ``SECRET_KEY``, and skeys signed
with a key in ``SECRET_KEY_FALLBACKS`` still verify (the newest key signs).
"""
from __future__ import annotations

import base64
import hashlib
import re
import secrets
from typing import Any, Optional, Sequence, Tuple

from itsdangerous import Signer

from .errors import Unauthorized

#: Distinct from every other use of SECRET_KEY (Flask's cookie session, CSRF...).
SALT = "flask-wxlogin.skey"
#: Bytes of randomness in a session id: 128 bits.
SESSION_ID_BYTES = 16
#: Exactly what :func:`new_session_id` makes; an skey naming anything else is refused
#: before any store read, so no signed skey can name another cache key.
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{22}")
#: An HMAC-SHA256 as ``Signer`` writes it: 32 bytes in 43 URL-safe base64 characters,
#: the last one's two spare bits zero. Only this form is accepted: itsdangerous'
#: decoder would also take padding, junk characters and other spare bits.
_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")


def new_session_id() -> str:
    """A fresh random id (URL-safe, 22 characters), unrelated to any user data."""
    return secrets.token_urlsafe(SESSION_ID_BYTES)


class SkeySigner:
    """Signs session ids and verifies skeys with the app's current keys.

    An skey is ``<session id>.<signature>`` as itsdangerous' ``Signer`` makes
    it (HMAC-SHA256, key derived from the secret and :data:`SALT` by HMAC).
    Verifying runs on every protected request, so it uses the same signer's
    parts with keys derived once per key set: ``Signer.unsign`` derives them
    again on each call, a third of its cost.
    """

    def __init__(self, salt: str = SALT) -> None:
        #: Binds skeys to one use: :data:`SALT` for the main mini program, plus ``:<appid>`` for others.
        self.salt = salt
        self._cached: Tuple[Tuple[Any, ...], Optional[_Keys]] = ((), None)

    def _for(self, secret_key: Any, fallbacks: Sequence[Any]) -> "_Keys":
        keys = (*fallbacks, secret_key)
        cached_keys, prepared = self._cached
        if prepared is None or keys != cached_keys:
            prepared = _Keys(keys, self.salt)
            self._cached = (keys, prepared)
        return prepared

    def sign(self, session_id: str, secret_key: Any, fallbacks: Sequence[Any] = ()) -> str:
        return self._for(secret_key, fallbacks).signer.sign(session_id).decode("ascii")

    def unsign(self, skey: str, secret_key: Any, fallbacks: Sequence[Any] = ()) -> str:
        """The session id inside ``skey``, or :class:`Unauthorized` (``skey_invalid``).

        Only an skey exactly as :meth:`sign` writes it passes, so apps may key a
        deny-list or a rate limit on the skey string: one session, one string.
        """
        session_id, _, signature = skey.rpartition(".")
        if not (SESSION_ID.fullmatch(session_id) and _SIGNATURE.fullmatch(signature)):
            raise _invalid()
        signed = session_id.encode("ascii")
        signature_bytes = base64.urlsafe_b64decode(signature + "=")
        keys = self._for(secret_key, fallbacks)
        for key in keys.newest_first:
            if keys.signer.algorithm.verify_signature(key, signed, signature_bytes):
                return session_id
        raise _invalid()


class _Keys:
    """A ``Signer`` for one key set, and its derived keys, newest first."""

    __slots__ = ("signer", "newest_first")

    def __init__(self, keys: Sequence[Any], salt: str) -> None:
        self.signer = Signer(
            list(keys), salt=salt, key_derivation="hmac", digest_method=hashlib.sha256
        )
        self.newest_first = [self.signer.derive_key(key) for key in reversed(self.signer.secret_keys)]


def _invalid() -> Unauthorized:
    return Unauthorized("The skey is not valid; log in again.", error="skey_invalid")
