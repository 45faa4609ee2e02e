"""The ``WXLOGIN_*`` configuration keys and their defaults, in one place."""
from __future__ import annotations

import difflib
import functools
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

from limits import RateLimitItem, parse_many

#: Every key the extension reads, with its default. ``None`` means required.
DEFAULTS: Dict[str, Any] = {
    # The mini program's AppID and AppSecret (公众平台 → 开发管理 → 开发设置).
    "WXLOGIN_APPID": None,
    "WXLOGIN_SECRET": None,
    # Where WeChat's API lives; tests and the demo point it at a loopback stub.
    "WXLOGIN_API_BASE": "https://api.weixin.qq.com",
    # Seconds a whole call to WeChat may take: connect, send, headers and body (a numeric string works too).
    "WXLOGIN_HTTP_TIMEOUT": 5.0,
    # Where the login blueprint is mounted: a path starting with "/" (or "" for the root).
    "WXLOGIN_URL_PREFIX": "/auth",
    # The request header carrying the skey (``Authorization: Bearer`` works too).
    "WXLOGIN_TOKEN_HEADER": "X-WX-Skey",
    # A session unused for this many seconds ends (sliding). Whole seconds; a string of digits works too.
    "WXLOGIN_SESSION_IDLE_TIMEOUT": 7 * 24 * 3600,
    # A session ends this many seconds after login, however much it is used; it may be
    # shorter than the idle timeout, and then caps it.
    "WXLOGIN_SESSION_MAX_AGE": 30 * 24 * 3600,
    # Prepended to every cache key the extension writes.
    "WXLOGIN_KEY_PREFIX": "wxl:",
    # Live sessions a user may have per mini program; a login beyond it ends the
    # least recently used one. None: no cap.
    "WXLOGIN_MAX_SESSIONS_PER_USER": 10,
    # Keep each session's IP address and User-Agent (64 characters) for
    # ``WxLogin.sessions``; False keeps nothing about the device, and the audit trail leaves both out.
    "WXLOGIN_TRACK_DEVICES": True,
    # More mini programs served by this app: {"staff": {"appid": ..., "secret": ...}}.
    "WXLOGIN_MINI_PROGRAMS": {},
    # Login attempts allowed per client IP (``request.remote_addr``) and mini program, in the
    # ``limits`` notation ("30/minute", "5/second;100/hour"); ``None`` switches the limit off.
    # Counted where the sessions are kept, before WeChat is called. A store that cannot count fails
    # closed (503), but a Redis Cluster fails open (a lost master holds only some users' sessions).
    "WXLOGIN_LOGIN_RATE_LIMIT": "30/minute",
    # Write a keyed hash (HMAC-SHA256 under SECRET_KEY) of the openid in audit records
    # instead of the openid itself, for logs that must not hold personal data.
    "WXLOGIN_AUDIT_HASH_OPENID": False,
    # Serve repeated session reads from each process's memory, kept current by Redis's
    # invalidations (CLIENT TRACKING); revocation stays immediate. Only with RedisCache
    # against one Redis node reached directly: see README.rst, "Near cache".
    "WXLOGIN_NEAR_CACHE": False,
}

#: What every key the extension reads starts with.
_PREFIX = "WXLOGIN_"
#: The name of the mini program configured by WXLOGIN_APPID / WXLOGIN_SECRET.
MAIN_PROGRAM = "default"
#: What the name of another mini program looks like (it is a URL segment).
_PROGRAM_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
#: First segments of the extension's own keys under WXLOGIN_KEY_PREFIX (``<namespace>:...``):
#: the access_token's, the login rate limiter's, ``flask wxlogin check``'s probe key's.
ACCESS_TOKEN_NAMESPACE, RATE_LIMIT_NAMESPACE, CHECK_NAMESPACE = "access_token", "ratelimit", "check"
#: No program may be named like a namespace: its users' keys would share it.
RESERVED_PROGRAM_NAMES = frozenset({ACCESS_TOKEN_NAMESPACE, RATE_LIMIT_NAMESPACE, CHECK_NAMESPACE})

_SECONDS = ("WXLOGIN_SESSION_IDLE_TIMEOUT", "WXLOGIN_SESSION_MAX_AGE")
_WHOLE = re.compile(r"\s*\d+\s*")
_DECIMAL = re.compile(r"\s*(\d+\.?\d*|\.\d+)\s*")


def apply_defaults(config: Dict[str, Any]) -> None:
    """Fill in missing keys and raise :class:`ValueError` naming the first bad one.

    Numbers given as strings (from ``os.environ``, say) are converted in place.
    """
    for key, value in DEFAULTS.items():
        config.setdefault(key, value)
    for key in ("WXLOGIN_APPID", "WXLOGIN_SECRET", "SECRET_KEY"):
        if not config.get(key) or not isinstance(config[key], (str, bytes)):
            raise ValueError(f"{key} must be set to a non-empty string")
    fallbacks = config.get("SECRET_KEY_FALLBACKS")
    if fallbacks is not None and not (
        isinstance(fallbacks, (list, tuple)) and all(key and isinstance(key, (str, bytes)) for key in fallbacks)
    ):
        # A bare string would become one-character keys, "" an empty HMAC key: forgeable skeys.
        raise ValueError("SECRET_KEY_FALLBACKS must be a list of non-empty strings, oldest first")
    timeout = config["WXLOGIN_HTTP_TIMEOUT"]
    if isinstance(timeout, str) and _DECIMAL.fullmatch(timeout):
        timeout = config["WXLOGIN_HTTP_TIMEOUT"] = float(timeout)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"WXLOGIN_HTTP_TIMEOUT must be a positive number of seconds, not {timeout!r}")
    for key in _SECONDS:
        value = config[key]
        if isinstance(value, str) and _WHOLE.fullmatch(value):
            value = config[key] = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a whole number of seconds, at least 1, not {value!r}")
    cap = config["WXLOGIN_MAX_SESSIONS_PER_USER"]
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise ValueError(f"WXLOGIN_MAX_SESSIONS_PER_USER must be None or a whole number, at least 1, not {cap!r}")
    if not isinstance(config["WXLOGIN_TRACK_DEVICES"], bool):
        raise ValueError("WXLOGIN_TRACK_DEVICES must be True or False")
    if not isinstance(config["WXLOGIN_NEAR_CACHE"], bool):
        raise ValueError(f"WXLOGIN_NEAR_CACHE must be True or False, not {config['WXLOGIN_NEAR_CACHE']!r}")
    for key in ("WXLOGIN_TOKEN_HEADER", "WXLOGIN_KEY_PREFIX", "WXLOGIN_API_BASE"):
        if not config[key] or not isinstance(config[key], str):
            raise ValueError(f"{key} must be a non-empty string")
    prefix = config["WXLOGIN_URL_PREFIX"]
    if not isinstance(prefix, str) or prefix[:1] not in ("", "/"):
        suggestion = f" (try {'/' + prefix!r})" if isinstance(prefix, str) else ""
        raise ValueError(f'WXLOGIN_URL_PREFIX must be a path starting with "/"{suggestion}, not {prefix!r}')
    rate_limit = config["WXLOGIN_LOGIN_RATE_LIMIT"]
    if rate_limit is not None and not (isinstance(rate_limit, str) and rate_limits(rate_limit)):
        raise ValueError(
            f'WXLOGIN_LOGIN_RATE_LIMIT must be None or a limit such as "30/minute", not {rate_limit!r}'
        )
    if not isinstance(config["WXLOGIN_AUDIT_HASH_OPENID"], bool):
        raise ValueError("WXLOGIN_AUDIT_HASH_OPENID must be True or False")
    mini_programs(config)


@functools.lru_cache(maxsize=16)
def rate_limits(text: str) -> "Tuple[RateLimitItem, ...]":
    """The limits in ``text`` ("30/minute", "5/second;100/hour"); empty if it is not one."""
    try:
        items = tuple(parse_many(text))
    except ValueError:
        return ()
    return items if all(item.amount >= 1 for item in items) else ()


def session_lifetime(config: Mapping[str, Any]) -> int:
    """Seconds a new session lives unless used: the idle timeout, capped by the max age."""
    return min(config["WXLOGIN_SESSION_IDLE_TIMEOUT"], config["WXLOGIN_SESSION_MAX_AGE"])


def unknown_keys(config: Mapping[str, Any]) -> List[Tuple[str, Optional[str]]]:
    """``(key, closest known key or None)`` for each ``WXLOGIN_*`` key the extension does not read.

    Names are compared without their shared ``WXLOGIN_``, which would make any two look alike.
    """
    known = {key[len(_PREFIX):]: key for key in DEFAULTS if key.startswith(_PREFIX)}
    return [
        (key, known.get(next(iter(difflib.get_close_matches(key[len(_PREFIX):], known, n=1, cutoff=0.6)), "")))
        for key in sorted(k for k in config if isinstance(k, str) and k.startswith(_PREFIX))
        if key not in DEFAULTS
    ]


def program_settings(config: Mapping[str, Any], name: str) -> Optional[Tuple[str, str, str]]:
    """``(appid, secret, key prefix)`` of mini program ``name`` as configured now, or ``None``."""
    if name == MAIN_PROGRAM:
        return config["WXLOGIN_APPID"], config["WXLOGIN_SECRET"], config["WXLOGIN_KEY_PREFIX"]
    programs = config["WXLOGIN_MINI_PROGRAMS"]
    settings = programs.get(name) if isinstance(programs, dict) else None
    if not isinstance(settings, dict):
        return None
    appid, secret = settings.get("appid"), settings.get("secret")
    if not (isinstance(appid, str) and appid and isinstance(secret, str) and secret):
        return None  # changed at run time into something init_app would have refused
    return appid, secret, f"{config['WXLOGIN_KEY_PREFIX']}{name}:"


def mini_programs(config: Dict[str, Any]) -> Dict[str, Tuple[str, str]]:
    """Every mini program's ``name -> (appid, secret)``, the main one first; ValueError if bad."""
    programs = {MAIN_PROGRAM: (config["WXLOGIN_APPID"], config["WXLOGIN_SECRET"])}
    others = config["WXLOGIN_MINI_PROGRAMS"]
    if not isinstance(others, dict):
        raise ValueError('WXLOGIN_MINI_PROGRAMS must be a dict: {"name": {"appid": ..., "secret": ...}}')
    for name, settings in others.items():
        where = f"WXLOGIN_MINI_PROGRAMS[{name!r}]"
        if not isinstance(name, str) or not _PROGRAM_NAME.fullmatch(name) or name == MAIN_PROGRAM:
            raise ValueError(f"{where}: a name is 1-32 of a-z, 0-9, '_', '-', and not {MAIN_PROGRAM!r}")
        if name in RESERVED_PROGRAM_NAMES:
            raise ValueError(f"{where}: the name is reserved for the extension's own keys")
        if not isinstance(settings, dict) or not all(
            isinstance(settings.get(key), str) and settings[key] for key in ("appid", "secret")
        ):
            raise ValueError(f"{where} must hold a non-empty 'appid' and 'secret'")
        programs[name] = (settings["appid"], settings["secret"])
    appids = [appid for appid, _ in programs.values()]
    if len(set(appids)) != len(appids):
        raise ValueError("each mini program needs its own appid")
    return programs
