"""The folders say what the code is: each package imports only the layers below it.

Where a trade enters (``ingestion``), where it is stored (``storage``), where statistics are
computed (``analytics``), what runs in the background (``service``) and where pixels are drawn
(``ui`` and ``app.py``); the local Binance look-alike the client is tested against (``replay``)
stands beside ``ingestion``, which never imports it. Read with ``ast`` from the source, so a
new import that crosses a layer fails here with the file and line. A package's ``__main__.py``
is a command line: it composes the layers it needs and is exempt from the downward rule, but
never imports Streamlit.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = {
    "config",
    "formats",
    "ingestion",
    "replay",
    "storage",
    "analytics",
    "service",
    "ui",
    "app",
    "bench",
    "tests",
}

# package -> project packages it may import (besides itself); ``config`` is below everything.
ALLOWED = {
    "config": set(),
    "storage": {"config"},
    "formats": {"config", "storage"},  # the record types of storage.records only
    "analytics": set(),
    "ingestion": {"config", "formats", "storage"},
    "replay": {"config", "formats", "storage"},  # the server side: never imported by ingestion
    "service": {"config", "formats", "ingestion", "replay", "storage", "analytics"},
    "ui": {"config", "formats", "service", "storage", "analytics"},
    "app": {"config", "ui", "service", "storage", "analytics"},
}
STREAMLIT_OK = {"ui", "app"}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module.split(".")[0]))
    return out


def _modules() -> list[tuple[str, Path]]:
    mods = [("app", ROOT / "app.py")]
    for pkg in ALLOWED:
        if pkg != "app":
            mods += [(pkg, p) for p in sorted((ROOT / pkg).rglob("*.py"))]
    return mods


@pytest.mark.parametrize(("pkg", "path"), _modules(), ids=lambda v: str(v)[len(str(ROOT)) + 1 :])
def test_imports_flow_downward(pkg: str, path: Path) -> None:
    wrong = []
    for line, top in _imports(path):
        if top == "streamlit" and pkg not in STREAMLIT_OK:
            wrong.append(f"line {line}: imports streamlit (only ui/ and app.py draw)")
        elif (
            top in PROJECT
            and top != pkg
            and top not in ALLOWED[pkg]
            and not (path.name == "__main__.py" and top not in {"ui", "app", "tests", "bench"})
        ):
            wrong.append(f"line {line}: {pkg} imports {top}")
    assert not wrong, f"{path.relative_to(ROOT)}: " + "; ".join(wrong)


def test_analytics_is_pure() -> None:
    """No sockets, SQL drivers or HTTP in the statistics: numpy, pandas, scipy, statsmodels."""
    forbidden = {"sqlite3", "psycopg", "socket", "websocket", "urllib", "http", "streamlit"}
    hits = [
        f"{p.relative_to(ROOT)}:{line} imports {top}"
        for p in sorted((ROOT / "analytics").rglob("*.py"))
        if p.name != "__main__.py"
        for line, top in _imports(p)
        if top in forbidden
    ]
    assert not hits, hits


def test_no_code_edits_sys_path() -> None:
    """The project is installed (``pip install -e .``); nothing reaches it by editing sys.path."""
    hits = [
        f"{p.relative_to(ROOT)}:{n}"
        for folder in (
            "config",
            "formats",
            "ingestion",
            "replay",
            "storage",
            "analytics",
            "service",
            "ui",
            "bench",
            "tests",
        )
        for p in sorted((ROOT / folder).rglob("*.py"))
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if re.match(r"\s*sys\.path\.(insert|append)\(", line)
    ]
    assert not hits, hits


def test_no_script_shadows_a_package() -> None:
    """``python bench/x.py`` puts ``bench/`` first on sys.path: a script named like a package
    (``bench/storage.py``) would be imported in its place."""
    clash = sorted(p.name for p in (ROOT / "bench").glob("*.py") if p.stem in PROJECT)
    assert not clash, clash


def test_every_package_is_installed() -> None:
    """A new top-level package must be in pyproject's package list, or the editable install
    (and every ``python -m`` run outside the checkout) cannot import it."""
    import tomllib

    conf = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = {p.rstrip("*") for p in conf["tool"]["setuptools"]["packages"]["find"]["include"]}
    packages = {
        p.parent.name
        for p in ROOT.glob("*/__init__.py")
        if p.parent.name not in {"tests", "bench"} and not p.parent.name.startswith(".")
    }
    assert packages <= listed, sorted(packages - listed)
    assert set(ALLOWED) - {"app"} <= packages, "a layer of the rules is not a package"
