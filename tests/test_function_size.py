"""No product function is longer than :data:`MAX_CODE_LINES` lines of code.

Lines of code: from the ``def`` line to the function's last line, without blank lines,
comment-only lines and docstrings (nested functions count in their parent, as they are read
there). A function that must stay one piece says why in a comment starting ``# one piece:``
inside it or right above it (a list of SQL steps is data, for example).
Read with ``ast`` from the source, so the failure names the file, the function and its length.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_CODE_LINES = 80
#: Being split on another branch right now (feed-split splits ingestion/feed.py); remove the
#: entry once it is.
PENDING = {("ingestion/feed.py", "_backfill_agg")}
ONE_PIECE = "# one piece:"


def _docstring_lines(node: ast.AST) -> set[int]:
    """Lines of the docstrings of ``node`` and of every function or class inside it."""
    lines: set[int] = set()
    for inner in ast.walk(node):
        if not isinstance(inner, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        first = inner.body[0]
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            lines |= set(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return lines


def long_functions(source: str, limit: int = MAX_CODE_LINES) -> list[tuple[str, int]]:
    """``(name, code lines)`` of each function over ``limit`` without a ``# one piece:``."""
    lines = source.splitlines()
    out = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        top = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        span = range(node.lineno, (node.end_lineno or node.lineno) + 1)
        doc = _docstring_lines(node)
        code = [
            n
            for n in span
            if n not in doc and lines[n - 1].strip() and not lines[n - 1].lstrip().startswith("#")
        ]
        if len(code) <= limit:
            continue
        above = lines[top - 2].strip() if top >= 2 else ""
        if above.startswith(ONE_PIECE) or any(
            lines[n - 1].strip().startswith(ONE_PIECE) for n in span
        ):
            continue
        out.append((node.name, len(code)))
    return out


def _product_files() -> list[Path]:
    """Every Python file of the checkout but the tests (packages, app.py, bench/)."""
    return [
        p
        for p in sorted(ROOT.rglob("*.py"))
        if not any(part == "tests" or part.startswith(".") for part in p.relative_to(ROOT).parts)
    ]


def test_no_product_function_is_too_long() -> None:
    found = []
    for path in _product_files():
        rel = path.relative_to(ROOT).as_posix()
        for name, n in long_functions(path.read_text(encoding="utf-8")):
            if (rel, name) not in PENDING:
                found.append(f"{rel}: {name} has {n} lines of code")
    assert not found, (
        f"over {MAX_CODE_LINES} lines of code (split it, or say why it must be one piece "
        f"with a {ONE_PIECE!r} comment): " + "; ".join(found)
    )


def _function(code_lines: int, *, comment: str = "") -> str:
    body = "".join(f"    x{i} = {i}\n" for i in range(code_lines - 1))
    return f'{comment}def f():\n    """Doc\n    string."""\n\n    # a comment\n{body}'


def test_the_count_skips_docstring_blank_and_comment_lines_and_can_fail() -> None:
    assert long_functions(_function(80)) == []
    assert long_functions(_function(81)) == [("f", 81)]
    assert long_functions(_function(81, comment="# one piece: a table of data\n")) == []
    nested = "def outer():\n" + "".join("    " + line + "\n" for line in _function(80).splitlines())
    assert long_functions(nested) == [("outer", 81)]
