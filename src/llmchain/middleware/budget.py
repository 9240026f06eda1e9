"""The ``budget`` stage: spend limits in USD or tokens per hour, day or month, and per tag.

Before a call is sent its cost is estimated the way ``rate_limit`` estimates it (prompt tokens
+ ``max_tokens``, or ``output_tokens`` when unset; input only for embeddings), priced from the
price table for USD limits, and *reserved* against every limit the call falls under, all at
once and atomically (``policies.spend``; one Lua script when the ledger is in Redis). A call
that would pass a limit fails fast with ``BudgetExceeded``, naming the limit, what was spent
and when the window resets. After the answer the reservation is replaced by the real usage
(``Usage.cost_usd`` when the transport reports it, else the price table); a failed call gives
its reservation back, except a timeout (the provider may have billed it).

Tags come from the call's metadata: ``chain.complete(..., metadata={"user": "u1", "team":
"search"})``. A limit with ``per = "user"`` holds for each user separately (or for one value
only, with ``value``); calls without the tag are not counted against it. ``soft`` (a fraction
of the limit) emits a ``budget_soft_limit`` event and a warning when a reservation crosses it.

Place it inside ``cache`` (a hit costs nothing) and outside ``retry`` (one reservation covers
the call; retries of a failed attempt are not billed twice by the provider).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import Field, model_validator

from .._clock import REAL_CLOCK, Clock
from .._events import emit
from .._exceptions import BudgetExceeded, ConfigError, TimeoutExceeded
from .._models import LLMRequest, LLMResponse, copy_with
from .._prices import PriceTable
from .._stage import StageOptions
from .._tokens import get_estimator
from .._types import Next
from ..hookspecs import hookimpl
from ..policies.spend import MICRO, Entry, SpendLimit, Unit, Window
from ..stores._shared import SharedStateOptions, store_deadline
from ..stores.base import open_store
from ..stores.spend import MemorySpendStore, SpendStore

logger = logging.getLogger("llmchain.budget")
TRANSPORT_METADATA_KEY = "llmchain.transport"
#: Embedding models' prices (USD per 1M input tokens), next to the chat table.
EMBEDDING_PRICES: dict[str, tuple[float, float]] = {
    "text-embedding-3-small": (0.02, 0.0),
    "text-embedding-3-large": (0.13, 0.0),
    "text-embedding-ada-002": (0.10, 0.0),
}


class Limit(StageOptions):
    """One spend limit (a ``[[stages.limits]]`` table)."""

    name: str | None = Field(None, description="Label in errors and events; default from the other fields.")
    usd: float | None = Field(None, gt=0, description="Dollars allowed per window.")
    tokens: int | None = Field(None, ge=1, description="Tokens (input + output) allowed per window.")
    window: Window = Field("day", description='"hour", "day" or "month" (UTC calendar windows).')
    per: str | None = Field(None, description='Metadata tag the limit applies to each value of: "user", "team", "feature"...')  # noqa: E501
    value: str | None = Field(None, description="Only calls whose tag has this value.")
    soft: float | None = Field(None, gt=0, lt=1, description="Fraction of the limit that emits a warning when crossed.")  # noqa: E501

    @model_validator(mode="after")
    def _one_unit(self) -> Limit:
        if (self.usd is None) == (self.tokens is None):
            raise ValueError("a limit needs exactly one of usd = <dollars> or tokens = <count>")
        if self.value is not None and self.per is None:
            raise ValueError("value needs per = <tag> (the metadata key it is the value of)")
        return self

    def policy(self) -> SpendLimit:
        unit: Unit = "usd" if self.usd is not None else "tokens"
        amount = math.floor(self.usd * MICRO) if self.usd is not None else int(self.tokens or 0)
        what = f"${self.usd:g}" if self.usd is not None else f"{self.tokens} tokens"
        scope = "" if self.per is None else (
            f" per {self.per}" if self.value is None else f" for {self.per}={self.value}")
        return SpendLimit(self.name or f"{what}/{self.window}{scope}", unit, amount, self.window,
                          self.per, self.value, self.soft)


class BudgetMiddleware:
    """Refuse calls that would pass a spend limit; count what calls really cost."""

    name = kind = "budget"
    #: Streams take the default: reserved when the call starts, settled from the final usage.
    roles = frozenset({"budget"})
    #: The chain puts the transport's identity (its default model) in the metadata for pricing.
    needs_transport_identity = True

    class Options(SharedStateOptions):
        limits: list[Limit] = Field(default_factory=list, description="The spend limits (all apply).")
        prices: dict[str, tuple[float, float]] = Field(default_factory=dict, description="USD per 1M tokens (input, output) by model, over the built-in table.")  # noqa: E501
        model: str | None = Field(None, description="Model whose price estimates calls that name none (e.g. behind route); None: the transport's.")  # noqa: E501
        tokenizer: str = Field("auto", description="As rate_limit's: how prompt tokens are estimated.")
        output_tokens: int = Field(256, ge=0, description="Output tokens estimated when a request sets no max_tokens.")  # noqa: E501

    def __init__(self, options: Options | None = None, *, clock: Clock = REAL_CLOCK,
                 store: SpendStore | None = None) -> None:
        self.options = o = options or self.Options()
        self._clock = clock
        self._limits = tuple(limit.policy() for limit in o.limits)
        names = [limit.name for limit in self._limits]
        if len(set(names)) != len(names):
            raise ConfigError(f"budget limits must have distinct names, got {names}")
        self.store = store or open_store("spend", o.store, share=o.share, url=o.store_address())
        self._memory = isinstance(self.store, MemorySpendStore)
        self._prices = PriceTable({**EMBEDDING_PRICES, **o.prices})
        self._usd = any(limit.unit == "usd" for limit in self._limits)
        self._estimator = get_estimator(o.tokenizer)
        self._warned: set[str] = set()  # soft limits already reported, by ledger key

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        if not self._limits:
            return await call_next(request)
        if self._memory:
            return await self._handle(request, call_next)
        with store_deadline(request, self._clock):
            return await self._handle(request, call_next)

    def _model(self, request: LLMRequest) -> str | None:
        if request.model is not None:
            return request.model
        if self.options.model is not None:
            return self.options.model
        identity = request.metadata.get(TRANSPORT_METADATA_KEY)
        return identity.get("model") if isinstance(identity, Mapping) else None

    def _usd_micro(self, model: str | None, input_tokens: int, output_tokens: int) -> int:
        cost = self._prices.cost(model, input_tokens, output_tokens)
        if cost is None:
            raise ConfigError(
                f"budget: no price for model {model!r}, so a USD limit cannot be enforced; add "
                f'prices = {{ "{model}" = [input, output] }} (USD per 1M tokens) to the budget stage')
        return math.ceil(cost * MICRO)

    async def _handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        wall = self._clock.wall()
        applying = [(limit, key) for limit in self._limits
                    if (key := limit.key(request.metadata, wall)) is not None]
        if not applying:
            return await call_next(request)
        estimator = self._estimator
        in_tokens = estimator.input_tokens(request)
        out_tokens = 0 if request.embed_input is not None else (
            request.max_tokens if request.max_tokens is not None else self.options.output_tokens)
        model = self._model(request)
        usd = self._usd_micro(model, in_tokens, out_tokens) if self._usd else 0
        tokens = in_tokens + out_tokens
        entries = [Entry(key, usd if limit.unit == "usd" else tokens, limit.limit,
                         limit.resets_at(wall) - wall + 60.0) for limit, key in applying]
        outcome = await self.store.reserve(entries, wall)
        if not outcome.ok:
            limit, _ = applying[outcome.refused]
            raise self._exceeded(limit, outcome.spent[outcome.refused], entries[outcome.refused].amount, wall)
        for (limit, key), entry, before in zip(applying, entries, outcome.spent, strict=True):
            if limit.soft is not None and before + entry.amount >= limit.soft * limit.limit:
                self._soft_reached(limit, key, before + entry.amount)
        try:
            response = await call_next(request)
        except TimeoutExceeded:
            raise  # maybe billed: the estimate stays spent
        except BaseException:
            await self._settle([e._replace(amount=-e.amount) for e in entries], wall)
            raise
        usage = response.usage
        if response.cache is not None and response.cache.status == "hit":
            # answered by a cache inside this stage: nothing was billed
            await self._settle([e._replace(amount=-e.amount) for e in entries], wall)
        elif usage.total_tokens > 0 or usage.cost_usd is not None:
            real_usd = usd  # an answer from an unpriced model (a fallback) keeps its estimate
            if self._usd:
                if usage.cost_usd is not None:
                    real_usd = math.ceil(usage.cost_usd * MICRO)
                else:
                    for name in (response.model, model):
                        cost = self._prices.cost(name, usage.input_tokens, usage.output_tokens)
                        if cost is not None:
                            real_usd = math.ceil(cost * MICRO)
                            break
            deltas = [e._replace(amount=(real_usd if limit.unit == "usd" else usage.total_tokens) - e.amount)
                      for (limit, _), e in zip(applying, entries, strict=True)]
            changed = [d for d in deltas if d.amount]
            if changed:
                await self._settle(changed, wall)
        return copy_with(response, {"notes": {**response.notes, "budget": {
            "limits": [limit.name for limit, _ in applying], "estimated_tokens": tokens}}})

    async def _settle(self, entries: list[Entry], wall: float) -> None:
        try:
            await asyncio.shield(self.store.settle(entries, wall))
        except Exception:  # bookkeeping must not replace the call's own outcome
            emit("store_unavailable", "budget", operation="settle")

    def _soft_reached(self, limit: SpendLimit, key: str, after: int) -> None:
        """Warn once per limit key and window in this process."""
        if key in self._warned:
            return
        if len(self._warned) > 4096:
            self._warned.clear()
        self._warned.add(key)
        spent, cap = _show(limit, after), _show(limit, limit.limit)
        emit("budget_soft_limit", "budget", budget=limit.name, spent=spent, limit=cap, soft=limit.soft)
        logger.warning("budget %r passed its soft limit (%.0f%%): %s of %s spent or reserved this %s",
                       limit.name, (limit.soft or 0) * 100, spent, cap, limit.window)

    def _exceeded(self, limit: SpendLimit, spent: int, needed: int, wall: float) -> BudgetExceeded:
        resets = limit.resets_at(wall)
        emit("budget_exceeded", "budget", budget=limit.name, spent=_show(limit, spent))
        return BudgetExceeded(
            f"budget {limit.name!r} would be exceeded: {_fmt(limit, spent)} of {_fmt(limit, limit.limit)} "
            f"already spent or reserved this {limit.window}, and this call needs ~{_fmt(limit, needed)}; "
            f"it resets in {_duration(resets - wall)}",
            budget=limit.name, spent=_show(limit, spent), limit=_show(limit, limit.limit),
            needed=_show(limit, needed), unit=limit.unit, resets_at=resets, retry_after=resets - wall,
            hint="wait for the window to reset, raise the limit, or lower max_tokens")


def _show(limit: SpendLimit, units: int) -> float:
    return units / MICRO if limit.unit == "usd" else float(units)


def _fmt(limit: SpendLimit, units: int) -> str:
    return f"${units / MICRO:.4f}" if limit.unit == "usd" else f"{units} tokens"


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


@hookimpl
def register_middleware(register: Callable[[str, Any], None]) -> None:
    register("budget", BudgetMiddleware)
