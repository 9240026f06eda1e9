"""Every registered stage (built-in or installed plugin) runs through the middleware contract.

Parametrised over the registry, so a newly registered stage is covered without touching this
file. Where a stage needs options to have anything to do, or legitimately cannot obey a clause,
that is said here: by name, with the reason.
"""

from __future__ import annotations

from typing import Any

import pytest

from llmchain.plugins import get_registry
from llmchain.testing.contract import CLAUSES, assert_clause

#: Options that give a stage something to do in the contract's scenarios.
STAGE_OPTIONS: dict[str, dict[str, Any]] = {
    "retry": {"max_attempts": 4},
    "timeout": {"attempt_s": 1.5},  # the deadline scenarios' slow attempts take 1 s
    "rate_limit": {"rpm": 60},  # the burst scenario needs waits the deadline must clip
    "circuit_breaker": {"min_calls": 2, "window_calls": 4, "open_s": 5.0},
    "fallback": {"alternatives": ["contract-backup-model"]},
    "cache": {"store": "memory"},
    "log": {"handler": "none"},
    "redact": {"patterns": {"TICKET": r"TCK-\d{4}"}},
    "route": {"deployments": [{"name": "main"}], "tokenizer": "heuristic"},  # the chain's own transport
    "budget": {"limits": [{"tokens": 10_000_000}], "tokenizer": "heuristic"},
}

#: Clauses a stage cannot obey, and why. Each one is still run: it must fail (xfail), and a
#: stage that starts obeying it makes the exemption stale, which fails the test.
STAGE_EXEMPTIONS: dict[str, dict[str, str]] = {
    "cache": {
        "calls_inward_each_time": "a cache answers the second identical call from its store "
        "instead of calling inward; that is its purpose",
    },
}

#: Response fields a stage fills in where the provider left them None (never overwrites).
STAGE_ANNOTATIONS: dict[str, dict[str, str]] = {
    "cache": {"cache": "reports hit, miss or bypass in response.cache on every call"},
    "log": {"usage.cost_usd": "prices the call from its price table when the provider reports no cost"},
    "route": {"served_by": "names the deployment that answered when nothing inside named it"},
}

REGISTERED = sorted(get_registry().stages)


def test_stage_tables_name_only_real_clauses() -> None:
    for name, exempt in STAGE_EXEMPTIONS.items():
        assert set(exempt) <= set(CLAUSES), name


@pytest.mark.parametrize("clause", list(CLAUSES))
@pytest.mark.parametrize("stage", REGISTERED)
def test_registered_stage_obeys_contract(stage: str, clause: str) -> None:
    registered = get_registry().stages[stage]
    assert_clause(
        registered.factory,
        clause,
        STAGE_OPTIONS.get(stage, {}),
        exempt=STAGE_EXEMPTIONS.get(stage, {}),
        annotates=STAGE_ANNOTATIONS.get(stage, {}),
        examples=15,
    )
