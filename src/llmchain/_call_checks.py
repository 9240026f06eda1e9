"""What a call's arguments are checked for when the call enters, before anything is sent.

A mistake here is the caller's, so it is said plainly as a ``ConfigError`` (an
``InputTypeError``, also a ``TypeError``, for a value of the wrong type) naming the argument and
what was expected, instead of surfacing later as a provider's 400 or a raw exception. The names
the official SDKs use are accepted where they mean the same thing (``timeout=`` for
``timeout_s=``). Only a call that passes keyword arguments pays for the checks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ._exceptions import ConfigError, InputTypeError

_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,200}$")  # printable ASCII, no space

#: SDK spellings → llmchain's.
ALIASES = {"timeout": "timeout_s"}


def check_request_id(value: str, field: str = "request_id") -> None:
    """A request id travels as a header: printable ASCII without spaces, at most 200 chars."""
    if type(value) is not str or not _REQUEST_ID.match(value):
        raise ConfigError(f"{field} {value!r} is not usable as a header value: use 1-200 "
                          "printable ASCII characters without spaces, CR, LF or NUL")


def check_params(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with aliases resolved, after checking the values that are checked at entry."""
    for alias, name in ALIASES.items():
        if alias in params:
            value = params.pop(alias)
            if name in params and params[name] != value:
                raise ConfigError(f"give {name}= or {alias}= (the same thing), not both")
            params[name] = value
    if "timeout_s" in params:
        check_timeout(params["timeout_s"])
    if "request_id" in params:
        check_request_id(params["request_id"])
    return params


def check_timeout(value: Any, name: str = "timeout_s") -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputTypeError(f"{name} must be a number of seconds, got {type(value).__name__} {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a finite number of seconds > 0, got {value!r} "
                          "(leave it out for the chain's default deadline)")


def check_prompt(prompt: Any) -> None:
    """A prompt is a str, an LLMRequest, or a non-empty list of messages."""
    if isinstance(prompt, str):
        return
    if isinstance(prompt, (bytes, bytearray)) or not isinstance(prompt, Sequence):
        raise InputTypeError(
            f"prompt must be a str, an LLMRequest or a list of messages ({{'role': 'user', "
            f"'content': '...'}} dicts or Message objects), got {type(prompt).__name__} {prompt!r:.60}")
    if not prompt:
        raise ConfigError("the prompt is an empty list of messages: nothing to send; give at "
                          "least one message ({'role': 'user', 'content': '...'})")
    for i, message in enumerate(prompt):
        if not isinstance(message, Mapping) and not hasattr(message, "role"):
            raise InputTypeError(f"prompt[{i}] must be a message ({{'role': ..., 'content': ...}} "
                                 f"dict or Message), got {type(message).__name__} {message!r:.60}")


def check_messages(messages: Sequence[Any]) -> None:
    if not messages:
        raise ConfigError("the request has no messages: nothing to send; give at least one message")
