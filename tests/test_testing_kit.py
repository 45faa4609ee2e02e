"""The testing kit: issue_skey, WxLoginClient, the pytest plugin and the shared fake's command."""
from __future__ import annotations

import base64
import configparser
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List

import pytest
import requests
from flask import Flask

from flask_wxlogin import CallbackError, current_wx_user, login_required, pytest_plugin
from flask_wxlogin.testing import WxLoginClient, issue_skey

from .conftest import make_app

ROOT = Path(__file__).resolve().parents[1]


def me(app: Flask, skey: str, header: str = "X-WX-Skey") -> Any:
    return app.test_client().get("/me", headers={header: skey})


# -- issue_skey ----------------------------------------------------------------------


def test_issue_skey_opens_a_real_session_without_wechat(app, requests_mock):
    skey = issue_skey(app, openid="oIssued0001", unionid="uIssued0001")

    response = me(app, skey)

    assert response.status_code == 200
    assert response.get_json() == {"openid": "oIssued0001", "unionid": "uIssued0001", "user_id": None}
    assert requests_mock.call_count == 0


def test_issue_skey_keeps_the_session_in_the_apps_redis(redis_app, redis_db, redis_prefix):
    skey = issue_skey(redis_app, openid="oIssuedRedis")

    assert me(redis_app, skey).get_json()["openid"] == "oIssuedRedis"
    assert redis_db.exists(redis_prefix + skey.split(".")[0])


def test_issue_skey_runs_on_login_unless_a_user_id_is_given(app):
    seen: List[Any] = []
    app.extensions["wxlogin"].on_login(lambda identity: seen.append(identity) or f"user-{identity.openid}")

    hooked = issue_skey(app, openid="oHooked", session_key="c2Vzc2lvbktleQ==")
    given = issue_skey(app, openid="oGiven", user_id=7)

    assert [(i.openid, i.session_key) for i in seen] == [("oHooked", "c2Vzc2lvbktleQ==")]
    assert me(app, hooked).get_json()["user_id"] == "user-oHooked"
    assert me(app, given).get_json()["user_id"] == 7


def test_issue_skey_defaults_to_a_random_valid_session_key(app):
    keys: List[str] = []
    app.extensions["wxlogin"].on_login(lambda identity: keys.append(identity.session_key))

    issue_skey(app, openid="oRandomKey")
    issue_skey(app, openid="oRandomKey")

    assert keys[0] != keys[1]
    assert all(len(base64.b64decode(key, validate=True)) == 16 for key in keys)


def test_issue_skey_uses_current_app_in_an_app_context(app):
    with app.app_context():
        skey = issue_skey(openid="oCurrentApp")

    assert me(app, skey).get_json()["openid"] == "oCurrentApp"


def test_issue_skey_works_only_while_testing():
    app = make_app(TESTING=False)

    with pytest.raises(RuntimeError, match="TESTING=True"):
        issue_skey(app, openid="oNotTesting")


def test_issue_skey_for_another_mini_program():
    app = make_app(WXLOGIN_MINI_PROGRAMS={"staff": {"appid": "wxstaffapp0000001", "secret": "staff-secret"}})

    @app.get("/staff")
    @login_required(program="staff")
    def staff() -> Dict[str, Any]:
        return {"openid": current_wx_user.openid, "program": current_wx_user.program}

    skey = issue_skey(app, openid="oStaff", program="staff")

    assert app.test_client().get("/staff", headers={"X-WX-Skey": skey}).get_json() == {
        "openid": "oStaff", "program": "staff"}
    assert me(app, skey).get_json()["error"] == "skey_invalid"


@pytest.mark.parametrize("kwargs", [
    {"openid": ""}, {"openid": "o|pipe"}, {"openid": "oGood", "unionid": "u pace"},
    {"openid": "oGood", "session_key": "not base64!"},
])
def test_issue_skey_refuses_what_wechat_would_never_send(app, kwargs):
    with pytest.raises(ValueError):
        issue_skey(app, **kwargs)
    assert all(len(b._cache) == 0 for b in app.extensions["cache"].values())


@pytest.mark.parametrize("user_id", [1.5, True, ["u1"]])
def test_issue_skey_refuses_a_user_id_no_session_could_keep(app, user_id):
    with pytest.raises(TypeError, match="user_id must be a str or an int"):
        issue_skey(app, openid="oBadUserId", user_id=user_id)
    assert all(len(b._cache) == 0 for b in app.extensions["cache"].values())


def test_issue_skey_with_a_failing_on_login_stores_nothing(app):
    def broken(identity: Any) -> None:
        raise LookupError("no such table")

    app.extensions["wxlogin"].on_login(broken)

    with pytest.raises(CallbackError):
        issue_skey(app, openid="oBroken")
    assert all(len(b._cache) == 0 for b in app.extensions["cache"].values())


# -- WxLoginClient ----------------------------------------------------------------------


def test_wx_login_client_sends_its_users_skey_with_every_request(app):
    app.test_client_class = WxLoginClient
    client = app.test_client(wx_user={"openid": "oClient", "unionid": "uClient", "user_id": 5})

    for _ in range(2):
        assert client.get("/me").get_json() == {"openid": "oClient", "unionid": "uClient", "user_id": 5}
    assert client.get("/shop/orders").get_json()["openid"] == "oClient"
    assert client.skey and me(app, client.skey).status_code == 200
    assert client.wx_user == {"openid": "oClient", "unionid": "uClient", "user_id": 5}


def test_wx_login_client_uses_the_configured_header():
    app = make_app(WXLOGIN_TOKEN_HEADER="X-Token")
    app.test_client_class = WxLoginClient

    client = app.test_client(wx_user={"openid": "oHeader"})

    assert client.get("/me").get_json()["openid"] == "oHeader"
    assert me(app, client.skey, header="X-Token").status_code == 200


def test_a_header_given_to_one_request_wins(app):
    app.test_client_class = WxLoginClient
    client = app.test_client(wx_user={"openid": "oOverride"})

    response = client.get("/me", headers={"X-WX-Skey": "forged.skey"})

    assert response.status_code == 401
    assert response.get_json()["error"] == "skey_invalid"


def test_without_wx_user_it_is_a_plain_client(app):
    app.test_client_class = WxLoginClient
    client = app.test_client()

    assert client.skey is None and client.wx_user is None
    assert client.get("/me").get_json()["error"] == "skey_missing"


# -- the pytest plugin, from a user's point of view -----------------------------------


def test_the_plugin_defines_no_app_fixture_of_its_own():
    fixtures = {name for name, value in vars(pytest_plugin).items()
                if hasattr(value, "_fixture_function_marker") or hasattr(value, "_pytestfixturefunction")}
    assert fixtures == {"fake_wechat", "wx_skey", "wx_client"}


def readme_files() -> Dict[str, str]:
    """The files of the README's "Testing your app" section, by the name on their first line."""
    readme = (ROOT / "README.rst").read_text()
    section = readme.split("\nTesting your app\n", 1)[1].split("\nConfiguration\n", 1)[0]
    files = {}
    for block in re.findall(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", section):
        lines = [line[4:] for line in block.splitlines()]
        name = re.fullmatch(r"# (\w+\.py)", lines[0])
        if name:
            files[name.group(1)] = "\n".join(lines) + "\n"
    return files


def plugin_site(tmp_path: Path) -> Path:
    """A directory holding a distribution that declares setup.cfg's ``pytest11`` entry point."""
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    site = tmp_path / "site"
    info = site / "flask_wxlogin_entry_point-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: flask-wxlogin-entry-point\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[pytest11]" + setup["options.entry_points"]["pytest11"] + "\n")
    return site


def run_pytest(tmp_path: Path, project: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = os.pathsep.join([str(plugin_site(tmp_path)), str(ROOT)])
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error::pytest.PytestWarning"],
        cwd=project, env=env, capture_output=True, text=True, timeout=120,
    )


def test_the_readme_sample_project_passes_with_the_plugin_from_its_entry_point(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    files = readme_files()
    assert set(files) == {"myapp.py", "conftest.py", "test_orders.py"}
    for name, text in files.items():
        (project / name).write_text(text)
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "test_plugin_loaded.py").write_text(
        "def test_loaded_through_its_entry_point(request):\n"
        "    assert request.config.pluginmanager.get_plugin('wxlogin') is not None\n"
    )

    result = run_pytest(tmp_path, project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b9 passed\b", result.stdout), result.stdout
    assert "Traceback" not in result.stderr


def readme_app_module(tmp_path: Path) -> Any:
    """The README's ``myapp.py``, imported under a name of this test's own."""
    path = tmp_path / "myapp.py"
    path.write_text(readme_files()["myapp.py"])
    spec = importlib.util.spec_from_file_location(f"readme_myapp_{tmp_path.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def naive_on_login(myapp: Any) -> Any:
    """The get-then-create the README warns against."""

    def on_login(identity: Any) -> Any:
        row = myapp.query("SELECT id FROM users WHERE openid = ?", identity.openid)
        if row is None:
            myapp.query("INSERT INTO users (openid) VALUES (?)", identity.openid)
            row = myapp.query("SELECT id FROM users WHERE openid = ?", identity.openid)
        return row[0]

    return on_login


@pytest.mark.parametrize("variant", ["readme", "naive"])
def test_the_readmes_on_login_survives_two_first_logins_at_once(tmp_path, monkeypatch, variant):
    """Both logins run their first statement, wait for each other, then go on: the race, every time."""
    myapp = readme_app_module(tmp_path)
    app = myapp.create_app({"TESTING": True, "DATABASE": str(tmp_path / "race.db")})
    if variant == "naive":
        myapp.wxlogin.on_login(naive_on_login(myapp))
    both_began = threading.Barrier(2, timeout=5)
    began = threading.local()
    query = myapp.query

    def interleaved(sql: str, *args: Any) -> Any:
        row = query(sql, *args)
        if not getattr(began, "done", False):
            began.done = True
            both_began.wait()
        return row

    monkeypatch.setattr(myapp, "query", interleaved)

    def first_login(_: int) -> Any:
        try:
            return issue_skey(app, openid="oRace")
        except CallbackError as error:
            return error

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(first_login, range(2)))

    if variant == "naive":
        assert sum(isinstance(result, CallbackError) for result in results) == 1
    else:
        user_ids = {app.test_client().get("/orders", headers={"X-WX-Skey": skey}).get_json()["user_id"]
                    for skey in results}
        assert user_ids == {1}


def test_fake_wechat_works_without_an_app_fixture_and_wx_client_asks_for_one(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "test_no_app.py").write_text(
        "import requests\n\n"
        "def test_fake(fake_wechat):\n"
        "    code = fake_wechat.code_for(openid='o1')\n"
        "    params = {'appid': fake_wechat.appid, 'secret': fake_wechat.secret, 'js_code': code,\n"
        "              'grant_type': 'authorization_code'}\n"
        "    url = fake_wechat.url + '/sns/jscode2session'\n"
        "    assert requests.get(url, params=params, timeout=5).json()['openid'] == 'o1'\n\n"
        "def test_client(wx_client):\n"
        "    pass\n"
    )

    result = run_pytest(tmp_path, project)

    assert "1 passed, 1 error" in result.stdout, result.stdout + result.stderr
    assert "fixture 'app' not found" in result.stdout


# -- python -m flask_wxlogin.testing ------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_shared_fake_serves_until_interrupted_and_prints_its_config():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "flask_wxlogin.testing", "--port", str(port), "--appid", "wxsharedfake0001",
         "--secret", "shared-secret"],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        printed = dict(process.stdout.readline().strip().split("=", 1) for _ in range(3))
        assert printed == {"WXLOGIN_APPID": "wxsharedfake0001", "WXLOGIN_SECRET": "shared-secret",
                           "WXLOGIN_API_BASE": f"http://127.0.0.1:{port}"}
        app = make_app(**printed)
        first = app.test_client().post("/auth/login", json={"code": "shared-1"})
        again = app.test_client().post("/auth/login", json={"code": "shared-1"})
        assert first.status_code == 200 and again.get_json()["error"] == "code_used"
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=10)

    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/sns/jscode2session", timeout=2)


def test_the_shared_fake_says_when_its_port_is_taken():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = subprocess.run(
            [sys.executable, "-m", "flask_wxlogin.testing", "--port", str(taken.getsockname()[1])],
            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=30,
        )

    assert result.returncode == 2
    assert "cannot listen on 127.0.0.1" in result.stderr and "Traceback" not in result.stderr
