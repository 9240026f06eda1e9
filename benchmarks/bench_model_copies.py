"""What pydantic's public API costs on the per-call path, against the private-slot trick it
replaced (issue 17): ``copy_with`` (``model_copy``) and ``prompt_request`` (plain validation)
vs the old code that wrote ``__dict__``/``__pydantic_*`` slots with ``object.__setattr__``.

The old functions are reproduced below as the baseline and patched into the chain's modules
for the "private slots" rows, so both are measured in one process, in interleaved rounds
(medians). The chain rows are sync ``complete("hi")`` calls over the mock transport.

Usage::

    python benchmarks/bench_model_copies.py [--rounds 5] [--calls 20000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from llmchain import Chain, LLMRequest, LLMResponse, Message
from llmchain import _models as models
from llmchain.testing import MockTransport

_new, _set = object.__new__, object.__setattr__


def old_copy_with(model: Any, update: Mapping[str, Any]) -> Any:
    """The replaced trick: a copy built by writing pydantic's private slots."""
    copied = _new(type(model))
    values = model.__dict__.copy()
    values.update(update)
    fields_set = set(model.__pydantic_fields_set__)
    fields_set.update(update)
    _set(copied, "__dict__", values)
    _set(copied, "__pydantic_extra__", None)
    _set(copied, "__pydantic_fields_set__", fields_set)
    _set(copied, "__pydantic_private__", None)
    return copied


def old_construct(cls: Any, values: dict[str, Any], fields_set: set[str]) -> Any:
    built = _new(cls)
    _set(built, "__dict__", values)
    _set(built, "__pydantic_extra__", None)
    _set(built, "__pydantic_fields_set__", fields_set)
    _set(built, "__pydantic_private__", None)
    return built


def old_prompt_request(prompt: str, params: dict[str, Any]) -> Any:
    """The replaced fast path for plain prompts (valid values assumed, as the old one checked)."""
    message = old_construct(Message, {"role": "user", "content": prompt, "name": None,
                                      "tool_call_id": None, "tool_calls": ()}, {"role", "content"})
    values = dict(REQUEST_DEFAULTS)
    values.update(messages=(message,), extra={}, metadata=dict(params.get("metadata") or {}),
                  request_id=models.new_request_id())
    values.update((k, v) for k, v in params.items() if k != "metadata")
    return old_construct(LLMRequest, values, {"messages", *params})


def construct_request(prompt: str, params: dict[str, Any]) -> Any:
    """The same objects through the public ``model_construct`` (the road not taken)."""
    message = Message.model_construct({"role", "content"}, role="user", content=prompt, name=None,
                                      tool_call_id=None, tool_calls=())
    values = dict(REQUEST_DEFAULTS)
    values.update(messages=(message,), extra={}, metadata=dict(params.get("metadata") or {}),
                  request_id=models.new_request_id())
    values.update((k, v) for k, v in params.items() if k != "metadata")
    return LLMRequest.model_construct({"messages", *params}, **values)


REQUEST_DEFAULTS = {name: field.default for name, field in LLMRequest.model_fields.items()}
NEW = {"copy_with": models.copy_with, "prompt_request": models.prompt_request}
OLD = {"copy_with": old_copy_with, "prompt_request": old_prompt_request}


def use(impl: dict[str, Callable[..., Any]]) -> None:
    """Bind ``impl`` wherever llmchain's modules imported the helpers by name."""
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("llmchain"):
            for name, function in impl.items():
                if name in vars(module):
                    setattr(module, name, function)


def per_call_us(fn: Callable[[], Any], n: int) -> float:
    for _ in range(min(200, n)):
        fn()
    t0 = time.process_time()  # CPU time: steadier than wall time on a loaded machine
    for _ in range(n):
        fn()
    return (time.process_time() - t0) / n * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=20000)
    args = p.parse_args()
    response = LLMResponse(text="t", notes={"n": 1})
    bare = Chain([], MockTransport())
    staged = Chain(["timeout", "retry", "parse"], MockTransport())
    cases: dict[str, Callable[[], Any]] = {
        "copy a response (copy_with)": lambda: models.copy_with(response, {"text": "u"}),
        "plain-prompt request (prompt_request)": lambda: models.prompt_request("hi", {"timeout_s": 3.0}),
        "the same request through model_construct (not used)": lambda: construct_request(
            "hi", {"timeout_s": 3.0}),
        "Chain([], mock).complete": lambda: bare.complete("hi"),
        "Chain([timeout, retry, parse], mock).complete": lambda: staged.complete("hi"),
    }
    results: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for label, impl in (("private slots (before)", OLD), ("public API (now)", NEW)):
            use(impl)
            for case, fn in cases.items():
                n = args.calls if "complete" not in case else max(1, args.calls // 10)
                results.setdefault((case, label), []).append(per_call_us(fn, n))
    use(NEW)
    print(f"medians of {args.rounds} interleaved rounds; Python {sys.version.split()[0]}, "
          f"pydantic {models.BaseModel.__module__ and __import__('pydantic').VERSION}\n")
    print("| operation | private slots (before) CPU µs | public API (now) CPU µs | now - before µs |")
    print("|---|---:|---:|---:|")
    for case in cases:
        before = statistics.median(results[(case, "private slots (before)")])
        now = statistics.median(results[(case, "public API (now)")])
        print(f"| {case} | {before:.2f} | {now:.2f} | {now - before:+.2f} |")


if __name__ == "__main__":
    main()
