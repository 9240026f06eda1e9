"""Pure policy objects behind the resilience stages (Tower's Policy split).

Each holds the decision logic of one stage, takes time as an argument and never sleeps, so it
can be property-tested on its own: ``Backoff`` (retry delays), ``RetryBudget`` (retries as a
share of recent calls), ``AdaptiveThrottle`` (the SRE book's client-side throttling of
retries), ``AdmissionLog`` (sliding-window rate limiting), ``BreakerPolicy``
(circuit breaker state machine), and header parsers for Retry-After and rate-limit hints.
"""

from .admission import AdmissionLog, RateLimits, Reservation
from .backoff import Backoff
from .breaker import BreakerConfig, BreakerPolicy, Permit
from .budget import AdaptiveThrottle, RetryBudget, throttle_probability
from .headers import RateLimitHints, parse_duration, parse_retry_after, rate_limit_hints

__all__ = [
    "AdaptiveThrottle",
    "AdmissionLog",
    "Backoff",
    "BreakerConfig",
    "BreakerPolicy",
    "Permit",
    "RateLimitHints",
    "RateLimits",
    "Reservation",
    "RetryBudget",
    "parse_duration",
    "parse_retry_after",
    "rate_limit_hints",
    "throttle_probability",
]
