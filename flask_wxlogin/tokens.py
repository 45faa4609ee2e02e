"""The skey: a session id (the user's openid and a random secret) signed with itsdangerous.

The token names the user and carries nothing else; the session lives
server-side in the user's data, so it can be revoked at once. Keys come from
``SECRET_KEY``, and skeys signed with a key in ``SECRET_KEY_FALLBACKS`` still
verify (the newest key signs). The salt holds the mini program's AppID, so an
skey is good for one AppID only.
"""
from __future__ import annotations

import binascii
import functools
import hashlib
import re
import secrets
from typing import Any, Optional, Sequence, Tuple

from itsdangerous import BadData, Signer
from itsdangerous.encoding import base64_decode

from .errors import Unauthorized

#: Distinct from every other use of SECRET_KEY (Flask's cookie session, CSRF...).
SALT = "flask-wxlogin.skey"
#: Bytes of randomness in a session id's secret part: 128 bits.
SESSION_ID_BYTES = 16
#: What an openid looks like (the client checks WeChat's): it never holds a ``:`` or a ``.``.
OPENID = re.compile(r"[A-Za-z0-9_-]{1,128}")
#: A session id: ``<openid>.<secret>``.
SESSION_ID = re.compile(rf"({OPENID.pattern})\.([A-Za-z0-9_-]{{22}})")
#: What a session's ref looks like (:func:`session_ref`).
REF = re.compile(r"[A-Za-z0-9_]{11}")
#: Characters of a session's ``ref`` (``[A-Za-z0-9_]``): about 65 bits of a digest of the secret part.
REF_LENGTH = 11
_REF_ALPHABET = bytes.maketrans(b"+/", b"__")
#: Longer headers are refused before any crypto; a real skey is about 95 characters.
MAX_SKEY_LENGTH = 256


def new_session_id(openid: str) -> str:
    """A fresh session id of user ``openid``: the openid, a dot, 22 random URL-safe characters."""
    return f"{openid}.{secrets.token_urlsafe(SESSION_ID_BYTES)}"


@functools.lru_cache(maxsize=4096)
def split_session_id(session_id: str) -> Optional[Tuple[str, str]]:
    """``(openid, ref)`` of a session id shaped like the ones we issue, else ``None``.

    The ref is the session's public name: a digest of the secret part,
    useless for forging an skey; base64 with ``_`` for both ``+`` and ``/``,
    so it is URL-safe and never starts with a dash (it can follow a command
    on a command line). Every protected request needs both, and a client
    sends the same skey again and again: the cache saves the match and the
    hash on all but the first.
    """
    named = SESSION_ID.fullmatch(session_id)
    if named is None:
        return None
    digest = hashlib.sha256(named.group(2).encode("ascii")).digest()[:9]
    return named.group(1), binascii.b2a_base64(digest, newline=False)[:REF_LENGTH].translate(_REF_ALPHABET).decode()


def session_ref(session_id: str) -> str:
    """The ref of a session id we issued (:func:`split_session_id`)."""
    parts = split_session_id(session_id)
    if parts is None:
        raise ValueError("not a session id")
    return parts[1]


def salt_for(appid: str) -> str:
    """The salt of skeys for mini program ``appid``: an skey of another AppID never verifies."""
    return f"{SALT}:{appid}"


class SkeySigner:
    """Signs session ids and verifies skeys with the app's current keys.

    An skey is ``<session id>.<signature>`` as itsdangerous' ``Signer`` makes
    it (HMAC-SHA256, key derived from the secret and :data:`SALT` by HMAC).
    Verifying runs on every protected request, so it uses the same signer's
    parts with keys derived once per key set: ``Signer.unsign`` derives them
    again on each call, a third of its cost.
    """

    def __init__(self, salt: str = SALT) -> None:
        #: Binds skeys to one use and one AppID: :func:`salt_for`.
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
        """The session id inside ``skey``, or :class:`Unauthorized` (``skey_invalid``)."""
        if len(skey) > MAX_SKEY_LENGTH:
            raise _invalid()
        session_id, _, signature = skey.rpartition(".")
        try:
            signed = session_id.encode("ascii")
            signature_bytes = base64_decode(signature)
        except (BadData, UnicodeError):
            raise _invalid() from None
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
