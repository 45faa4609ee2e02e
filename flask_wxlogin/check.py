"""``flask wxlogin check``: can this deployment log users in?

For each mini program: the configuration is valid, the session store
answers a write, read and delete of a probe key (and, with
``WXLOGIN_NEAR_CACHE``, lets the near cache track keys), and WeChat accepts
the AppID and AppSecret. The credential check spends no API quota and no
user's code: it calls jscode2session with :data:`PROBE_CODE`, which WeChat
can never have issued. WeChat checks the AppID, then the AppSecret, then the
code, so errcode 40029 (invalid code) means both credentials passed, and
40013 / 40125 that one was rejected. Results never hold a secret.
"""
from __future__ import annotations

import secrets
from typing import Any, List, NamedTuple

from . import config
from .errors import WeChatError, WxLoginError
from .store import text

#: A code WeChat never issues: its codes are letters, digits, ``-`` and ``_``, never a dot.
PROBE_CODE = "flask-wxlogin.check.not-a-code"
#: jscode2session's answer to a bad code once the credentials have passed.
CODE_INVALID = 40029


class Result(NamedTuple):
    """One check of one mini program: passed or not, and why."""

    program: str
    check: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'OK  ' if self.ok else 'FAIL'} {self.program}: {self.check}: {self.detail}"


def run(wxlogin: Any, app_config: Any) -> List[Result]:
    """Every check of every configured mini program, in order (inside an app context)."""
    try:
        config.apply_defaults(dict(app_config))
    except ValueError as exc:
        return [Result(config.MAIN_PROGRAM, "config", False, str(exc))]
    results = []
    for name in config.mini_programs(dict(app_config)):
        program = wxlogin._state().program(name)
        results += [Result(name, "config", True, f"AppID {program.store.appid}"), _store(name, program.store)]
        near_cache = getattr(program.store.backend, "near_cache", None)
        if near_cache is not None and name == config.MAIN_PROGRAM:  # one near cache serves every program
            results.append(_near_cache(name, near_cache))
        results.append(_credentials(name, program))
    return results


def _store(name: str, store: Any) -> Result:
    key = f"{store.key_prefix}{config.CHECK_NAMESPACE}:{secrets.token_hex(8)}"
    value = secrets.token_hex(8)
    try:
        store.backend.set(key, value, 60)
        read = text(store.backend.get(key))
        store.backend.delete(key)
        gone = store.backend.get(key) is None
    except WxLoginError as error:
        return Result(name, "session store", False, f"{error.error}: {error.message}")
    if read != value or not gone:
        return Result(name, "session store", False, "a probe key written was not read back, or not deleted")
    return Result(name, "session store", True, "a probe key written, read and deleted")


def _near_cache(name: str, near_cache: Any) -> Result:
    refused = near_cache.probe()
    if refused is None:
        return Result(name, "near cache", True, "CLIENT TRACKING and SUBSCRIBE accepted")
    return Result(
        name, "near cache", False,
        f"cannot track keys: {refused}; the Redis user needs +client (CLIENT TRACKING) and +subscribe",
    )


def _credentials(name: str, program: Any) -> Result:
    appid, secret, _ = program.store.settings()
    try:
        program.client.code2session(appid, secret, PROBE_CODE)
    except WeChatError as error:
        if error.errcode == CODE_INVALID:
            return Result(name, "WeChat", True, "AppID and AppSecret accepted (errcode 40029 for a probe code)")
        where = "" if error.errcode is None else f" (errcode {error.errcode})"
        return Result(name, "WeChat", False, f"{error.error}{where}: {error.message}")
    return Result(name, "WeChat", False, "a made-up code was accepted: is WXLOGIN_API_BASE really WeChat?")
