"""Accounting that adds up without a log stage: what each call was billed, and running totals.

The innermost end of the chain (``TransportCall``) notes the usage of every answer the
provider sent (``CallTrace.billed``): every attempt and every re-ask that cost tokens, even
when a stage above rejected the answer. When the call ends, the chain copies the sums onto
``response.usage`` (``billed_*``, apart from the final answer's own tokens), prices them with
its price table, and adds them to its ``UsageLedger`` (``chain.usage()``), failed calls
included: a re-ask that ended in ``GaveUp`` was paid for too.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from ._models import LLMResponse, Usage, copy_with
from ._prices import PRICES_VERSION, PriceTable

#: One billed answer: (model, input tokens, output tokens).
Billed = tuple[str | None, int, int]


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """Running totals for one model (``chain.usage()``).

    ``calls``: calls that ended with an answer or an error and sent at least one request to
    this model; ``billed_*``: every answer the provider sent, re-asks and rejected answers
    included; ``cost_usd``: their price (None when the model's price is unknown).
    """

    calls: int = 0
    billed_answers: int = 0
    billed_input_tokens: int = 0
    billed_output_tokens: int = 0
    cost_usd: float | None = None
    prices_version: str = PRICES_VERSION

    @property
    def billed_total_tokens(self) -> int:
        return self.billed_input_tokens + self.billed_output_tokens


class UsageLedger:
    """Per-model totals, safe to update from several threads and loops at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[str, UsageTotals] = {}

    def add(self, billed: Sequence[Billed], prices: PriceTable) -> None:
        """Count one call's billed answers."""
        if not billed:
            return
        per_model: dict[str, tuple[int, int, int]] = {}
        for model, tokens_in, tokens_out in billed:
            n, i, o = per_model.get(model or "unknown", (0, 0, 0))
            per_model[model or "unknown"] = (n + 1, i + tokens_in, o + tokens_out)
        with self._lock:
            for model, (n, i, o) in per_model.items():
                old = self._totals.get(model, UsageTotals())
                cost = prices.cost(model, i, o)
                unpriced = cost is None or (old.billed_answers > 0 and old.cost_usd is None)
                total = None if unpriced else (old.cost_usd or 0.0) + (cost or 0.0)
                self._totals[model] = UsageTotals(
                    old.calls + 1, old.billed_answers + n, old.billed_input_tokens + i,
                    old.billed_output_tokens + o, total, prices.version)

    def snapshot(self) -> dict[str, UsageTotals]:
        """A copy of the totals, by model."""
        with self._lock:
            return dict(self._totals)

    def reset(self) -> None:
        with self._lock:
            self._totals.clear()


def account(response: LLMResponse, billed: Sequence[Billed], prices: PriceTable) -> LLMResponse:
    """``response`` with its final cost and the billed sums of the whole call filled in."""
    usage = response.usage
    update: dict[str, object] = {}
    cached = response.cache is not None and response.cache.status == "hit"
    if usage.cost_usd is None:
        cost = 0.0 if cached else prices.cost(response.model, usage.input_tokens, usage.output_tokens)
        if cost is not None:
            update["cost_usd"] = cost
    if usage.billed_input_tokens is None:
        tokens_in = sum(b[1] for b in billed)
        tokens_out = sum(b[2] for b in billed)
        costs = [prices.cost(m, i, o) for m, i, o in billed]
        update.update(billed_input_tokens=tokens_in, billed_output_tokens=tokens_out,
                      billed_answers=len(billed),
                      billed_cost_usd=None if any(c is None for c in costs) else sum(
                          c for c in costs if c is not None))
    if not update:
        return response
    new_usage: Usage = copy_with(usage, update)
    return copy_with(response, {"usage": new_usage})
