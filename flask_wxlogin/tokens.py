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
import hmac
import re
import secrets
from typing import Any, Dict, Optional, Sequence, Tuple

from itsdangerous import Signer
from itsdangerous.encoding import base64_encode
from itsdangerous.signer import HMACAlgorithm

from .errors import Unauthorized

#: Distinct from every other use of SECRET_KEY (Flask's cookie session, CSRF...).
SALT = "flask-wxlogin.skey"
#: Bytes of randomness in a session id's secret part: 128 bits.
SESSION_ID_BYTES = 16
#: What an openid (or unionid) looks like; the client checks WeChat's. It never holds a ``:`` or a ``.``.
OPENID = re.compile(r"[A-Za-z0-9_-]{1,128}")
#: A session id, exactly as :func:`new_session_id` makes it: ``<openid>.<secret>``. An skey
#: naming anything else is refused before any store read, so no signed skey can name another key.
SESSION_ID = re.compile(rf"({OPENID.pattern})\.([A-Za-z0-9_-]{{22}})")
#: What a session's ref looks like (:func:`session_ref`).
REF = re.compile(r"[A-Za-z0-9_]{11}")
#: Characters of a session's ``ref`` (``[A-Za-z0-9_]``): about 65 bits of a digest of the secret part.
REF_LENGTH = 11
_REF_ALPHABET = bytes.maketrans(b"+/", b"__")
#: An HMAC-SHA256 as ``Signer`` writes it: 32 bytes in 43 URL-safe base64 characters,
#: the last one's two spare bits zero. Only this form is accepted: itsdangerous'
#: decoder would also take padding, junk characters and other spare bits.
_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")
#: Verified skeys remembered per key set (about 300 bytes each), so repeated requests skip the HMAC.
VERIFIED_SKEYS = 4096


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
    it (HMAC-SHA256, key derived from the secret and the salt by HMAC).
    Verifying runs on every protected request, so it uses the same signer's
    parts with keys derived once per key set: ``Signer.unsign`` derives them
    again on each call, a third of its cost.
    """

    def __init__(self, salt: str) -> None:
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
        """The session id inside ``skey``, or :class:`Unauthorized` (``skey_invalid``).

        Only an skey exactly as :meth:`sign` writes it passes, so apps may key a
        deny-list or a rate limit on the skey string: one session, one string.
        The signature is compared in that written form, never decoded.
        """
        keys = self._for(secret_key, fallbacks)
        session_id = keys.verified.get(skey)
        if session_id is not None:
            return session_id
        session_id, _, signature = skey.rpartition(".")
        if not (SESSION_ID.fullmatch(session_id) and _SIGNATURE.fullmatch(signature)):
            raise _invalid()
        signed, given = session_id.encode("ascii"), signature.encode("ascii")
        for key in keys.newest_first:
            if hmac.compare_digest(base64_encode(keys.signer.algorithm.get_signature(key, signed)), given):
                keys.remember(skey, session_id)
                return session_id
        raise _invalid()


class _PreparedHMAC(HMACAlgorithm):
    """itsdangerous' HMAC-SHA256, with each key's padded state computed once and copied per use.

    ``hmac.new`` hashes the key pads again on every call; this gives the same
    bytes for a third less work.
    """

    def __init__(self) -> None:
        super().__init__(hashlib.sha256)
        self._prepared: Dict[bytes, Any] = {}

    def get_signature(self, key: bytes, value: bytes) -> bytes:
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = self._prepared[key] = hmac.new(key, digestmod=self.digest_method)
        mac = prepared.copy()
        mac.update(value)
        return mac.digest()  # type: ignore[no-any-return]


class _Keys:
    """A ``Signer`` for one key set, its derived keys (newest first), and the skeys it verified.

    ``verified`` maps skeys whose HMAC this key set checked to their session
    ids, so a repeated request skips the HMAC (never the store read: a revoked
    session is still refused). Only a verified skey enters it; it is dropped
    with the key set when ``SECRET_KEY`` or its fallbacks change, and emptied
    when it reaches :data:`VERIFIED_SKEYS` entries.
    """

    __slots__ = ("signer", "newest_first", "verified")

    def __init__(self, keys: Sequence[Any], salt: str) -> None:
        self.signer = Signer(
            list(keys), salt=salt, key_derivation="hmac", digest_method=hashlib.sha256, algorithm=_PreparedHMAC()
        )
        self.newest_first = [self.signer.derive_key(key) for key in reversed(self.signer.secret_keys)]
        self.verified: Dict[str, str] = {}

    def remember(self, skey: str, session_id: str) -> None:
        if len(self.verified) >= VERIFIED_SKEYS:
            self.verified.clear()
        self.verified[skey] = session_id


def _invalid() -> Unauthorized:
    return Unauthorized("The skey is not valid; log in again.", error="skey_invalid")
