"""Tools for testing chains and stages without real providers, networks or sleeping.

``FakeClock`` replaces time; ``MockTransport`` scripts provider outcomes.
"""

from ..transports.mock import MockReply, MockTransport, make_error
from .clock import FakeClock

__all__ = ["FakeClock", "MockReply", "MockTransport", "make_error"]
