"""The TypeScript client SDK's own suite (``client/``, Node's test runner), run by the one test command.

It needs Node.js and npm. Without them the test is skipped with a reason on a
developer's machine, and fails in CI (``CI`` set), so CI cannot pass without it.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT / "client"


def run(npm: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "NODE_OPTIONS"}
    env.update(PYTHON=sys.executable, PYTHONPATH=str(ROOT))
    return subprocess.run([npm, *args], cwd=CLIENT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=600)


def npm_or_skip() -> str:
    """npm's path; without it, a skip with the reason, or a failure under CI."""
    npm = shutil.which("npm")
    if npm is None:
        if os.environ.get("CI"):
            pytest.fail("npm is not installed: the client SDK's tests (client/: npm ci && npm test) cannot run")
        pytest.skip("npm is not installed: the client SDK's tests (client/: npm ci && npm test) did not run")
    return npm


@pytest.mark.parametrize("ci, outcome", [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_without_npm_ci_fails_and_a_developer_is_told(monkeypatch, ci, outcome):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", ci)

    with pytest.raises(outcome, match="npm is not installed"):
        npm_or_skip()


def test_client_sdk_npm_ci_and_npm_test_pass():
    npm = npm_or_skip()
    install = run(npm, "ci", "--no-audit", "--no-fund")
    assert install.returncode == 0, install.stdout[-4000:]
    tests = run(npm, "test")

    assert tests.returncode == 0, tests.stdout[-8000:]
    passed = re.search(r"^# pass (\d+)$", tests.stdout, re.MULTILINE)
    failed = re.search(r"^# fail (\d+)$", tests.stdout, re.MULTILINE)
    assert passed and failed, tests.stdout[-4000:]
    assert int(passed.group(1)) >= 40 and failed.group(1) == "0", tests.stdout[-4000:]
