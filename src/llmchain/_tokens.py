"""Token estimates before a call, for tokens-per-minute limiting (reconciled with real usage after).

With ``tokenizer="auto"`` (the default) text is counted with tiktoken's ``o200k_base`` when
tiktoken is installed *and* its encoding loads; until then, and without it, a heuristic is
used. tiktoken may download its encoding file on first use, so it is loaded on a background
thread: no call ever waits for it (or hangs on a firewalled network). Name an encoding
(``"cl100k_base"``) to use that one, or ``"heuristic"`` to never use tiktoken.

The heuristic (documented in docs/stages/rate_limit.md): ``ceil(chars / 4)`` per message
(OpenAI's rule of thumb for English) plus 4 tokens of per-message overhead (role and
separators; OpenAI's cookbook counts 3, plus 1 for a name) plus 3 for the reply's priming.
Estimates of long texts are cached by string, since system prompts repeat from call to call.
Images and documents are estimated per provider by ``_media_tokens`` (rules documented there
and in docs/content.md); tool definitions and tool-call arguments count as text.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._models import LLMRequest, Message

logger = logging.getLogger("llmchain")

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4
REPLY_OVERHEAD = 3
DEFAULT_ENCODING = "o200k_base"
_CACHE_MIN_CHARS = 256  # shorter texts are cheaper to count than to look up
_CACHE_MAX = 2048


def heuristic_count(text: str) -> int:
    """``ceil(len(text) / 4)``: about right for English, conservative for code."""
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


class TokenEstimator:
    """Counts tokens with tiktoken when available, else with the heuristic."""

    def __init__(self, tokenizer: str = "auto") -> None:
        self.tokenizer = tokenizer
        self._count: Callable[[str], int] = heuristic_count
        self._cache: dict[str, int] = {}
        self._ready = threading.Event()
        if tokenizer == "heuristic":
            self._ready.set()
        else:
            encoding = DEFAULT_ENCODING if tokenizer == "auto" else tokenizer
            threading.Thread(target=self._load, args=(encoding,), daemon=True,
                             name="llmchain-tiktoken").start()

    @property
    def kind(self) -> str:
        """``"tiktoken:<encoding>"`` once loaded, else ``"heuristic"``."""
        return getattr(self._count, "_llmchain_kind", "heuristic")

    def _load(self, encoding: str) -> None:
        try:
            import tiktoken

            enc = tiktoken.get_encoding(encoding)

            def count(text: str) -> int:
                return len(enc.encode(text, disallowed_special=()))

            count._llmchain_kind = f"tiktoken:{encoding}"  # type: ignore[attr-defined]
            count("warm up")
            self._cache = {}
            self._count = count
        except Exception as exc:  # ImportError, no network for the encoding file, bad name
            if self.tokenizer != "auto":
                logger.warning("llmchain: tokenizer %r unavailable (%s); using the heuristic",
                               self.tokenizer, exc)
        finally:
            self._ready.set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the tokenizer finished loading (for tests and benchmarks)."""
        return self._ready.wait(timeout)

    def count(self, text: str) -> int:
        """Tokens in ``text``."""
        if len(text) < _CACHE_MIN_CHARS:
            return self._count(text)
        cache = self._cache
        n = cache.get(text)
        if n is None:
            n = self._count(text)
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            cache[text] = n
        return n

    def input_tokens(self, request: LLMRequest) -> int:
        """Estimated prompt tokens of ``request``, message overheads included."""
        count = self.count
        total = REPLY_OVERHEAD
        for message in request.messages:
            content = message.content
            if type(content) is str and not message.tool_calls:
                total += MESSAGE_OVERHEAD + count(content)
            else:
                total += MESSAGE_OVERHEAD + self._rich_tokens(message, _provider(request))
        for tool in request.tools:
            total += count(tool.name) + count(tool.description) + count(_json(tool.parameters))
        return total

    def _rich_tokens(self, message: Message, provider: str) -> int:
        from ._content import RawPart, TextPart
        from ._media_tokens import part_tokens

        total = 0
        content = message.content
        if isinstance(content, str):
            total += self.count(content)
        else:
            for part in content:
                if isinstance(part, TextPart):
                    total += self.count(part.text)
                elif isinstance(part, RawPart):
                    total += self.count(_json(part.data))
                else:
                    total += part_tokens(part, provider)
        for call in message.tool_calls:
            total += self.count(call.name) + self.count(call.arguments)
        return total

    def request_tokens(self, request: LLMRequest, default_output: int) -> int:
        """What a provider's tokens-per-minute limiter books for ``request``: prompt tokens
        plus ``max_tokens`` (or ``default_output`` when the request sets none)."""
        out = request.max_tokens if request.max_tokens is not None else default_output
        return self.input_tokens(request) + out


def _provider(request: LLMRequest) -> str:
    """The transport kind the chain put in the request's metadata (openai's rules by default)."""
    identity = request.metadata.get("llmchain.transport")
    kind = identity.get("kind") if isinstance(identity, dict) else None
    return kind if isinstance(kind, str) else "openai"


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


_estimators: dict[str, TokenEstimator] = {}
_lock = threading.Lock()


def get_estimator(tokenizer: str = "auto") -> TokenEstimator:
    """The process-wide estimator for ``tokenizer`` (loaded once)."""
    with _lock:
        estimator = _estimators.get(tokenizer)
        if estimator is None:
            estimator = _estimators[tokenizer] = TokenEstimator(tokenizer)
        return estimator
