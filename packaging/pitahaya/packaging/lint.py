"""Feature-code lint: what a scene's ``features.py`` may touch before it is shipped to devices.

The feature code runs inside the host app on every device, so the packager refuses, before
building anything, code that could reach outside its job: imports beyond an allow-list,
file/network/process access, dynamic code (``eval``, ``exec``, ``compile``, ``__import__``),
and the classic sandbox escapes through dunder attributes (``().__class__.__mro__[1]
.__subclasses__()``, ``f.__globals__``) or through ``getattr`` with a computed name.

This is a static allow-list check on the syntax tree, not a sandbox: it keeps honest
mistakes and obvious abuse out of packages, and every refusal names ``file:line``.
The rules, in order of the checks in `_Checker`:

- ``import`` / ``from ... import``: only `ALLOWED_MODULES` (and their submodules) and the
  public API of ``pitahaya.client_runtime`` (names in its ``__all__``); no relative imports.
- Names: never `FORBIDDEN_NAMES` (``open``, ``eval``, ...) nor any ``__dunder__`` name.
- Attributes: never a ``__dunder__`` other than `ALLOWED_DUNDER_ATTRIBUTES`, never one of
  `FORBIDDEN_ATTRIBUTES` (numpy's file I/O such as ``np.load``, ``ndarray.tofile``; typing's
  annotation evaluator).
- ``getattr`` / ``setattr`` / ``delattr`` / ``hasattr``: only with a literal, non-dunder name.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

import pitahaya.client_runtime

from pitahaya.packaging.errors import LintError

#: Top-level modules feature code may import (with their submodules); ``__future__`` only
#: switches compiler features such as postponed annotations.
ALLOWED_MODULES = frozenset({"__future__", "collections", "dataclasses", "math", "numpy", "typing"})
#: The one pitahaya module feature code may import, and only its public names.
RUNTIME_MODULE = "pitahaya.client_runtime"
RUNTIME_API = frozenset(pitahaya.client_runtime.__all__)

#: Builtins that read files, run code or reach the interpreter's internals.
FORBIDDEN_NAMES = frozenset(
    {
        "__import__",
        "breakpoint",
        "compile",
        "eval",
        "exec",
        "exit",
        "globals",
        "help",
        "input",
        "locals",
        "open",
        "quit",
        "vars",
    }
)
#: Attribute names refused on any object: numpy's file I/O and typing's string evaluator.
FORBIDDEN_ATTRIBUTES = frozenset(
    {
        "DataSource", "ctypeslib", "distutils", "dump", "f2py", "fromfile", "fromregex", "genfromtxt",
        "get_type_hints", "lib", "load", "loadtxt", "memmap", "open_memmap", "save", "savetxt", "savez",
        "savez_compressed", "tofile",
    }
)  # fmt: skip
#: Dunder attributes ordinary classes need (``super().__init__()``).
ALLOWED_DUNDER_ATTRIBUTES = frozenset({"__init__", "__post_init__"})
_ATTRIBUTE_BUILTINS = frozenset({"delattr", "getattr", "hasattr", "setattr"})


@dataclass(frozen=True)
class LintViolation:
    """One refused construct: where it is and why."""

    path: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.message}"


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _module_allowed(module: str) -> bool:
    return module.split(".")[0] in ALLOWED_MODULES


class _Checker(ast.NodeVisitor):
    def __init__(self, path: str) -> None:
        self.path = path
        self.violations: list[LintViolation] = []

    def refuse(self, node: ast.AST, message: str) -> None:
        self.violations.append(
            LintViolation(
                self.path,
                getattr(node, "lineno", 0),
                getattr(node, "col_offset", 0) + 1,
                message,
            )
        )

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name != RUNTIME_MODULE and not _module_allowed(alias.name):
                self.refuse(
                    node,
                    f"import of {alias.name!r} is not allowed in feature code ({_allowed_text()})",
                )

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level:
            self.refuse(node, "relative imports are not allowed in feature code")
        elif module == RUNTIME_MODULE:
            for alias in node.names:
                if alias.name not in RUNTIME_API:
                    self.refuse(
                        node,
                        f"{alias.name!r} is not part of the public API of {RUNTIME_MODULE}",
                    )
        elif not _module_allowed(module):
            self.refuse(
                node,
                f"import from {module!r} is not allowed in feature code ({_allowed_text()})",
            )
        else:
            for alias in node.names:
                if alias.name in FORBIDDEN_ATTRIBUTES or alias.name in FORBIDDEN_NAMES or _is_dunder(alias.name):
                    self.refuse(
                        node,
                        f"importing {module}.{alias.name} is not allowed in feature code",
                    )
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in FORBIDDEN_NAMES:
            self.refuse(
                node,
                f"{node.id!r} is not allowed in feature code (no files, dynamic code or interpreter internals)",
            )
        elif _is_dunder(node.id) and not (isinstance(node.ctx, ast.Store) and node.id == "__all__"):
            self.refuse(node, f"the name {node.id!r} is not allowed in feature code")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if _is_dunder(node.attr) and node.attr not in ALLOWED_DUNDER_ATTRIBUTES:
            self.refuse(
                node,
                f"attribute {node.attr!r} is not allowed in feature code (reaches interpreter internals)",
            )
        elif node.attr in FORBIDDEN_ATTRIBUTES:
            self.refuse(
                node,
                f"attribute {node.attr!r} is not allowed in feature code (file I/O or code evaluation)",
            )
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name) and node.func.id in _ATTRIBUTE_BUILTINS:
            name = node.args[1] if len(node.args) > 1 else None
            if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
                self.refuse(
                    node,
                    f"{node.func.id}() needs a literal attribute name in feature code",
                )
            elif _is_dunder(name.value):
                self.refuse(
                    node,
                    f"{node.func.id}() of {name.value!r} is not allowed in feature code",
                )
        self.generic_visit(node)


def _allowed_text() -> str:
    return f"allowed: {', '.join(sorted(ALLOWED_MODULES - {'__future__'}))}, {RUNTIME_MODULE}"


def lint_feature_code(source: str, path: str = "features.py") -> list[LintViolation]:
    """Every construct in ``source`` that feature code may not use, in file order.

    Args:
        source: The text of a ``features.py``.
        path: File name shown in each violation.

    Returns:
        The violations; empty when the code may ship.
    """
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as e:
        return [LintViolation(path, e.lineno or 0, e.offset or 0, f"syntax error: {e.msg}")]
    checker = _Checker(path)
    checker.visit(tree)
    return sorted(checker.violations, key=lambda v: (v.line, v.column))


def check_feature_code(source: str, path: str = "features.py") -> None:
    """Refuse feature code that `lint_feature_code` flags.

    Raises:
        LintError: with every violation, one ``file:line:column: message`` per line.
    """
    violations = lint_feature_code(source, path)
    if violations:
        raise LintError(violations)
