"""Build the docs in English and 简体中文: ``python docs/build.py``.

1. Extract the messages of the English source (Sphinx's gettext builder).
2. Fail if any of them has no zh_CN translation in ``docs/locales``, or a fuzzy one.
3. Build ``docs/_build/en`` and ``docs/_build/zh_CN`` (HTML, warnings as errors), in parallel.

``python docs/build.py --update`` refreshes the ``.po`` files from the source
(sphinx-intl: new messages appear with an empty ``msgstr``, changed ones as
fuzzy) and stops; translate those, then build.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import List

from babel.messages.pofile import read_po

DOCS = Path(__file__).resolve().parent
BUILD = DOCS / "_build"
LOCALES = DOCS / "locales"
LANGUAGES = ("en", "zh_CN")
TRANSLATED = "zh_CN"


def sphinx(builder: str, out: Path, language: str) -> "subprocess.Popen[bytes]":
    command = [
        sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", builder,
        "-D", f"language={language}", "-d", str(BUILD / "doctrees" / f"{builder}-{language}"),
        str(DOCS), str(out),
    ]
    return subprocess.Popen(command)


def run(*builds: "subprocess.Popen[bytes]") -> None:
    failed = [build.args for build in builds if build.wait() != 0]
    if failed:
        sys.exit(f"docs: a Sphinx build failed: {' '.join(map(str, failed[0]))}")


def untranslated(templates: Path, locales: Path = LOCALES, language: str = TRANSLATED) -> List[str]:
    """``"page: problem: message"`` for every message of ``templates`` not translated in ``language``."""
    problems = []
    for pot in sorted(templates.glob("*.pot")):
        page = pot.stem
        po_path = locales / language / "LC_MESSAGES" / f"{page}.po"
        if not po_path.exists():
            problems.append(f"{page}: no {po_path.name}")
            continue
        with pot.open("rb") as file:
            wanted = [message.id for message in read_po(file) if message.id]
        with po_path.open("rb") as file:
            catalog = read_po(file)
        for msgid in wanted:
            message = catalog.get(msgid)
            if message is None or not message.string:
                problems.append(f"{page}: untranslated: {msgid[:100]}")
            elif message.fuzzy:
                problems.append(f"{page}: fuzzy: {msgid[:100]}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="refresh docs/locales/*.po from the source and stop")
    args = parser.parse_args()
    started = time.monotonic()

    templates = BUILD / "gettext"
    run(sphinx("gettext", templates, "en"))
    if args.update:
        subprocess.run(
            [sys.executable, "-m", "sphinx_intl", "update", "-p", str(templates), "-d", str(LOCALES),
             "-l", TRANSLATED, "-w", "0", "--no-obsolete"],
            check=True,
        )
        print(f"docs: updated {LOCALES.relative_to(DOCS.parent)}; translate the empty and fuzzy entries")
        return
    problems = untranslated(templates)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(f"docs: {len(problems)} message(s) lack a {TRANSLATED} translation: "
                 "run `python docs/build.py --update`, translate, rebuild")
    run(*(sphinx("html", BUILD / language, language) for language in LANGUAGES))
    print(f"docs: built {', '.join(str((BUILD / l).relative_to(DOCS.parent)) for l in LANGUAGES)} "
          f"in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
