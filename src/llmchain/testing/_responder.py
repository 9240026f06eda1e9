"""How the fault server carries out one ``Fault``: the bytes it writes, when, and how it stops.

A response is built as a head plus body parts (for streams, one chunk per event), so every
fault is a variation on the same material: all of it at once, part of it then a close, the head
then silence, or the bytes trickled.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ._fault_plan import Fault
from ._hostile import HOSTILE, hostile_reply
from ._http11 import LAST_CHUNK, Connection, Reply, chunk, response_head
from ._limits import anthropic_headers, openai_headers
from ._wire import (
    Api,
    Ask,
    completion,
    error_body,
    schema_instance,
    schema_violation,
    stream_error_event,
    stream_events,
)
from ._wire_tools import make_calls

Headers = list[tuple[str, str]]
_SLOW = frozenset({"hang_before_headers", "hang_after_headers", "trickle"})
_NOT_JSON = b"<html><head><title>502 Bad Gateway</title></head><body>upstream error</body></html>"
_BAD_SHAPE = b'{"object": "list", "data": [], "note": "this is not a completion"}'
_NOT_JSON_TEXT = 'Sure! Here is the JSON you asked for: {"answer": 42'


class Responder:
    """Turns (fault, answer text) into what the connection sees."""

    def __init__(self, *, json_content: Any, piece_chars: int, stream_interval_s: float) -> None:
        self.json_content = json_content
        self.piece_chars = piece_chars
        self.stream_interval_s = stream_interval_s
        self._ids = itertools.count(1)

    def json_answer(self, schema: dict[str, Any]) -> str:
        value = self.json_content if self.json_content is not None else schema_instance(schema)
        return value if isinstance(value, str) else json.dumps(value)

    @staticmethod
    def status_of(fault: Fault, ask: Ask) -> int | None:
        """The status line this fault sends (None: none is sent)."""
        kind = fault.kind
        if kind in ("reset", "hang_before_headers"):
            return None
        if kind in HOSTILE:
            return 200
        if fault.raw is not None:
            return fault.status or 200
        if kind == "rate_limited":
            return 429
        if kind == "status":
            return fault.status or 503
        if kind == "stream_error" and not ask.stream:
            return 529 if ask.api == "anthropic" else 503
        return 200

    def reply(self, conn: Connection, api: Api, ask: Ask, fault: Fault, text: str,
              keep_alive: bool, headers: Headers, calls: Sequence[Mapping[str, Any]] = ()) -> Reply:
        if calls and not fault.tool_calls:  # calls the content function asked for
            fault = replace(fault, tool_calls=tuple(calls))
        if fault.content is not None:
            text = fault.content
        elif fault.kind == "content_not_json":
            text = _NOT_JSON_TEXT
        elif fault.kind == "schema_invalid":
            text = json.dumps(schema_violation(ask.schema or {}))
        if fault.kind in HOSTILE:
            return hostile_reply(conn, ask, fault, text, keep_alive)
        paced = ask.stream and self.stream_interval_s > 0
        if fault.delay_s > 0 or fault.kind in _SLOW or paced:
            return self._later(conn, api, ask, fault, text, keep_alive, headers)
        return self._now(conn, api, ask, fault, text, keep_alive, headers)

    # -- building blocks ----------------------------------------------------------------------

    def _headers(self, api: Api, fault: Fault, extra: Headers) -> Headers:
        rid = f"req_{next(self._ids):012x}"
        out: Headers = [("x-request-id" if api == "openai" else "request-id", rid), *extra]
        out += fault.headers.items()
        return out

    def _parts(self, api: Api, ask: Ask, fault: Fault, text: str, keep_alive: bool,
               extra: Headers) -> tuple[bytes, list[bytes]]:
        """(head, body parts) of the answer this fault starts from."""
        headers = self._headers(api, fault, extra)
        status = self.status_of(fault, ask) or 200
        kind = fault.kind
        if fault.raw is not None:
            return _whole(status, fault.raw, fault.content_type, headers, keep_alive)
        if status != 200:
            if kind == "rate_limited" and not any(k.startswith(("x-ratelimit", "anthropic-rate"))
                                                  for k, _ in headers):
                fmt = openai_headers if api == "openai" else anthropic_headers
                headers += fmt("requests", 60, 0, float(_seconds(fault.retry_after) or 1.0))
            if fault.retry_after is not None and not any(k == "retry-after" for k, _ in headers):
                headers.append(("retry-after", _header_value(fault.retry_after)))
            message = fault.message or _message(status)
            body = json.dumps(error_body(api, status, message)).encode()
            return _whole(status, body, "application/json", headers, keep_alive)
        if kind == "not_json":
            return _whole(200, _NOT_JSON, "text/html", headers, keep_alive)
        if kind == "bad_shape":
            return _whole(200, _BAD_SHAPE, "application/json", headers, keep_alive)
        if not ask.stream:
            body = json.dumps(completion(ask, text, make_calls(fault.tool_calls, api))).encode()
            return _whole(200, body, "application/json", headers, keep_alive)
        headers += [("content-type", "text/event-stream"), ("cache-control", "no-cache")]
        head = response_head(200, headers, length=None, keep_alive=keep_alive)
        events = stream_events(ask, text, self.piece_chars, make_calls(fault.tool_calls, api))
        if kind == "stream_error":
            cut = min(fault.after_events, len(events) - 1)
            events = [*events[:cut], stream_error_event(api)]
        return head, [*(chunk(e) for e in events), LAST_CHUNK]

    def _now(self, conn: Connection, api: Api, ask: Ask, fault: Fault, text: str,
             keep_alive: bool, headers: Headers) -> bytes:
        if fault.kind == "reset":
            conn.reset()
            return b""
        head, parts = self._parts(api, ask, fault, text, keep_alive, headers)
        if fault.kind != "truncated_stream":
            return head + b"".join(parts)
        if ask.stream:
            conn.write(head + b"".join(parts[:min(fault.after_events, len(parts) - 2)]))
        else:
            conn.write(head + parts[0][: len(parts[0]) // 2])
        conn.close()
        return b""

    async def _later(self, conn: Connection, api: Api, ask: Ask, fault: Fault, text: str,
                     keep_alive: bool, headers: Headers) -> None:
        if fault.delay_s > 0:
            await asyncio.sleep(fault.delay_s)
        kind = fault.kind
        if kind == "hang_before_headers":
            await asyncio.sleep(fault.hang_s)
            conn.close()
            return
        if kind not in _SLOW and not (ask.stream and self.stream_interval_s > 0):
            conn.write(self._now(conn, api, ask, fault, text, keep_alive, headers))
            return
        head, parts = self._parts(api, ask, fault, text, keep_alive, headers)
        conn.write(head)
        if kind == "hang_after_headers":
            await asyncio.sleep(fault.hang_s)
            conn.close()
        elif kind == "trickle":
            data, step = b"".join(parts), max(1, fault.trickle_bytes)
            for i in range(0, len(data), step):
                await asyncio.sleep(fault.trickle_interval_s)
                conn.write(data[i:i + step])
        else:  # a paced stream: one event per interval
            if kind == "truncated_stream":
                parts = parts[:min(fault.after_events, len(parts) - 2)]
            for part in parts:
                conn.write(part)
                await asyncio.sleep(self.stream_interval_s)
            if kind == "truncated_stream":
                conn.close()


def _whole(status: int, body: bytes, content_type: str, headers: Headers,
           keep_alive: bool) -> tuple[bytes, list[bytes]]:
    head = response_head(status, [("content-type", content_type), *headers], length=len(body),
                         keep_alive=keep_alive)
    return head, [body]


def _seconds(value: float | str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _message(status: int) -> str:
    if status == 429:
        return "Rate limit reached for requests. Please try again in 1s."
    if status in (529, 503):
        return "Overloaded"
    if status == 401:
        return "Incorrect API key provided."
    return f"fault server: injected HTTP {status}"



def _header_value(value: float | str) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
