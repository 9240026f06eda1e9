"""A real Redis for the Redis store tests.

``redis_url``: ``REDIS_URL`` if set, else 127.0.0.1:6379 if it answers, else a ``redis-server``
started here on a free port. ``own_redis``: a private ``redis-server`` each test may pause,
kill and restart. Without Redis the tests skip, saying how to run them; with ``CI=true`` they
fail instead, so a CI run cannot pass by skipping them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, NoReturn

import pytest
import redis

from llmchain.stores._redis_common import RedisSettings, parse_settings
from llmchain.stores._shared import mask_url, with_query

if TYPE_CHECKING:
    from .test_multiprocess import Workers

HOW_TO_RUN = ("to run them, start Redis (`redis-server --port 6379 --save ''`) or set "
              "REDIS_URL=redis://host:port/db")


def _missing(why: str) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{why}; with CI=true the Redis tests must run ({HOW_TO_RUN})", pytrace=False)
    pytest.skip(f"{why}; {HOW_TO_RUN}")


def answers(url: str, timeout: float = 0.5) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisProcess:
    """A redis-server of our own, on a free port, that a test may pause, kill and restart."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not answers(self.url, 0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def pause(self) -> None:
        """SIGSTOP: the server keeps its sockets open and answers nothing (a hung server)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: connections reset, the port refuses until ``start()`` again."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
            self.proc.terminate()
            self.proc.wait(5)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        if not answers(url):
            _missing(f"REDIS_URL={mask_url(url)} does not answer")
        yield url
        return
    if answers("redis://127.0.0.1:6379/0"):
        yield "redis://127.0.0.1:6379/0"
        return
    binary = shutil.which("redis-server")
    if binary is None:
        _missing("no Redis: REDIS_URL is unset, nothing answers on 127.0.0.1:6379 and there is no "
                 "redis-server binary")
    server = RedisProcess(binary).start()
    try:
        yield server.url
    finally:
        server.stop()


def delete_prefix(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        names = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if names:
            client.delete(*names)
    finally:
        client.close()


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    name = f"llmchain-test-{uuid.uuid4().hex[:12]}"
    yield name
    delete_prefix(redis_url, name)


@pytest.fixture
def settings(redis_url: str, prefix: str) -> RedisSettings:
    """Store settings on the test Redis under this test's prefix."""
    return parse_settings(with_query(redis_url, key_prefix=prefix))


@pytest.fixture
def own_redis() -> Iterator[RedisProcess]:
    """A private redis-server (for tests that pause or kill it)."""
    binary = shutil.which("redis-server")
    if binary is None:
        _missing("this test pauses and kills a Redis server of its own and needs the redis-server binary")
    server = RedisProcess(binary).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def workers(redis_url: str, prefix: str) -> Iterator[Workers]:
    """Three worker processes on this checkout, sharing the test's Redis key prefix."""
    from .test_multiprocess import Workers, worker_env

    pool = Workers(3, worker_env(redis_url, prefix))
    yield pool
    pool.close()
