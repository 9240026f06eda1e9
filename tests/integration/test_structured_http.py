"""Structured output through the real HTTP path: openai transport ⇄ loopback fault server.

The seed's three workshop checks: forced invalid JSON is repaired locally; an answer still
invalid after a re-ask ends in an explainable error; a valid answer passes untouched. Plus:
a 429 during a re-ask is retried by the inner retry stage and never shown to the model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from llmchain import Chain, GaveUp, OutputInvalid
from llmchain.middleware.repair import RepairGaveUp
from llmchain.testing.fault_server import Fault, FaultServer


class Answer(BaseModel):
    answer: int


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer(json_content={"answer": 7}) as running:
        yield running


def chain_for(server: FaultServer, *stages: Any) -> Chain:
    transport = {"use": "openai", "base_url": server.base_url, "api_key_env": "", "model": "gpt-test"}
    return Chain(list(stages) or ["repair", "validate", "parse"], transport, timeout_s=20)


def test_valid_answer_passes_untouched(server: FaultServer) -> None:
    server.set_plan(["ok"])
    with chain_for(server) as chain:
        response = chain.complete("What is the answer?", output_type=Answer)
    assert response.text == '{"answer": 7}'
    assert response.parsed == Answer(answer=7)
    assert "repaired" not in response.notes
    [sent] = server.requests
    # validate attached the JSON Schema, so the transport asked natively; still checked locally
    assert sent.body["response_format"]["json_schema"]["schema"] == Answer.model_json_schema()


def test_forced_invalid_json_is_repaired_locally(server: FaultServer) -> None:
    server.set_plan(["content_not_json"])  # 'Sure! Here is the JSON you asked for: {"answer": 42'
    with chain_for(server) as chain:
        assert chain.complete_json("What is the answer?", schema=Answer) == Answer(answer=42)
    [sent] = server.requests
    assert sent.fault == "content_not_json"  # repaired without asking again


def test_local_repair_response_notes_over_http(server: FaultServer) -> None:
    server.set_plan([Fault(content="```json\n{'answer': 5, // five\n}\n```")])
    with chain_for(server) as chain:
        response = chain.complete("What is the answer?", output_type=Answer)
    assert response.parsed == Answer(answer=5) and response.text == '{"answer": 5}'
    assert response.notes["repaired"] == "local" and server.request_count == 1


def test_invalid_again_after_reask_is_an_explainable_error(server: FaultServer) -> None:
    server.set_plan(["schema_invalid", "schema_invalid"])
    with chain_for(server) as chain, pytest.raises(GaveUp) as info:
        chain.complete_json("What is the answer?", schema=Answer)
    err = info.value
    assert isinstance(err, RepairGaveUp)
    assert [type(e) for e in err.errors] == [OutputInvalid, OutputInvalid]
    assert len(err.attempts) == 2 and err.request_id
    explained = err.explain()
    assert explained.count('answer: \'{"answer": "not a number"}\'') == 2
    assert explained.count("invalid: answer: Input should be a valid integer") == 2
    _, second = server.requests
    assert [m["role"] for m in second.body["messages"]] == ["user", "assistant", "user"]
    assert second.body["messages"][1]["content"] == '{"answer": "not a number"}'
    assert "answer: Input should be a valid integer" in second.body["messages"][2]["content"]


def test_a_429_during_a_reask_is_retried_inside_and_never_fed_back(server: FaultServer) -> None:
    server.set_plan(["schema_invalid", "429:0", "ok"])
    retry = {"use": "retry", "base_s": 0, "max_attempts": 3}
    with chain_for(server, "repair", "validate", "parse", retry) as chain:
        response = chain.complete("What is the answer?", output_type=Answer)
    assert response.parsed == Answer(answer=7)
    assert response.notes["repaired"] == "reask" and response.notes["reasks"] == 1
    assert [r.fault for r in server.requests] == ["schema_invalid", "429", "ok"]
    for sent in server.requests:
        text = json.dumps(sent.body["messages"])
        assert "429" not in text and "rate" not in text.lower()
