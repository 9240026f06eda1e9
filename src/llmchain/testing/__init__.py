"""Tools for testing chains and stages without real providers, networks or sleeping.

``FakeClock`` replaces time; ``MockTransport`` scripts provider outcomes.
"""

from ..transports.mock import MockReply, MockTransport, make_error
from ._fault_plan import Fault, FaultPlan
from .clock import FakeClock
from .fault_server import FaultServer, RecordedRequest
from .scripted import Delay, Hang, ScriptedNext

__all__ = [
    "Delay",
    "FakeClock",
    "Fault",
    "FaultPlan",
    "FaultServer",
    "Hang",
    "MockReply",
    "MockTransport",
    "RecordedRequest",
    "ScriptedNext",
    "make_error",
]
