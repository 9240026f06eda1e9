"""docs/stages.md is generated from the code and stays current (``python -m scripts.docgen``)."""

from __future__ import annotations

import difflib
import inspect
import re
import shutil
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from scripts import docgen as _docgen

from llmchain.plugins import Registered

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PROSE = DOCS / "stages"


def builtins() -> list[Registered]:
    return _docgen.builtin_stages()


def test_stages_md_is_regenerated_from_the_current_code() -> None:
    expected = _docgen.render_stages_reference(DOCS)
    committed = (DOCS / "stages.md").read_text(encoding="utf-8")
    if committed != expected:
        diff = "".join(
            list(
                difflib.unified_diff(
                    committed.splitlines(True),
                    expected.splitlines(True),
                    "docs/stages.md (committed)",
                    "docs/stages.md (generated)",
                )
            )[:60]
        )
        raise AssertionError(
            "docs/stages.md is out of date with the stages' Options models or docs/stages/*.md.\n"
            "Regenerate it with:  python -m scripts.docgen\n\n" + diff
        )


def test_every_builtin_stage_has_handwritten_prose_and_no_page_is_orphaned() -> None:
    names = {r.name for r in builtins()}
    assert names, "no built-in stages registered?"
    missing = sorted(n for n in names if not (PROSE / f"{n}.md").is_file())
    assert not missing, f"write docs/stages/<name>.md for: {missing}"
    orphans = sorted(p.stem for p in PROSE.glob("*.md") if p.stem not in names)
    assert not orphans, f"docs/stages/ has pages for stages that are not registered: {orphans}"


def test_every_builtin_stage_has_a_placement_line() -> None:
    names = {r.name for r in builtins()}
    assert set(_docgen.PLACEMENT) == names, (
        "scripts/docgen.py PLACEMENT must have exactly one line per built-in stage: "
        f"missing {sorted(names - set(_docgen.PLACEMENT))}, stale {sorted(set(_docgen.PLACEMENT) - names)}"
    )


def _models(registered: Registered) -> list[type[BaseModel]]:
    model = registered.options_model
    if model is None:
        return []
    return [model, *(nested for nested, _ in _docgen._nested_models(model))]


def test_every_option_has_a_description() -> None:
    offenders = []
    for registered in builtins():
        for model in _models(registered):
            source = Path(inspect.getfile(registered.factory)).relative_to(ROOT)
            offenders += [
                f"{source}: {model.__qualname__}.{name} (stage {registered.name})"
                for name, field in model.model_fields.items()
                if not (field.description or "").strip()
            ]
    assert not offenders, "Options fields without a description=:\n  " + "\n  ".join(offenders)


def test_option_tables_are_only_generated() -> None:
    """The prose pages carry no option table of their own: the generated one is the only one
    (hand-written copies drifted: they missed options)."""
    offenders = [
        f"docs/stages/{path.name}:{number}"
        for path in sorted(PROSE.glob("*.md"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.match(r"^\|\s*option\s*\|", line)
    ]
    assert not offenders, "option tables are generated into docs/stages.md; remove these: " + ", ".join(offenders)


def test_check_mode_detects_a_stale_file(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(PROSE, docs / "stages")
    shutil.copy(DOCS / "errors.md", docs / "errors.md")
    assert _docgen.main(["--docs", str(docs)]) == 0
    assert _docgen.main(["--docs", str(docs), "--check"]) == 0
    (docs / "stages" / "retry.md").write_text("## retry\n\nChanged.\n", encoding="utf-8")
    assert _docgen.main(["--docs", str(docs), "--check"]) == 1
    assert _docgen.main(["--docs", str(docs)]) == 0
    errors = (docs / "errors.md").read_text(encoding="utf-8")
    (docs / "errors.md").write_text(errors.replace("CallError", "CallErr", 1), encoding="utf-8")
    assert _docgen.main(["--docs", str(docs), "--check"]) == 1


def test_types_render_readably() -> None:
    render = _docgen.render_type
    assert render(int) == "int"
    assert render(float | None) == "float or None"
    assert render(Literal["model", "global"]) == '"model" or "global"'
    assert render(Literal["a", "b", "c"]) == '"a", "b" or "c"'
    assert render(list[str]) == "list of str"
    assert render(list[str | dict[str, Any]]) == "list of (str or table)"
    assert render(dict[str, tuple[float, float]]) == "table of str → [float, float]"


def test_prose_heading_is_stripped_and_links_are_rebased(tmp_path: Path) -> None:
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "demo.md").write_text(
        "# demo\n\nSee [caching](../caching.md), [retry](retry.md#x) and [web](https://x.org).\n\n"
        "## Details\n\n```toml\n# not a heading\n```\n",
        encoding="utf-8",
    )
    text = _docgen.stage_prose("demo", tmp_path)
    assert text.startswith("See [caching](caching.md), [retry](#retry) and [web](https://x.org).")
    assert "\n### Details\n" in text and "\n# not a heading\n" in text
