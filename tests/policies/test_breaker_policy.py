"""The breaker policy against a plainly written reference state machine."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)

from llmchain.policies import BreakerConfig, BreakerPolicy, Permit


@dataclass
class Reference:
    """The breaker as its docstring describes it, with no attention to speed."""

    cfg: BreakerConfig
    state: str = "closed"
    generation: int = 0
    opened_at: float = 0.0
    probing: bool = False
    events: list[tuple[float, bool]] = field(default_factory=list)

    def move(self, state: str, now: float) -> None:
        self.state, self.generation, self.probing, self.events = state, self.generation + 1, False, []
        if state == "open":
            self.opened_at = now

    def acquire(self, now: float) -> tuple[bool, bool, float | None]:
        if self.state == "open":
            if now < self.opened_at + self.cfg.open_s:
                return False, False, self.opened_at + self.cfg.open_s - now
            self.move("half_open", now)
        if self.state == "half_open":
            if self.probing:
                return False, False, None
            self.probing = True
            return True, True, None
        return True, False, None

    def record(self, now: float, allowed: bool, probe: bool, gen: int, failed: bool | None) -> str | None:
        if not allowed or gen != self.generation:
            return None
        if probe:
            self.probing = False
            if failed is None:
                return None
            self.move("open" if failed else "closed", now)
            return self.state
        if self.state != "closed" or failed is None:
            return None
        self.events.append((now, failed))
        window = [f for t, f in self.events if t > now - self.cfg.window_s][-self.cfg.window_calls:]
        if len(window) >= self.cfg.min_calls and sum(window) >= self.cfg.failure_rate * len(window):
            self.move("open", now)
            return "open"
        return None


class BreakerMachine(RuleBasedStateMachine):
    permits = Bundle("permits")

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    @initialize(
        rate=st.sampled_from([0.2, 0.5, 1.0]),
        min_calls=st.integers(1, 4),
        extra=st.integers(0, 4),
        window_s=st.sampled_from([2.0, 5.0, 100.0]),
        open_s=st.sampled_from([1.0, 3.0]),
    )
    def setup(self, rate: float, min_calls: int, extra: int, window_s: float, open_s: float) -> None:
        cfg = BreakerConfig(rate, min_calls, min_calls + extra, window_s, open_s)
        self.policy = BreakerPolicy(cfg)
        self.ref = Reference(cfg)

    @rule(dt=st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.5]))
    def advance(self, dt: float) -> None:
        self.now += dt

    @rule(target=permits)
    def acquire(self) -> Permit:
        permit = self.policy.acquire(self.now)
        assert (permit.allowed, permit.probe, permit.retry_after) == self.ref.acquire(self.now)
        assert permit.generation == self.ref.generation
        assert permit.state == self.ref.state
        return permit

    @rule(permit=consumes(permits), failed=st.sampled_from([True, False, None]))
    def finish(self, permit: Permit, failed: bool | None) -> None:
        got = self.policy.record(self.now, permit, failed)
        want = self.ref.record(self.now, permit.allowed, permit.probe, permit.generation, failed)
        assert got == want

    @invariant()
    def same_state(self) -> None:
        if not hasattr(self, "policy"):
            return
        assert self.policy.state == self.ref.state
        assert self.policy.generation == self.ref.generation
        assert self.policy.probing == self.ref.probing
        if self.policy.state != "closed":
            assert self.policy.window() == (0, 0)


BreakerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_breaker_matches_reference = BreakerMachine.TestCase


def test_opens_at_the_failure_rate_once_min_calls_are_in() -> None:
    policy = BreakerPolicy(BreakerConfig(failure_rate=0.5, min_calls=4, window_calls=10, open_s=5))
    outcomes = [False, True, True]  # 2 of 3 failed, but fewer than min_calls
    for failed in outcomes:
        assert policy.record(0.0, policy.acquire(0.0), failed) is None
    assert policy.record(0.0, policy.acquire(0.0), False) == "open"  # 2 of 4 = 50 %
    denied = policy.acquire(1.0)
    assert not denied.allowed and denied.retry_after == 4.0


def test_half_open_lets_one_probe_through_and_its_outcome_decides() -> None:
    policy = BreakerPolicy(BreakerConfig(failure_rate=1.0, min_calls=1, window_calls=1, open_s=5))
    policy.record(0.0, policy.acquire(0.0), True)
    probe = policy.acquire(5.0)
    assert probe.allowed and probe.probe and probe.changed and probe.state == "half_open"
    assert not policy.acquire(5.0).allowed  # one probe at a time
    assert policy.record(6.0, probe, True) == "open"
    assert not policy.acquire(10.0).allowed
    probe = policy.acquire(11.0)
    assert policy.record(11.0, probe, False) == "closed"
    assert policy.acquire(11.0).allowed


def test_stale_outcomes_from_before_a_state_change_are_ignored() -> None:
    policy = BreakerPolicy(BreakerConfig(failure_rate=1.0, min_calls=1, window_calls=1, open_s=1))
    slow = policy.acquire(0.0)
    policy.record(0.0, policy.acquire(0.0), True)  # opens
    assert policy.record(0.5, slow, False) is None
    assert policy.state == "open"


def test_a_call_admitted_before_the_breaker_reopened_and_closed_does_not_count() -> None:
    policy = BreakerPolicy(BreakerConfig(failure_rate=0.5, min_calls=2, window_calls=2, open_s=1))
    slow = policy.acquire(0.0)  # starts while closed, finishes after a full open/close cycle
    policy.record(0.0, policy.acquire(0.0), True)
    policy.record(0.0, policy.acquire(0.0), True)  # opens
    policy.record(1.0, policy.acquire(1.0), False)  # the probe closes it again
    assert policy.state == "closed"
    assert policy.record(1.0, slow, True) is None
    assert policy.window() == (0, 0)


def test_outcomes_leave_the_window_when_exactly_window_s_old() -> None:
    policy = BreakerPolicy(BreakerConfig(failure_rate=0.5, min_calls=2, window_calls=10, window_s=5))
    policy.record(0.0, policy.acquire(0.0), True)
    assert policy.record(5.0, policy.acquire(5.0), True) is None  # the first one is 5 s old: out
    assert policy.window() == (1, 1)
    assert policy.record(5.0, policy.acquire(5.0), True) == "open"
