"""llmchain: reliable, cheap and debuggable LLM API calls through an ordered chain of stages.

Quick use::

    from llmchain import Chain
    with Chain.from_config("llmchain.toml") as chain:
        print(chain.complete("Say hi").text)
"""

from ._chain import Chain
from ._clock import REAL_CLOCK, Clock, RealClock, clip_wait, fits_in_deadline, time_left
from ._config import ChainConfig, StageSpec, TransportSpec, load_config
from ._content import DocumentPart, ImagePart, RawPart, TextPart
from ._events import Event, Observer, emit
from ._exceptions import (
    BudgetExceeded,
    CacheMiss,
    CallError,
    CircuitOpen,
    ConfigError,
    EmbeddingFailed,
    GaveUp,
    LLMChainError,
    OutputError,
    OutputInvalid,
    ParseError,
    PluginError,
    ProviderError,
    RateLimited,
    StoreUnavailable,
    TimeoutExceeded,
    TransportError,
    UnsupportedContent,
)
from ._models import Attempt, CacheInfo, LLMRequest, LLMResponse, Message, Usage
from ._order import OrderWarning
from ._redact import register_pattern, register_secret
from ._tools import Tool, ToolCall
from ._types import Middleware, Next, Transport
from .hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "Attempt",
    "BudgetExceeded",
    "CacheInfo",
    "CacheMiss",
    "CallError",
    "Chain",
    "ChainConfig",
    "CircuitOpen",
    "Clock",
    "ConfigError",
    "DocumentPart",
    "EmbeddingFailed",
    "Event",
    "GaveUp",
    "ImagePart",
    "LLMChainError",
    "LLMRequest",
    "LLMResponse",
    "Message",
    "Middleware",
    "Next",
    "Observer",
    "OrderWarning",
    "OutputError",
    "OutputInvalid",
    "ParseError",
    "PluginError",
    "ProviderError",
    "REAL_CLOCK",
    "RateLimited",
    "RawPart",
    "RealClock",
    "StageSpec",
    "StoreUnavailable",
    "TextPart",
    "TimeoutExceeded",
    "Tool",
    "ToolCall",
    "Transport",
    "TransportError",
    "TransportSpec",
    "UnsupportedContent",
    "Usage",
    "__version__",
    "clip_wait",
    "emit",
    "fits_in_deadline",
    "hookimpl",
    "load_config",
    "register_pattern",
    "register_secret",
    "time_left",
]
