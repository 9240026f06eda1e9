"""llmchain's pytest plugin: fixtures for testing stages and chains without network or sleeping.

Installed with llmchain (entry point ``pytest11: llmchain``), so any test can ask for:

* ``fake_clock`` — a ``FakeClock``; time moves only when something sleeps on it.
* ``scripted_next`` — a factory: ``scripted_next("a", RateLimited(...))`` is a ``ScriptedNext``
  on ``fake_clock`` that records the requests it saw.
* ``chain_factory`` — ``chain_factory(stages, replies=[...])`` builds a ``Chain`` on
  ``fake_clock`` over a scripted ``MockTransport`` (``chain.transport.calls``); closed at teardown.
* ``fault_server`` / ``make_fault_server`` — the loopback fault-injecting LLM server, from
  ``llmchain.testing.fixtures`` (loaded with this plugin).

Override ``fake_clock`` in a conftest (e.g. another start time) and the other fixtures follow it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from .._build import StageLike
from .._chain import Chain
from ..transports.mock import MockTransport, Outcome
from .clock import FakeClock
from .scripted import ScriptedNext, Step

__all__ = ["chain_factory", "fake_clock", "scripted_next"]

# The fault-server fixtures come with this plugin. Loaded as a plugin rather than imported, so
# pytest registers the module once and test modules that also name it in `pytest_plugins` get
# neither a second registration nor an "already imported" assertion-rewrite warning.
pytest_plugins = ["llmchain.testing.fixtures"]


@pytest.fixture
def fake_clock() -> FakeClock:
    """A fake clock starting at 1000.0 (monotonic) / 1_700_000_000 (wall)."""
    return FakeClock()


class ScriptedNextFactory:
    """``scripted_next(*steps, enforce_deadline=True)`` → a ``ScriptedNext`` on the test's clock."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.made: list[ScriptedNext] = []

    def __call__(self, *steps: Step, enforce_deadline: bool = True) -> ScriptedNext:
        inner = ScriptedNext(*steps, clock=self.clock, enforce_deadline=enforce_deadline)
        self.made.append(inner)
        return inner


@pytest.fixture
def scripted_next(fake_clock: FakeClock) -> ScriptedNextFactory:
    """Make scripted ``call_next`` stand-ins that share the test's fake clock."""
    return ScriptedNextFactory(fake_clock)


class ChainFactory:
    """``chain_factory(stages, replies=[...], transport=None, timeout_s=60, **chain_kwargs)``."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.chains: list[Chain] = []

    def __call__(
        self,
        stages: Iterable[StageLike] = (),
        *,
        replies: Iterable[Outcome] = (),
        transport: Any = None,
        timeout_s: float | None = 60.0,
        **chain_kwargs: Any,
    ) -> Chain:
        if transport is None:
            transport = MockTransport.scripted(*replies, clock=self.clock)
        elif replies:
            raise TypeError("give either replies (for a scripted mock transport) or a transport, not both")
        chain = Chain(stages, transport, clock=self.clock, timeout_s=timeout_s, **chain_kwargs)
        self.chains.append(chain)
        return chain

    def close_all(self) -> None:
        for chain in self.chains:
            chain.close()


@pytest.fixture
def chain_factory(fake_clock: FakeClock) -> Iterator[ChainFactory]:
    """Build chains on the test's fake clock; every chain built is closed after the test."""
    factory = ChainFactory(fake_clock)
    yield factory
    factory.close_all()
