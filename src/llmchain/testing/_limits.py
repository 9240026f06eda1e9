"""Server-side rate limits for the fault server and the providers' rate-limit header formats."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Literal

Headers = list[tuple[str, str]]


class MinuteBucket:
    """A token bucket holding ``per_minute`` units, refilled continuously (as providers do).

    ``window_s``: how long an empty bucket takes to refill (60: per minute; 1: a 1 s window).
    ``capacity``: units it holds (default ``per_minute``; a smaller one enforces the limit over
    shorter intervals, as Azure does). ``now``: the time source (tests pass a fake clock's).
    """

    def __init__(self, per_minute: int, window_s: float = 60.0, *, capacity: float | None = None,
                 now: Callable[[], float] = time.monotonic) -> None:
        if per_minute <= 0 or window_s <= 0:
            raise ValueError("a limit and its window must be > 0")
        self.limit = per_minute
        self._rate = per_minute / window_s
        self._capacity = float(per_minute if capacity is None else capacity)
        self._level = self._capacity
        self._now = now
        self._at = now()
        self._lock = threading.Lock()

    def _refill(self, now: float) -> None:
        self._level = min(self._capacity, self._level + (now - self._at) * self._rate)
        self._at = now

    def wait_for(self, units: int) -> float:
        """0 if ``units`` fit now, else the seconds until they do (nothing is taken)."""
        with self._lock:
            self._refill(self._now())
            return 0.0 if self._level >= units else (units - self._level) / self._rate

    def take(self, units: int) -> float:
        """Take ``units`` and return 0, or take nothing and return the seconds until they fit."""
        with self._lock:
            self._refill(self._now())
            if self._level >= units:
                self._level -= units
                return 0.0
            return (units - self._level) / self._rate

    def state(self) -> tuple[int, float]:
        """(remaining units, seconds until the bucket is full again)."""
        with self._lock:
            self._refill(self._now())
            return int(self._level), (self._capacity - self._level) / self._rate


def go_duration(seconds: float) -> str:
    """OpenAI's reset format: ``20ms``, ``1s``, ``1.5s``, ``6m0s``, ``1h2m3s``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{int(hours)}h{int(minutes)}m{text}"
    return f"{int(minutes)}m{text}" if minutes else text


def rfc3339_in(seconds: float) -> str:
    """Anthropic's reset format: the UTC instant ``seconds`` from now, RFC 3339."""
    at = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    if at.microsecond:  # round up: a reset time in the past would invite an early retry
        at += timedelta(microseconds=1_000_000 - at.microsecond)
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def openai_headers(kind: str, limit: int, remaining: int, reset_s: float) -> list[tuple[str, str]]:
    """``x-ratelimit-*`` headers for ``kind`` = "requests" or "tokens"."""
    return [(f"x-ratelimit-limit-{kind}", str(limit)),
            (f"x-ratelimit-remaining-{kind}", str(remaining)),
            (f"x-ratelimit-reset-{kind}", go_duration(reset_s))]


def anthropic_headers(kind: str, limit: int, remaining: int, reset_s: float) -> list[tuple[str, str]]:
    """``anthropic-ratelimit-*`` headers for ``kind`` = "requests" or "tokens"."""
    return [(f"anthropic-ratelimit-{kind}-limit", str(limit)),
            (f"anthropic-ratelimit-{kind}-remaining", str(remaining)),
            (f"anthropic-ratelimit-{kind}-reset", rfc3339_in(reset_s))]


class ServerLimits:
    """Optional requests- and tokens-per-window limits, answering like the provider would.

    ``window_s``: the window the limits are stated for (60: per minute, reported in headers
    as such). ``per_second``: also enforce them over every second (a bucket holding a 60th of
    a per-minute limit, Azure's documented behaviour); the headers still describe the window.
    """

    def __init__(self, rpm: int | None, tpm: int | None, *, window_s: float = 60.0,
                 per_second: bool = False, now: Callable[[], float] = time.monotonic) -> None:
        self.buckets = [
            (kind, MinuteBucket(limit, window_s, now=now),
             MinuteBucket(limit, window_s, capacity=max(1.0, limit / window_s), now=now)
             if per_second else None)
            for kind, limit in (("requests", rpm), ("tokens", tpm)) if limit]
        self.violations = 0
        self._lock = threading.Lock()

    def check(self, api: Literal["openai", "anthropic"], tokens: int) -> tuple[Headers, str | None, float]:
        """(rate-limit headers to send, "rpm_limit"/"tpm_limit" if refused else None, wait s)."""
        headers: Headers = []
        fmt = openai_headers if api == "openai" else anthropic_headers
        for kind, bucket, per_second in self.buckets:
            units = 1 if kind == "requests" else tokens
            wait = per_second.wait_for(units) if per_second is not None else 0.0
            if not wait:
                wait = bucket.take(units)
                if not wait and per_second is not None:
                    per_second.take(units)
            remaining, reset = bucket.state()
            headers += fmt(kind, bucket.limit, remaining, max(reset, wait))
            if wait:
                with self._lock:
                    self.violations += 1
                return headers, "rpm_limit" if kind == "requests" else "tpm_limit", wait
        return headers, None, 0.0
