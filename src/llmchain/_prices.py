"""Prices of common models, for the estimated cost in log lines and ``Usage.cost_usd``.

US dollars per 1 million tokens (input, output), standard tier, no batch or cached-input
discounts, as published by OpenAI and Anthropic (``PRICES_VERSION``). Prices change:
override or extend them (``llmchain.set_prices``, a chain's ``prices`` attribute, or the log
stage's ``prices`` option) rather than trusting this table.

Model names match exactly, else by the longest known prefix (``gpt-4o-mini-2024-07-18`` →
``gpt-4o-mini``), after dropping a provider prefix (``openai/gpt-4o`` → ``gpt-4o``).
"""

from __future__ import annotations

from collections.abc import Mapping

Price = tuple[float, float]

#: Which edition of the table below this is; bump it whenever a price changes, so costs in
#: logs and totals can say which prices they were computed with.
PRICES_VERSION = "2025-08"

PRICES: dict[str, Price] = {  # edition: PRICES_VERSION
    # OpenAI
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4": (30.00, 60.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "o1": (15.00, 60.00),
    "o1-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o3-pro": (20.00, 80.00),
    "o4-mini": (1.10, 4.40),
    # Anthropic
    "claude-opus-4-5": (5.00, 25.00),
    "claude-opus-4": (15.00, 75.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-opus": (15.00, 75.00),
    "claude-3-sonnet": (3.00, 15.00),
    "claude-3-haiku": (0.25, 1.25),
}


class PriceTable:
    """Model → price lookup with overrides; resolved names are memoised (lookups are hot)."""

    def __init__(self, overrides: Mapping[str, Price] | None = None) -> None:
        self._prices: dict[str, Price] = {**PRICES, **(overrides or {})}
        #: Which prices these are: the built-in table's version, "+overrides" when changed.
        self.version = PRICES_VERSION + ("+overrides" if overrides else "")
        # longest first, so "gpt-4o-mini-…" matches gpt-4o-mini before gpt-4o
        self._prefixes = sorted(self._prices, key=len, reverse=True)
        self._resolved: dict[str, Price | None] = {}

    def price(self, model: str | None) -> Price | None:
        """(input, output) USD per 1M tokens, or None for an unknown model."""
        if not model:
            return None
        try:
            return self._resolved[model]
        except KeyError:
            pass
        name = model.rsplit("/", 1)[-1].lower()
        found = self._prices.get(name)
        if found is None:
            found = next((self._prices[p] for p in self._prefixes if name.startswith(p)), None)
        if len(self._resolved) < 4096:  # bounded: model names come from responses
            self._resolved[model] = found
        return found

    def cost(self, model: str | None, input_tokens: int, output_tokens: int) -> float | None:
        """Estimated USD for the tokens, or None when the model's price is unknown."""
        price = self.price(model)
        if price is None:
            return None
        return (input_tokens * price[0] + output_tokens * price[1]) / 1_000_000


_default = PriceTable()


def default_prices() -> PriceTable:
    """The process-wide table chains use (``set_prices`` changes it)."""
    return _default


def set_prices(overrides: Mapping[str, Price], *, replace: bool = False) -> PriceTable:
    """Override or extend the process-wide price table: model → (input, output) USD per 1M
    tokens. ``replace=True`` drops the built-in table (only ``overrides`` are then known).
    Chains built afterwards use it; returns the new table."""
    global _default
    table = PriceTable(overrides)
    if replace:
        table._prices = dict(overrides)
        table._prefixes = sorted(table._prices, key=len, reverse=True)
    _default = table
    return table
