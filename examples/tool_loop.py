"""An agent loop with two tools and parallel calls.

Offline (no key, no network): ``python examples/tool_loop.py`` uses the mock transport, with a
tiny stand-in model that asks for both tools at once and then answers from their results.

Against a real provider, the same loop: give a config file with a real transport, e.g.
``python examples/tool_loop.py my-openai.toml`` where the file says::

    [transport]
    use = "openai"          # or "anthropic"
    model = "gpt-4o-mini"
"""

from __future__ import annotations

import json
import sys
from typing import Literal

from llmchain import Chain, LLMRequest, LLMResponse, Message, ToolCall
from llmchain.testing import MockTransport


def get_weather(city: str, unit: Literal["C", "F"] = "C") -> str:
    """The current weather in a city."""
    return json.dumps({"city": city, "sky": "sunny", "temperature": 21 if unit == "C" else 70, "unit": unit})


def get_local_time(city: str) -> str:
    """The local time in a city, as HH:MM."""
    return json.dumps({"city": city, "time": "14:05"})


TOOLS = {tool.__name__: tool for tool in (get_weather, get_local_time)}


def ask(chain: Chain, question: str) -> str:
    """Call, run the tools asked for, append the results, call again: until the model answers."""
    messages = [Message(role="user", content=question)]
    for _ in range(8):  # a bound, in case a model keeps asking
        response = chain.complete(messages, tools=list(TOOLS.values()))
        messages.append(response.message)
        if not response.tool_calls:
            return response.text
        for call in response.tool_calls:  # several at once when the model calls in parallel
            print(f"  -> {call.name}({call.arguments})")
            messages.append(call.result(TOOLS[call.name](**call.args)))
    raise RuntimeError("the model kept calling tools")


def stand_in_model(request: LLMRequest) -> LLMResponse:
    """Offline only: behaves like a model that calls both tools in parallel, then answers."""
    last = request.messages[-1]
    if last.role != "tool":
        return LLMResponse(text="", finish_reason="tool_calls", tool_calls=(
            ToolCall(id="call_1", name="get_weather", arguments='{"city": "Lisbon"}'),
            ToolCall(id="call_2", name="get_local_time", arguments='{"city": "Lisbon"}')))
    results = [json.loads(m.text) for m in request.messages if m.role == "tool"]
    weather, clock = results[-2], results[-1]
    return LLMResponse(text=f"In {weather['city']} it is {weather['sky']}, {weather['temperature']}°"
                            f"{weather['unit']}, and the local time is {clock['time']}.")


def main() -> None:
    if len(sys.argv) > 1:
        chain = Chain.from_config(sys.argv[1])
    else:
        chain = Chain(["retry", "validate"], MockTransport.scripted(stand_in_model, cycle=True))
    with chain:
        print(ask(chain, "What's the weather and the local time in Lisbon?"))


if __name__ == "__main__":
    main()
