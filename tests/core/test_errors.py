"""The error tree and .explain()."""

from __future__ import annotations

from pathlib import Path

import llmchain
from llmchain import (
    Attempt,
    CallError,
    GaveUp,
    LLMChainError,
    OutputInvalid,
    ParseError,
    ProviderError,
    RateLimited,
    TimeoutExceeded,
)
from llmchain._wrap import wrap_foreign


def test_tree_shape_matches_the_docs() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "errors.md").read_text(encoding="utf-8")
    for name in (
        "TransportError",
        "TimeoutExceeded",
        "ProviderError",
        "RateLimited",
        "CircuitOpen",
        "OutputError",
        "ParseError",
        "OutputInvalid",
        "GaveUp",
        "ConfigError",
        "PluginError",
    ):
        cls = getattr(llmchain, name)
        assert issubclass(cls, LLMChainError)
        assert name in doc
    assert issubclass(llmchain.TimeoutExceeded, llmchain.TransportError)
    assert issubclass(llmchain.RateLimited, llmchain.ProviderError)
    assert issubclass(llmchain.ParseError, llmchain.OutputError)


def test_retryable_by_status() -> None:
    assert ProviderError("x", status_code=503).retryable
    assert ProviderError("x", status_code=429).retryable
    assert ProviderError("x", status_code=408).retryable
    assert not ProviderError("x", status_code=400).retryable
    assert not ProviderError("x", status_code=401).retryable
    assert RateLimited("x").retryable
    assert TimeoutExceeded("x", phase="attempt").retryable
    assert not TimeoutExceeded("x", phase="deadline").retryable
    assert not ParseError("x").retryable


def test_explain_reads_like_an_incident_report() -> None:
    attempts = [
        Attempt(
            number=1,
            started_at=0,
            duration_s=0.25,
            outcome="error",
            status_code=503,
            error_type="ProviderError",
            error="HTTP 503",
        ),
        Attempt(
            number=2,
            started_at=1,
            duration_s=0.5,
            outcome="error",
            status_code=429,
            error_type="RateLimited",
            error="HTTP 429",
            retry_after_s=20,
        ),
    ]
    cause = RateLimited("HTTP 429", retry_after=20)
    error = GaveUp(
        "retry budget exhausted after 2 attempts",
        errors=[ProviderError("HTTP 503", status_code=503), cause],
        request_id="abc",
        attempts=attempts,
        hint="the provider is overloaded; try later",
        request_summary="model=gpt, 1 message(s), 5 chars",
    )
    text = error.explain()
    lines = text.splitlines()
    assert lines[0] == "GaveUp: retry budget exhausted after 2 attempts"
    assert "request id: abc" in text
    assert "sent: model=gpt" in text
    assert "#1 · error · 250 ms · HTTP 503" in text
    assert "#2 · error · 500 ms · HTTP 429 · RateLimited: HTTP 429 · retry-after 20s" in text
    assert "try 2: RateLimited: HTTP 429" in text
    assert lines[-1] == "  hint: the provider is overloaded; try later"


def test_secrets_never_reach_error_messages() -> None:
    error = ProviderError(
        "auth failed for sk-abcdefghijklmnop1234",
        status_code=401,
        body='{"error": "Incorrect API key provided: sk-abcdefghijklmnop1234"}',
    )
    text = error.explain()
    assert "abcdefghijklmnop" not in text
    assert "[REDACTED]" in text


def test_output_invalid_lists_field_errors() -> None:
    error = OutputInvalid("does not match", errors=["age: field required"], raw_text='{"name": 1}')
    assert "invalid: age: field required" in error.explain()
    assert "answer: '{\"name\": 1}'" in error.explain()


def test_wrap_foreign_maps_families() -> None:
    assert isinstance(wrap_foreign(TimeoutError()), TimeoutExceeded)
    assert type(wrap_foreign(ConnectionResetError("x"))).__name__ == "TransportError"
    assert isinstance(wrap_foreign(KeyError("choices")), ProviderError)
    assert not wrap_foreign(KeyError("choices")).retryable
    assert type(wrap_foreign(RuntimeError("?"))) is CallError
