"""docs/build.py: the check that fails the build on an untranslated or fuzzy message."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_build():
    spec = importlib.util.spec_from_file_location("docs_build", ROOT / "docs" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def catalog(*entries: str) -> str:
    return 'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=utf-8\\n"\n\n' + "\n".join(entries)


@pytest.fixture
def build():
    return load_build()


def test_a_complete_translation_passes(build, tmp_path):
    (tmp_path / "pot").mkdir()
    (tmp_path / "pot" / "page.pot").write_text(catalog('msgid "Hello"\nmsgstr ""\n'), encoding="utf-8")
    po = tmp_path / "locales" / "zh_CN" / "LC_MESSAGES"
    po.mkdir(parents=True)
    (po / "page.po").write_text(catalog('msgid "Hello"\nmsgstr "你好"\n'), encoding="utf-8")
    assert build.untranslated(tmp_path / "pot", tmp_path / "locales") == []


def test_untranslated_fuzzy_missing_and_absent_catalogs_fail(build, tmp_path):
    (tmp_path / "pot").mkdir()
    (tmp_path / "pot" / "page.pot").write_text(catalog(
        'msgid "Done"\nmsgstr ""\n', 'msgid "Empty"\nmsgstr ""\n', 'msgid "Changed"\nmsgstr ""\n',
        'msgid "New"\nmsgstr ""\n',
    ), encoding="utf-8")
    (tmp_path / "pot" / "other.pot").write_text(catalog('msgid "Other"\nmsgstr ""\n'), encoding="utf-8")
    po = tmp_path / "locales" / "zh_CN" / "LC_MESSAGES"
    po.mkdir(parents=True)
    (po / "page.po").write_text(catalog(
        'msgid "Done"\nmsgstr "完成"\n', 'msgid "Empty"\nmsgstr ""\n',
        '#, fuzzy\nmsgid "Changed"\nmsgstr "旧的译文"\n',
    ), encoding="utf-8")

    problems = build.untranslated(tmp_path / "pot", tmp_path / "locales")

    assert sorted(problems) == sorted([
        "page: untranslated: Empty",
        "page: fuzzy: Changed",
        "page: untranslated: New",
        "other: no other.po",
    ])


def test_the_readme_names_the_build_command():
    assert "python docs/build.py" in (ROOT / "README.rst").read_text(encoding="utf-8")
    assert re.search(r"^python docs/build\.py$", (ROOT / ".ci" / "run").read_text(), flags=re.M)
