"""Retry-After and rate-limit header parsing (OpenAI and Anthropic formats)."""

from __future__ import annotations

import email.utils

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmchain.policies import parse_duration, parse_retry_after, rate_limit_hints

WALL = 1_700_000_000.0


@pytest.mark.parametrize(("text", "seconds"), [
    ("6m0s", 360.0), ("1s", 1.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("0.5s", 0.5),
    ("17", 17.0), ("2.25", 2.25),
])
def test_go_durations_and_numbers(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["6 minutes", "", "-3", "s", "1x", "nan", "inf"])
def test_junk_durations_are_ignored(text: str) -> None:
    assert parse_duration(text, WALL) is None


@given(st.integers(0, 5), st.integers(0, 59), st.integers(0, 59), st.integers(0, 999))
def test_go_duration_round_trip(h: int, m: int, s: int, ms: int) -> None:
    text = (f"{h}h" if h else "") + (f"{m}m" if m or h else "") + f"{s}.{ms:03d}s"
    assert parse_duration(text) == pytest.approx(h * 3600 + m * 60 + s + ms / 1000)


def test_instants_need_the_wall_clock() -> None:
    assert parse_duration("2023-11-14T22:13:30Z", WALL) == pytest.approx(10.0)
    assert parse_duration("2023-11-14T22:13:30Z") is None
    assert parse_duration("2000-01-01T00:00:00Z", WALL) == 0.0  # in the past: no wait


def test_retry_after_ms_wins_over_retry_after() -> None:
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}, WALL) == 0.25
    assert parse_retry_after({"retry-after": "9"}, WALL) == 9.0
    assert parse_retry_after({"retry-after-ms": "junk", "retry-after": "1.5"}, WALL) == 1.5
    assert parse_retry_after({}, WALL) is None
    assert parse_retry_after({"retry-after": "soon"}, WALL) is None


def test_retry_after_http_date() -> None:
    date = email.utils.formatdate(WALL + 30, usegmt=True)
    assert parse_retry_after({"retry-after": date}, WALL) == pytest.approx(30.0)


def test_openai_hints() -> None:
    hints = rate_limit_hints({
        "x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "120ms", "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-tokens": "29000", "x-ratelimit-reset-tokens": "2s",
    }, WALL)
    assert (hints.limit_requests, hints.remaining_requests, hints.reset_requests_s) == (500, 0, 0.12)
    assert (hints.limit_tokens, hints.remaining_tokens, hints.reset_tokens_s) == (30000, 29000, 2.0)


def test_anthropic_hints() -> None:
    hints = rate_limit_hints({
        "anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "3",
        "anthropic-ratelimit-requests-reset": "2023-11-14T22:13:25Z",
    }, WALL)
    assert (hints.limit_requests, hints.remaining_requests) == (50, 3)
    assert hints.reset_requests_s == pytest.approx(5.0)
    assert hints.remaining_tokens is None


def test_no_hints() -> None:
    assert not rate_limit_hints({"content-type": "application/json"}, WALL)
