"""Status → typed error, and the header formats providers use for retry and rate limits."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from email.utils import format_datetime

import pytest

from llmchain import ProviderError, RateLimited
from llmchain.transports._http_errors import error_from_event, error_from_status, malformed

NOW = 1_700_000_000.0
OPENAI_401 = {"error": {"message": "Incorrect API key provided: sk-abc***xyz. You can find your API key at "
                                   "https://platform.openai.com/account/api-keys.",
                        "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}
OPENAI_429 = {"error": {"message": "Rate limit reached for gpt-4o-mini in organization org-x on requests per "
                                   "min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s.",
                        "type": "requests", "param": None, "code": "rate_limit_exceeded"}}
ANTHROPIC_404 = {"type": "error", "error": {"type": "not_found_error",
                                            "message": "model: claude-nope"}}
ANTHROPIC_529 = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def status_error(status: int, body: object = None, **headers: str) -> ProviderError:
    raw = json.dumps(body).encode() if not isinstance(body, (bytes, type(None))) else body or b""
    return error_from_status(status, raw, {k.replace("_", "-"): v for k, v in headers.items()},
                             where="openai:m", key_env="OPENAI_API_KEY", base_url="http://x/v1",
                             model="m", now_wall=NOW)


@pytest.mark.parametrize(("status", "retryable"), [
    (400, False), (401, False), (403, False), (404, False), (413, False), (422, False),
    (408, True), (409, True), (429, True), (500, True), (502, True), (503, True), (504, True), (529, True),
])
def test_retryable_by_status(status: int, retryable: bool) -> None:
    err = status_error(status, {"error": {"message": "m"}})
    assert err.retryable is retryable
    assert err.status_code == status
    assert isinstance(err, RateLimited) is (status == 429)


def test_provider_message_type_and_hint() -> None:
    err = status_error(401, OPENAI_401)
    assert "Incorrect API key provided" in err.message
    assert "(invalid_request_error)" in err.message
    assert err.hint is not None and "OPENAI_API_KEY" in err.hint
    assert "sk-abc***xyz" in (err.body or "")
    assert "check base_url" in (status_error(404, ANTHROPIC_404).hint or "")
    err = status_error(529, ANTHROPIC_529)
    assert "Overloaded" in err.message and "overloaded_error" in err.message


def test_rate_limited_carries_retry_after_and_limits() -> None:
    err = status_error(429, OPENAI_429, retry_after="20", x_ratelimit_limit_requests="3",
                       x_ratelimit_remaining_requests="0", x_ratelimit_reset_requests="19.5s")
    assert isinstance(err, RateLimited)
    assert err.retry_after == 20.0
    assert err.rate_limit is not None
    assert (err.rate_limit.limit_requests, err.rate_limit.remaining_requests) == (3, 0)
    assert err.rate_limit.reset_requests_s == 19.5
    assert err.headers["x-ratelimit-reset-requests"] == "19.5s"


def test_x_should_retry_overrides_the_status() -> None:
    assert status_error(503, {}, x_should_retry="false").retryable is False
    assert status_error(400, {}, x_should_retry="true").retryable is True


def test_a_body_that_is_not_json_becomes_an_excerpt() -> None:
    html = b"<html><body>" + b"x" * 5000 + b"</body></html>"
    err = status_error(502, html)
    assert err.message.startswith("openai:m: HTTP 502 Bad Gateway: <html><body>xxx")
    assert err.body is not None and len(err.body) < 600 and "more chars" in err.body
    assert status_error(500, b"").message == "openai:m: HTTP 500 Internal Server Error: (empty body)"


def test_retry_after_forms() -> None:
    date = format_datetime(datetime.fromtimestamp(NOW + 30, timezone.utc), usegmt=True)
    assert status_error(503, {}, retry_after="7").retry_after == 7.0
    assert status_error(503, {}, retry_after=date).retry_after == pytest.approx(30.0)
    assert status_error(503, {}, retry_after="Wed, 21 Oct 2015 07:28:00 GMT").retry_after == 0.0
    assert status_error(429, {}, retry_after="2", retry_after_ms="1500").retry_after == 1.5
    assert status_error(503, {}, retry_after="later").retry_after is None
    assert status_error(503, {}).retry_after is None


def test_anthropic_rate_limit_headers_on_errors() -> None:
    reset = datetime.fromtimestamp(NOW + 12, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    err = status_error(429, ANTHROPIC_529, anthropic_ratelimit_requests_limit="50",
                       anthropic_ratelimit_requests_remaining="0",
                       anthropic_ratelimit_requests_reset=reset)
    assert err.rate_limit is not None
    assert (err.rate_limit.limit_requests, err.rate_limit.remaining_requests) == (50, 0)
    assert err.rate_limit.reset_requests_s == pytest.approx(12.0)
    assert status_error(500, {}).rate_limit is None


@pytest.mark.parametrize(("kind", "status", "retryable", "cls"), [
    ("overloaded_error", 529, True, ProviderError), ("api_error", 500, True, ProviderError),
    ("rate_limit_error", 429, True, RateLimited), ("invalid_request_error", 400, False, ProviderError),
    ("something_new", 500, True, ProviderError),
])
def test_error_events(kind: str, status: int, retryable: bool, cls: type[ProviderError]) -> None:
    data = {"type": "error", "error": {"type": kind, "message": "boom"}}
    err = error_from_event(data, json.dumps(data), where="anthropic:m")
    assert type(err) is cls
    assert (err.status_code, err.retryable) == (status, retryable)
    assert "boom" in err.message


def test_malformed_keeps_an_excerpt_and_is_not_retryable() -> None:
    err = malformed("openai:m", 200, b"", "the body is not JSON")
    assert (err.retryable, err.status_code, err.body) == (False, 200, "<empty body>")
