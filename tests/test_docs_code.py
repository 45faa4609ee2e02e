"""Every code block in docs/ either runs here or is captioned "Illustrative (not run)".

Python blocks of a page run in order in one namespace, as a reader would paste
them. A block after an ``.. requires: module.name`` comment needs that name (an API
of the 0.3.0 work that may land after these docs): without it, the page's remaining
blocks are skipped, naming what is missing. The quick start's two commands are the README's (CI runs those), and its
curl walkthrough runs against the example app in demo mode.
"""
from __future__ import annotations

import importlib
import logging
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import List, NamedTuple

import pytest
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.rst"))
ILLUSTRATIVE = "Illustrative (not run)"
DIRECTIVE = re.compile(r"^(?P<indent> *)\.\. code-block:: *(?P<language>\S+)\s*$")


REQUIRES = re.compile(r"^\.\. requires: (?P<name>[\w.]+)\s*$")


class Block(NamedTuple):
    page: str
    line: int
    language: str
    caption: str
    code: str
    requires: str


def blocks(path: Path) -> List[Block]:
    """The ``code-block`` directives of an .rst file, with their options and dedented bodies."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    index = 0
    while index < len(lines):
        match = DIRECTIVE.match(lines[index])
        index += 1
        if not match:
            continue
        above = [line for line in lines[: index - 1] if line.strip()][-1:]
        requires = REQUIRES.match(above[0]) if above else None
        start, indent = index, len(match["indent"])
        caption = ""
        while index < len(lines) and lines[index].strip().startswith(":"):
            option, _, value = lines[index].strip()[1:].partition(":")
            if option == "caption":
                caption = value.strip()
            index += 1
        body = []
        while index < len(lines) and (not lines[index].strip() or len(lines[index]) - len(lines[index].lstrip()) > indent):
            body.append(lines[index])
            index += 1
        code = "\n".join(body).strip("\n")
        margin = min(len(line) - len(line.lstrip()) for line in code.splitlines() if line.strip())
        found.append(Block(path.name, start, match["language"], caption,
                           "\n".join(line[margin:] for line in code.splitlines()) + "\n",
                           requires["name"] if requires else ""))
    return found


def runnable(path: Path) -> List[Block]:
    return [block for block in blocks(path) if not block.caption.startswith(ILLUSTRATIVE)]


def readme_commands() -> List[str]:
    text = (ROOT / "README.rst").read_text(encoding="utf-8")
    quick_start = text[text.index("Quick start\n"):text.index("\nUse\n")]
    return re.findall(r"^    (pip install .+)$", quick_start, flags=re.M)


def test_the_block_parser_finds_blocks_and_captions():
    found = blocks(DOCS / "wechat.rst")
    assert [block.language for block in found] == ["javascript", "xml", "javascript"]
    assert all(block.caption.startswith(ILLUSTRATIVE) for block in found)
    assert found[1].code == '<button open-type="getPhoneNumber" bindgetphonenumber="onPhone">Use my number</button>\n'


def test_every_block_is_run_or_marked_illustrative():
    unmarked = [
        f"{block.page}:{block.line} ({block.language})"
        for path in PAGES for block in runnable(path)
        if block.language != "python" and not (block.page == "quickstart.rst" and block.language == "sh")
    ]
    assert unmarked == [], "mark these 'Illustrative (not run)' or run them in this file"


@pytest.fixture
def restored_logging():
    """Undo what a page does to loggers (the audit trail's handler, say)."""
    loggers = [logging.getLogger()] + [logging.getLogger(name) for name in list(logging.Logger.manager.loggerDict)]
    saved = {logger: (logger.level, list(logger.handlers)) for logger in loggers}
    yield
    for logger in [logging.getLogger()] + [logging.getLogger(name) for name in list(logging.Logger.manager.loggerDict)]:
        level, handlers = saved.get(logger, (logging.NOTSET, []))
        for handler in logger.handlers:
            if handler not in handlers:
                handler.close()
        logger.setLevel(level)
        logger.handlers[:] = handlers


@pytest.mark.parametrize(
    "page", [path.name for path in PAGES if any(block.language == "python" for block in runnable(path))]
)
def test_python_blocks_run(page, tmp_path, monkeypatch, restored_logging):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs_{page[:-4]}"}
    for block in runnable(DOCS / page):
        if block.requires and not available(block.requires):
            pytest.fail(f"{page}:{block.line} needs {block.requires}, which does not resolve")
        if block.language == "python":
            exec(compile(block.code, f"{page}:{block.line}", "exec"), namespace)


def available(dotted: str) -> bool:
    """Whether ``package.module.attr...`` imports and resolves."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            if not hasattr(target, name):
                return False
            target = getattr(target, name)
        return True
    return False


def test_requires_markers_are_read_and_resolved():
    marked = [block for block in blocks(DOCS / "testing.rst") if block.requires]
    assert marked and marked[0].requires == "flask_wxlogin.testing.issue_skey"
    assert available("flask_wxlogin.testing.FakeWeChat.start")
    assert not available("flask_wxlogin.testing.FakeWeChat.no_such_method")


def test_quick_start_commands_are_the_readme_ones():
    sh = [block.code.strip() for block in runnable(DOCS / "quickstart.rst") if block.language == "sh"]
    assert len(readme_commands()) == 2
    assert sh[:2] == readme_commands()


def test_quick_start_walkthrough_runs_against_the_demo(monkeypatch):
    sys.path.insert(0, str(ROOT))
    import example_app

    for name in example_app.REAL_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    server = make_server("127.0.0.1", 0, example_app.create_app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        script = [block.code for block in runnable(DOCS / "quickstart.rst") if block.language == "sh"][2]
        script = script.replace("127.0.0.1:5000", f"127.0.0.1:{server.server_port}")
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True,
                              timeout=60, env={**os.environ, "PYTHON": sys.executable})
    finally:
        server.shutdown()
        thread.join()
    assert done.returncode == 0, done.stderr
    me, logout, after = done.stdout.strip().splitlines()
    assert '"openid":"demo-' in me.replace(" ", "")
    assert '"code":"200"' in logout.replace(" ", "")
    assert '"error":"session_expired"' in after.replace(" ", "")
