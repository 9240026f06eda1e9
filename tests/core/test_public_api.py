"""The public API: a sorted, complete __all__ (as httpx checks), all documented."""

from __future__ import annotations

import inspect

import llmchain


def test_all_is_sorted() -> None:
    assert llmchain.__all__ == sorted(llmchain.__all__)


def test_all_is_complete() -> None:
    public = {name for name in dir(llmchain) if not name.startswith("_")}
    modules = {name for name in public if inspect.ismodule(getattr(llmchain, name))}
    assert public - modules == set(llmchain.__all__) - {"__version__"}


def test_every_public_class_and_function_is_documented() -> None:
    for name in llmchain.__all__:
        obj = getattr(llmchain, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"llmchain.{name} has no docstring"
