"""README.zh-CN.rst: the Chinese front page, linked both ways, with the same quick start."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands(text: str) -> list:
    return re.findall(r"^    (pip install .+)$", text, flags=re.M)[:2]


def test_chinese_readme_has_the_same_two_quick_start_commands():
    english = (ROOT / "README.rst").read_text(encoding="utf-8")
    chinese = (ROOT / "README.zh-CN.rst").read_text(encoding="utf-8")
    assert quick_start_commands(english) == [
        "pip install -e . && python example_app.py",
        'pip install -e ".[test]" && python -m pytest',
    ]
    assert quick_start_commands(chinese) == quick_start_commands(english)


def test_the_readmes_link_to_each_other_near_the_top():
    english = (ROOT / "README.rst").read_text(encoding="utf-8").splitlines()
    chinese = (ROOT / "README.zh-CN.rst").read_text(encoding="utf-8").splitlines()
    assert any("<README.zh-CN.rst>`_" in line for line in english[:5])
    assert any("<README.rst>`_" in line for line in chinese[:5])
