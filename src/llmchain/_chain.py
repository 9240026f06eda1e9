"""Chain: the ordered stages around one transport, with async and sync entry points."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from ._build import StageLike, build_stages, build_transport, format_options, identity_of
from ._call_checks import check_messages, check_params, check_prompt
from ._clock import REAL_CLOCK, Clock
from ._compose import TransportCall, compose
from ._config import (
    ChainConfig,
    TransportSpec,
    load_config,
)
from ._events import CallTrace, Observer, current_call
from ._exceptions import CallError, ConfigError, InputTypeError, LLMChainError
from ._loop import LOOP
from ._models import PLAIN_PARAMS, LLMRequest, LLMResponse, Message, copy_with, prompt_request
from ._order import check_order, stage_roles
from ._prices import PriceTable, default_prices
from ._stage import stage_traits
from ._types import Middleware, Transport
from ._usage import UsageLedger, UsageTotals, account
from ._wrap import wrap_foreign
from .plugins import building, get_registry

if TYPE_CHECKING:
    from ._embed import EmbeddingOptions, EmbeddingResult
    from ._stream_sync import SyncResponseStream
    from ._streaming import ResponseStream

M = TypeVar("M", bound=BaseModel)
Prompt = str | LLMRequest | Sequence[Message | Mapping[str, Any]]

#: Total deadline per call when neither the request nor the config sets one.
DEFAULT_TIMEOUT_S = 120.0
#: Where a call's request carries ``transport.identity()`` for stages that declare
#: ``needs_transport_identity = True`` (the cache keys on it).
TRANSPORT_METADATA_KEY = "llmchain.transport"


class Chain:
    """An ordered list of middleware stages around one transport.

    ``stages[0]`` is outermost. Stages may be objects with ``async handle(request, call_next)``,
    registered stage names (``"retry"``), ``StageSpec`` or ``{"use": "retry", ...}`` dicts.
    """

    def __init__(
        self,
        stages: Iterable[StageLike] = (),
        transport: Transport | str | TransportSpec | Mapping[str, Any] = "mock",
        *,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        clock: Clock = REAL_CLOCK,
        observers: Iterable[Observer] = (),
        plugins: Iterable[Any] = (),
        source: str = "<code>",
        embeddings: EmbeddingOptions | Mapping[str, Any] | None = None,
    ) -> None:
        registry = get_registry(plugins)
        self._embeddings = embeddings
        if embeddings is not None:  # checked now, so a bad table fails when the chain is built
            from ._embed import embedding_options

            self._embeddings = embedding_options(embeddings, source)
        self._clock = clock
        self.timeout_s = timeout_s
        self.source = source
        with building(registry):  # parts built inside stages (fallback, route) use it too
            self.transport = build_transport(transport, registry, clock, source)
            named = build_stages(stages, registry, clock, source)
        check_order([stage_roles(stage) for _, _, stage in named])
        self._stages: tuple[tuple[str, str, Middleware], ...] = tuple(named)
        self._observers = tuple(registry.observers) + tuple(observers)
        # computed once: the identity of a built transport does not change
        self._identity: dict[str, Any] | None = None
        if any(stage_traits(s).needs_transport_identity for _, _, s in named):
            self._identity = {TRANSPORT_METADATA_KEY: identity_of(self.transport)}
        self._entry = compose([s for _, _, s in named], TransportCall(self.transport, clock))
        #: Prices for ``usage.cost_usd`` and the totals (``llmchain.set_prices`` sets the default).
        self.prices: PriceTable = default_prices()
        self._ledger = UsageLedger()

    def usage(self) -> dict[str, UsageTotals]:
        """Running totals per model of what this chain's calls were billed (every attempt and
        re-ask that cost tokens, failed calls included), with their cost."""
        return self._ledger.snapshot()

    @classmethod
    def from_config(
        cls,
        source: str | Path | Mapping[str, Any] | ChainConfig,
        *,
        clock: Clock = REAL_CLOCK,
        observers: Iterable[Observer] = (),
        plugins: Iterable[Any] = (),
    ) -> Chain:
        """Build a chain from a TOML file path, a dict of the same shape, or a ChainConfig."""
        config = source if isinstance(source, ChainConfig) else load_config(source)
        return cls(
            config.stages,
            config.transport,
            timeout_s=config.timeout_s if config.timeout_s is not None else DEFAULT_TIMEOUT_S,
            clock=clock,
            observers=observers,
            plugins=plugins,
            source=config.source,
            embeddings=config.embeddings or None,
        )

    # -- introspection ------------------------------------------------------------------------

    @property
    def stages(self) -> tuple[tuple[str, Middleware], ...]:
        """(name, stage) pairs, outermost first."""
        return tuple((name, stage) for name, _, stage in self._stages)

    @property
    def clock(self) -> Clock:
        return self._clock

    def describe(self) -> str:
        """The ordered stages with their effective options, outermost first."""
        lines = [f"chain from {self.source} (total timeout: {self.timeout_s}s)"]
        for i, (name, kind, stage) in enumerate(self._stages):
            label = name if name == kind else f"{name} ({kind})"
            lines.append(f"  {i}. {label}{format_options(stage)}")
        lines.append(f"  → transport {self.transport.name}{format_options(self.transport)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Chain {[n for n, _, _ in self._stages]} → {self.transport.name}>"

    # -- calls --------------------------------------------------------------------------------

    def build_request(self, prompt: Prompt, **params: Any) -> LLMRequest:
        """The LLMRequest for ``prompt`` and keyword parameters (``system=`` adds a system message).

        The call's deadline is fixed here, from ``timeout_s`` (or ``timeout``, the SDKs'
        spelling) or the chain's default, so that it counts from when the caller asked. Arguments
        are checked first (``_call_checks``): a mistake is a ``ConfigError`` naming it.
        """
        if params:
            params = check_params(params)
        if type(prompt) is not str and not isinstance(prompt, LLMRequest):
            check_prompt(prompt)
        if isinstance(prompt, LLMRequest):
            check_messages(prompt.messages)
            if prompt.deadline is None and "deadline" not in params:
                timeout = params.get("timeout_s")
                params.update(self._deadline(timeout if timeout is not None else prompt.timeout_s))
            return prompt.model_copy(update=params) if params else prompt
        if "deadline" not in params:
            params.update(self._deadline(params.get("timeout_s")))
        if params.keys() <= PLAIN_PARAMS:  # a plain prompt: nothing the caller gave needs checking
            request = prompt_request(prompt, params) if isinstance(prompt, str) else None
            if request is not None:
                return request
        system = params.pop("system", None)
        try:
            if isinstance(prompt, str):
                messages: list[Any] = [Message(role="user", content=prompt)]
            else:
                from .messages._inputs import to_messages  # message lists only: not on the plain-prompt path

                messages = to_messages(prompt)
            if system is not None:
                messages.insert(0, Message(role="system", content=system))
            return LLMRequest(messages=tuple(messages), **params)
        except ValidationError as exc:  # a caller mistake, said plainly
            raise ConfigError(f"invalid request: {exc}") from None

    def _deadline(self, timeout_s: float | None) -> dict[str, float]:
        timeout = timeout_s if timeout_s is not None else self.timeout_s
        return {} if timeout is None else {"deadline": self._clock.now() + timeout, "timeout_s": timeout}

    def _request(self, prompt: Prompt, params: dict[str, Any]) -> LLMRequest:
        """``build_request`` for a call: the transport identity stages asked for goes in now, so
        that ``_run`` need not copy the request to add it."""
        if self._identity is not None and "metadata" not in params and not isinstance(prompt, LLMRequest):
            params["metadata"] = self._identity  # validation copies the dict
        return self.build_request(prompt, **params)

    async def acomplete(self, prompt: Prompt, **params: Any) -> LLMResponse:
        """Send ``prompt`` through every stage; returns the response or raises one CallError."""
        return await self._run(_whole(self._request(prompt, params)))

    def complete(self, prompt: Prompt, **params: Any) -> LLMResponse:
        """Sync ``acomplete``: works in scripts, threads, and inside a running loop."""
        request = _whole(self._request(prompt, params))
        return LOOP.run(self._run(request))

    async def acomplete_json(
        self, prompt: Prompt, *, schema: type[M] | Mapping[str, Any], **params: Any
    ) -> Any:
        """Structured output: the answer validated into ``schema`` (a pydantic model or JSON Schema)."""
        from .structured._output import coerce_output, schema_for  # structured output only: not at import

        params.update(schema_for(schema))  # an InputTypeError for anything but a model or a dict
        response = await self._run(_whole(self._request(prompt, params)))
        return coerce_output(response, schema)

    def complete_json(self, prompt: Prompt, *, schema: type[M] | Mapping[str, Any], **params: Any) -> Any:
        """Sync ``acomplete_json``."""
        from .structured._output import schema_for

        schema_for(schema)  # a wrong schema is said here, before the call is scheduled
        return LOOP.run(self.acomplete_json(prompt, schema=schema, **params))

    async def aembed(self, texts: Sequence[str], **params: Any) -> EmbeddingResult:
        """Embed ``texts`` through every stage, batched to the provider's limits; the vectors
        come back in order (``EmbeddingResult.vectors``). ``model=``, ``metadata=`` and
        ``timeout_s=`` (per batch) are accepted; some batches failing raises ``EmbeddingFailed``."""
        from ._embed import aembed, embedding_options

        return await aembed(self, texts, embedding_options(self._embeddings, self.source), params)

    def embed(self, texts: Sequence[str], **params: Any) -> EmbeddingResult:
        """Sync ``aembed``."""
        return LOOP.run(self.aembed(texts, **params))

    def astream(self, prompt: Prompt, **params: Any) -> ResponseStream:
        """Stream the answer through every stage: iterating yields its text chunks as they
        arrive, ``events()`` the typed events; the final LLMResponse is on ``.response``."""
        from ._streaming import ResponseStream

        params["stream"] = True
        return ResponseStream(self, self._request(prompt, params))

    def stream(self, prompt: Prompt, **params: Any) -> SyncResponseStream:
        """Sync ``astream`` (scripts, threads, Jupyter): yields text chunks as they arrive."""
        from ._stream_sync import SyncResponseStream
        from ._streaming import ResponseStream

        params["stream"] = True
        return SyncResponseStream(ResponseStream(self, self._request(prompt, params)))

    async def _run(self, request: LLMRequest) -> LLMResponse:
        clock = self._clock
        start = clock.now()
        update: dict[str, Any] = {}
        if request.deadline is None:
            timeout = request.timeout_s or self.timeout_s
            if timeout is not None:
                update.update(deadline=start + timeout, timeout_s=timeout)
        if self._identity is not None and TRANSPORT_METADATA_KEY not in request.metadata:
            update["metadata"] = {**request.metadata, **self._identity}
        if update:
            request = copy_with(request, update)
        trace = CallTrace(request.request_id, self._observers, clock.wall)
        token = current_call.set(trace)
        try:
            if self._observers:
                trace.emit(
                    "call_start",
                    None,
                    {
                        "model": request.model,
                        "transport": self.transport.name,
                        "temperature": request.temperature,
                        "max_tokens": request.max_tokens,
                        "top_p": request.top_p,
                        "seed": request.seed,
                        **({"stream": True} if request.stream else {}),
                    },
                )
            response = await self._entry(request)
        except CallError as exc:
            self._end(trace, start, exc)
            raise exc.with_context(
                request_id=request.request_id, attempts=trace.attempts, summary=request.summary()
            ) from exc.__cause__
        except (asyncio.CancelledError, LLMChainError) as exc:
            self._end(trace, start, exc)  # observers must see every call end (spans, gauges)
            raise
        except Exception as exc:
            wrapped = wrap_foreign(exc, in_transport=False).with_context(
                request_id=request.request_id, attempts=trace.attempts, summary=request.summary()
            )
            self._end(trace, start, wrapped)
            raise wrapped from exc
        finally:
            current_call.reset(token)
        if request.stream:  # the call ends with its stream
            from ._streaming import streamed_call

            return streamed_call(self, request, response, trace, start)
        update = {
            "attempts": tuple(trace.attempts),
            "latency_s": clock.now() - start,
            "request_id": request.request_id,
        }
        if response.served_by is None and trace.attempts:
            update["served_by"] = trace.attempts[-1].served_by
        response = account(copy_with(response, update), trace.billed, self.prices)
        self._end(trace, start, None, response)
        return response

    def _end(
        self, trace: CallTrace, start: float, error: BaseException | None,
        response: LLMResponse | None = None, stream: bool = False,
    ) -> None:
        if trace.billed:
            self._ledger.add(trace.billed, self.prices)
        if self._observers:
            outcome = (
                "ok"
                if error is None
                else ("cancelled" if isinstance(error, asyncio.CancelledError) else "error")
            )
            data: dict[str, Any] = {
                "outcome": outcome,
                "error_type": type(error).__name__ if error is not None else None,
                "latency_s": self._clock.now() - start,
                "attempts": len(trace.attempts),
            }
            if stream:
                data["stream"] = True
            if response is not None:
                data.update(
                    input_tokens=response.usage.input_tokens,
                    output_tokens=response.usage.output_tokens,
                    response_model=response.model,
                    finish_reason=response.finish_reason,
                    cache=response.cache.status if response.cache is not None else None,
                    cost_usd=response.usage.cost_usd,
                    billed_input_tokens=response.usage.billed_input_tokens,
                    billed_output_tokens=response.usage.billed_output_tokens,
                    billed_cost_usd=response.usage.billed_cost_usd,
                )
            elif trace.billed:  # a failed call may still have been billed (a rejected answer)
                data.update(billed_input_tokens=sum(b[1] for b in trace.billed),
                            billed_output_tokens=sum(b[2] for b in trace.billed))
            trace.emit("call_end", None, data)

    # -- lifecycle ----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the transport and any stage that holds resources."""
        for _, _, stage in self._stages:
            closer = stage_traits(stage).aclose
            if closer is not None:
                await closer()
        await self.transport.aclose()

    def close(self) -> None:
        """Sync ``aclose``."""
        LOOP.run(self.aclose())

    def __enter__(self) -> Chain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Chain:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def _whole(request: LLMRequest) -> LLMRequest:
    """``complete()`` answers whole: a ``stream=True`` request would come back with a stream
    nobody reads (its connection left open), so it is refused before anything is sent."""
    if request.stream:
        raise InputTypeError(
            "stream=True was passed to complete()/acomplete(), which return the whole answer; "
            "use chain.stream() (sync) or chain.astream() (async) to receive it as it arrives")
    return request
