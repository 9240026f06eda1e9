"""llmchain: reliable, cheap and debuggable LLM API calls through an ordered chain of stages.

Quick use::

    from llmchain import Chain
    with Chain.from_config("llmchain.toml") as chain:
        print(chain.complete("Say hi").text)
"""

from ._chain import Chain
from ._clock import REAL_CLOCK, Clock, RealClock, clip_wait, fits_in_deadline, time_left
from ._config import ChainConfig, StageSpec, TransportSpec, load_config
from ._events import Event, Observer, emit
from ._exceptions import (
    CacheMiss,
    CallError,
    CircuitOpen,
    ConfigError,
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
)
from ._models import Attempt, CacheInfo, LLMRequest, LLMResponse, Message, Usage
from ._order import OrderWarning
from ._redact import register_pattern, register_secret
from ._types import Middleware, Next, Transport
from ._usage import UsageTotals
from .hookspecs import hookimpl
from .middleware._prices import PRICES_VERSION, PriceTable, set_prices

__version__ = "0.1.0"

__all__ = [
    "Attempt",
    "CacheInfo",
    "CacheMiss",
    "CallError",
    "Chain",
    "ChainConfig",
    "CircuitOpen",
    "Clock",
    "ConfigError",
    "Event",
    "GaveUp",
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
    "PRICES_VERSION",
    "ParseError",
    "PluginError",
    "PriceTable",
    "ProviderError",
    "REAL_CLOCK",
    "RateLimited",
    "RealClock",
    "StageSpec",
    "StoreUnavailable",
    "TimeoutExceeded",
    "Transport",
    "TransportError",
    "TransportSpec",
    "Usage",
    "UsageTotals",
    "__version__",
    "clip_wait",
    "emit",
    "fits_in_deadline",
    "hookimpl",
    "load_config",
    "register_pattern",
    "register_secret",
    "set_prices",
    "time_left",
]
