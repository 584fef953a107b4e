"""The documentation points at things that exist.

- Every relative link in README.md and docs/*.md names an existing file, and every
  `#anchor` a heading of the file it points into (GitHub's heading slugs).
- The README's layout block lists every module of glisk_pipeline/ and webhook_service/
  (package `__init__.py` files aside), each once, and nothing that does not exist.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PACKAGES = ("glisk_pipeline", "webhook_service")

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(text):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(path: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", path.read_text(encoding="utf-8")))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path) -> None:
    broken = []
    for target in links(doc):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
    assert not broken, f"{doc.relative_to(ROOT)}: " + "; ".join(broken)


def layout_paths(readme: str) -> list[str]:
    """The paths the README's layout block names, rebuilt from its indentation."""
    block = next(b for b in FENCE.findall(readme) if "glisk_pipeline/ " in b)
    paths: list[str] = []
    stack: list[tuple[int, str]] = []
    for line in block.splitlines()[1:-1]:
        name = line.strip().split(" ")[0]
        if not name or line.startswith(" " * 20):  # a continued description
            continue
        depth = len(line) - len(line.lstrip(" "))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        path = "".join(part for _, part in stack) + name
        if name.endswith("/"):
            stack.append((depth, name))
        paths.append(path)
    return paths


def test_readme_layout_lists_every_module() -> None:
    listed = layout_paths((ROOT / "README.md").read_text(encoding="utf-8"))
    modules = {
        str(p.relative_to(ROOT))
        for package in PACKAGES
        for p in (ROOT / package).rglob("*.py")
        if p.name != "__init__.py"
    }
    listed_modules = [p for p in listed if p.endswith(".py") and p.startswith(PACKAGES)]
    missing = sorted(modules - set(listed_modules))
    extra = sorted(set(listed_modules) - modules)
    twice = sorted({p for p in listed_modules if listed_modules.count(p) > 1})
    assert not (missing or extra or twice), (
        f"README layout: missing {missing}, not in the tree {extra}, listed twice {twice}"
    )
