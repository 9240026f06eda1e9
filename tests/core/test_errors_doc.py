"""The error tree in docs/errors.md is the one the exception classes make."""

from __future__ import annotations

from pathlib import Path

import pytest
from scripts import errortree

from llmchain import ConfigError

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_error_tree_in_the_docs_matches_the_classes() -> None:
    path, current, expected = errortree.update(DOCS)
    assert current == expected, f"{path} differs from the exception classes: run `python -m scripts.docgen`"


def test_the_tree_has_every_error_under_its_base() -> None:
    tree = errortree.render_tree()
    lines = tree.splitlines()
    assert lines[0].startswith("LLMChainError ")
    names = [line.split("── ")[-1].split()[0] for line in lines[1:]]
    assert {"ConfigError", "CallError", "TimeoutExceeded", "RepairGaveUp", "BatchError"} <= set(names)
    # a private module is never what the reader is told to import from
    assert "llmchain.batch: " in tree and "._io" not in tree


def test_a_new_error_class_changes_the_tree() -> None:
    before = errortree.render_tree()

    class ShinyNewError(ConfigError):
        """A made-up error. Only this test defines it."""

    ShinyNewError.__module__ = "llmchain._exceptions"
    try:
        after = errortree.render_tree()
    finally:
        ShinyNewError.__module__ = __name__  # out of the tree again for the other tests
    assert "ShinyNewError" not in before
    assert any(line.endswith("A made-up error") and "ShinyNewError" in line for line in after.splitlines())


def test_a_page_without_markers_is_refused() -> None:
    with pytest.raises(ValueError, match="markers"):
        errortree.with_tree("# Errors\n")
