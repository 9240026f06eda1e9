"""The summary of a batch run, shared by the runner and the progress line."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class BatchSummary:
    """What a run did; updated live (the progress line reads it)."""

    input: str
    output: str
    total_lines: int | None = None
    started_at: float = 0.0
    elapsed_s: float = 0.0
    written: int = 0  # records written by this run
    ok: int = 0
    failed: int = 0  # error records written by this run
    input_errors: int = 0  # of those: bad lines and duplicate ids
    skipped: int = 0  # already in the output, not sent again
    blank: int = 0
    previously_failed: int = 0  # error records already in the output
    retried_failed: int = 0  # earlier error records dropped by retry_failed (sent again)
    torn_bytes: int = 0  # partial last line removed on resume
    retries: int = 0  # attempts beyond the first, over all calls
    rate_limited: int = 0  # attempts answered with HTTP 429
    cache_hits: int = 0
    in_flight: int = 0
    cancelled: int = 0  # calls cancelled by a stop; not written, a rerun sends them
    stopped: bool = False

    @property
    def lines_done(self) -> int:
        return self.written + self.skipped + self.blank

    @property
    def all_ok(self) -> bool:
        """No error record anywhere in the output (this run's or earlier runs')."""
        return self.failed == 0 and self.previously_failed == 0

    def describe(self) -> str:
        rate = self.written / self.elapsed_s if self.elapsed_s > 0 else 0.0
        text = (
            f"{self.written} records written ({self.ok} ok, {self.failed} failed) in "
            f"{self.elapsed_s:.1f}s, {rate:.1f}/s; retries {self.retries}, 429s {self.rate_limited}, "
            f"cache hits {self.cache_hits}"
        )
        if self.skipped:
            text += f"; {self.skipped} skipped (already in {self.output})"
        if self.retried_failed:
            text += f"; {self.retried_failed} earlier error records dropped and sent again"
        if self.previously_failed:
            text += f"; {self.previously_failed} earlier error records kept (--retry-failed resends them)"
        if self.torn_bytes:
            text += f"; repaired a torn last line ({self.torn_bytes} bytes) left by an interrupted run"
        return text
