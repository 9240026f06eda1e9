"""Turn foreign exceptions (httpx, aiohttp, OS, pydantic) into llmchain's typed errors.

Types are recognised by module and name so that this module imports neither httpx nor aiohttp.
"""

from __future__ import annotations

import asyncio

from ._exceptions import CallError, LLMChainError, ProviderError, TimeoutExceeded, TransportError


def _family(exc: BaseException) -> str:
    return type(exc).__module__.split(".", 1)[0]


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, (TimeoutError, asyncio.TimeoutError)) or "Timeout" in type(exc).__name__


def wrap_foreign(exc: BaseException, where: str = "", *, in_transport: bool = True) -> CallError:
    """The typed CallError that stands for ``exc`` (set ``__cause__`` when raising it).

    ``in_transport``: the error came from turning a provider's answer into a response, so a
    ValueError/KeyError means the answer had an unexpected shape; elsewhere it is a bug in a
    stage and is reported as such.
    """
    if isinstance(exc, CallError):
        return exc
    prefix = f"{where}: " if where else ""
    text = f"{type(exc).__name__}: {exc}".rstrip(": ")
    if isinstance(exc, LLMChainError):  # a build-time error at run time is a bug to surface
        return CallError(f"{prefix}{text}")
    if _is_timeout(exc):
        return TimeoutExceeded(f"{prefix}timed out ({text})", phase="attempt")
    family = _family(exc)
    if isinstance(exc, (ConnectionError, OSError)) or family in ("httpx", "httpcore", "aiohttp", "httpx2"):
        return TransportError(
            f"{prefix}connection failed ({text})",
            hint="check that the server at base_url is reachable",
        )
    if not in_transport:
        return CallError(
            f"{prefix}unexpected error in a stage ({text})",
            hint="a bug in a stage or plugin: the traceback is in __cause__",
        )
    if family in ("pydantic", "pydantic_core", "json") or isinstance(exc, (ValueError, KeyError, TypeError)):
        return ProviderError(f"{prefix}unexpected response shape ({text})", retryable=False)
    return CallError(f"{prefix}unexpected error ({text})")
