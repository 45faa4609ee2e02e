"""WeChat's open-data cryptography: decrypt ``encryptedData``, check signatures.

Decryption is AES-128-CBC with PKCS#7 padding (the ``cryptography`` package),
the key being the base64-decoded ``session_key``. Any new ``wx.login`` may
replace a user's session_key at WeChat, so callers pass every key they hold,
newest last; a key that cannot be fetched until the first one fails is passed
as a callable.

CBC is not authenticated and the client chooses the ``iv``, so it can set the
first 16 bytes of plaintext at will wherever it knows them. WeChat writes each
kind of open data as compact JSON that begins the same way every time, so the
first block must be exactly what WeChat writes for one kind (:data:`FIRST_BLOCKS`,
or ``{"openId":"`` and the first five characters of the session's openid); the
rest lies beyond the client's reach without the key.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from typing import Any, Callable, Dict, Iterable, Optional, Tuple, Union

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .errors import DecryptError

#: A session_key, or a callable giving one (``None`` when there is no other).
KeySource = Union[str, Callable[[], Optional[str]]]

#: Encrypted open data is a few KiB; refuse to work on more.
MAX_ENCRYPTED_CHARS = 64 * 1024
#: The first AES block of the kinds of open data whose first block holds no data:
#: phone numbers (button ``getPhoneNumber``) and WeRun steps (``wx.getWeRunData``).
FIRST_BLOCKS = frozenset({b'{"phoneNumber":"', b'{"stepInfoList":'})
#: User info (``wx.getUserProfile`` and friends): then five characters of the openid.
USER_INFO_BLOCK = b'{"openId":"'
#: ``wx.getShareInfo``: then the first four characters of a group id we cannot know.
_SHARE_INFO_BLOCK = re.compile(rb'\{"openGId":"[A-Za-z0-9_-]{4}')


def decrypt(
    encrypted_data: Any, iv: Any, keys: Iterable[KeySource], appid: str, openid: str
) -> Dict[str, Any]:
    """The JSON object in ``encrypted_data``, decrypted with the first key that works.

    :class:`DecryptError` if the input is malformed (``data_malformed``), no
    key decrypts it (``session_key_stale``), its watermark names another
    mini program (``watermark_mismatch``), it names another user
    (``openid_mismatch``), or its first block is not what WeChat writes
    (``data_tampered``: the ``iv`` was altered).
    """
    ciphertext = _b64(encrypted_data, "encryptedData")
    iv_bytes = _b64(iv, "iv")
    if not ciphertext or len(ciphertext) % 16 or len(iv_bytes) != 16:
        raise _malformed("encryptedData must be whole AES blocks and iv exactly 16 bytes.")
    for key in _keys(keys):
        decrypted = _decrypt_with(key, ciphertext, iv_bytes)
        if decrypted is not None:
            break
    else:
        raise DecryptError(
            "The data does not decrypt with this session's key; call wx.login, then retry once.",
            error="session_key_stale",
        )
    plaintext, data = decrypted
    watermark = data.get("watermark")
    if not isinstance(watermark, dict) or watermark.get("appid") != appid:
        raise DecryptError(
            "The data was encrypted for another mini program.", error="watermark_mismatch"
        )
    _check_first_block(plaintext[:16], openid)
    if "openId" in data and data["openId"] != openid:
        raise DecryptError("The data names another user.", error="openid_mismatch")
    return data


def _check_first_block(block: bytes, openid: str) -> None:
    """:class:`DecryptError` unless ``block`` begins a kind of data as WeChat writes it."""
    if block in FIRST_BLOCKS or _SHARE_INFO_BLOCK.fullmatch(block):
        return
    if block.startswith(USER_INFO_BLOCK):
        if block == USER_INFO_BLOCK + openid.encode("utf-8")[:5]:
            return
        raise DecryptError("The data names another user.", error="openid_mismatch")
    raise DecryptError(
        "The data does not begin as WeChat writes it: its iv was altered.", error="data_tampered"
    )


def raw_data_signature_ok(raw_data: Any, signature: Any, keys: Iterable[KeySource]) -> bool:
    """Whether ``signature`` is ``sha1(rawData + session_key)`` for one of ``keys``."""
    if not isinstance(raw_data, str) or not isinstance(signature, str):
        return False
    given = signature.lower().encode("ascii", "replace")
    for key in _keys(keys):
        try:
            signed = (raw_data + key).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: not what WeChat signed
            return False
        if hmac.compare_digest(hashlib.sha1(signed).hexdigest().encode("ascii"), given):
            return True
    return False


def login_state_signature(session_key: str, body: str = "") -> str:
    """WeChat's user login state signature: ``hmac_sha256(key=session_key, body)``, hex."""
    return hmac.new(session_key.encode("ascii"), body.encode("utf-8"), hashlib.sha256).hexdigest()


def _keys(sources: Iterable[KeySource]) -> Iterable[str]:
    """Each distinct usable key, calling a callable source only when reached."""
    tried = set()
    for source in sources:
        key = source() if callable(source) else source
        if key and key not in tried:
            tried.add(key)
            yield key


def _decrypt_with(session_key: str, ciphertext: bytes, iv: bytes) -> Optional[Tuple[bytes, Dict[str, Any]]]:
    """The plaintext and its JSON object, or ``None`` if this key does not decrypt the data."""
    try:
        key = base64.b64decode(session_key, validate=True)
        if len(key) != 16:  # AES-128: WeChat's session_keys are 16 bytes
            return None
        decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        unpadder = padding.PKCS7(algorithms.AES.block_size).unpadder()
        plaintext = unpadder.update(padded) + unpadder.finalize()
        data = json.loads(plaintext)
    except (ValueError, binascii.Error, RecursionError):  # bad key, padding, UTF-8 or JSON
        return None
    return (plaintext, data) if isinstance(data, dict) else None


def _b64(value: Any, name: str) -> bytes:
    if not isinstance(value, str) or len(value) > MAX_ENCRYPTED_CHARS:
        raise _malformed(f"{name} must be a base64 string.")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed(f"{name} is not valid base64.") from None


def _malformed(message: str) -> DecryptError:
    return DecryptError(message, error="data_malformed")
