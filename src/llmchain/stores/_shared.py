"""What stages need to use a shared (networked) store, without importing its client library.

* ``store_deadline(request, clock)``: while a stage talks to its store, the call's deadline is
  visible to the store (a context variable), so every network operation is clipped to what is
  left of the call. The store interfaces carry only relative times, never the request.
* ``store_address(kind, url, url_env, **settings)``: the address a stage hands to a store
  factory. The URL comes from an environment variable (``url_env``), because a Redis URL may
  hold a password and secrets never go in config files; a literal URL with a password is
  refused. The stage's store settings (``on_unavailable``, ``op_timeout_s``...) travel as
  query parameters of that URL, the one string the store factories take (``share``, ``url``).
* ``StoreUnavailable``: the typed error a shared store raises when it cannot be used and its
  policy is ``on_unavailable = "fail"``.
* ``DistributedFlight``: what a cache store offers (as ``store.single_flight``) to coalesce
  identical calls across processes; the cache stage checks for it once, when it is built.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field

from .._exceptions import ConfigError
from .._stage import StageOptions

if TYPE_CHECKING:
    from .._clock import Clock
    from .._models import LLMRequest
    from .cache_base import CacheEntry

#: Environment variable read for a shared store's address when the stage names none.
DEFAULT_URL_ENV = "REDIS_URL"
#: Store kinds whose address comes from the environment (others get ``url`` as it is).
NETWORK_KINDS = frozenset({"redis"})

_deadline: contextvars.ContextVar[tuple[float, Clock] | None] = contextvars.ContextVar(
    "llmchain_store_deadline", default=None)


@runtime_checkable
class DistributedFlight(Protocol):
    """Cross-process single-flight offered by a shared cache store (``store.single_flight``)."""

    async def claim(self, key: str, request: LLMRequest,
                    clock: Clock) -> tuple[CacheEntry | None, Any]:
        """Called by a process's leader after a miss: ``(entry, None)`` when another process
        made the call meanwhile; ``(None, lease)`` to make it, then ``release(lease)`` after
        storing the answer; ``(None, None)`` to make it without a lease (store unusable)."""
        ...

    async def release(self, lease: Any) -> None:
        """Let the other processes go on (they find the entry, or one of them leads)."""
        ...


@contextmanager
def store_deadline(request: LLMRequest, clock: Clock) -> Iterator[None]:
    """Make ``request``'s deadline the bound of every store operation inside the block."""
    if request.deadline is None:
        yield
        return
    token = _deadline.set((request.deadline, clock))
    try:
        yield
    finally:
        _deadline.reset(token)


def store_time_left() -> float | None:
    """Seconds left of the current call's deadline (may be <= 0), or None outside a bound call."""
    bound = _deadline.get()
    if bound is None:
        return None
    deadline, clock = bound
    return deadline - clock.now()


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for names, logs and errors)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparsable url>"
    if not password:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


class SharedStateOptions(StageOptions):
    """Where a stateful stage (rate_limit, circuit_breaker) keeps its state: options both share."""

    store: str = Field("memory", description='Where the state lives: "memory" (this process) or a shared store such as "redis".')  # noqa: E501
    share: str | None = Field(None, description="Name of state shared by every stage using the same name (several chains, one API key); None: private to this stage.")  # noqa: E501
    store_url: str | None = Field(None, description="Address of a shared store (e.g. redis://...), without a password.")  # noqa: E501
    store_url_env: str | None = Field(None, description="Environment variable holding the shared store's address; None: REDIS_URL.")  # noqa: E501
    on_unavailable: Literal["local", "fail"] = Field("local", description='When the shared store is down, slow or answers garbage: "local" carries on with in-process state, "fail" raises StoreUnavailable.')  # noqa: E501
    store_timeout_s: float = Field(0.25, gt=0, description="Longest wait for one shared-store operation (the call's deadline bounds it too).")  # noqa: E501

    def store_address(self) -> str | None:
        """The store's address from these options (see ``store_address``)."""
        return store_address(self.store, self.store_url, self.store_url_env,
                             on_unavailable=self.on_unavailable, op_timeout_s=self.store_timeout_s)


def store_address(kind: str, url: str | None, url_env: str | None, *,
                  names: tuple[str, str] = ("store_url", "store_url_env"), **settings: Any) -> str | None:
    """The address for a ``kind`` store. For a networked kind (Redis): the URL from ``url`` or
    from the environment variable ``url_env`` (default ``REDIS_URL``), with ``settings`` (those
    not None) as query parameters; ConfigError when there is none, or when a literal URL holds a
    password. Other kinds get ``url`` unchanged. ``names`` are the stage's two options, for
    messages."""
    if kind not in NETWORK_KINDS:
        return url
    url_option, env_option = names
    if url is not None:
        if urlsplit(url).password:
            raise ConfigError(
                f"{url_option} {mask_url(url)!r} holds a password; secrets never go in config. Put the "
                f'URL in an environment variable and name it with {env_option} = "{DEFAULT_URL_ENV}"')
    else:
        env = url_env or DEFAULT_URL_ENV
        url = os.environ.get(env)
        if not url:
            raise ConfigError(
                f"store {kind!r} needs an address: set the environment variable {env} (e.g. "
                f"{env}=redis://127.0.0.1:6379/0), or name another variable with {env_option}")
    extra = {k: str(v) for k, v in settings.items() if v is not None}
    return with_query(url, **extra) if extra else url


def with_query(url: str, **params: str) -> str:
    """``url`` with ``params`` set in its query string (replacing the same names)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in params]
    query += sorted(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))
