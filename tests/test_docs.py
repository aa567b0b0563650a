"""The documentation renders: balanced code fences, and every relative link and anchor resolves.

Checks ``README.md`` and every Markdown file under ``docs/`` and ``samples/``. Anchors follow
GitHub's rule: the heading's text, lower-cased, punctuation other than ``-`` and ``_`` dropped,
spaces turned into ``-``, and ``-1``, ``-2``... appended to repeats.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _markdown_files() -> list[Path]:
    files = [ROOT / "README.md"]
    for folder in ("docs", "samples"):
        files += sorted((ROOT / folder).rglob("*.md"))
    return [f for f in files if f.is_file()]


def _outside_fences(path: Path) -> tuple[list[tuple[int, str]], int | None]:
    """Lines outside code fences, and the line of a fence left open (or None)."""
    kept, opened, marker = [], None, ""
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = FENCE.match(line)
        if m and opened is None:
            opened, marker = n, m.group(1)
        elif m and m.group(1)[0] == marker[0] and len(m.group(1)) >= len(marker):
            if not m.group(2).strip():
                opened = None
        elif opened is None:
            kept.append((n, line))
    return kept, opened


def _slug(heading: str) -> str:
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line in _outside_fences(path)[0]:
        m = re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            slug = _slug(m.group(1))
            k = seen.get(slug, 0)
            seen[slug] = k + 1
            out.add(slug if k == 0 else f"{slug}-{k}")
    return out


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_code_fences_are_balanced(path: Path) -> None:
    _, opened = _outside_fences(path)
    assert opened is None, (
        f"{path.relative_to(ROOT)}: the fence opened at line {opened} never closes"
    )


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(path: Path) -> None:
    broken = []
    for n, line in _outside_fences(path)[0]:
        for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, mailto:, ...
                continue
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            if not dest.exists():
                broken.append(f"line {n}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"line {n}: {target} (no such heading)")
    assert not broken, f"{path.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_checker_sees_a_broken_fence_and_a_broken_anchor(tmp_path: Path) -> None:
    """The checks above can fail: an unclosed fence and a missing heading are both found."""
    bad = tmp_path / "bad.md"
    bad.write_text("# Title\n\n[x](#nowhere)\n\n```bash\nls\n## Not a heading\n")
    assert _outside_fences(bad)[1] == 5
    assert "nowhere" not in _anchors(bad) and "title" in _anchors(bad)
    assert _slug("Analytics — `python bench/a.py`") == "analytics--python-benchapy"
