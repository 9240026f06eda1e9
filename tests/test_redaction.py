"""Redaction: the helpers, the logging filter, and the end-to-end property that no secret put
into a request, a header or an error reaches a log line, an error message or a cache entry."""

from __future__ import annotations

import io
import logging
import string
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmchain import CallError, Chain, LLMRequest, LLMResponse, ProviderError, RateLimited
from llmchain._redact import (
    MASK,
    RedactingFilter,
    mask,
    redact,
    redact_headers,
    redact_value,
    register_pattern,
    register_secret,
    trim,
)
from llmchain.middleware.cache import CacheMiddleware
from llmchain.middleware.log import LogMiddleware, json_formatter
from llmchain.stores.cache_memory import MemoryCacheStore
from llmchain.testing import FakeClock, MockTransport

# -- the helpers (existing behaviour kept) ---------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("key sk-abcdefgh12345678 here", f"key {MASK} here"),
    ("sk-proj-abc_DEF-12345678", MASK),
    ("Authorization: Bearer abc.def-ghi~jkl", f"Authorization: {MASK} {MASK}"),
    ("bearer abcdefgh12", f"bearer {MASK}"),
    ('{"x-api-key": "abcdef123456"}', f'{{"x-api-key": "{MASK}"}}'),
    ("api_key=abcdef123456 next", f"api_key={MASK} next"),
    ("nothing to see, sk-short, bearer abc", "nothing to see, sk-short, bearer abc"),
])
def test_known_key_shapes_are_masked(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_registered_values_and_patterns() -> None:
    register_secret("hunter2-registered")
    register_secret("abc")  # too short to be a secret: ignored
    register_secret(None)
    assert redact("pw hunter2-registered!") == f"pw {MASK}!"
    assert redact("abc") == "abc"
    register_pattern(r"cust-[0-9]{8}")
    assert redact("customer cust-12345678 here") == f"customer {MASK} here"
    with pytest.raises(ValueError, match="invalid redaction pattern"):
        register_pattern("(")
    with pytest.raises(ValueError, match="empty string"):
        register_pattern("x*")


def test_mask_and_trim() -> None:
    assert mask(None) == "<unset>" and mask("") == "<unset>" and mask("sk-123") == MASK
    assert trim("abc", 5) == "abc"
    assert trim("abcdefgh", 3) == "abc… [5 more chars]"


def test_headers_and_nested_values() -> None:
    headers = {"Authorization": "whatever", "X-Api-Key": "k", "x-request-id": "req_1",
               "note": "uses sk-abcdefghijklmnop"}
    assert redact_headers(headers) == {"Authorization": MASK, "X-Api-Key": MASK,
                                       "x-request-id": "req_1", "note": f"uses {MASK}"}
    value = {"api_key": "plain", "nested": [{"token": "t"}, ("Bearer abcdefghijk", 3)], "n": 1,
             "empty_secret": {"password": ""}}
    assert redact_value(value) == {"api_key": MASK, "nested": [{"token": MASK}, (f"Bearer {MASK}", 3)],
                                   "n": 1, "empty_secret": {"password": ""}}


def test_logging_filter_masks_message_args_extras_and_traceback() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("llmchain.tests.filter")
    logger.addHandler(handler)
    try:
        try:
            raise RuntimeError("exploded with sk-abcdefghijklmnop")
        except RuntimeError:
            logger.error("call %s failed", "Bearer abcdefghijkl", exc_info=True,
                         extra={"headers": {"authorization": "Bearer abcdefghijkl"}})
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "abcdefghijk" not in out
    assert "exploded with [REDACTED]" in out and "call Bearer [REDACTED] failed" in out


# -- the property -----------------------------------------------------------------------------------

register_pattern(r"acct_[0-9]{10,}")
BODY = st.text(alphabet=string.ascii_letters + string.digits, min_size=12, max_size=32)
PLACES = ("prompt", "system", "extra", "metadata", "answer", "header", "error", "error_body", "foreign_error")


@st.composite
def planted(draw: st.DrawFn) -> tuple[str, str, str]:
    """(secret, the text carrying it, where it goes). Prefixes keep secrets from matching by chance."""
    kind = draw(st.sampled_from(["sk", "bearer", "x-api-key", "registered", "pattern"]))
    body = draw(BODY)
    if kind == "sk":
        secret = text = "sk-" + body
    elif kind == "bearer":
        secret = "Tk" + body
        text = f"Authorization: Bearer {secret}"
    elif kind == "x-api-key":
        secret = "Xk" + body
        text = f'x-api-key: "{secret}"'
    elif kind == "registered":
        secret = text = "Rg" + body
        register_secret(secret)
    else:
        secret = text = "acct_" + str(draw(st.integers(10**10, 10**14)))
    return secret, f"see {text} ok", draw(st.sampled_from(PLACES))


def _provider(plants: list[tuple[str, str, str]]) -> Any:
    def reply(request: LLMRequest) -> LLMResponse:
        at = {place: text for _, text, place in plants}
        if "error" in at:
            raise RateLimited(f"rejected: {at['error']}", body=at.get("error_body"))
        if "error_body" in at:
            raise ProviderError("HTTP 401", status_code=401, body=f'{{"error": "{at["error_body"]}"}}')
        if "foreign_error" in at:
            raise RuntimeError(f"socket said {at['foreign_error']}")
        answer = at.get("answer", request.messages[-1].content)
        headers = {"authorization": at["header"], "x-note": at["header"]} if "header" in at else {}
        return LLMResponse(text=answer, headers=headers)

    return reply


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(planted(), min_size=1, max_size=4))
def test_no_secret_reaches_a_log_line_an_error_or_a_cache_entry(plants: list[tuple[str, str, str]]) -> None:
    at = {place: text for _, text, place in plants}
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())  # no RedactingFilter: the stage itself must redact
    logger = logging.getLogger("llmchain")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    store = MemoryCacheStore()
    clock = FakeClock()
    chain = Chain(
        [LogMiddleware(LogMiddleware.Options(include_bodies=True, body_max_chars=10_000, handler="none"), clock=clock),
         CacheMiddleware(clock=clock, store=store)],
        MockTransport.scripted(_provider(plants), cycle=True), clock=clock)
    errors: list[str] = []
    try:
        for _ in range(2):  # a miss, then a hit (or a second failure)
            try:
                chain.complete(at.get("prompt", "hello"), system=at.get("system"),
                               extra={"api_key": at.get("extra", "x"), "user": at.get("extra", "u")},
                               metadata={"note": at.get("metadata", "")})
            except CallError as exc:
                errors += [str(exc), exc.explain(), repr(exc)]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    logged = stream.getvalue()
    assert logged.count('"event": "llm.call"') == 2
    stored = [entry.value for entry in store._cache.values()]
    for secret, _, place in plants:
        assert secret not in logged, f"secret from {place} in a log line"
        assert not any(secret in e for e in errors), f"secret from {place} in an error"
        assert not any(secret in v for v in stored), f"secret from {place} in the cache"


def test_the_property_would_see_a_leak() -> None:
    """Guard against a vacuous property: without redaction the planted secret is visible."""
    secret, text, _ = "sk-" + "A" * 20, "see sk-" + "A" * 20 + " ok", "prompt"
    assert secret in text and secret not in redact(text)
    assert sys.modules["llmchain.middleware.log"].redact is redact  # the stage uses this function
