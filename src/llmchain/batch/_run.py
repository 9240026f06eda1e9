"""Run a JSON Lines file of prompts through a chain: bounded concurrency, resumable, exactly once.

::

    summary = await run_batch("in.jsonl", "out.jsonl", chain, concurrency=16)

Every input line yields exactly one output line (a result or an explained error), written as
soon as its call completes (so not in input order). A rerun skips records already in the
output, also after ``kill -9``: see ``_log`` for how, and docs/batch.md for the formats.
Setting ``stop`` (the CLI does on SIGINT/SIGTERM) stops taking records, cancels the calls in
flight (they are not written; a rerun redoes them) and returns the summary with ``stopped``.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any, TextIO

from pydantic_core import to_jsonable_python

from .._attempt import Attempt
from .._chain import Chain
from .._clock import REAL_CLOCK, Clock
from .._exceptions import CallError
from .._models import LLMResponse
from ..structured._output import coerce_output
from ._io import (
    DUPLICATE_ID,
    BatchError,
    Job,
    Parsed,
    Problem,
    count_lines,
    error_fields,
    key_of,
    parse_line,
    problem_record,
)
from ._log import OutputLog
from ._progress import ProgressDisplay
from ._summary import BatchSummary

__all__ = ["BatchError", "BatchSummary", "run_batch"]

#: How long cancelled calls get to unwind before the run returns without them.
CANCEL_GRACE_S = 5.0
#: Input lines handled between two yields to the event loop (signals, progress line).
YIELD_EVERY = 512


async def run_batch(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    chain: Chain,
    *,
    concurrency: int = 16,
    progress: TextIO | None = None,
    retry_failed: bool = False,
    stop: asyncio.Event | None = None,
    fsync_interval_s: float = 2.0,
    clock: Clock = REAL_CLOCK,
) -> BatchSummary:
    """Send every record of ``input_path`` through ``chain``; append results to ``output_path``.

    Raises ``BatchError`` (a ``ConfigError``) when the run cannot start. ``progress`` is a
    stream for the progress line (e.g. ``sys.stderr``); ``retry_failed`` first drops earlier
    error records from the output so those records are sent again.
    """
    if concurrency < 1:
        raise BatchError(f"concurrency must be at least 1, got {concurrency}")
    source, target = Path(input_path), Path(output_path)
    # blocking on purpose: nothing else runs yet, and local reads are fast
    total, log = _open_files(source, target, retry_failed, fsync_interval_s, clock)
    summary = BatchSummary(
        str(source),
        str(target),
        total_lines=total,
        started_at=clock.now(),
        previously_failed=log.failed_before,
        retried_failed=log.dropped_failed,
        torn_bytes=log.torn_bytes,
    )
    display = ProgressDisplay(progress, summary, clock) if progress is not None else None
    try:
        if display is not None:
            display.start()
        await _Runner(chain, log, summary, concurrency).run(source, stop or asyncio.Event())
    finally:
        log.close()
        summary.elapsed_s = clock.now() - summary.started_at
        if display is not None:
            await display.close()
    return summary


def _open_files(
    source: Path, target: Path, retry_failed: bool, fsync_interval_s: float, clock: Clock
) -> tuple[int, OutputLog]:
    try:
        total = count_lines(source)
    except OSError as exc:
        raise BatchError(f"{source}: cannot read the input file: {exc.strerror}") from None
    if target.exists() and os.path.samefile(source, target):
        raise BatchError(f"{target}: the output file must not be the input file")
    log = OutputLog(target, retry_failed=retry_failed, fsync_interval_s=fsync_interval_s, clock=clock)
    return total, log


class _Runner:
    def __init__(self, chain: Chain, log: OutputLog, summary: BatchSummary, concurrency: int) -> None:
        self.chain, self.log, self.summary = chain, log, summary
        self.slots = asyncio.Semaphore(concurrency)
        self.in_flight: set[asyncio.Task[None]] = set()
        self.failure: BaseException | None = None
        self.failed = asyncio.Event()

    async def run(self, source: Path, stop: asyncio.Event) -> None:
        producer = asyncio.create_task(self._produce(source))
        watchers = [asyncio.create_task(stop.wait()), asyncio.create_task(self.failed.wait())]
        try:
            await asyncio.wait([producer, *watchers], return_when=asyncio.FIRST_COMPLETED)
            if self.failure is not None:
                raise self.failure
            if producer.done():
                producer.result()  # a failed read of the input raises here
            else:
                self.summary.stopped = True
        except OSError as exc:  # disk full, input unreadable midway: stop, keep what is written
            where = exc.filename or self.summary.output
            raise BatchError(
                f"{where}: {exc.strerror or exc}; the results written so far are kept, rerun to resume"
            ) from exc
        finally:
            for task in watchers:
                task.cancel()
            await self._cancel([producer, *self.in_flight])

    async def _cancel(self, tasks: list[asyncio.Task[None]]) -> None:
        pending = [t for t in tasks if not t.done()]
        self.summary.cancelled = sum(t in self.in_flight for t in pending)
        for task in pending:
            task.cancel()
        if pending:  # a stage that swallows cancellation must not hang the exit
            await asyncio.wait(pending, timeout=CANCEL_GRACE_S)

    async def _produce(self, source: Path) -> None:
        seen: dict[str, int] = {}  # key -> first line, to name it in duplicate errors
        build = self.chain.build_request
        with source.open("rb") as f:
            for number, raw in enumerate(f, 1):
                if number % YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # skipping done records never awaits: let the loop breathe
                parsed = parse_line(raw, number, build)
                if parsed is None:
                    self.summary.blank += 1
                    continue
                if parsed.id is not None:
                    first = seen.setdefault(key_of(parsed.id, number), number)
                    if first != number:
                        message = (
                            f"line {number}: duplicate id {json.dumps(parsed.id, ensure_ascii=False)} "
                            f"(first used on line {first}); "
                            "only the first record with an id is sent"
                        )
                        parsed = Parsed(number, None, Problem(DUPLICATE_ID, message))
                key = key_of(parsed.id, number)
                if key in self.log.done:
                    self.summary.skipped += 1
                    continue
                if isinstance(parsed.item, Problem):
                    self._write(key, problem_record(parsed, parsed.item), ok=False)
                    self.summary.input_errors += 1
                    continue
                await self.slots.acquire()  # backpressure: at most `concurrency` records in memory
                task = asyncio.create_task(self._call(key, parsed, parsed.item))
                self.in_flight.add(task)
                self.summary.in_flight = len(self.in_flight)
                task.add_done_callback(self._finished)
        while self.in_flight:
            await asyncio.wait(list(self.in_flight))

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.in_flight.discard(task)
        self.summary.in_flight = len(self.in_flight)
        if not task.cancelled() and task.exception() is not None and self.failure is None:
            self.failure = task.exception()  # e.g. disk full: stop the whole run
            self.failed.set()

    async def _call(self, key: str, parsed: Parsed, job: Job) -> None:
        try:
            record: dict[str, Any] = {"id": parsed.id, "line": parsed.line}
            try:
                response = await self.chain.acomplete(job.request)
                parsed_value = coerce_output(response, job.schema) if job.schema else response.parsed
                record.update(_ok_fields(response, parsed_value))
                attempts: tuple[Attempt, ...] = response.attempts
                if response.cache is not None and response.cache.status == "hit":
                    self.summary.cache_hits += 1
            except CallError as exc:
                record.update(
                    ok=False, error=error_fields(exc), attempts=len(exc.attempts), request_id=exc.request_id
                )
                attempts = exc.attempts
            except Exception as exc:  # a bug or missing extra hurts this record only, explained
                record.update(ok=False, error=error_fields(exc), attempts=0, request_id=None)
                attempts = ()
            self.summary.retries += max(0, len(attempts) - 1)
            self.summary.rate_limited += sum(a.status_code == 429 for a in attempts)
            try:
                self._write(key, record, ok=record["ok"])
            except ValueError:  # NaN/Infinity in the parsed answer: JSON cannot hold it
                error = error_fields(ValueError("the parsed answer holds NaN or Infinity"))
                self._write(key, {**record, "ok": False, "parsed": None, "error": error}, ok=False)
        finally:
            self.slots.release()

    def _write(self, key: str, record: dict[str, Any], *, ok: bool) -> None:
        self.log.write(key, record)
        self.summary.written += 1
        if ok:
            self.summary.ok += 1
        else:
            self.summary.failed += 1


def _ok_fields(response: LLMResponse, parsed: Any) -> dict[str, Any]:
    return {
        "ok": True,
        "text": response.text,
        "parsed": to_jsonable_python(parsed, fallback=repr),
        "usage": response.usage.model_dump(),
        "model": response.model,
        "finish_reason": response.finish_reason,
        "attempts": len(response.attempts),
        "latency_s": round(response.latency_s, 4),
        "cache": response.cache.status if response.cache is not None else None,
        "request_id": response.request_id,
    }
