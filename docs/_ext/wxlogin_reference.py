"""The tables in the docs that mirror code, read from the package source.

- :func:`config_entries`: every key of ``flask_wxlogin.config.DEFAULTS``, its
  default, and the comment above it in ``config.py``.
- :func:`error_rows`: every ``error`` name the package can answer, with its
  HTTP status, WeChat errcodes and English ``message``s, found by reading the
  source with :mod:`ast`: class defaults of the error classes, errcode tables
  (``{errcode: (status, error, message)}``), and calls that pass ``error=``
  (through helper functions too, such as ``wechat_error(504, "wechat_timeout", ...)``).

No Sphinx import here: ``tests/test_docs_reference.py`` checks these tables
against the package by other means.
"""
from __future__ import annotations

import ast
import importlib
import io
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

PACKAGE = Path(__file__).resolve().parents[2] / "flask_wxlogin"
#: The root of the error hierarchy, whose ``__init__`` is ``(message, *, error, status, errcode)``.
BASE_ERROR = "WxLoginError"
#: What stands for "not known from the source".
UNKNOWN = object()


@dataclass(frozen=True)
class Param:
    """A value that is a parameter of the enclosing function: its callers supply it."""

    name: str


# -- configuration -------------------------------------------------------------------


@dataclass
class ConfigEntry:
    key: str
    default: Any
    source: str  #: the default as written in config.py (``7 * 24 * 3600``)
    comment: str  #: the comment above the key, ``#`` stripped, lines joined


def config_entries(package: Path = PACKAGE) -> List[ConfigEntry]:
    """Every ``DEFAULTS`` key of ``package``'s ``config.py``, in source order."""
    text = (package / "config.py").read_text(encoding="utf-8")
    return entries_from_source(text, importlib.import_module(f"{package.name}.config").DEFAULTS)


def entries_from_source(text: str, defaults: Dict[str, Any]) -> List[ConfigEntry]:
    """The entries of the ``DEFAULTS = {...}`` literal in ``text``; a key right below another shares its comment.

    Raises :class:`ValueError` for a key that has no comment (the comment is its
    documentation) and for keys of ``defaults`` that the literal does not hold.
    """
    comments = _comments_by_line(text)
    lines = text.splitlines()
    entries: List[ConfigEntry] = []
    for key_node, value_node in _defaults_dict(ast.parse(text)):
        key = key_node.value
        above = _comment_block_above(comments, key_node.lineno)
        if not above:
            line_above = lines[key_node.lineno - 2].strip()
            if not entries or not line_above or line_above.startswith(("#", "{")):
                raise ValueError(f"config.py: DEFAULTS[{key!r}] has no comment above it")
            above = entries[-1].comment
        entries.append(ConfigEntry(key, defaults[key], ast.get_source_segment(text, value_node) or "", above))
    missing = set(defaults) - {entry.key for entry in entries}
    if missing:
        raise ValueError(f"config.py: DEFAULTS keys not written in its literal: {sorted(missing)}")
    return entries


def _defaults_dict(tree: ast.Module) -> Iterator[Tuple[ast.Constant, ast.expr]]:
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
        if isinstance(target, ast.Name) and target.id == "DEFAULTS" and isinstance(node.value, ast.Dict):
            for key, value in zip(node.value.keys, node.value.values):
                if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                    raise ValueError("config.py: every DEFAULTS key must be a string literal")
                yield key, value
            return
    raise ValueError("config.py has no DEFAULTS = {...} literal")


def _comments_by_line(text: str) -> Dict[int, str]:
    """``line number -> comment text`` for lines that hold nothing but a comment."""
    found = {}
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT and not token.line[: token.start[1]].strip():
            found[token.start[0]] = token.string.lstrip("#").strip()
    return found


def _comment_block_above(comments: Dict[int, str], lineno: int) -> str:
    block: List[str] = []
    line = lineno - 1
    while line in comments:
        block.insert(0, comments[line])
        line -= 1
    return " ".join(block)


# -- errors ----------------------------------------------------------------------------


@dataclass
class ErrorRow:
    status: int
    error: str
    errcodes: List[int] = field(default_factory=list)
    messages: List[str] = field(default_factory=list)


@dataclass
class _Site:
    """One call that sets an error: each argument a constant, a :class:`Param`, or UNKNOWN."""

    args: Dict[str, Any]
    function: Optional[str]  #: the enclosing function's name

    def is_template(self) -> bool:
        return any(isinstance(value, Param) for value in self.args.values())


def error_rows(package: Path = PACKAGE) -> List[ErrorRow]:
    """One row per ``(status, error)``, ordered by status then name."""
    modules = [ast.parse(path.read_text(encoding="utf-8")) for path in sorted(package.glob("*.py"))]
    classes = _error_classes(modules)
    signatures = _signatures(modules, classes)
    rows: Dict[Tuple[int, str], ErrorRow] = {}

    def add(status: Any, error: Any, message: Any, errcode: Optional[int] = None) -> None:
        if not (isinstance(status, int) and isinstance(error, str)):
            return
        row = rows.setdefault((status, error), ErrorRow(status, error))
        if errcode is not None and errcode not in row.errcodes:
            row.errcodes.append(errcode)
        if isinstance(message, str) and message not in row.messages:
            row.messages.append(message)

    for defaults in classes.values():
        add(defaults.get("status"), defaults.get("error"), defaults.get("message"))
    for module in modules:
        for errcode, status, error, message in _errcode_tables(module):
            add(status, error, message, errcode)
    for module in modules:
        for node in ast.walk(module):
            row = _tuple_row(node) if isinstance(node, ast.Tuple) else None
            if row is not None and 100 <= row[0] <= 599:
                add(*row)
    for site in _resolved_sites(modules, classes, signatures):
        add(site.get("status"), site.get("error"), site.get("message"), _int_or_none(site.get("errcode")))
    for row in rows.values():
        row.errcodes.sort(key=lambda code: (code < 0, abs(code)))
    return sorted(rows.values(), key=lambda row: (row.status, row.error))


def _int_or_none(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _error_classes(modules: Sequence[ast.Module]) -> Dict[str, Dict[str, Any]]:
    """``class name -> {status, error, message}`` with inherited defaults, for the error tree."""
    bodies: Dict[str, Tuple[List[str], Dict[str, Any]]] = {}
    for module in modules:
        for node in module.body:
            if isinstance(node, ast.ClassDef):
                own = {}
                for statement in node.body:
                    target = statement.target if isinstance(statement, ast.AnnAssign) else (
                        statement.targets[0] if isinstance(statement, ast.Assign) else None)
                    if isinstance(target, ast.Name) and isinstance(statement.value, ast.Constant) \
                            and target.id in ("status", "error", "message"):
                        own[target.id] = statement.value.value
                bases = [base.id for base in node.bases if isinstance(base, ast.Name)]
                bodies[node.name] = (bases, own)

    def resolved(name: str) -> Optional[Dict[str, Any]]:
        if name == BASE_ERROR:
            return dict(bodies[name][1])
        if name not in bodies:
            return None
        for base in bodies[name][0]:
            inherited = resolved(base)
            if inherited is not None:
                return {**inherited, **bodies[name][1]}
        return None

    return {name: defaults for name in bodies if (defaults := resolved(name)) is not None}


def _signatures(modules: Sequence[ast.Module], classes: Dict[str, Dict[str, Any]]) -> Dict[str, List[str]]:
    """Positional parameter names of every function in the package, and of the error classes."""
    found: Dict[str, List[str]] = {}
    for module in modules:
        for node in ast.walk(module):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names = [arg.arg for arg in node.args.posonlyargs + node.args.args]
                found.setdefault(node.name, names[1:] if names[:1] in (["self"], ["cls"]) else names)
    for name in classes:
        found[name] = ["message"]
    return found


def _errcode_tables(module: ast.Module) -> Iterator[Tuple[int, int, str, str]]:
    """``(errcode, status, error, message)`` for every ``{int: (int, str, str)}`` entry."""
    for node in ast.walk(module):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                errcode = _constant(key)
                row = _tuple_row(value)
                if isinstance(errcode, int) and row is not None:
                    yield (errcode, *row)


def _tuple_row(node: Optional[ast.expr]) -> Optional[Tuple[int, str, str]]:
    if isinstance(node, ast.Tuple) and len(node.elts) == 3:
        status, error, message = (_constant(element) for element in node.elts)
        if isinstance(status, int) and isinstance(error, str) and isinstance(message, str):
            return status, error, message
    return None


def _constant(node: Optional[ast.expr]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant) \
            and isinstance(node.operand.value, int):
        return -node.operand.value
    return UNKNOWN


def _resolved_sites(
    modules: Sequence[ast.Module], classes: Dict[str, Dict[str, Any]], signatures: Dict[str, List[str]]
) -> Iterator[Dict[str, Any]]:
    """Every call that sets an error, helper functions' parameters filled in from their callers."""
    sites = [site for module in modules for site in _sites(module, classes, signatures)]
    pending = [site for site in sites if "error" in site.args]
    for _ in range(5):  # helpers calling helpers: a few levels at most
        expanded = []
        for site in pending:
            if not site.is_template():
                yield site.args
                continue
            for caller in sites:
                if caller.args["__call__"] == site.function:
                    args = {key: caller.args.get(value.name, UNKNOWN) if isinstance(value, Param) else value
                            for key, value in site.args.items()}
                    expanded.append(_Site(args, caller.function))
        pending = expanded


def _sites(module: ast.Module, classes: Dict[str, Dict[str, Any]], signatures: Dict[str, List[str]]) -> List[_Site]:
    sites: List[_Site] = []

    def visit(node: ast.AST, function: Optional[ast.FunctionDef]) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = node  # type: ignore[assignment]
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else (
                node.func.attr if isinstance(node.func, ast.Attribute) else None)
            if name in signatures:
                params: Set[str] = set()
                if function is not None:
                    params = {arg.arg for arg in function.args.posonlyargs + function.args.args
                              + function.args.kwonlyargs}
                args: Dict[str, Any] = {"__call__": name, **classes.get(name, {})}
                for param, value in zip(signatures[name], node.args):
                    args[param] = _value(value, params)
                for keyword in node.keywords:
                    if keyword.arg is not None:
                        args[keyword.arg] = _value(keyword.value, params)
                sites.append(_Site(args, function.name if function is not None else None))
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(module, None)
    return sites


def _value(node: ast.expr, params: Set[str]) -> Any:
    if isinstance(node, ast.Name) and node.id in params:
        return Param(node.id)
    if isinstance(node, ast.JoinedStr):  # an f-string message: its text, placeholders as written
        return "".join(part.value if isinstance(part, ast.Constant) else "{" + ast.unparse(part.value) + "}"
                       for part in node.values)
    return _constant(node)
