"""Embeddings through the chain: ``chain.embed(texts)`` / ``chain.aembed(texts)``.

The texts are cut into batches that respect the provider's per-request limits (``batch_size``
inputs, ``max_batch_tokens`` estimated tokens), in order. Each batch is one embedding request
(``LLMRequest.embed_input``) sent through every stage of the chain, like a completion: the
cache answers the texts it holds and sends only the others, rate_limit books their tokens,
budget reserves their cost, retry, timeout, route, fallback and log apply. Up to
``concurrency`` batches are in flight at once. Vectors come back in the order of the texts.

If some batches fail, ``EmbeddingFailed`` lists each failed batch (its text range and typed
error) and carries every vector that was obtained, so only the failures need another try.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._exceptions import CallError, ConfigError, EmbeddingFailed
from ._models import LLMRequest, LLMResponse, Usage, copy_with, new_request_id
from ._tokens import get_estimator


class Runner(Protocol):
    """What embedding uses of its ``Chain``: a protocol rather than an import, because the chain
    imports this module (no import cycle)."""

    def _deadline(self, timeout_s: float | None) -> dict[str, float]: ...

    async def _run(self, request: LLMRequest) -> LLMResponse: ...

Vector = tuple[float, ...]


class EmbeddingOptions(BaseModel):
    """The ``[embeddings]`` table of a chain's config."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str | None = Field(None, description="Embedding model; None: the transport's embedding_model.")
    batch_size: int = Field(512, ge=1, le=2048, description="Texts per request (OpenAI allows 2048).")
    max_batch_tokens: int = Field(
        300_000, ge=1, description="Estimated tokens per request (OpenAI allows 300k).")
    concurrency: int = Field(4, ge=1, description="Batches in flight at once.")
    tokenizer: str = Field("auto", description="How tokens are estimated for batching.")


def embedding_options(value: EmbeddingOptions | Mapping[str, Any] | None, where: str) -> EmbeddingOptions:
    if value is None:
        return EmbeddingOptions()
    if isinstance(value, EmbeddingOptions):
        return value
    try:
        return EmbeddingOptions.model_validate(dict(value))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<table>'}: {e['msg']} (got {e.get('input')!r})"
            for e in exc.errors())
        raise ConfigError(f"{where}: [embeddings] {problems}") from None


def batches(tokens: Sequence[int], batch_size: int, max_tokens: int) -> list[tuple[int, int]]:
    """Contiguous ``(start, stop)`` ranges, each at most ``batch_size`` texts and ``max_tokens``
    tokens (a single text over ``max_tokens`` goes alone: the provider decides about it)."""
    out: list[tuple[int, int]] = []
    start, total = 0, 0
    for i, n in enumerate(tokens):
        if i > start and (i - start >= batch_size or total + n > max_tokens):
            out.append((start, i))
            start, total = i, 0
        total += n
    if start < len(tokens):
        out.append((start, len(tokens)))
    return out


@dataclass
class EmbeddingResult:
    """Vectors in the order of the texts, with what obtaining them took."""

    vectors: list[Vector]
    usage: Usage = field(default_factory=Usage)
    model: str | None = None
    #: who answered each batch that was sent (deployment, transport or "cache")
    served_by: list[str] = field(default_factory=list)
    cached: int = 0  # texts answered from the cache

    def __len__(self) -> int:
        return len(self.vectors)


async def aembed(chain: Runner, texts: Sequence[str], options: EmbeddingOptions,
                 params: dict[str, Any]) -> EmbeddingResult:
    if isinstance(texts, str):
        raise ConfigError("embed() takes a list of texts; wrap a single text in a list")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise ConfigError(f"embed() texts must be strings; items {bad[:5]} are not")
    if not texts:
        return EmbeddingResult([])
    estimator = get_estimator(options.tokenizer)
    ranges = batches([estimator.count(t) for t in texts], options.batch_size, options.max_batch_tokens)
    gate = asyncio.Semaphore(options.concurrency)
    metadata = params.pop("metadata", None) or {}
    model = params.pop("model", None) or options.model
    try:  # validated once, as a completion's parameters are; each batch is a copy
        template = LLMRequest(messages=(), embed_input=(), model=model, metadata=dict(metadata), **params)
    except ValidationError as exc:
        raise ConfigError(f"invalid embed() parameters: {exc}") from None

    async def one(start: int, stop: int) -> LLMResponse:
        async with gate:  # each batch's deadline counts from when it starts
            request = copy_with(template, {"embed_input": tuple(texts[start:stop]),
                                           "request_id": new_request_id(),
                                           "metadata": dict(template.metadata),
                                           **chain._deadline(template.timeout_s)})
            return await chain._run(request)

    outcomes = await asyncio.gather(*(one(a, b) for a, b in ranges), return_exceptions=True)
    vectors: list[Vector | None] = [None] * len(texts)
    failures: list[tuple[int, int, CallError]] = []
    result = EmbeddingResult([])
    inputs = 0
    for (start, stop), outcome in zip(ranges, outcomes, strict=True):
        if isinstance(outcome, CallError):
            failures.append((start, stop, outcome))
            continue
        if isinstance(outcome, BaseException):
            raise outcome
        got = outcome.embeddings or ()
        if len(got) != stop - start:
            failures.append((start, stop, CallError(
                f"the answer holds {len(got)} vectors for {stop - start} texts")))
            continue
        vectors[start:stop] = list(got)
        inputs += outcome.usage.input_tokens
        result.model = result.model or outcome.model
        result.served_by.append(outcome.served_by or "?")
        notes = outcome.notes.get("cache")
        if isinstance(notes, dict):
            result.cached += int(notes.get("hits", 0))
    if failures:
        first = failures[0][2]
        failed = sum(b - a for a, b, _ in failures)
        error = EmbeddingFailed(
            f"{len(failures)} of {len(ranges)} batch(es) failed ({failed} of {len(texts)} texts); first: "
            f"{type(first).__name__}: {first.message}", failures=failures, vectors=vectors,
            retry_after=first.retry_after,
            hint="the vectors obtained are on .vectors (None where a batch failed); retry only .failures")
        error.__cause__ = first
        raise error
    result.vectors = [v for v in vectors if v is not None]
    result.usage = Usage(input_tokens=inputs)
    return result
