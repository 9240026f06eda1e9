"""How often local repair recovers a damaged answer exactly, per kind of damage.

Run: ``.venv/bin/python -m tests.structured.measure_recovery [examples-per-kind]``. Prints one
row per damage kind: recovered exactly / recovered but different / not recovered. Uses the
wide string alphabet (quotes, braces, backslashes, ``#``) on purpose, so the misses show where
heuristic repair meets ambiguous input.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import json_repair
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmchain.structured._json_fix import Repaired, repair_json_text, repair_region
from llmchain.structured._schema import SchemaMismatch, schema_for_type

from .jsondamage import TEXT_ALPHABET, Damage, Order, dump, orders

KINDS: dict[str, Damage] = {
    "fence": Damage(wrapper="fence"),
    "prose": Damage(wrapper="prose"),
    "prose_braces": Damage(wrapper="prose_braces"),
    "trailing_commas": Damage(trailing_commas=True),
    "single_quotes": Damage(single_quotes=True),
    "python_literals": Damage(python_literals=True),
    "unquoted_keys": Damage(unquoted_keys=True),
    "comments": Damage(comments=True),
    "truncated_closers": Damage(drop_closers=4),
    "python_repr": Damage(python_repr=True),
    "all_at_once": Damage(True, True, True, True, True, 2, "prose_fence"),
}

SAFE_ALPHABET = st.sampled_from(list("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789 .,:;!?-_/()'é中ß€\n"))


def library_only(text: str) -> Repaired | None:
    """json-repair alone on the same region, for comparison."""
    region = repair_region(text, "object")
    if region is None:
        return None
    return Repaired(json_repair.repair_json(region, return_objects=True), changed=True)


def builtin(text: str) -> Repaired | None:
    return repair_json_text(text, expect="object")


def with_library(text: str) -> Repaired | None:
    return repair_json_text(text, expect="object", use_library=True)


FIXERS: dict[str, Callable[[str], Repaired | None]] = {
    "local_repair='builtin' (default)": builtin,
    "local_repair='json-repair' (built-in, then json-repair)": with_library,
    "json-repair alone": library_only,
}


def outcome(order: Order, damage: Damage, fixer: Callable[[str], Repaired | None] = builtin) -> str:
    """"exact", "different" or "failed" for one damaged serialization of ``order``."""
    repaired = fixer(dump(order.model_dump(mode="json"), damage))
    if repaired is None:
        return "failed"
    try:
        value: Any = schema_for_type(Order).validate(repaired.value)
    except SchemaMismatch:
        return "failed"
    return "exact" if value == order else "different"


def measure(damage: Damage, examples: int, alphabet: st.SearchStrategy[str],
            fixer: Callable[[str], Repaired | None] = builtin) -> Counter[str]:
    counts: Counter[str] = Counter()

    @settings(max_examples=examples, database=None, derandomize=True, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(orders(alphabet))
    def run(order: Order) -> None:
        counts[outcome(order, damage, fixer)] += 1

    run()
    return counts


def main(examples: int = 300) -> None:
    for label, alphabet in (("wide alphabet", TEXT_ALPHABET), ("no \" \\ { } [ ] #", SAFE_ALPHABET)):
        for name, fixer in FIXERS.items():
            print(f"\n{name}, {label}: {examples} random Orders per kind")
            print(f"{'damage':20s} {'exact':>7s} {'differs':>8s} {'failed':>7s}")
            for kind, damage in KINDS.items():
                c = measure(damage, examples, alphabet, fixer)
                total = sum(c.values()) or 1
                print(f"{kind:20s} {c['exact'] / total:7.1%} {c['different'] / total:8.1%} "
                      f"{c['failed'] / total:7.1%}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
