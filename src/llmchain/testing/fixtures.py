"""pytest fixtures around the fault server, for llmchain's tests and its users' tests.

Load them with ``pytest_plugins = ["llmchain.testing.fixtures"]`` (in a test module or the
root conftest); a pytest plugin may re-export them.

* ``fault_server``: a started ``FaultServer`` answering normally; change what it does with
  ``fault_server.set_plan([...])``.
* ``make_fault_server``: ``make_fault_server(plan, rpm_limit=..., ...)`` for servers with other
  options; every server it made is stopped after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .fault_server import FaultServer


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    """A loopback LLM server (OpenAI and Anthropic formats) on a random free port."""
    with FaultServer() as server:
        yield server


@pytest.fixture
def make_fault_server() -> Iterator[Callable[..., FaultServer]]:
    """A factory of started FaultServers (same arguments as ``FaultServer``)."""
    servers: list[FaultServer] = []

    def make(*args: Any, **kwargs: Any) -> FaultServer:
        server = FaultServer(*args, **kwargs).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
