"""The cache stage's handling of embedding requests: one entry per text.

Each text is looked up on its own (key: the request's key material with just that text), only
the texts not found are sent on, in one request, and the vectors are put back in the order of
the request. Identical texts within a request are sent once. Single-flight does not apply.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Protocol

from .._events import emit
from .._exceptions import CacheMiss, ProviderError
from .._models import CacheInfo, LLMRequest, LLMResponse, Usage, copy_with
from .._types import Next
from ._cache_key import cache_key

if TYPE_CHECKING:
    from ..stores.cache_base import CacheEntry

Vector = tuple[float, ...]



class _Namespaced(Protocol):
    @property
    def namespace(self) -> str: ...


class EmbedCache(Protocol):
    """What this module uses of the cache stage (``CacheMiddleware``): a protocol rather than an
    import, because the stage imports this module (no import cycle)."""

    @property
    def options(self) -> _Namespaced: ...

    async def _get(self, key: str, request: LLMRequest) -> CacheEntry | None: ...

    async def _put(self, key: str, request: LLMRequest, value: str | None, reason: str | None) -> None: ...


def _decode(value: str) -> Vector | None:
    try:
        doc = json.loads(value)
        vector = doc["embedding"] if isinstance(doc, dict) and doc.get("v") == 1 else None
        return tuple(float(x) for x in vector) if isinstance(vector, list) else None
    except (ValueError, TypeError, KeyError):
        return None


async def embed_with_cache(cache: EmbedCache, request: LLMRequest, call_next: Next,
                           mode: str) -> LLMResponse:
    texts = request.embed_input or ()
    namespace = cache.options.namespace
    keys = {t: cache_key(copy_with(request, {"embed_input": (t,)}), namespace) for t in dict.fromkeys(texts)}
    found: dict[str, Vector] = {}
    if mode != "refresh":
        for text, key in keys.items():
            entry = await cache._get(key, request)
            vector = _decode(entry.value) if entry is not None else None
            if vector is not None:
                found[text] = vector
    missing = [t for t in keys if t not in found]
    hits = sum(1 for t in texts if t in found)
    emit("cache_embeddings", "cache", hits=hits, misses=len(texts) - hits)
    if not missing:
        return LLMResponse(text="", embeddings=tuple(found[t] for t in texts), model=request.model,
                           served_by="cache", cache=CacheInfo(status="hit"),
                           notes={"cache": {"hits": hits, "misses": 0}})
    if mode == "only-if-cached":
        raise CacheMiss(f"{len(missing)} of {len(keys)} texts are not in the cache and metadata says "
                        "only-if-cached", request_id=request.request_id)
    response = await call_next(copy_with(request, {"embed_input": tuple(missing)}))
    got = response.embeddings or ()
    if len(got) != len(missing):
        raise ProviderError(f"{response.served_by or 'the provider'} returned {len(got)} vectors for "
                            f"{len(missing)} texts", retryable=True)
    for text, vector in zip(missing, got, strict=True):
        found[text] = vector
        value = json.dumps({"v": 1, "embedding": list(vector)}, separators=(",", ":"))
        await cache._put(keys[text], request, value, None)
    status = "refresh" if mode == "refresh" else "miss"
    usage = response.usage if response.usage is not None else Usage()
    counts = {"hits": hits, "misses": len(texts) - hits}
    return copy_with(response, {"embeddings": tuple(found[t] for t in texts), "usage": usage,
                                "cache": CacheInfo(status=status),
                                "notes": {**response.notes, "cache": counts}})
