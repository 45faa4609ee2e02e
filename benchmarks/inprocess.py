"""Section 1: the cost of one protected request in process, against the bare route of the same run."""
from __future__ import annotations

import logging
import time
from typing import Any, Dict, List

import redis

import variants
from common import (
    APPID, APPSECRET, BUSY_WAIT_US, Settings, Spread, WsgiRequest, copy_session_to_floor, count_commands,
    delete_our_keys, differences, interleave, ratios, redis_client, repeat,
)
from flask_wxlogin.testing import FakeWeChat

log = logging.getLogger("benchmarks")

LABELS = {
    "bare": "bare Flask JSON route",
    "bare_sk": "bare + SECRET_KEY",
    "flask_login": "Flask-Login (cookie session)",
    "jwt": "Flask-JWT-Extended (header token)",
    "ours_embedded": "ours, embedded default cache",
    "floor": "floor: bare + SECRET_KEY + 1 raw HMGET",
    "ours_redis": "ours, Redis",
    "ours_near": "ours, Redis + near cache (hits)",
    "ours_forged": "ours, forged skey → 401",
    "control": "control: ours, embedded cache, view does the floor's HMGET",
    "floor_spin": f"control: floor + {BUSY_WAIT_US} µs busy-wait in the view",
}
#: Requests replayed while MONITOR counts Redis commands.
COUNTED_REQUESTS = 200


def run(settings: Settings) -> Dict[str, Any]:
    client = redis_client()
    delete_our_keys(client)
    try:
        with FakeWeChat(APPID, APPSECRET, one_time_codes=False) as fake:  # logins replay one code
            requests = _build(fake, client)
        # Timed with the fake WeChat stopped: its server thread wakes 20 times a second and takes
        # the GIL from whichever request just released it (a socket call), as no WSGI worker does.
        log.info("in-process: %d rounds of %d requests per variant", settings.rounds, settings.batch)
        samples = interleave(requests, settings.rounds, settings.batch)
        commands = _count_commands(requests)
    finally:
        delete_our_keys(client)
        client.close()
    return {"rounds": settings.rounds, "batch": settings.batch, "samples": samples,
            "commands": commands, **_summarise(samples)}


def _build(fake: FakeWeChat, client: redis.Redis) -> Dict[str, WsgiRequest]:
    embedded = variants.ours_app(fake, "ours-embedded")
    on_redis = variants.ours_app(fake, "ours-redis", **variants.REDIS_CACHE)
    near = variants.ours_app(fake, "ours-near", **variants.REDIS_CACHE, WXLOGIN_NEAR_CACHE=True)
    control = variants.ours_app(fake, "control", floor_client=client)
    skey = variants.log_in(on_redis)
    copy_session_to_floor(client)
    requests = {
        "bare": variants.bare(with_secret_key=False),
        "bare_sk": variants.bare(with_secret_key=True),
        "flask_login": variants.flask_login_cookie(),
        "jwt": variants.jwt_header(),
        "ours_embedded": variants.ours(embedded, variants.log_in(embedded)),
        "floor": variants.floor(client),
        "ours_redis": variants.ours(on_redis, skey),
        "ours_near": variants.ours(near, variants.log_in(near)),
        "ours_forged": variants.ours(on_redis, variants.forge(skey)),
        "control": variants.ours(control, variants.log_in(control)),
        "floor_spin": variants.floor_and_busy_wait(client, BUSY_WAIT_US),
    }
    for name, request in requests.items():
        request.expect(401 if name == "ours_forged" else 200)
    return requests


def _count_commands(requests: Dict[str, WsgiRequest]) -> Dict[str, Any]:
    """Redis commands per request: valid skey, forged skey, and valid once the TTL is due to slide."""
    valid = count_commands(repeat(requests["ours_redis"], COUNTED_REQUESTS))
    forged = count_commands(repeat(requests["ours_forged"], COUNTED_REQUESTS))
    near = count_commands(repeat(requests["ours_near"], COUNTED_REQUESTS))
    sliding = _count_with_slide_due(requests["ours_redis"])
    return {
        "requests": COUNTED_REQUESTS,
        "valid": dict(valid), "forged": dict(forged), "slide_due": dict(sliding),
        "valid_per_request": sum(valid.values()) / COUNTED_REQUESTS,
        "forged_per_request": sum(forged.values()) / COUNTED_REQUESTS,
        "near": dict(near), "near_per_request": sum(near.values()) / COUNTED_REQUESTS,
    }


def _count_with_slide_due(request: WsgiRequest) -> Dict[str, int]:
    """The same count with the store's clock moved past a tenth of the idle timeout."""
    app = request.app
    with app.app_context():
        store = app.extensions["wxlogin"].store
    later = time.time() + app.config["WXLOGIN_SESSION_IDLE_TIMEOUT"] * 0.1 + 60
    real_clock = store.clock
    store.clock = lambda: later
    try:
        return count_commands(repeat(request, COUNTED_REQUESTS))
    finally:
        store.clock = real_clock


def _summarise(samples: Dict[str, List[float]]) -> Dict[str, Any]:
    return {
        "us": {name: Spread.of(values) for name, values in samples.items()},
        "x_bare": {name: ratios(values, samples["bare"]) for name, values in samples.items()},
        "x_bare_sk": {name: ratios(values, samples["bare_sk"]) for name, values in samples.items()},
        "redis_minus_floor": differences(samples["ours_redis"], samples["floor"]),
        "near_x_floor": ratios(samples["ours_near"], samples["floor"]),
        "near_x_redis": ratios(samples["ours_near"], samples["ours_redis"]),
        "near_minus_embedded": differences(samples["ours_near"], samples["ours_embedded"]),
        "embedded_minus_bare_sk": differences(samples["ours_embedded"], samples["bare_sk"]),
        "control_minus_floor": differences(samples["control"], samples["floor"]),
        "spin_minus_floor": differences(samples["floor_spin"], samples["floor"]),
    }


def markdown(result: Dict[str, Any]) -> List[str]:
    lines = [
        "## 1. Per-request cost in process",
        "",
        f"Direct WSGI calls with a prebuilt environ; {result['rounds']} interleaved rounds of "
        f"{result['batch']} requests per variant. Ratios are per round against the bare routes "
        "of the same round: median (min–max).",
        "",
        "| variant | µs / request | × bare | × bare + SECRET_KEY |",
        "|---|---:|---:|---:|",
    ]
    for name, label in LABELS.items():
        lines.append(
            f"| {label} | {result['us'][name].text()} | {result['x_bare'][name].text(2)} "
            f"| {result['x_bare_sk'][name].text(2)} |"
        )
    commands = result["commands"]
    lines += [
        "",
        f"- ours on Redis minus the floor: **{result['redis_minus_floor'].text()} µs** per request.",
        f"- ours with the near cache (every request a hit): {result['near_x_floor'].text(2)}× the floor, "
        f"{result['near_x_redis'].text(2)}× ours on Redis, the embedded path + "
        f"{result['near_minus_embedded'].text()} µs. Hits need repeated requests from one session to one "
        "worker; every login and miss still pays the round trip; every worker receives every write under "
        "the prefix.",
        f"- ours on the embedded cache minus bare + SECRET_KEY: {result['embedded_minus_bare_sk'].text()} µs "
        "(a hot loop: every cache line stays warm).",
        f"- Controls, minus the floor: ours on the embedded cache plus the floor's HMGET "
        f"{result['control_minus_floor'].text()} µs; a {BUSY_WAIT_US} µs busy-wait "
        f"{result['spin_minus_floor'].text()} µs. If the first matches ours on Redis, the Redis backend adds "
        "nothing beyond its one HMGET, and the excess over the embedded figure is our Python work running "
        "after a blocking round trip (colder CPU caches); a busy-wait, which touches almost no memory, "
        "adds only its own length.",
        f"- Redis commands (MONITOR, {commands['requests']} requests each): valid skey "
        f"{commands['valid_per_request']:.2f} per request {_names(commands['valid'])}; forged skey "
        f"{commands['forged_per_request']:.2f} {_names(commands['forged'])}; valid skey once a tenth "
        f"of the idle timeout has passed {_names(commands['slide_due'])} (one write slides the TTL, "
        "then reads only); with the near cache, valid skey "
        f"{commands['near_per_request']:.2f} {_names(commands['near'])} (a PING renews the lease on the "
        "invalidation connection every 0.5 s).",
        "",
    ]
    return lines


def _names(counts: Dict[str, int]) -> str:
    return "(" + (", ".join(f"{name} ×{n}" for name, n in sorted(counts.items())) or "none") + ")"
