"""The redact stage alone, against a scripted call_next: what goes out, what comes back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from llmchain_redact import RedactMiddleware
from pydantic import BaseModel

from llmchain import Chain, ConfigError, LLMRequest, LLMResponse, Message, ProviderError
from llmchain.testing import FakeClock
from llmchain.testing.scripted import ScriptedNext


def request(*texts: str, role: str = "user") -> LLMRequest:
    return LLMRequest(messages=tuple(Message(role=role, content=t) for t in texts))  # type: ignore[arg-type]


def run(stage: RedactMiddleware, req: LLMRequest, inner: ScriptedNext) -> LLMResponse:
    return asyncio.run(stage.handle(req, inner))


def test_pii_never_reaches_call_next_and_comes_back_in_the_answer(scripted_next: Any) -> None:
    inner = scripted_next(lambda r: f"Done: wrote to {r.messages[-1].content.split()[-1]}")
    got = run(RedactMiddleware(), request("Please write to ann@example.com"), inner)
    assert inner.last_request.messages[-1].content == "Please write to <EMAIL_1>"
    assert got.text == "Done: wrote to ann@example.com"
    assert got.notes["redacted"] == {"EMAIL": 1}


def test_placeholders_are_consistent_across_messages() -> None:
    inner = ScriptedNext("ok")
    req = LLMRequest(
        messages=(
            Message(role="system", content="The customer is bo@x.org, card 4111-1111-1111-1111."),
            Message(role="user", content="Email bo@x.org and al@x.org"),
        )
    )
    run(RedactMiddleware(), req, inner)
    sent = [m.content for m in inner.last_request.messages]
    assert sent == ["The customer is <EMAIL_1>, card <CARD_1>.", "Email <EMAIL_1> and <EMAIL_2>"]


def test_nothing_to_mask_passes_the_same_request_and_response() -> None:
    answer = LLMResponse(text="hi", notes={"x": 1})
    inner = ScriptedNext(answer)
    req = request("nothing personal here, order 4111 1111 1111 1112")
    got = run(RedactMiddleware(), req, inner)
    assert inner.last_request is req
    assert got is answer


def test_restore_off_leaves_placeholders_in_the_answer() -> None:
    stage = RedactMiddleware(RedactMiddleware.Options(restore=False))
    got = run(stage, request("mail ann@example.com"), ScriptedNext("sent to <EMAIL_1>"))
    assert got.text == "sent to <EMAIL_1>"
    assert got.notes["redacted"] == {"EMAIL": 1}


class Contact(BaseModel):
    email: str
    note: str


def test_restores_inside_parsed_values() -> None:
    parsed = {"to": ["<EMAIL_1>", {"cc": "<PHONE_1>"}], "n": 3}
    inner = ScriptedNext(LLMResponse(text="{}", parsed=parsed))
    got = run(RedactMiddleware(), request("ann@example.com, +44 20 7946 0958"), inner)
    assert got.parsed == {"to": ["ann@example.com", {"cc": "+44 20 7946 0958"}], "n": 3}
    assert parsed["to"][0] == "<EMAIL_1>"  # the inner response was not changed in place

    model = Contact(email="<EMAIL_1>", note="none")
    inner = ScriptedNext(LLMResponse(text="{}", parsed=model))
    got = run(RedactMiddleware(), request("ann@example.com"), inner)
    assert got.parsed == Contact(email="ann@example.com", note="none")


def test_only_listed_roles_are_scanned() -> None:
    stage = RedactMiddleware(RedactMiddleware.Options(roles=("user",)))
    inner = ScriptedNext("ok")
    req = LLMRequest(
        messages=(Message(role="system", content="ops@x.io"), Message(role="user", content="me@x.io"))
    )
    run(stage, req, inner)
    assert [m.content for m in inner.last_request.messages] == ["ops@x.io", "<EMAIL_1>"]


def test_custom_pattern_and_template() -> None:
    options = RedactMiddleware.Options(patterns={"TICKET": r"TCK-\d{4}"}, placeholder="[{label}#{n}]")
    stage = RedactMiddleware(options)
    inner = ScriptedNext("closed [TICKET#1]")
    got = run(stage, request("close TCK-1234 for ann@example.com"), inner)
    assert inner.last_request.messages[0].content == "close [TICKET#1] for [EMAIL#1]"
    assert got.text == "closed TCK-1234"


def test_errors_pass_through_unchanged() -> None:
    error = ProviderError("HTTP 400", status_code=400)
    with pytest.raises(ProviderError) as info:
        run(RedactMiddleware(), request("ann@example.com"), ScriptedNext(error))
    assert info.value is error


def test_request_is_never_mutated() -> None:
    req = request("ann@example.com")
    run(RedactMiddleware(), req, ScriptedNext("ok"))
    assert req.messages[0].content == "ann@example.com"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"patterns": {"ticket": "T-1"}}, "UPPER_SNAKE_CASE"),
        ({"patterns": {"EMAIL": "x"}}, "UPPER_SNAKE_CASE"),
        ({"patterns": {"BAD": "("}}, "not a valid regex"),
        ({"patterns": {"EMPTY": "a*"}}, "matches the empty string"),
        ({"placeholder": "<{label}>"}, "must contain"),
        ({"placeholder": "<{label}_{n}_{x}>"}, "not a valid template"),
        ({"mask_names": True}, "unknown option"),
    ],
)
def test_bad_options_are_config_errors_naming_the_problem(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Chain.from_config({"stages": [{"use": "redact", **options}]})


def test_in_a_chain_on_a_fake_clock(chain_factory: Any, fake_clock: FakeClock) -> None:
    chain = chain_factory(["redact"])  # the mock transport echoes what it received
    assert chain.complete("call me on (555) 123-4567").text == "call me on (555) 123-4567"
    assert chain.transport.calls[0].messages[0].content == "call me on <PHONE_1>"
    assert chain.clock is fake_clock
