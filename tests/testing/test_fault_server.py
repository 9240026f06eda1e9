"""The fault server as an HTTP server: routes, both wire formats, faults on the wire, limits,
records, lifecycle and the ``serve-mock`` command."""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx
import jsonschema
import pytest

from llmchain.cli._serve import build_server, register
from llmchain.testing.fault_server import Fault, FaultServer

pytest_plugins = ["llmchain.testing.fixtures"]

CHAT = {"model": "gpt-test", "messages": [{"role": "system", "content": "be brief"},
                                          {"role": "user", "content": "hello there"}]}
MESSAGES = {"model": "claude-test", "max_tokens": 50, "system": "be brief",
            "messages": [{"role": "user", "content": "hello there"}]}
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                                           "tags": {"type": "array", "items": {"type": "string"}}},
          "required": ["name", "age"]}


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as c:
        yield c


def test_openai_answer_echoes_and_counts_tokens(fault_server: FaultServer, client: httpx.Client) -> None:
    r = client.post(f"{fault_server.base_url}/chat/completions", json=CHAT)
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "gpt-test"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hello there", "refusal": None}
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    assert r.headers["x-request-id"].startswith("req_")


def test_anthropic_answer(fault_server: FaultServer, client: httpx.Client) -> None:
    r = client.post(f"{fault_server.anthropic_base_url}/v1/messages", json=MESSAGES)
    body = r.json()
    assert body["type"] == "message"
    assert body["content"] == [{"type": "text", "text": "hello there"}]
    assert body["stop_reason"] == "end_turn"
    assert body["usage"]["input_tokens"] >= 1
    assert r.headers["request-id"].startswith("req_")


def test_structured_answers_satisfy_the_schema(fault_server: FaultServer, client: httpx.Client) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}
    r = client.post(f"{fault_server.base_url}/chat/completions", json={**CHAT, "response_format": fmt})
    jsonschema.validate(json.loads(r.json()["choices"][0]["message"]["content"]), SCHEMA)
    tools = [{"name": "respond", "input_schema": SCHEMA}]
    r = client.post(f"{fault_server.anthropic_base_url}/v1/messages",
                    json={**MESSAGES, "tools": tools, "tool_choice": {"type": "tool", "name": "respond"}})
    block = r.json()["content"][0]
    assert block["type"] == "tool_use"
    assert block["name"] == "respond"
    jsonschema.validate(block["input"], SCHEMA)


def test_schema_invalid_and_not_json_content(fault_server: FaultServer, client: httpx.Client) -> None:
    fault_server.set_plan(["schema_invalid", "content_not_json"])
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}
    url = f"{fault_server.base_url}/chat/completions"
    bad = json.loads(client.post(url, json={**CHAT, "response_format": fmt}).json()["choices"][0]["message"]["content"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMA)
    text = client.post(url, json={**CHAT, "response_format": fmt}).json()["choices"][0]["message"]["content"]
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def _events(raw: str) -> list[tuple[str | None, str]]:
    out = []
    for block in raw.strip().split("\n\n"):
        event = data = None
        for line in block.split("\n"):
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        out.append((event, data or ""))
    return out


def test_openai_stream_events(fault_server: FaultServer, client: httpx.Client) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "a longer answer, streamed in pieces"}]}
    r = client.post(f"{fault_server.base_url}/chat/completions", json=body)
    assert r.headers["content-type"] == "text/event-stream"
    events = _events(r.text)
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(d) for _, d in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "a longer answer, streamed in pieces"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] >= 1
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_anthropic_stream_events_and_error_event(fault_server: FaultServer, client: httpx.Client) -> None:
    url = f"{fault_server.anthropic_base_url}/v1/messages"
    names = [e for e, _ in _events(client.post(url, json={**MESSAGES, "stream": True}).text)]
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta",
                     "content_block_stop", "message_delta", "message_stop"]
    fault_server.set_plan([Fault("stream_error", after_events=2)])
    events = _events(client.post(url, json={**MESSAGES, "stream": True}).text)
    assert [e for e, _ in events] == ["message_start", "content_block_start", "error"]
    assert json.loads(events[-1][1])["error"]["type"] == "overloaded_error"


def test_error_statuses_carry_provider_bodies_and_headers(fault_server: FaultServer, client: httpx.Client) -> None:
    fault_server.set_plan(["429:3", "529", Fault("status", status=503, headers={"x-should-retry": "false"})])
    r = client.post(f"{fault_server.base_url}/chat/completions", json=CHAT)
    assert r.status_code == 429
    assert r.headers["retry-after"] == "3"
    assert r.headers["x-ratelimit-remaining-requests"] == "0"
    assert r.json()["error"]["code"] == "rate_limit_exceeded"
    r = client.post(f"{fault_server.anthropic_base_url}/v1/messages", json=MESSAGES)
    assert r.status_code == 529
    assert r.json() == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    r = client.post(f"{fault_server.base_url}/chat/completions", json=CHAT)
    assert (r.status_code, r.headers["x-should-retry"]) == (503, "false")


def test_not_json_and_bad_shape(fault_server: FaultServer, client: httpx.Client) -> None:
    fault_server.set_plan(["not_json", "bad_shape"])
    r = client.post(f"{fault_server.base_url}/chat/completions", json=CHAT)
    assert r.headers["content-type"] == "text/html"
    with pytest.raises(json.JSONDecodeError):
        r.json()
    assert "choices" not in client.post(f"{fault_server.base_url}/chat/completions", json=CHAT).json()


def _raw_request(port: int, body: dict[str, object], path: str = "/v1/chat/completions") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    payload = json.dumps(body).encode()
    sock.sendall(f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {len(payload)}\r\n\r\n".encode() + payload)
    return sock


def _read_to_end(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def test_a_plan_scoped_to_request_ids_leaves_other_requests_alone(fault_server: FaultServer,
                                                                  client: httpx.Client) -> None:
    fault_server.set_plan(["503", "ok"], for_requests=["mine"])
    url = f"{fault_server.base_url}/chat/completions"
    late = client.post(url, json=CHAT, headers={"idempotency-key": "an-earlier-call"})
    assert late.status_code == 200  # a stray answered plainly, the 503 still waiting for "mine"
    assert client.post(url, json=CHAT).status_code == 200  # no id at all: a stray too
    assert [client.post(url, json=CHAT, headers={"idempotency-key": "mine"}).status_code
            for _ in range(2)] == [503, 200]
    assert fault_server.plan_requests == 2 and fault_server.request_count == 4
    fault_server.set_plan("503")  # unscoped again: every request takes the plan
    assert client.post(url, json=CHAT).status_code == 503 and fault_server.plan_requests == 1


def test_reset_sends_a_tcp_rst(fault_server: FaultServer) -> None:
    fault_server.set_plan(["reset"])
    sock = _raw_request(fault_server.port, CHAT)
    with pytest.raises(ConnectionResetError):
        _read_to_end(sock)
    sock.close()


def test_hangs_before_and_after_headers(fault_server: FaultServer) -> None:
    fault_server.set_plan([Fault("hang_before_headers", hang_s=5), Fault("hang_after_headers", hang_s=5)])
    sock = _raw_request(fault_server.port, CHAT)
    sock.settimeout(0.2)
    with pytest.raises(socket.timeout):
        sock.recv(1024)
    sock.close()
    sock = _raw_request(fault_server.port, CHAT)
    sock.settimeout(0.5)
    head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 200 OK") and head.endswith(b"\r\n\r\n")
    sock.settimeout(0.2)
    with pytest.raises(socket.timeout):
        sock.recv(1024)
    sock.close()


def test_trickle_sends_the_body_slowly(fault_server: FaultServer, client: httpx.Client) -> None:
    fault_server.set_plan([Fault("trickle", trickle_bytes=64, trickle_interval_s=0.01)])
    t0 = time.monotonic()
    r = client.post(f"{fault_server.base_url}/chat/completions", json=CHAT)
    assert r.json()["choices"][0]["message"]["content"] == "hello there"
    assert time.monotonic() - t0 >= 0.04  # ~400 bytes in 64-byte steps, 10 ms apart


def test_truncated_body_closes_midway(fault_server: FaultServer, client: httpx.Client) -> None:
    fault_server.set_plan(["truncated_stream"])
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(f"{fault_server.base_url}/chat/completions", json=CHAT)


def test_rpm_limit_answers_429_and_counts_violations(make_fault_server: Callable[..., FaultServer],
                                                     client: httpx.Client) -> None:
    server = make_fault_server(rpm_limit=2)
    statuses = [client.post(f"{server.base_url}/chat/completions", json=CHAT) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert statuses[0].headers["x-ratelimit-limit-requests"] == "2"
    assert statuses[1].headers["x-ratelimit-remaining-requests"] == "0"
    assert int(statuses[2].headers["retry-after"]) >= 1
    assert server.violations == 1
    assert [r.fault for r in server.requests] == ["ok", "ok", "rpm_limit"]


def test_tpm_limit_uses_anthropic_headers(make_fault_server: Callable[..., FaultServer],
                                          client: httpx.Client) -> None:
    server = make_fault_server(tpm_limit=10)
    first = client.post(f"{server.anthropic_base_url}/v1/messages", json=MESSAGES)
    assert first.status_code == 200
    assert first.headers["anthropic-ratelimit-tokens-limit"] == "10"
    assert first.headers["anthropic-ratelimit-tokens-reset"].endswith("Z")
    over = client.post(f"{server.anthropic_base_url}/v1/messages", json=MESSAGES)
    assert over.status_code == 429
    assert over.json()["error"]["type"] == "rate_limit_error"
    assert server.violations == 1


def test_api_key_is_checked_when_required(make_fault_server: Callable[..., FaultServer],
                                          client: httpx.Client) -> None:
    server = make_fault_server(api_key="sk-right-key-123")
    url = f"{server.base_url}/chat/completions"
    assert client.post(url, json=CHAT, headers={"authorization": "Bearer nope"}).status_code == 401
    assert client.post(url, json=CHAT, headers={"authorization": "Bearer sk-right-key-123"}).status_code == 200
    url = f"{server.anthropic_base_url}/v1/messages"
    assert client.post(url, json=MESSAGES, headers={"x-api-key": "sk-right-key-123"}).status_code == 200


def test_bad_requests_and_unknown_routes(fault_server: FaultServer, client: httpx.Client) -> None:
    r = client.post(f"{fault_server.base_url}/chat/completions", content=b"{not json")
    assert r.status_code == 400 and "invalid request body" in r.json()["error"]["message"]
    assert client.post(f"{fault_server.base_url}/chat/completions", json={"model": "x"}).status_code == 400
    assert client.get(f"{fault_server.url}/nowhere").status_code == 404
    assert client.get(f"{fault_server.url}/health").json() == {"status": "ok"}


def test_records_keep_alive_and_chunked_bodies(fault_server: FaultServer, client: httpx.Client) -> None:
    url = f"{fault_server.base_url}/chat/completions"
    client.post(url, json=CHAT, headers={"authorization": "Bearer sk-seen-by-server"})
    client.post(url, content=iter([json.dumps({**CHAT, "stream": True}).encode()]))  # chunked upload
    records = fault_server.requests
    assert [(r.seq, r.api, r.model, r.stream, r.status) for r in records] == [
        (1, "openai", "gpt-test", False, 200), (2, "openai", "gpt-test", True, 200)]
    assert records[0].headers["authorization"] == "Bearer sk-seen-by-server"
    assert "sk-seen" not in repr(records[0])
    assert fault_server.request_count == 2
    fault_server.clear()
    assert fault_server.requests == [] and fault_server.request_count == 0


def test_content_can_be_a_function_and_records_can_be_off(make_fault_server: Callable[..., FaultServer],
                                                          client: httpx.Client) -> None:
    server = make_fault_server(content=lambda body: f"{len(body['messages'])} messages", record=False)
    r = client.post(f"{server.base_url}/chat/completions", json=CHAT)
    assert r.json()["choices"][0]["message"]["content"] == "2 messages"
    assert server.requests == [] and server.request_count == 1


def test_stop_ends_hanging_requests_and_frees_the_port() -> None:
    server = FaultServer([Fault("hang_before_headers", hang_s=30)]).start()
    sock = _raw_request(server.port, CHAT)
    while server.request_count == 0:
        time.sleep(0.005)
    t0 = time.monotonic()
    server.stop()
    sock.settimeout(2)
    with pytest.raises(ConnectionResetError):
        _read_to_end(sock)
    assert time.monotonic() - t0 < 2
    sock.close()
    assert "stopped" in repr(server)


def test_serve_mock_arguments_build_the_plan() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    register(sub)
    args = parser.parse_args(["serve-mock", "--script", "429,reset", "--fault", "503=0.25",
                              "--fault", "latency:0.2=0.1", "--rpm", "60", "--seed", "3"])
    assert args.func.__name__ == "run"
    server = build_server(args)
    plan = server.plan
    assert [f.label for f in plan.script] == ["429", "reset"]
    assert [(f.label, p) for f, p in plan.rates] == [("503", 0.25), ("ok", 0.1)]
    assert plan.rates[1][0].delay_s == 0.2
    with pytest.raises(SystemExit, match="FAULT=RATE"):
        build_server(parser.parse_args(["serve-mock", "--fault", "503"]))


def test_serve_mock_serves_the_hostile_faults() -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["serve-mock", "--script", "huge_head,stale_close", "--default", "gzip_bomb",
                              "--fault", "bad_chunk=0.1"])
    plan = build_server(args).plan
    assert [f.kind for f in plan.script] == ["huge_head", "stale_close"]
    assert plan.default.kind == "gzip_bomb" and plan.rates[0][0].kind == "bad_chunk"


def test_serve_mock_runs_in_the_foreground() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "llmchain.cli._serve", "--script", "503"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().split()[-1]
        assert proc.stdout.readline().split()[-1].startswith("http://127.0.0.1:")
        with httpx.Client(timeout=5) as c:
            assert c.post(f"{base_url}/chat/completions", json=CHAT).status_code == 503
            assert c.post(f"{base_url}/chat/completions", json=CHAT).status_code == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=5)
