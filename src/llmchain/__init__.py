"""llmchain: reliable, cheap and debuggable LLM API calls through an ordered chain of stages.

Quick use::

    from llmchain import Chain
    with Chain.from_config("llmchain.toml") as chain:
        print(chain.complete("Say hi").text)
"""

from ._attempt import Attempt
from ._chain import Chain
from ._clock import REAL_CLOCK, Clock, RealClock, clip_wait, fits_in_deadline, time_left
from ._config import ChainConfig, StageSpec, TransportSpec, load_config
from ._content import DocumentPart, ImagePart, RawPart, TextPart
from ._events import Event, Observer, emit
from ._exceptions import (
    BudgetExceeded,
    CacheMiss,
    CallError,
    CertificateError,
    CircuitOpen,
    ConfigError,
    EmbeddingFailed,
    GaveUp,
    InputTypeError,
    LLMChainError,
    OutputError,
    OutputInvalid,
    ParseError,
    PluginError,
    ProviderError,
    RateLimited,
    ResponseTooLarge,
    StoreUnavailable,
    StreamInterrupted,
    TimeoutExceeded,
    TransportError,
    UnsupportedContent,
)
from ._models import CacheInfo, LLMRequest, LLMResponse, Message, ToolCall, Usage
from ._order import OrderWarning
from ._prices import PRICES_VERSION, PriceTable, set_prices
from ._redact import register_pattern, register_secret
from ._stage import StageBase, StageFunction, StageOptions
from ._stream import (
    Finish,
    LLMStream,
    PartialObject,
    Replaced,
    StreamEnd,
    StreamEvent,
    StreamUsage,
    TextDelta,
    ToolCallDelta,
    at_end,
    on_final,
)
from ._stream_sync import SyncResponseStream
from ._streaming import ResponseStream
from ._tools import Tool
from ._types import Middleware, Next, Stage, StreamingStage, Transport
from ._usage import UsageTotals
from .hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "Attempt",
    "BudgetExceeded",
    "CacheInfo",
    "CacheMiss",
    "CallError",
    "CertificateError",
    "Chain",
    "ChainConfig",
    "CircuitOpen",
    "Clock",
    "ConfigError",
    "DocumentPart",
    "EmbeddingFailed",
    "Event",
    "Finish",
    "GaveUp",
    "ImagePart",
    "InputTypeError",
    "LLMChainError",
    "LLMRequest",
    "LLMResponse",
    "LLMStream",
    "Message",
    "Middleware",
    "Next",
    "Observer",
    "OrderWarning",
    "OutputError",
    "OutputInvalid",
    "PRICES_VERSION",
    "ParseError",
    "PartialObject",
    "PluginError",
    "PriceTable",
    "ProviderError",
    "REAL_CLOCK",
    "RateLimited",
    "RawPart",
    "RealClock",
    "Replaced",
    "ResponseStream",
    "ResponseTooLarge",
    "Stage",
    "StageBase",
    "StageFunction",
    "StageOptions",
    "StageSpec",
    "StoreUnavailable",
    "StreamEnd",
    "StreamEvent",
    "StreamInterrupted",
    "StreamUsage",
    "StreamingStage",
    "SyncResponseStream",
    "TextDelta",
    "TextPart",
    "TimeoutExceeded",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "Transport",
    "TransportError",
    "TransportSpec",
    "UnsupportedContent",
    "Usage",
    "UsageTotals",
    "__version__",
    "at_end",
    "clip_wait",
    "emit",
    "fits_in_deadline",
    "hookimpl",
    "load_config",
    "on_final",
    "register_pattern",
    "register_secret",
    "set_prices",
    "time_left",
]
