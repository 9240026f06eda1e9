"""llmchain-redact: a ``redact`` stage that keeps PII out of prompts and puts it back in answers.

Installing the distribution is enough: llmchain finds this module through the ``llmchain``
entry-point group and the hook below registers the stage, so configs can say ``use = "redact"``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmchain import hookimpl

from ._detect import Detector, Redaction, build_detectors, find, luhn_ok
from .stage import RedactMiddleware

__all__ = ["Detector", "RedactMiddleware", "Redaction", "build_detectors", "find", "luhn_ok"]
__version__ = "0.1.0"


@hookimpl
def register_middleware(register: Callable[[str, Any], None]) -> None:
    register("redact", RedactMiddleware)
