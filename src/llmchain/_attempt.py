"""What one try at the transport reports: how it went (``Attempt``) and, read from the
response's headers, the provider's rate limits (``RateLimitHints``).

A leaf of the core: the errors (``_exceptions``) and the models (``_models``) both carry these
records, so they sit below both and import nothing of llmchain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Outcome = Literal["ok", "error", "timeout", "cancelled"]


class Attempt(BaseModel):
    """One call to the transport: what happened, when, and for how long."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    number: int = Field(ge=1)
    started_at: float = Field(description="Wall-clock start, seconds since the epoch.")
    duration_s: float = Field(ge=0)
    outcome: Outcome
    status_code: int | None = None
    error_type: str | None = None
    error: str | None = Field(None, description="Redacted, trimmed error message.")
    retry_after_s: float | None = None
    served_by: str | None = Field(None, description="Transport/model that was asked.")


@dataclass(frozen=True, slots=True)
class RateLimitHints:
    """What the provider reported about its limits in one response (None: not reported).

    Parsed from the headers by ``llmchain.policies.rate_limit_hints``; carried by
    ``ProviderError.rate_limit`` and learned from by the rate_limit stage.
    """

    limit_requests: int | None = None
    limit_tokens: int | None = None
    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    reset_requests_s: float | None = None
    reset_tokens_s: float | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (
            self.limit_requests, self.limit_tokens, self.remaining_requests,
            self.remaining_tokens, self.reset_requests_s, self.reset_tokens_s))
