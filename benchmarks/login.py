"""Section 2: the login route against a loopback HTTPS stub of jscode2session.

The stub is the extension's :class:`FakeWeChat` with its listening socket
wrapped in TLS (a throwaway self-signed RSA-2048 certificate), and it counts
the connections it accepts, which shows whether the client reuses one.
"""
from __future__ import annotations

import contextlib
import datetime
import ipaddress
import logging
import os
import socket
import ssl
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from flask import Flask

import variants
from common import (
    APPID, APPSECRET, Settings, Spread, count_commands, delete_our_keys, differences,
    interleave, ratios, redis_client,
)
from flask_wxlogin.testing import FakeWeChat

log = logging.getLogger("benchmarks")

LABELS = {
    "raw_pooled": "raw requests call to the stub, pooled session",
    "raw_fresh": "raw requests call to the stub, new session each call",
    "login_pooled": "POST /auth/login, embedded cache (pooled)",
    "login_pooled_redis": "POST /auth/login, Redis (pooled)",
    "login_fresh": "POST /auth/login, embedded cache, pool closed before each call",
}
#: jscode2session's query, as the extension sends it.
PARAMS = {"appid": APPID, "secret": APPSECRET, "js_code": variants.LOGIN_CODE, "grant_type": "authorization_code"}
#: Logins replayed while the stub counts new connections.
COUNTED_LOGINS = 50


class HttpsFakeWeChat(FakeWeChat):
    """:class:`FakeWeChat` over TLS, counting the connections it accepts."""

    def __init__(self, appid: str, secret: str, context: ssl.SSLContext) -> None:
        super().__init__(appid, secret, one_time_codes=False)  # every login replays one code
        server = self._server
        server.socket = context.wrap_socket(server.socket, server_side=True)
        accept = server.get_request
        self.connections = 0

        def counting_accept() -> Tuple[Any, Any]:
            self.connections += 1
            return accept()

        server.get_request = counting_accept  # type: ignore[method-assign]

    @property
    def url(self) -> str:
        return "https" + super().url[len("http"):]


def run(settings: Settings) -> Dict[str, Any]:
    client = redis_client()
    delete_our_keys(client)
    with tempfile.TemporaryDirectory(prefix="wxlbench-") as scratch:
        certificate = _self_signed(Path(scratch))
        stub = HttpsFakeWeChat(APPID, APPSECRET, _server_context(certificate, Path(scratch) / "key.pem"))
        try:
            with stub, _trusting(str(certificate)):
                cases, login_apps = _cases(stub)
                log.info("login: %d rounds of %d calls per case", settings.login_rounds, settings.login_batch)
                samples = interleave(cases, settings.login_rounds, settings.login_batch)
                reuse = _connections_per_login(stub, login_apps)
                commands = count_commands(variants.login_request(login_apps["login_pooled_redis"]))
                tls = _tls_version(stub, str(certificate))
        finally:
            delete_our_keys(client)
            client.close()
    return {
        "rounds": settings.login_rounds, "batch": settings.login_batch, "samples": samples,
        "connections_per_login": reuse, "redis_commands_per_login": dict(commands), "tls": tls,
        "us": {name: Spread.of(values) for name, values in samples.items()},
        "fresh_over_pooled": ratios(samples["raw_fresh"], samples["raw_pooled"]),
        "login_fresh_over_pooled": ratios(samples["login_fresh"], samples["login_pooled"]),
        "own_embedded": differences(samples["login_pooled"], samples["raw_pooled"]),
        "own_redis": differences(samples["login_pooled_redis"], samples["raw_pooled"]),
    }


def _cases(stub: HttpsFakeWeChat) -> Tuple[Dict[str, Callable[[], Any]], Dict[str, Flask]]:
    url = stub.url + "/sns/jscode2session"
    pooled = requests.Session()

    def raw_pooled() -> None:
        pooled.get(url, params=PARAMS, timeout=5).raise_for_status()

    def raw_fresh() -> None:
        with requests.Session() as fresh:
            fresh.get(url, params=PARAMS, timeout=5).raise_for_status()

    apps = {name: variants.ours_app(stub, name, **(variants.REDIS_CACHE if name.endswith("redis") else {}))
            for name in ("login_pooled", "login_pooled_redis", "login_fresh")}
    logins = {name: variants.login_request(app) for name, app in apps.items()}
    fresh_http = _pooled_http(apps["login_fresh"])

    def login_fresh() -> None:
        fresh_http.close()
        logins["login_fresh"]()

    cases: Dict[str, Callable[[], Any]] = {
        "raw_pooled": raw_pooled, "raw_fresh": raw_fresh,
        "login_pooled": logins["login_pooled"], "login_pooled_redis": logins["login_pooled_redis"],
        "login_fresh": login_fresh,
    }
    for login in logins.values():
        login.expect(200)
    return cases, apps


@contextlib.contextmanager
def _trusting(ca_file: str) -> Iterator[None]:
    """Make requests trust ``ca_file`` (and only it) through ``REQUESTS_CA_BUNDLE``.

    The environment beats ``Session.verify`` in requests, and this machine sets
    the variable, so it is the one switch that reaches every session alike.
    """
    saved = os.environ.get("REQUESTS_CA_BUNDLE")
    os.environ["REQUESTS_CA_BUNDLE"] = ca_file
    try:
        yield
    finally:
        if saved is None:
            del os.environ["REQUESTS_CA_BUNDLE"]
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = saved


def _pooled_http(app: Flask) -> requests.Session:
    """The extension's own pooled ``requests.Session`` for ``app``."""
    return app.extensions["wxlogin"]._states[app].client.http


def _connections_per_login(stub: HttpsFakeWeChat, apps: Dict[str, Flask]) -> Dict[str, float]:
    """New TLS connections the stub accepted per login, after one warm-up login."""
    counts = {}
    for name, app in apps.items():
        if name == "login_fresh":
            continue
        login = variants.login_request(app)
        login()
        before = stub.connections
        for _ in range(COUNTED_LOGINS):
            login()
        counts[name] = (stub.connections - before) / COUNTED_LOGINS
    return counts


def _tls_version(stub: HttpsFakeWeChat, ca_file: str) -> str:
    context = ssl.create_default_context(cafile=ca_file)
    host, port = stub.url.rsplit("//", 1)[1].split(":")
    with context.wrap_socket(socket.create_connection((host, int(port))), server_hostname=host) as tls:
        return f"{tls.version()} {(tls.cipher() or ('?',))[0]}"


# -- the certificate ----------------------------------------------------------------


def _self_signed(directory: Path) -> Path:
    """Write ``key.pem`` and ``cert.pem`` for 127.0.0.1 into ``directory``; the certificate's path."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wxlbench stub")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    (directory / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    path = directory / "cert.pem"
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path


def _server_context(certificate: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    return context


def markdown(result: Dict[str, Any]) -> List[str]:
    lines = [
        "## 2. Login route against a loopback HTTPS stub of jscode2session",
        "",
        f"{result['rounds']} interleaved rounds of {result['batch']} calls per case; TLS: {result['tls']}, "
        "self-signed RSA-2048 certificate. The stub is Python's threaded `http.server`, so its own time "
        "dominates every row.",
        "",
        "| case | µs / call |",
        "|---|---:|",
    ]
    lines += [f"| {label} | {result['us'][name].text()} |" for name, label in LABELS.items()]
    reuse = ", ".join(f"{name}: {value:.2f}" for name, value in result["connections_per_login"].items())
    lines += [
        "",
        f"- Fresh over pooled, raw call: {result['fresh_over_pooled'].text(2)}×; through the login route: "
        f"{result['login_fresh_over_pooled'].text(2)}×.",
        f"- **Our own time per login** (login route minus the raw pooled call, same round): embedded "
        f"{result['own_embedded'].text()} µs; Redis {result['own_redis'].text()} µs.",
        f"- New connections accepted by the stub per pooled login ({COUNTED_LOGINS} logins after a warm-up): {reuse}.",
        f"- Redis commands per login: {result['redis_commands_per_login']}.",
        "",
    ]
    return lines
