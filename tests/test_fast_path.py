"""The embedded fast path: the prepared HMAC, the memo of verified skeys, no pickle in the embedded cache."""
from __future__ import annotations

import hashlib
from typing import Any

import pytest
from itsdangerous import Signer

from flask_wxlogin import tokens
from flask_wxlogin.errors import Unauthorized
from flask_wxlogin.tokens import SkeySigner, new_session_id, salt_for

from .conftest import APPID, OPENID, SECRET_KEY, SESSION_KEY, login, make_app

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _memo(signer: SkeySigner, *keys: Any) -> "dict[str, str]":
    return signer._for(keys[-1], keys[:-1]).verified


def test_prepared_hmac_signs_and_verifies_exactly_as_itsdangerous() -> None:
    plain = Signer([SECRET_KEY], salt=salt_for(APPID), key_derivation="hmac", digest_method=hashlib.sha256)
    ours = SkeySigner(salt_for(APPID))
    for _ in range(20):
        session_id = new_session_id(OPENID)
        skey = ours.sign(session_id, SECRET_KEY)
        assert skey == plain.sign(session_id).decode()
        assert ours.unsign(plain.sign(session_id).decode(), SECRET_KEY) == session_id


def _forgeries(skey: str) -> "list[str]":
    session_id, _, signature = skey.rpartition(".")
    other = SkeySigner(salt_for(APPID)).sign(session_id, "another-secret-key")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    return [
        other,  # a real signature under another key
        f"{session_id}.{flipped}",  # one character off
        f"{session_id}.{ALPHABET[0] * 42}A",  # canonical form, random
        f"{new_session_id(OPENID)}.{signature}",  # the signature moved to another id
        skey + "=",  # padding: not the canonical form
    ]


def test_a_forged_skey_never_enters_the_memo() -> None:
    signer = SkeySigner(salt_for(APPID))
    skey = signer.sign(new_session_id(OPENID), SECRET_KEY)
    for forged in _forgeries(skey) * 2:  # twice: the second attempt would find a remembered forgery
        with pytest.raises(Unauthorized):
            signer.unsign(forged, SECRET_KEY)
    assert _memo(signer, SECRET_KEY) == {}
    session_id = signer.unsign(skey, SECRET_KEY)
    assert _memo(signer, SECRET_KEY) == {skey: session_id}
    for forged in _forgeries(skey):
        with pytest.raises(Unauthorized):
            signer.unsign(forged, SECRET_KEY)
    assert _memo(signer, SECRET_KEY) == {skey: session_id}


def test_memo_belongs_to_one_key_set_and_goes_with_a_rotation() -> None:
    signer = SkeySigner(salt_for(APPID))
    skey = signer.sign(new_session_id(OPENID), "old-key")
    signer.unsign(skey, "old-key")
    with pytest.raises(Unauthorized):
        signer.unsign(skey, "new-key")  # the old key dropped: not accepted from memory
    assert _memo(signer, "new-key") == {}
    assert signer.unsign(skey, "new-key", ["old-key"])  # a fallback verifies it afresh
    assert list(_memo(signer, "old-key", "new-key")) == [skey]


def test_memo_is_bounded(monkeypatch: Any) -> None:
    monkeypatch.setattr(tokens, "VERIFIED_SKEYS", 3)
    signer = SkeySigner(salt_for(APPID))
    for _ in range(10):
        signer.unsign(signer.sign(new_session_id(OPENID), SECRET_KEY), SECRET_KEY)
        assert len(_memo(signer, SECRET_KEY)) <= 3


def test_a_remembered_skey_is_still_refused_after_logout(wechat: Any) -> None:
    client = make_app().test_client()
    skey = login(client)
    assert client.get("/me", headers={"X-WX-Skey": skey}).status_code == 200
    assert client.get("/me", headers={"X-WX-Skey": skey}).status_code == 200
    assert client.post("/auth/logout", headers={"X-WX-Skey": skey}).status_code == 200
    response = client.get("/me", headers={"X-WX-Skey": skey})
    assert response.status_code == 401 and response.get_json()["error"] == "session_expired"


def test_the_embedded_cache_keeps_sessions_unpickled(wechat: Any) -> None:
    app = make_app()
    client = app.test_client()
    skey = login(client)
    cache = app.extensions["cache"]
    (embedded,) = cache.values()
    (stored,) = [value for _, value in embedded._cache.values() if isinstance(value, str) and "|" in value]
    assert f"k={SESSION_KEY}" in stored.split("\n")
    assert client.get("/me", headers={"X-WX-Skey": skey}).get_json()["openid"] == "oGZUI0egBJY1zhBYw2KhdUfwVJJE"
