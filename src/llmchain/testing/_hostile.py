"""Hostile-server faults: answers that break HTTP itself, or a client's memory, the way broken
servers and proxies do. Each has one documented outcome on every engine (docs/transports.md):

* ``conflicting_length``: two different Content-Length headers → ``ProviderError``
  ("malformed HTTP response", not retried);
* ``bad_length``: ``Content-Length: -1`` → the same;
* ``bad_chunk``: a chunk size that is not hex (``0x1a``) → the same;
* ``huge_head``: 100 KiB of response headers → ``ResponseTooLarge`` (``max_head_bytes``);
* ``gzip_bomb``: ~130 KiB of gzip that inflates to 128 MiB → ``ResponseTooLarge``
  (``max_decompressed_bytes``);
* ``unasked_encoding``: ``content-encoding: br``, never asked for → ``ProviderError`` (not
  decoded, not retried);
* ``stale_close``: on a connection that served a request before, close it without answering
  (a keep-alive timeout racing the request) → re-sent once on another connection: success;
* ``stream_hold_open``: a stream's events, end marker included, then the connection held open
  → the stream ends at its marker, and the connection is closed when the reader stops.

``trickle`` (in ``_responder``) is the slow one: a read timeout or the call's deadline ends it.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from functools import lru_cache

from ._fault_plan import Fault
from ._http11 import LAST_CHUNK, Connection, Reply, chunk
from ._wire import REASONS, Ask, completion, stream_events

HOSTILE = frozenset({"conflicting_length", "bad_length", "bad_chunk", "huge_head", "gzip_bomb",
                     "unasked_encoding", "stale_close", "stream_hold_open"})
BOMB_BYTES = 128 * 1024 * 1024


@lru_cache(maxsize=1)
def gzip_bomb() -> bytes:
    """A gzip body that inflates to ``BOMB_BYTES`` (built once, a MiB at a time)."""
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"\0" * (1024 * 1024)
    parts = [z.compress(block) for _ in range(BOMB_BYTES // len(block))]
    return b"".join(parts) + z.flush()


def _head(status: int, headers: list[tuple[str, str]], keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}", "server: llmchain-fault-server",
             *(f"{k}: {v}" for k, v in headers)]
    if not keep_alive:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def hostile_reply(conn: Connection, ask: Ask, fault: Fault, text: str, keep_alive: bool) -> Reply:
    """What the connection sees for a hostile ``fault`` (see the module docstring)."""
    kind = fault.kind
    if kind == "stale_close":
        if conn.served > 1:
            conn.close()  # FIN without a byte of answer, as a server whose keep-alive ran out
            return b""
        kind = "ok"
    if kind == "stream_hold_open":
        return _hold_open(conn, ask, text, fault.hang_s)
    body = json.dumps(completion(ask, text)).encode()
    json_type = ("content-type", "application/json")
    if kind == "conflicting_length":
        return _head(200, [json_type, ("content-length", str(len(body))),
                           ("content-length", str(len(body) + 7))], keep_alive) + body + b"garbage"
    if kind == "bad_length":
        return _head(200, [json_type, ("content-length", "-1")], keep_alive) + body
    if kind == "bad_chunk":
        return (_head(200, [json_type, ("transfer-encoding", "chunked")], keep_alive)
                + b"0x%x\r\n%b\r\n" % (len(body), body) + LAST_CHUNK)
    if kind == "huge_head":
        padding = [(f"x-padding-{i}", "p" * 1000) for i in range(100)]
        return _head(200, [json_type, *padding, ("content-length", str(len(body)))], keep_alive) + body
    if kind == "gzip_bomb":
        bomb = gzip_bomb()
        return _head(200, [json_type, ("content-encoding", "gzip"), ("content-length", str(len(bomb)))],
                     keep_alive) + bomb
    if kind == "unasked_encoding":
        return _head(200, [json_type, ("content-encoding", "br"), ("content-length", str(len(body)))],
                     keep_alive) + body
    return _head(200, [json_type, ("content-length", str(len(body)))], keep_alive) + body


async def _hold_open(conn: Connection, ask: Ask, text: str, hang_s: float) -> None:
    if not ask.stream:
        body = json.dumps(completion(ask, text)).encode()
        conn.write(_head(200, [("content-type", "application/json"), ("content-length", str(len(body)))],
                         True) + body)
        return
    head = _head(200, [("content-type", "text/event-stream"), ("transfer-encoding", "chunked")], True)
    conn.write(head + b"".join(chunk(e) for e in stream_events(ask, text)))
    await asyncio.sleep(hang_s)  # the end marker was sent; the body never ends
    conn.close()
