"""Generate ``docs/stages.md``, the stage reference, from the code and the stage authors' prose.

For every built-in stage (the default order first, then the others alphabetically) the page has
a section headed by the stage's name: the one-line summary from the factory's docstring, an
options table generated from its ``Options`` model (``model_fields``: name, type, default,
description), then the hand-written ``docs/stages/<name>.md`` verbatim, minus its heading and
with relative links re-based to ``docs/``.

A development script, not part of the installed package. Regenerate with
``python -m scripts.docgen`` from the repository root; ``--check`` exits 1 when
the committed file is out of date. ``tests/test_docs_stages.py`` fails in that case too.
"""

from __future__ import annotations

import argparse
import inspect
import json
import posixpath
import re
import sys
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from llmchain._defaults import DEFAULT_STAGE_ORDER
from llmchain.plugins import BUILTIN_PLUGINS, Registered, get_registry

from . import errortree

#: ``docs/`` of the checkout this script lives in (``scripts/docgen.py``).
DOCS_DIR = Path(__file__).resolve().parents[1] / "docs"
OUTPUT_NAME = "stages.md"
PROSE_DIR_NAME = "stages"
REGENERATE = "python -m scripts.docgen"

#: Where each built-in stage sits, one line each, for the table of contents. The reasons are in
#: docs/architecture.md; the order rules the chain checks are ``llmchain._order.ORDER_RULES``.
PLACEMENT: dict[str, str] = {
    "log": "outermost, so its one line covers cache hits, every retry, repairs and the final error",
    "cache": "inside `log`, outside everything that costs money or capacity; stores only "
    "answers that passed validation",
    "repair": "outside `validate` and `parse`, whose errors it handles; its re-asks go through "
    "everything inside it",
    "validate": "between `repair` and `parse`: checks the value `parse` produced",
    "parse": "innermost of the output stages: answer text to JSON value",
    "retry": "inside the output stages, outside `rate_limit` and `timeout`, so every attempt is "
    "limited and timed on its own",
    "rate_limit": "inside `retry` (every attempt takes capacity) and `cache` (a hit takes none)",
    "timeout": "innermost, right above the transport: `attempt_s` bounds each attempt",
    "circuit_breaker": "not in the default order; inside `retry` and `fallback`, outside "
    "`rate_limit` and `timeout`",
    "fallback": "not in the default order; inside `cache` and `log`, outside `retry` and `circuit_breaker`",
    "budget": "not in the default order; inside `cache` (a hit costs nothing), outside `retry` and "
    "`route` (one reservation per call)",
    "route": "not in the default order; innermost, inside `retry` and `fallback`: each attempt picks "
    "a deployment",
}

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_LINK = re.compile(r"\]\(([^)\s]+)\)")


# -- which stages ------------------------------------------------------------------------------


def builtin_stages() -> list[Registered]:
    """The stages llmchain itself registers: the default order first, then the rest alphabetically."""
    stages = {n: r for n, r in get_registry().stages.items() if r.plugin in BUILTIN_PLUGINS}
    ordered = [n for n in DEFAULT_STAGE_ORDER if n in stages]
    ordered += sorted(n for n in stages if n not in DEFAULT_STAGE_ORDER)
    return [stages[n] for n in ordered]


def summary(factory: Any) -> str:
    """The first paragraph of the factory's docstring, on one line, in Markdown."""
    doc = inspect.getdoc(factory) or ""
    first = doc.split("\n\n", 1)[0]
    return re.sub(r"``([^`]+)``", r"`\1`", " ".join(first.split()))


# -- options tables ----------------------------------------------------------------------------


def render_type(annotation: Any) -> str:
    """A readable type: ``float or None``, ``"model" or "global"``, ``list of str``."""
    if annotation is type(None):
        return "None"
    if annotation is Any:
        return "any"
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        values = [json.dumps(a) for a in args]
        return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " or " + values[-1]
    if origin in (Union, types.UnionType):
        parts = [render_type(a) for a in args if a is not type(None)]
        if type(None) in args:
            parts.append("None")
        return " or ".join(parts)
    if origin in (list, tuple, set, frozenset, Sequence):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return "[" + ", ".join(render_type(a) for a in args) + "]"
        item = render_type(args[0]) if args else "any"
        return f"list of ({item})" if " or " in item else f"list of {item}"
    if origin is dict:
        if not args or args[1] is Any:
            return "table"
        return f"table of {render_type(args[0])} → {render_type(args[1])}"
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return f"{annotation.__name__} table"
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def render_default(field: FieldInfo) -> str:
    """The default as it would be written in TOML (``unset`` for None)."""
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    return f"`{_toml_value(value)}`"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{" + (f" {inner} " if inner else "") + "}"
    if isinstance(value, BaseModel):
        return _toml_value(value.model_dump(mode="json"))
    return repr(value)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def options_rows(model: type[BaseModel]) -> list[tuple[str, str, str, str]]:
    """(option, type, default, description) for every field, in declaration order."""
    return [
        (name, render_type(field.annotation), render_default(field), field.description or "")
        for name, field in model.model_fields.items()
    ]


def _nested_models(model: type[BaseModel]) -> list[tuple[type[BaseModel], str]]:
    """(model, option holding it) for pydantic models inside options (e.g. ``Alternative``)."""
    found: list[tuple[type[BaseModel], str]] = []

    def walk(annotation: Any, holder: str) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if all(annotation is not seen for seen, _ in found):
                found.append((annotation, holder))
                for name, field in annotation.model_fields.items():
                    walk(field.annotation, name)
            return
        for arg in get_args(annotation):
            walk(arg, holder)

    for name, field in model.model_fields.items():
        walk(field.annotation, name)
    return found


def _table(model: type[BaseModel], first: str) -> list[str]:
    return [f"| {first} | type | default | description |", "| --- | --- | --- | --- |"] + [
        f"| `{name}` | {_cell(type_)} | {_cell(default)} | {_cell(description)} |"
        for name, type_, default, description in options_rows(model)
    ]


def render_options(factory: Any, model: type[BaseModel] | None) -> str:
    """The options table of one stage (and the keys of any table-valued option)."""
    if model is None or not model.model_fields:
        return "Options: none.\n"
    lines = [f"Options (`{factory.__name__}.Options`):", "", *_table(model, "option")]
    for nested, holder in _nested_models(model):
        name = nested.__name__
        article = "An" if name[:1].lower() in "aeiou" else "A"
        lines += [
            "",
            f"{article} `{name}` table (in `{holder}`) takes these keys. {_cell(summary(nested))}",
            "",
            *_table(nested, "key"),
        ]
    return "\n".join(lines) + "\n"


# -- the hand-written prose --------------------------------------------------------------------


def _outside_fences(lines: list[str]) -> Iterator[tuple[int, str]]:
    """(index, line) of every line that is not inside a fenced code block."""
    fence: str | None = None
    for i, line in enumerate(lines):
        match = _FENCE.match(line)
        if match:
            if fence is None:
                fence = match.group(1)
            elif match.group(1) == fence:
                fence = None
            continue
        if fence is None:
            yield i, line


def _rebase_link(target: str) -> str:
    """A link written relative to ``docs/stages/``, made relative to ``docs/``."""
    if re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", target):
        return target
    path, hash_, anchor = target.partition("#")
    if not path.startswith("../") and path.endswith(".md") and "/" not in path:
        return f"#{path[:-3]}"  # another stage's page: its section on this page
    rebased = posixpath.normpath(posixpath.join(PROSE_DIR_NAME, path))
    return rebased + hash_ + anchor


def stage_prose(name: str, docs_dir: Path = DOCS_DIR) -> str:
    """``docs/stages/<name>.md`` without its heading, headings nested under ``## name``."""
    lines = (docs_dir / PROSE_DIR_NAME / f"{name}.md").read_text(encoding="utf-8").splitlines()
    level = 2
    while lines and not lines[0].strip():
        lines.pop(0)
    heading = _HEADING.match(lines[0]) if lines else None
    if heading and heading.group(2).strip("` ") == name:
        level = len(heading.group(1))
        lines.pop(0)
        while lines and not lines[0].strip():
            lines.pop(0)
    shift = 2 - level
    for i, line in list(_outside_fences(lines)):
        match = _HEADING.match(line)
        if match and shift:
            depth = min(6, max(3, len(match.group(1)) + shift))
            line = "#" * depth + " " + match.group(2)
        lines[i] = _LINK.sub(lambda m: f"]({_rebase_link(m.group(1))})", line)
    return "\n".join(lines).rstrip() + "\n"


# -- the page ----------------------------------------------------------------------------------


def render_stages_reference(docs_dir: Path = DOCS_DIR) -> str:
    """The whole of ``docs/stages.md``."""
    stages = builtin_stages()
    out = [
        "<!-- GENERATED by scripts/docgen.py from each stage's Options model and "
        "docs/stages/<name>.md: do not edit; edit those and run "
        f"`{REGENERATE}`. -->",
        "",
        "# Stages",
        "",
        "Every built-in stage: what it does, its options (generated from the code), and the "
        "stage author's notes on errors and placement. Stages are listed in the default order, "
        "outermost first, then the ones that are not in it. Why each position: "
        "[architecture.md](architecture.md); how to write the config: "
        "[configuration.md](configuration.md).",
        "",
    ]
    position = 0
    for registered in stages:
        name = registered.name
        where = PLACEMENT.get(name)
        if where is None:
            raise KeyError(f"_docgen.PLACEMENT has no line for the built-in stage {name!r}")
        if name in DEFAULT_STAGE_ORDER:
            out.append(f"{position + 1}. [{name}](#{name}) — {where}")
            position += 1
        else:
            out.append(f"* [{name}](#{name}) — {where}")
    for registered in stages:
        name = registered.name
        out += [
            "",
            f"## {name}",
            "",
            f"{summary(registered.factory)} *(from `{registered.plugin}`)*",
            "",
            render_options(registered.factory, registered.options_model).rstrip("\n"),
            "",
            stage_prose(name, docs_dir).rstrip("\n"),
        ]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m scripts.docgen [--check] [--docs DIR]``: rewrite (or check) docs/stages.md and
    the error tree in docs/errors.md."""
    parser = argparse.ArgumentParser(prog="python -m scripts.docgen", description=__doc__)
    parser.add_argument("--docs", type=Path, default=DOCS_DIR, help="the docs/ directory")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is out of date")
    args = parser.parse_args(argv)
    target = args.docs / OUTPUT_NAME
    pages = [(target, target.read_text(encoding="utf-8") if target.exists() else None,
              render_stages_reference(args.docs)), errortree.update(args.docs)]
    stale = [path for path, current, text in pages if current != text]
    if args.check:
        for path in stale:
            print(f"{path} is out of date: run `{REGENERATE}`", file=sys.stderr)
        return 1 if stale else 0
    for path, current, text in pages:
        if current != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
