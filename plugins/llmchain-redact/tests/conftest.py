"""llmchain's pytest fixtures (fake_clock, scripted_next, chain_factory) for these tests.

With the ``pytest11`` entry point of llmchain installed these load by themselves; importing them
here keeps the tests runnable against an llmchain that predates it.
"""

from llmchain.testing.pytest_plugin import chain_factory, fake_clock, scripted_next

__all__ = ["chain_factory", "fake_clock", "scripted_next"]
