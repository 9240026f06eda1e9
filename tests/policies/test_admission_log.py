"""The sliding-window admission log: never over the limit in any window, FIFO, deadline-aware."""

from __future__ import annotations

import math
import threading

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from llmchain.policies import AdmissionLog, RateLimits
from llmchain.policies.admission import Ticket

EIGHTHS = st.integers(0, 24).map(lambda k: k / 8)  # exact binary fractions: no rounding in sums


class AdmissionMachine(RuleBasedStateMachine):
    """Random reservations, waits, refunds and pauses against a model of what was admitted."""

    def __init__(self) -> None:
        super().__init__()
        self.log = AdmissionLog()
        self.now = 0.0
        self.admitted: list[Ticket] = []  # in reservation order
        self.pause_floor = -math.inf

    @initialize(
        requests=st.one_of(st.none(), st.integers(1, 4)),
        tokens=st.one_of(st.none(), st.integers(5, 40)),
        period=st.sampled_from([1.0, 2.0, 5.0]),
    )
    def setup(self, requests: int | None, tokens: int | None, period: float) -> None:
        self.limits = RateLimits(requests, tokens, period)

    @rule(dt=EIGHTHS)
    def advance(self, dt: float) -> None:
        self.now += dt

    @rule(tokens=st.integers(0, 50), max_wait=st.one_of(st.none(), EIGHTHS))
    def reserve(self, tokens: int, max_wait: float | None) -> None:
        before = (len(self.log.entries), self.log.last, self.log.requests, self.log.tokens)
        res = self.log.reserve(self.now, 1, tokens, self.limits, max_wait)
        lim = self.limits
        if not res.admitted:
            assert before == (len(self.log.entries), self.log.last, self.log.requests, self.log.tokens)
            if res.reason == "too_large":
                assert (lim.tokens is not None and tokens > lim.tokens) or (lim.requests == 0)
            else:
                assert res.reason == "deadline" and max_wait is not None and res.wait_s > max_wait
            return
        assert isinstance(res.ticket, Ticket)
        at = res.ticket.at
        assert res.wait_s >= 0 and at == self.now + res.wait_s
        assert max_wait is None or res.wait_s <= max_wait
        floor = max(self.now, self.pause_floor, self.admitted[-1].at if self.admitted else -math.inf)
        assert at >= floor  # FIFO: never ahead of an earlier reservation, never inside a pause
        if at > floor:  # it waited: exactly until some admitted call left the window
            assert any(t.at + lim.period_s == at for t in self.admitted)
        self.admitted.append(res.ticket)

    @precondition(lambda self: bool(self.admitted))
    @rule(data=st.data())
    def reconcile_down(self, data: st.DataObject) -> None:
        ticket = data.draw(st.sampled_from(self.admitted))
        tokens = data.draw(st.integers(0, ticket.tokens))
        requests = data.draw(st.sampled_from([0, ticket.requests]))
        self.log.reconcile(ticket, requests, tokens)

    @rule(seconds=EIGHTHS)
    def pause(self, seconds: float) -> None:
        self.log.pause(self.now + seconds)
        self.pause_floor = max(self.pause_floor, self.now + seconds)

    @invariant()
    def no_window_over_the_limit(self) -> None:
        lim = getattr(self, "limits", None)
        if lim is None:
            return
        for end in {t.at for t in self.admitted}:
            inside = [t for t in self.admitted if end - lim.period_s < t.at <= end]
            if lim.requests is not None:
                assert sum(t.requests for t in inside) <= lim.requests
            if lim.tokens is not None:
                assert sum(t.tokens for t in inside) <= lim.tokens

    @invariant()
    def sums_match_the_live_entries(self) -> None:
        live = [t for t in self.admitted if t.live]
        assert list(self.log.entries) == live
        assert self.log.requests == sum(t.requests for t in live)
        assert self.log.tokens == sum(t.tokens for t in live)


AdmissionMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_admission_log_state_machine = AdmissionMachine.TestCase


def test_a_full_limit_goes_at_once_then_one_window_later() -> None:
    log = AdmissionLog()
    limits = RateLimits(requests=3, period_s=60.0)
    waits = [log.reserve(0.0, 1, 0, limits, None).wait_s for _ in range(9)]
    assert waits == [0, 0, 0, 60, 60, 60, 120, 120, 120]


def test_tokens_and_requests_are_limited_together() -> None:
    log = AdmissionLog()
    limits = RateLimits(requests=10, tokens=100, period_s=10.0)
    assert log.reserve(0.0, 1, 60, limits, None).wait_s == 0
    assert log.reserve(1.0, 1, 60, limits, None).wait_s == 9.0  # tokens are the bottleneck
    assert log.reserve(1.0, 1, 101, limits, None).reason == "too_large"


def test_refused_reservations_change_nothing_and_refunds_free_capacity() -> None:
    log = AdmissionLog()
    limits = RateLimits(tokens=100, period_s=10.0)
    first = log.reserve(0.0, 1, 90, limits, None)
    refused = log.reserve(0.0, 1, 20, limits, max_wait=5.0)
    assert not refused.admitted and refused.wait_s == 10.0 and refused.reason == "deadline"
    assert isinstance(first.ticket, Ticket)
    log.reconcile(first.ticket, 1, 30)  # the call used less than booked
    assert log.reserve(0.0, 1, 20, limits, max_wait=0.0).admitted


def test_pause_holds_every_later_reservation() -> None:
    log = AdmissionLog()
    limits = RateLimits(requests=100)
    log.pause(7.0)
    assert log.reserve(2.0, 1, 0, limits, None).wait_s == 5.0
    assert log.reserve(3.0, 1, 0, limits, 3.0).admitted is False


def test_waiters_are_served_in_reservation_order_even_if_smaller() -> None:
    log = AdmissionLog()
    limits = RateLimits(tokens=100, period_s=10.0)
    log.reserve(0.0, 1, 90, limits, None)
    big = log.reserve(0.0, 1, 50, limits, None)
    small = log.reserve(0.0, 1, 5, limits, None)  # would fit at once, but must not jump `big`
    assert big.wait_s == 10.0 and small.wait_s == 10.0


def test_threads_sharing_a_log_under_a_lock_admit_exactly_the_limit() -> None:
    from llmchain.stores.memory import MemoryRateLimitStore

    store = MemoryRateLimitStore()
    limits = RateLimits(requests=500, period_s=60.0)
    results: list[bool] = []

    def worker() -> None:
        for _ in range(400):
            results.append(store.reserve_now("k", 5.0, 1, 0, limits, 0.0).admitted)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 500
