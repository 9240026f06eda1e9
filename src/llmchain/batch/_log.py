"""The batch output file: append-only JSON Lines, each record written exactly once across crashes.

Every record is one ``os.write`` of a complete line, so once the call returns the line is in the
kernel and survives ``kill -9`` of this process. On open, the existing output is scanned: a
torn last line (no newline: the process died inside a write) is truncated away, and the key of
every complete line is collected so a rerun skips it. An exclusive ``flock`` keeps two runs
from appending to the same file.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path
from typing import IO, Any

from .._clock import REAL_CLOCK, Clock
from .._redact import trim
from ._io import BatchError, dumps, key_of

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory lock, documented
    fcntl = None  # type: ignore[assignment]


class OutputLog:
    """The append-only result file: resume scan, torn-line repair, lock, one write per record."""

    def __init__(
        self,
        path: Path,
        *,
        retry_failed: bool = False,
        fsync_interval_s: float = 2.0,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self.path = path
        self.done: set[str] = set()
        self.failed_before = self.dropped_failed = self.torn_bytes = self.written = 0
        self._clock, self._interval = clock, fsync_interval_s
        self._broken: OSError | None = None
        self._fd = self._open_locked(path)
        try:
            self._scan(retry_failed)
        except BaseException:
            os.close(self._fd)
            raise
        self._synced_at = clock.now()

    @staticmethod
    def _open_locked(path: Path) -> int:
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)  # answers may be private
        except OSError as exc:
            raise BatchError(f"{path}: cannot open the output file: {exc.strerror}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or device cannot be scanned or truncated
            os.close(fd)
            raise BatchError(f"{path}: the output must be a regular file")
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise BatchError(f"{path}: another `llmchain batch` is writing this file") from None
        return fd

    def _scan(self, retry_failed: bool) -> None:
        tmp = self.path.with_name(self.path.name + ".rewrite")
        keep: IO[bytes] | None = None
        if retry_failed:
            keep = os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")
        try:
            end = self._read_done(keep)
        except BaseException:
            if keep is not None:
                keep.close()
                tmp.unlink()
            raise
        if self.torn_bytes:
            os.ftruncate(self._fd, end)
        if keep is not None:
            self._replace(keep, tmp)

    def _read_done(self, keep: IO[bytes] | None) -> int:
        """Collect done keys (copying kept lines to ``keep``); returns where complete lines end."""
        end = 0
        with os.fdopen(os.dup(self._fd), "rb") as f:
            f.seek(0)
            for number, raw in enumerate(f, 1):
                if not raw.endswith(b"\n"):
                    self.torn_bytes = len(raw)  # died mid-write: that record was never done
                    break
                end += len(raw)
                if not raw.strip():
                    continue
                key, ok = self._parse_result(raw, number)
                if not ok and keep is not None:
                    self.dropped_failed += 1  # forgotten, so this run sends it again
                    continue
                self.failed_before += not ok
                self.done.add(key)
                if keep is not None:
                    keep.write(raw)
        return end

    def _parse_result(self, raw: bytes, number: int) -> tuple[str, bool]:
        try:
            record = json.loads(raw)
            return key_of(record["id"], record["line"]), bool(record["ok"])
        except (ValueError, KeyError, TypeError):
            raise BatchError(
                f"{self.path}: line {number} is not a result record of `llmchain batch` "
                f"({trim(raw.decode('utf-8', 'replace').strip(), 60)!r}); the file is damaged or "
                "belongs to something else: fix or remove that line, or choose another output file"
            ) from None

    def _replace(self, keep: IO[bytes], tmp: Path) -> None:
        """Swap in the file without failed records, crash-safely (fsync, then rename)."""
        with keep:
            keep.flush()
            os.fsync(keep.fileno())
        if not self.dropped_failed:
            tmp.unlink()
            return
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)
        old, self._fd = self._fd, self._open_locked(self.path)
        os.close(old)  # the old file's lock is released only now: no other run slips in between

    def write(self, key: str, record: dict[str, Any]) -> None:
        """Append one complete line; a key is written at most once per file."""
        if key in self.done:
            raise RuntimeError(f"batch bug: record {key} would be written twice")
        if self._broken is not None:  # nothing may follow a possibly partial line
            raise self._broken
        data = memoryview(dumps(record))
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError as exc:
            self._broken = exc  # the next run truncates the partial line
            raise
        self.done.add(key)
        self.written += 1
        if self._clock.now() - self._synced_at >= self._interval:
            self.sync()

    def sync(self) -> None:
        os.fsync(self._fd)
        self._synced_at = self._clock.now()

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                self.sync()
            os.close(self._fd)
            self._fd = -1


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
