"""Cache keys and cache entry encoding: pure functions, property-tested on their own.

The key is ``sha256`` over a canonical JSON array of everything that changes the answer::

    [format version, namespace, transport identity, model, messages,
     temperature, max_tokens, top_p, stop, seed, extra body params, output schema]
    (+ [tools, tool_choice, parallel_tool_calls] when any is set)

Messages with content parts key every part; images and documents by the sha256 of their bytes
(or their URL), never by repr; tool calls and tool_call_id are part of their message's key.

and nothing else: not the request id, deadline, timeout, attempt number or per-call
``metadata`` (those change how a call is made, not what it answers), and never a secret
(identity and ``extra`` entries under secret-looking keys are dropped). docs/caching.md has the
table. Bump ``KEY_VERSION`` whenever this layout or the entry format changes: old entries then
simply stop matching.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from .._content import part_key
from .._models import LLMRequest, LLMResponse, Message, ToolCall, Usage
from .._redact import SECRET_KEYS

KEY_VERSION = 1
#: Where the chain puts ``transport.identity()`` for stages that need it.
TRANSPORT_METADATA_KEY = "llmchain.transport"


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, bytes):
        return value.hex()
    # anything else: a stable text form; an unstable repr only costs misses, never wrong hits
    return f"{type(value).__qualname__}:{value!r}"


_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default
)


_SCALARS = (str, int, float, type(None))  # never a Mapping: skips the slower ABC check


def _without_secrets(data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(k, str) and k.lower() in SECRET_KEYS:
            continue
        out[k] = _without_secrets(v) if not isinstance(v, _SCALARS) and isinstance(v, Mapping) else v
    return out


@functools.lru_cache(maxsize=256)
def _schema_of(output_type: type[BaseModel]) -> dict[str, Any]:
    return output_type.model_json_schema()


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)  # 0 and 0.0 must give the same key


def key_material(request: LLMRequest, namespace: str = "default",
                 transport: Mapping[str, Any] | None = None) -> list[Any]:
    """The canonical structure that is hashed (exposed for docs, tests and debugging)."""
    if transport is None:
        transport = request.metadata.get(TRANSPORT_METADATA_KEY) or {}
    schema = request.output_schema
    if schema is None and request.output_type is not None:
        schema = _schema_of(request.output_type)
    material = [
        KEY_VERSION,
        namespace,
        _without_secrets(transport) if transport else {},
        request.model,
        [[m.role, m.content, m.name] if type(m.content) is str and m.tool_call_id is None
         and not m.tool_calls else _message_key(m) for m in request.messages],
        _float(request.temperature),
        request.max_tokens,
        _float(request.top_p),
        list(request.stop) if request.stop is not None else None,
        request.seed,
        _without_secrets(request.extra) if request.extra else {},
        schema,
        *_tool_material(request),
    ]
    if request.embed_input is not None:  # embeddings only: completions keep their keys
        material.append(["embed", list(request.embed_input)])
    return material


def _message_key(message: Message) -> list[Any]:
    """A message with parts or tool fields: parts by content (bytes by sha256, never repr)."""
    content = message.content
    key: list[Any] = [message.role, content if isinstance(content, str) else
                      [part_key(p) for p in content], message.name, message.tool_call_id]
    if message.tool_calls:
        key.append([[c.id, c.name, c.arguments] for c in message.tool_calls])
    return key


def _tool_material(request: LLMRequest) -> list[Any]:
    """Tools and tool choice, appended only when set (keys of plain requests stay as they were)."""
    if not request.tools and request.tool_choice is None and request.parallel_tool_calls is None:
        return []
    return [[[t.name, t.description, t.parameters] for t in request.tools],
            request.tool_choice, request.parallel_tool_calls]


def cache_key(request: LLMRequest, namespace: str = "default",
              transport: Mapping[str, Any] | None = None) -> str:
    """Hex sha256 of ``key_material``: the same for every request that must get the same answer."""
    text = _ENCODER.encode(key_material(request, namespace, transport))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# -- entries -------------------------------------------------------------------------------------

ENTRY_VERSION = 1


def entry_document(response: LLMResponse) -> dict[str, Any]:
    """What is stored for ``response``, as JSON-ready data.

    Stored: text, parsed value (pydantic models as their JSON form), usage, model,
    finish_reason, served_by. Not stored: attempts, latency, request id, provider headers
    (they describe one HTTP exchange, not the answer) and stage notes.
    """
    parsed = response.parsed
    if isinstance(parsed, BaseModel):
        parsed = parsed.model_dump(mode="json")
    usage = response.usage
    document = {
        "v": ENTRY_VERSION,
        "text": response.text,
        "parsed": parsed,
        "usage": [usage.input_tokens, usage.output_tokens, usage.cost_usd],
        "model": response.model,
        "finish_reason": response.finish_reason,
        "served_by": response.served_by,
    }
    if response.tool_calls:  # optional keys: entries without them read as before
        document["tool_calls"] = [[c.id, c.name, c.arguments] for c in response.tool_calls]
    if response.parts:
        document["parts"] = [p.model_dump(mode="json") for p in response.parts]
    return document


# Made once: ``json.dumps`` with options builds a new encoder on every call.
_ENTRY_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode_document(document: dict[str, Any]) -> str | None:
    """The JSON text of an entry document, or None when it cannot be JSON (then not cached)."""
    try:
        return _ENTRY_ENCODER.encode(document)
    except (TypeError, ValueError):
        return None


def encode_response(response: LLMResponse) -> str | None:
    """``encode_document(entry_document(response))``."""
    return encode_document(entry_document(response))


class DecodedEntry:
    """A stored entry decoded once: a response template plus how to rebuild ``parsed``.

    ``parsed`` that is mutable (dict, list) is re-read from its JSON for every hit, so callers
    never share (and never corrupt) one object through the cache.
    """

    __slots__ = ("parsed_json", "template")

    def __init__(self, template: LLMResponse, parsed_json: str | None) -> None:
        self.template = template
        self.parsed_json = parsed_json


def decode_entry(text: str) -> DecodedEntry:
    """Decode stored JSON text; raises ValueError for anything not written by ``encode_response``."""
    doc = json.loads(text)
    if not isinstance(doc, dict) or doc.get("v") != ENTRY_VERSION:
        raise ValueError("not a cache entry of this version")
    input_tokens, output_tokens, cost = doc["usage"]
    parsed = doc.get("parsed")
    mutable = isinstance(parsed, (dict, list))
    template = LLMResponse(
        text=doc["text"],
        parsed=None if mutable else parsed,
        usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens, cost_usd=cost),
        model=doc.get("model"),
        finish_reason=doc.get("finish_reason"),
        served_by=doc.get("served_by"),
        tool_calls=tuple(ToolCall(id=i, name=n, arguments=a) for i, n, a in doc.get("tool_calls", ())),
        parts=tuple(doc.get("parts", ())),
    )
    return DecodedEntry(template, json.dumps(parsed, ensure_ascii=False) if mutable else None)
