"""The log stage: the summary line's schema, debug lines per event, bodies, cost, levels."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from llmchain import Chain, LLMRequest, LLMResponse, Next, RateLimited, Usage, emit
from llmchain._events import current_call
from llmchain._prices import PRICES, PriceTable
from llmchain.middleware.cache import CacheMiddleware
from llmchain.middleware.log import LogMiddleware, json_formatter, setup_json_logging
from llmchain.testing import FakeClock, MockReply, MockTransport

LOGGER = "llmchain.tests.log"

#: The summary line: field → allowed JSON types (None: null allowed).
SUMMARY_SCHEMA: dict[str, tuple[type | None, ...]] = {
    "time": (str,), "level": (str,), "logger": (str,), "message": (str,), "event": (str,),
    "request_id": (str,), "model": (str, None), "transport": (str, None), "outcome": (str,),
    "error_type": (str, None), "error": (str, None), "status_code": (int, None),
    "latency_ms": (float, int), "attempts": (int,), "cache": (str, None),
    "cache_age_s": (float, int, None), "tokens_in": (int, None), "tokens_out": (int, None),
    "cost_usd": (float, int, None), "finish_reason": (str, None),
}
OPTIONAL = {"retryable": (bool,), "retry_after_s": (float, int), "cause": (str,), "coalesced_with": (str,), "notes": (dict,), "prompt": (str,), "answer": (str,)}


class Capture:
    def __init__(self) -> None:
        self.stream = io.StringIO()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]

    def summaries(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line["event"] == "llm.call"]


@pytest.fixture
def capture() -> Iterator[Capture]:
    cap = Capture()
    handler = logging.StreamHandler(cap.stream)
    handler.setFormatter(json_formatter())
    logger = logging.getLogger(LOGGER)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield cap
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)


def log_stage(**options: Any) -> LogMiddleware:
    return LogMiddleware(LogMiddleware.Options(logger=LOGGER, handler="none", **options))


def check_schema(line: dict[str, Any]) -> None:
    for field, types in SUMMARY_SCHEMA.items():
        assert field in line, f"summary line lacks {field}"
        value = line[field]
        assert (value is None and None in types) or isinstance(value, tuple(t for t in types if t)), (field, value)
    extra = set(line) - set(SUMMARY_SCHEMA)
    assert extra <= set(OPTIONAL), f"unexpected fields {extra}"
    for field in extra:
        assert isinstance(line[field], OPTIONAL[field])


def test_one_summary_line_per_call_with_the_documented_schema(capture: Capture) -> None:
    transport = MockTransport.scripted(MockReply(text="hi", input_tokens=1000, output_tokens=500),
                                       model="gpt-4o-mini")
    with Chain([log_stage(), CacheMiddleware()], transport) as chain:
        first = chain.complete("q")
        second = chain.complete("q")
    lines = capture.summaries()
    assert len(lines) == 2
    for line in lines:
        check_schema(line)
    ok, hit = lines
    assert ok["request_id"] == first.request_id and hit["request_id"] == second.request_id
    assert (ok["level"], ok["outcome"], ok["model"], ok["transport"]) == ("INFO", "ok", "gpt-4o-mini", "mock:gpt-4o-mini")
    assert (ok["attempts"], ok["cache"], ok["tokens_in"], ok["tokens_out"]) == (1, "miss", 1000, 500)
    assert ok["cost_usd"] == pytest.approx((1000 * 0.15 + 500 * 0.60) / 1e6)
    assert first.usage.cost_usd == pytest.approx(ok["cost_usd"])
    assert (hit["cache"], hit["attempts"], hit["cost_usd"]) == ("hit", 0, 0.0)
    assert second.usage.cost_usd == 0.0 and "prompt" not in ok and "answer" not in ok


def test_a_failure_is_one_warning_line_with_error_details(capture: Capture) -> None:
    transport = MockTransport.scripted(RateLimited("429 for Bearer abcdefghijklmnop", retry_after=2.0))
    with Chain([log_stage()], transport) as chain, pytest.raises(RateLimited):
        chain.complete("q")
    (line,) = capture.summaries()
    check_schema(line)
    assert (line["level"], line["outcome"], line["error_type"], line["status_code"]) == (
        "WARNING", "error", "RateLimited", 429)
    assert line["retryable"] is True and line["attempts"] == 1 and line["transport"] == "mock:mock-1"
    assert "abcdefghijklmnop" not in line["error"] and "[REDACTED]" in line["error"]


class RetryOnce:
    """A stand-in for retry/rate-limit/repair stages: emits their events around two attempts."""

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        emit("rate_limit_wait", "rate_limit", wait_s=0.5)
        try:
            return await call_next(request)
        except RateLimited:
            emit("retry_scheduled", "retry", attempt=2, delay_s=1.0, error_type="RateLimited")
            response = await call_next(request)
            emit("repair", "repair", reason="invalid JSON", name="clash")
            return response


def test_debug_lines_for_each_attempt_retry_wait_and_repair(capture: Capture) -> None:
    transport = MockTransport.scripted(RateLimited("slow down"), "ok")
    with Chain([log_stage(), RetryOnce()], transport) as chain:
        chain.complete("q")
    events = [line["event"] for line in capture.lines()]
    assert events == ["llm.rate_limit_wait", "llm.attempt_start", "llm.attempt_end", "llm.retry_scheduled",
                      "llm.attempt_start", "llm.attempt_end", "llm.repair", "llm.call"]
    lines = capture.lines()
    assert all(line["level"] == "DEBUG" for line in lines[:-1])
    assert {line["request_id"] for line in lines} == {lines[-1]["request_id"]}
    assert lines[2]["outcome"] == "error" and lines[2]["status_code"] == 429
    assert lines[3]["delay_s"] == 1.0 and lines[6]["data_name"] == "clash"  # no clash with LogRecord.name
    assert capture.summaries()[0]["attempts"] == 2


def test_bodies_only_when_enabled_trimmed_and_redacted(capture: Capture) -> None:
    long_prompt = "tell me about sk-abcdefghijklmnopqrstu " + "x" * 300
    with Chain([log_stage(include_bodies=True, body_max_chars=60)], MockTransport.scripted("an answer")) as chain:
        chain.complete(long_prompt, system="be brief")
    (line,) = capture.summaries()
    check_schema(line)
    assert line["prompt"].startswith("system: be brief\nuser: tell me about [REDACTED]")
    assert line["prompt"].endswith("more chars]") and len(line["prompt"]) < 100
    assert line["answer"] == "an answer"


class ObserverSpy:
    """Records how many observers the call's trace has while it runs inside the log stage."""

    def __init__(self) -> None:
        self.counts: list[int] = []

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        trace = current_call.get()
        self.counts.append(len(trace.observers) if trace is not None else -1)
        return await call_next(request)


def test_nothing_is_formatted_or_observed_when_the_level_drops_it(capture: Capture) -> None:
    from llmchain.plugins import get_registry

    base = len(get_registry().observers)  # observers installed plugins register (e.g. otel)
    logging.getLogger(LOGGER).setLevel(logging.ERROR)
    spy = ObserverSpy()
    chain = Chain([log_stage(), spy], MockTransport.scripted(MockReply(text="a", input_tokens=10**6), model="gpt-4o"))
    response = chain.complete("q")
    assert capture.stream.getvalue() == "" and spy.counts == [base]
    assert response.usage.cost_usd == pytest.approx(2.50 + 10.0 * response.usage.output_tokens / 1e6)
    logging.getLogger(LOGGER).setLevel(logging.INFO)  # summary yes, debug observer no
    chain.complete("q")
    assert spy.counts == [base, base] and len(capture.summaries()) == 1
    logging.getLogger(LOGGER).setLevel(logging.DEBUG)
    chain.complete("q")
    assert spy.counts == [base, base, base + 1]


def test_the_observer_is_removed_after_the_call_even_on_failure(capture: Capture) -> None:
    from llmchain._events import CallTrace

    trace = CallTrace("r", (), lambda: 0.0)
    token = current_call.set(trace)

    async def fail(_: LLMRequest) -> LLMResponse:
        assert len(trace.observers) == 1
        raise RateLimited("no")

    try:
        with pytest.raises(RateLimited):
            asyncio.run(log_stage().handle(LLMRequest(messages=()), fail))
    finally:
        current_call.reset(token)
    assert trace.observers == ()


def test_a_cancelled_call_is_logged_as_cancelled(capture: Capture) -> None:
    async def main() -> None:
        inside = asyncio.Event()

        async def hang(_: LLMRequest) -> LLMResponse:
            inside.set()
            await asyncio.sleep(3600)
            raise AssertionError

        task = asyncio.create_task(log_stage().handle(LLMRequest(messages=()), hang))
        await inside.wait()  # the call is in flight
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    (line,) = capture.summaries()
    assert (line["outcome"], line["error_type"], line["error"]) == ("cancelled", "CancelledError", None)


def test_price_table_matches_dated_and_prefixed_names_and_takes_overrides() -> None:
    table = PriceTable({"my-local-model": (0.0, 1.0), "gpt-4o": (1.0, 1.0)})
    assert table.price("gpt-4o-mini-2024-07-18") == PRICES["gpt-4o-mini"]
    assert table.price("openai/gpt-4o-2024-08-06") == (1.0, 1.0)
    assert table.price("claude-3-5-sonnet-20241022") == PRICES["claude-3-5-sonnet"]
    assert table.price("unknown-model") is None and table.price(None) is None
    assert table.cost("my-local-model", 10**6, 2 * 10**6) == 2.0
    assert table.cost("mystery", 1, 1) is None


def test_stage_prices_option_and_provider_cost_win() -> None:
    stage = log_stage(prices={"mock-1": (1.0, 2.0)})
    fresh = stage._with_cost(LLMResponse(text="", model="mock-1", usage=Usage(input_tokens=10**6, output_tokens=10**6)))
    assert fresh.usage.cost_usd == 3.0
    given = LLMResponse(text="", model="mock-1", usage=Usage(input_tokens=1, cost_usd=0.5))
    assert stage._with_cost(given) is given


def test_user_registered_patterns_and_env_secrets_are_masked(capture: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_TEST_TOKEN", "tok-env-value-123456")
    stage = log_stage(include_bodies=True, redact_patterns=[r"acct_[0-9]{6}"], redact_env=["MY_TEST_TOKEN"])
    with Chain([stage], MockTransport.scripted("ok acct_123456")) as chain:
        chain.complete("use tok-env-value-123456")
    (line,) = capture.summaries()
    assert line["prompt"] == "user: use [REDACTED]" and line["answer"] == "ok [REDACTED]"


def test_setup_json_logging_writes_redacted_json(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    handler = setup_json_logging("INFO", stream=stream, logger_name="llmchain.tests.setup")
    try:
        logging.getLogger("llmchain.tests.setup").info("key %s", "sk-abcdefghijklmnop", extra={"auth": "Bearer abcdefghijk"})
    finally:
        logging.getLogger("llmchain.tests.setup").removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert line["message"] == "key [REDACTED]" and line["auth"] == "Bearer [REDACTED]"
    assert line["level"] == "INFO" and line["logger"] == "llmchain.tests.setup"


def test_auto_handler_only_when_logging_is_unconfigured(monkeypatch: pytest.MonkeyPatch) -> None:
    name = "llmchain.tests.auto"
    logger = logging.getLogger(name)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    try:
        LogMiddleware(LogMiddleware.Options(logger=name))
        LogMiddleware(LogMiddleware.Options(logger=name))  # never a second handler
        assert [getattr(h, "llmchain_json", False) for h in logger.handlers] == [True]
        assert logger.level == logging.INFO
    finally:
        logger.handlers.clear()
        logger.setLevel(logging.NOTSET)
    monkeypatch.setattr(root, "handlers", [logging.NullHandler()])
    LogMiddleware(LogMiddleware.Options(logger=name))
    assert logger.handlers == []


def test_registered_through_plugins_and_buildable_from_config() -> None:
    chain = Chain.from_config({"stages": [{"use": "log", "include_bodies": True, "handler": "none"},
                                          {"use": "cache"}]})
    assert [type(s).__name__ for _, s in chain.stages] == ["LogMiddleware", "CacheMiddleware"]


def test_fake_clock_latency(capture: Capture) -> None:
    clock = FakeClock()
    transport = MockTransport.scripted(MockReply(text="slow", delay_s=2.5), clock=clock)
    with Chain([LogMiddleware(LogMiddleware.Options(logger=LOGGER, handler="none"), clock=clock)],
               transport, clock=clock) as chain:
        chain.complete("q")
    assert capture.summaries()[0]["latency_ms"] == 2500.0


def test_through_the_json_handler_the_marker_stays_internal() -> None:
    stream = io.StringIO()
    name = "llmchain.tests.handler"
    handler = setup_json_logging("INFO", stream=stream, logger_name=name)
    try:
        stage = LogMiddleware(LogMiddleware.Options(logger=name, handler="none", include_bodies=True))
        with Chain([stage], MockTransport.scripted("fine")) as chain:
            chain.complete("key sk-abcdefghijklmnopq")
    finally:
        logging.getLogger(name).removeHandler(handler)
        logging.getLogger(name).setLevel(logging.NOTSET)
    (line,) = [json.loads(x) for x in stream.getvalue().splitlines()]
    check_schema(line)
    assert line["prompt"] == "user: key [REDACTED]"


def test_without_include_bodies_no_prompt_or_answer_text_reaches_any_record(capture: Capture) -> None:
    from llmchain import GaveUp, OutputError
    from llmchain.middleware.parse import ParseMiddleware
    from llmchain.middleware.repair import RepairMiddleware
    prompt = "PROMPTMARKER what is the answer"
    broken = '{"answer": "ANSWERMARKER", '  # locally repairable
    hopeless = "ANSWERMARKER2 no json at all here"
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    stages = [log_stage(), RepairMiddleware(), ParseMiddleware()]
    with Chain(stages, MockTransport.scripted(broken)) as chain:  # local repair
        assert chain.complete_json(prompt, schema=schema) == {"answer": "ANSWERMARKER"}
    with Chain(stages, MockTransport.scripted(hopeless, '{"answer": "ANSWERMARKER3"}')) as chain:
        chain.complete_json(prompt, schema=schema)  # a re-ask
    with Chain(stages, MockTransport.scripted(hopeless, cycle=True)) as chain, \
            pytest.raises((GaveUp, OutputError)):
        chain.complete_json(prompt, schema=schema)  # the ladder gives up
    with Chain([log_stage(), ParseMiddleware()], MockTransport.scripted(hopeless)) as chain, \
            pytest.raises(OutputError):
        chain.complete_json(prompt, schema=schema)  # a parse error quotes the answer
    text = capture.stream.getvalue()
    assert "the answer was rejected" in text
    assert capture.summaries() and "llm.repair" in text  # every kind of line was written...
    for marker in ("PROMPTMARKER", "ANSWERMARKER"):
        assert marker not in text  # ...with no body in any of them
