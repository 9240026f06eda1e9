"""docs/README.md is the way in: a numbered list read in order, and every page is reachable."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"
INDEX = DOCS / "README.md"
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
#: Pages that are not linked but included: docs/stages.md is generated from stages/<name>.md.
INCLUDED_IN = {"stages": "stages.md"}


def pages() -> set[Path]:
    return {p for p in DOCS.rglob("*") if p.suffix in (".md", ".ipynb") and p != INDEX}


def reachable() -> set[Path]:
    seen: set[Path] = set()
    todo = [INDEX]
    while todo:
        page = todo.pop()
        if page.suffix != ".md":
            continue
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            path = (page.parent / target).resolve()
            if path.is_file() and path.is_relative_to(DOCS) and path not in seen:
                seen.add(path)
                todo.append(path)
    for folder, page in INCLUDED_IN.items():
        if DOCS / page in seen:
            seen |= set((DOCS / folder).glob("*.md"))
    return seen


def test_every_page_is_reachable_from_the_index() -> None:
    found = reachable()
    assert DOCS / "quickstart.md" in found  # the walk follows links
    missing = sorted(str(p.relative_to(DOCS)) for p in pages() - found)
    assert not missing, f"pages no link from docs/README.md leads to: {missing}"


def test_the_index_is_numbered_in_reading_order() -> None:
    numbers = [int(n) for n in re.findall(r"^(\d+)\. \[", INDEX.read_text(encoding="utf-8"), re.M)]
    assert numbers == list(range(1, len(numbers) + 1)), numbers
    top_level = {p for p in pages() if p.parent == DOCS}
    linked = {(DOCS / target).resolve() for target in re.findall(r"^\d+\. \[[^\]]+\]\(([^)]+)\)",
                                                               INDEX.read_text(encoding="utf-8"), re.M)}
    assert top_level <= linked, f"not in the numbered list: {sorted(p.name for p in top_level - linked)}"
