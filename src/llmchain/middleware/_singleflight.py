"""Single-flight: identical concurrent calls share one provider call.

The first caller for a key becomes the *leader* and makes the call; later callers *wait* on the
leader's result. The result lives in a ``concurrent.futures.Future`` so waiters on any thread
and any event loop can await it (``asyncio.wrap_future``): the sync facade's loop (driven by
whichever thread calls) and users' own loops share one flight.

Rules:

* Each waiter waits at most until its *own* deadline, then raises ``TimeoutExceeded``
  (phase ``"deadline"``); its leaving never disturbs the leader or other waiters (the future is
  marked running, so a waiter's cancellation cannot cancel it).
* A leader failure reaches every waiter as a *copy* of the error carrying the waiter's request
  id (callers annotate their errors, so one instance must not be shared), and
  ``singleflight_leader`` naming the leader's request id.
* A failure that belongs to the leader alone — it was cancelled, or its own deadline ran out —
  is not passed on: waiters get ``LeaderAbandoned`` and one of them leads a new flight.
* The map entry is removed by the leader in a ``finally``, so no flight outlives its leader.

The future is made only when a first waiter joins: most flights have no waiter, and a
``concurrent.futures.Future`` (with its condition variable) is most of what a flight would
otherwise cost a cache miss. The outcome of a flight nobody waits for is kept on the flight,
under the lock, and handed to a future made later.
"""

from __future__ import annotations

import asyncio
import copy
import threading
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

from .._clock import Clock, time_left
from .._exceptions import CallError, TimeoutExceeded
from .._models import LLMRequest
from .._wrap import wrap_foreign

T = TypeVar("T")


class LeaderAbandoned(Exception):
    """The leader stopped for a reason of its own; the waiter should try again."""


class Flight(Generic[T]):
    """One in-progress call: its leader, how many wait on it, and (once someone waits) the
    future its outcome goes to."""

    __slots__ = ("_future", "_outcome", "leader_id", "waiters")

    def __init__(self, leader_id: str) -> None:
        self._future: Future[T] | None = None
        self._outcome: tuple[bool, Any] | None = None  # (ok, result or error) before any waiter
        self.leader_id = leader_id
        self.waiters = 0

    @property
    def future(self) -> Future[T]:
        """The future the outcome goes to; made on first use (``SingleFlight`` holds its lock)."""
        future = self._future
        if future is None:
            future = self._future = Future()
            future.set_running_or_notify_cancel()  # from now on .cancel() is a no-op
            if self._outcome is not None:
                ok, value = self._outcome
                future.set_result(value) if ok else future.set_exception(value)
        return future

    def _settle(self, ok: bool, value: Any) -> None:
        """Record the outcome (the first one wins), in the future if one was made already."""
        future = self._future
        if future is None:
            if self._outcome is None:
                self._outcome = (ok, value)
        elif not future.done():
            future.set_result(value) if ok else future.set_exception(value)


class SingleFlight(Generic[T]):
    """Per-key leader election and result sharing, safe across threads and event loops."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[str, Flight[T]] = {}
        #: Flights that have ended, ever. Unchanged between a caller's cache lookup and its
        #: ``join`` means no flight (of this stage) can have stored anything in between.
        self.landed = 0

    def join(self, key: str, request_id: str) -> tuple[Flight[T], bool]:
        """The flight for ``key`` and whether the caller leads it (True: make the call)."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                flight.waiters += 1
                flight.future  # noqa: B018 - made now, under the lock: the waiter awaits it
                return flight, False
            flight = self._flights[key] = Flight(request_id)
            return flight, True

    def resolve(self, flight: Flight[T], result: T) -> None:
        with self._lock:
            flight._settle(True, result)

    def fail(self, flight: Flight[T], error: BaseException) -> None:
        with self._lock:
            flight._settle(False, error)

    def leave(self, key: str, flight: Flight[T]) -> None:
        """The leader is done: later callers start a new flight (or hit the cache)."""
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
            self.landed += 1
            # defensive: never leave a waiter hanging (a no-op once the outcome is known)
            flight._settle(False, LeaderAbandoned())

    def in_flight(self) -> int:
        """Number of keys with a call in progress (0 when idle: nothing leaked)."""
        with self._lock:
            return len(self._flights)

    def waiters(self, key: str) -> int:
        with self._lock:
            flight = self._flights.get(key)
            return flight.waiters if flight is not None else 0

    async def wait(self, flight: Flight[T], request: LLMRequest, clock: Clock) -> T:
        """The leader's result, its error (a copy, see module doc), ``LeaderAbandoned``, or
        ``TimeoutExceeded`` when the waiter's own deadline comes first."""
        future = flight.future
        if not future.done():
            left = time_left(request, clock)
            waiting = asyncio.wrap_future(future)
            try:
                # the deadline is enforced in real time, like the transport's (asyncio timeout)
                await asyncio.wait_for(waiting, left)
            except (asyncio.TimeoutError, TimeoutError):
                raise TimeoutExceeded(
                    f"the call's deadline ran out while waiting for an identical in-flight call "
                    f"(led by request {flight.leader_id})",
                    phase="deadline",
                    request_id=request.request_id,
                ) from None
            except asyncio.CancelledError:
                raise  # this waiter was cancelled; the flight goes on without it
            except BaseException:
                pass  # the leader's error, re-raised below as this waiter's own copy
        error = future.exception()
        if error is None:
            return future.result()
        if isinstance(error, LeaderAbandoned):
            raise LeaderAbandoned()
        raise for_waiter(error, request, flight.leader_id)


def for_waiter(error: BaseException, request: LLMRequest, leader_id: str) -> CallError:
    """A fresh error instance for one waiter, carrying its request id."""
    if isinstance(error, CallError):
        try:
            mine = copy.copy(error)
        except Exception:  # an exotic subclass that cannot be rebuilt from its args
            mine = CallError(error.message, retryable=error.retryable,
                             retry_after=error.retry_after, hint=error.hint)
        mine.__cause__ = error.__cause__
    else:
        mine = wrap_foreign(error)
        mine.__cause__ = error
    mine.request_id = request.request_id
    mine.singleflight_leader = leader_id  # type: ignore[attr-defined]
    mine.__traceback__ = None
    return mine

