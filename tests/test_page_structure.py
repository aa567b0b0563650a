"""The page's shape rule that prevents the blank page of issue 9, checked on the source.

A fragment rerun that starts right after a full run can make the browser sweep the fragment's
block away and close the gap (see ``ui.guard.fragment_slot``); every later sibling then moves
up one place and the next delta below it fails ("Cannot set a node at a delta path"). The page
is safe only if every fragment is called alone inside ``with fragment_slot(...)``. The browser
tests catch the failure when the timing allows (often on a fast machine, rarely on a loaded
one); this check is deterministic.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE_FILES = [ROOT / "app.py", *sorted((ROOT / "ui").glob("*.py"))]


def _is_fragment_decorator(node: ast.expr) -> bool:
    target = node.func if isinstance(node, ast.Call) else node
    return isinstance(target, ast.Attribute) and target.attr == "fragment"


def _fragment_calls(tree: ast.AST) -> list[tuple[ast.Call, list[ast.AST]]]:
    """Each call of a fragment function, with the chain of its ancestors (innermost last)."""
    names = {
        f.name
        for f in ast.walk(tree)
        if isinstance(f, ast.FunctionDef) and any(map(_is_fragment_decorator, f.decorator_list))
    }
    found = []

    def visit(node: ast.AST, chain: list[ast.AST]) -> None:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names:
            found.append((node, chain))
        for child in ast.iter_child_nodes(node):
            visit(child, [*chain, node])

    visit(tree, [])
    return found


def _alone_in_slot(call: ast.Call, chain: list[ast.AST]) -> bool:
    stmt, parent = chain[-1], chain[-2]
    if not isinstance(stmt, ast.Expr) or not isinstance(parent, ast.With):
        return False
    ctx = parent.items[0].context_expr
    is_slot = (
        isinstance(ctx, ast.Call)
        and isinstance(ctx.func, ast.Name)
        and ctx.func.id == "fragment_slot"
    )
    return is_slot and len(parent.body) == 1 and len(parent.items) == 1


def test_every_fragment_is_called_alone_in_its_slot():
    calls = 0
    bad = []
    for path in PAGE_FILES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for call, chain in _fragment_calls(tree):
            calls += 1
            if not _alone_in_slot(call, chain):
                bad.append(f"{path.name}:{call.lineno} {call.func.id}()")
    assert calls >= 4, "the page's fragments were not found"
    assert not bad, f"fragments not alone in a fragment_slot: {bad}"


def test_no_rerun_from_a_fragment_body_after_a_state_change():
    """State changes live in callbacks; ``st.rerun`` only in callbacks or to leave a fragment
    whose job ended (the scan progress)."""
    offenders = []
    for path in PAGE_FILES:
        text = path.read_text(encoding="utf-8")
        for n, line in enumerate(text.splitlines(), 1):
            if "service.use_replay(" in line or "service.use_live(" in line:
                # Only inside a function whose name says it is a callback.
                func = _enclosing_function(text, n)
                if not func.startswith(("_switch", "switch_", "_start_replay")):
                    offenders.append(f"{path.name}:{n} in {func}")
    assert not offenders, offenders


def _enclosing_function(text: str, lineno: int) -> str:
    """Name of the innermost function around ``lineno`` ("" at module level)."""
    best: tuple[str, int] | None = None
    for node in ast.walk(ast.parse(text)):
        inside = isinstance(node, ast.FunctionDef) and node.lineno <= lineno <= node.end_lineno
        if inside and (best is None or node.lineno >= best[1]):
            best = (node.name, node.lineno)
    return best[0] if best else ""
