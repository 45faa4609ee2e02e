"""Sphinx extension for the flask-wxlogin docs.

- ``.. wxlogin-config::`` renders the configuration reference from
  ``flask_wxlogin.config.DEFAULTS`` and the comment above each key.
- ``.. wxlogin-errors::`` renders the error reference from the package source
  (see :mod:`wxlogin_reference`).
- Text from outside ``docs/`` (docstrings through autodoc, an included
  ``CHANGELOG.rst``) is marked untranslatable: it follows the code, in English,
  and the zh_CN pages say so. Everything written in ``docs/`` is translated.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence

from docutils import nodes
from docutils.transforms import Transform
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

import wxlogin_reference as reference


class _TableDirective(SphinxDirective):
    has_content = False

    def paragraph(self, text: str, *, translatable: bool, rst: bool = False) -> nodes.paragraph:
        """A cell paragraph whose source is this page, so the gettext workflow sees it."""
        source, line = self.get_source_info()
        children: Sequence[nodes.Node]
        if rst:
            children, messages = self.state.inline_text(text, self.lineno)
            if messages:
                raise self.error(f"cannot parse {text!r}")
        else:
            children = [nodes.Text(text)]
        para = nodes.paragraph(text, "", *children)
        para.source, para.line = source, line
        if not translatable:
            para["translatable"] = False
        return para

    def literal(self, text: str) -> nodes.paragraph:
        para = nodes.paragraph(text, "", nodes.literal(text, text))
        para["translatable"] = False
        return para

    def table(self, headers: List[str], rows: List[List[List[nodes.Node]]], widths: List[int]) -> nodes.table:
        table = nodes.table(classes=["wxlogin-reference"])
        group = nodes.tgroup(cols=len(headers))
        table += group
        group.extend(nodes.colspec(colwidth=width) for width in widths)
        head = nodes.thead()
        head += self._row([[self.paragraph(header, translatable=True)] for header in headers])
        body = nodes.tbody()
        body.extend(self._row(cells) for cells in rows)
        group += [head, body]
        return table

    @staticmethod
    def _row(cells: List[List[nodes.Node]]) -> nodes.row:
        row = nodes.row()
        for cell in cells:
            entry = nodes.entry()
            entry.extend(cell)
            row += entry
        return row


class ConfigReference(_TableDirective):
    """Every ``WXLOGIN_*`` key: its default and the comment above it in ``config.py``."""

    def run(self) -> List[nodes.Node]:
        self.env.note_dependency(str(reference.PACKAGE / "config.py"))
        try:
            entries = reference.config_entries()
        except ValueError as exc:
            raise self.error(str(exc)) from None
        rows = []
        for entry in entries:
            default = [self.literal(repr(entry.default))]
            if entry.source and entry.source != repr(entry.default) and not entry.source.startswith(("'", '"')):
                default.append(self.literal(entry.source))
            rows.append([[self.literal(entry.key)], default, [self.paragraph(entry.comment, translatable=True, rst=True)]])
        return [self.table(["Key", "Default", "Meaning"], rows, [30, 22, 48])]


class ErrorReference(_TableDirective):
    """Every ``error`` name the package answers, with its status, errcodes and messages."""

    def run(self) -> List[nodes.Node]:
        for path in sorted(reference.PACKAGE.glob("*.py")):
            self.env.note_dependency(str(path))
        rows = []
        for row in reference.error_rows():
            errcodes = [self.literal(str(code)) for code in row.errcodes]
            messages = [self.paragraph(message, translatable=True) for message in row.messages]
            rows.append([[self.literal(str(row.status))], [self.literal(row.error)], errcodes, messages])
        return [self.table(["Status", "error", "WeChat errcode", "message (sent in English)"], rows, [8, 26, 14, 52])]


class EnglishOnly(Transform):
    """Keep text that does not come from ``docs/`` (docstrings, CHANGELOG.rst) out of the catalogs."""

    default_priority = 15  # before sphinx.transforms.i18n.Locale (20)

    def apply(self, **kwargs: Any) -> None:
        docs = str(Path(self.document.settings.env.srcdir).resolve())
        for node in self.document.findall(nodes.TextElement):
            if isinstance(node, nodes.Inline) or not node.source:
                continue
            if not str(Path(node.source.split(":docstring of ")[0]).resolve()).startswith(docs + "/"):
                node["translatable"] = False


def setup(app: Sphinx) -> Dict[str, Any]:
    app.add_directive("wxlogin-config", ConfigReference)
    app.add_directive("wxlogin-errors", ErrorReference)
    app.add_transform(EnglishOnly)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
