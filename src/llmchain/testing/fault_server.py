"""A real HTTP/1.1 LLM server on 127.0.0.1 that misbehaves on purpose, from a seeded plan.

It speaks OpenAI Chat Completions (``POST /v1/chat/completions``), OpenAI embeddings (``POST
/v1/embeddings``: a deterministic vector per input) and Anthropic Messages (``POST
/v1/messages``), streaming included, well enough for the official SDKs. Each request
takes the next ``Fault`` of the plan (see ``_fault_plan``); optional server-side requests- and
tokens-per-minute limits answer 429 like a provider and count ``violations``. Every request is
recorded for assertions.

::

    with FaultServer(["429", "reset", "ok"]) as server:
        chain = Chain(transport={"use": "openai", "base_url": server.base_url, "api_key_env": ""})
        ...
        assert [r.fault for r in server.requests] == ["429", "reset", "ok"]

``with`` (and ``async with``) run the server on its own loop in a daemon thread, so sync and
async clients alike can use it; ``llmchain serve-mock`` runs it in the foreground.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._fault_plan import Fault, FaultPlan, PlanLike
from ._http11 import Connection, HttpRequest, Reply, response
from ._limits import ServerLimits
from ._responder import Responder
from ._wire import Api, Ask, embeddings_body, error_body, read_ask, tokens
from ._wire_tools import describe, tool_results

_PLAIN = Fault()  # the answer to a request outside a scoped plan (set_plan(for_requests=...))

__all__ = ["Fault", "FaultPlan", "FaultServer", "RecordedRequest"]

#: A function of the request body returning the answer text, or ``{"text": ..., "tool_calls":
#: [{"name": ..., "arguments": {...}}]}`` to answer with tool calls.
Content = Callable[[dict[str, Any]], str | dict[str, Any]]


@dataclass(frozen=True)
class RecordedRequest:
    """A request the server received, and what it did about it."""

    seq: int
    api: Api | None
    method: str
    path: str
    body: Any = field(repr=False)  # the decoded JSON body (None if it was not JSON)
    headers: dict[str, str] = field(repr=False)
    fault: str  # the fault label ("ok", "429", "reset", "rpm_limit"...)
    status: int | None  # status sent, or None when no status line was sent

    @property
    def model(self) -> str | None:
        return self.body.get("model") if isinstance(self.body, dict) else None

    @property
    def stream(self) -> bool:
        return isinstance(self.body, dict) and bool(self.body.get("stream"))


class FaultServer:
    """A loopback LLM server with per-request faults. See the module docstring.

    ``plan``: a FaultPlan, a script (list of faults), a rates dict or one fault (see
    ``FaultPlan.coerce``); ``seed`` seeds rates given that way. ``rpm_limit`` / ``tpm_limit``:
    server-side limits answered with 429s, stated per ``limit_window_s`` (60: per minute; 1: a
    1 s window); ``limit_per_second=True`` also enforces them over every second (Azure's
    per-minute limits evaluated per second). ``content``: the answer text, ``"echo"`` (the last
    user message) or a function of the request body; ``json_content``: the answer to
    structured-output requests (default: a value built from their schema). ``piece_chars``:
    text per stream event; ``stream_interval_s``: pause between stream events. ``api_key``:
    require this key (401 otherwise). ``record=False`` keeps no request records.
    ``tool_calls``: answer requests that offer tools with these calls (``{"name", "arguments"}``)
    until the conversation sends tool results back, which are then echoed.
    ``ssl_context``: serve https (for tests of certificates). The server also answers requests
    in a proxy's absolute form (``POST http://host/v1/chat/completions``), so it can stand in for
    an HTTP proxy.
    """

    def __init__(
        self,
        plan: PlanLike = None,
        *,
        seed: int | None = 0,
        rpm_limit: int | None = None,
        tpm_limit: int | None = None,
        limit_window_s: float = 60.0,
        limit_per_second: bool = False,
        content: str | Content = "echo",
        json_content: Any = None,
        piece_chars: int = 16,
        stream_interval_s: float = 0.0,
        api_key: str | None = None,
        tool_calls: Sequence[Mapping[str, Any]] = (),
        record: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._seed = seed
        self._plan = FaultPlan.coerce(plan, seed)
        self._limits = ServerLimits(rpm_limit, tpm_limit, window_s=limit_window_s,
                                    per_second=limit_per_second)
        self._content = content
        self._tool_calls = list(tool_calls)
        self._responder = Responder(json_content=json_content, piece_chars=piece_chars,
                                    stream_interval_s=stream_interval_s)
        self.api_key = api_key
        self.record = record
        self.host, self.port = host, port
        self.ssl_context = ssl_context  # serve https with this context (tests of TLS options)
        self._records: list[RecordedRequest] = []
        self._count = 0
        self._plan_ids: frozenset[str] | None = None  # see set_plan(for_requests=...)
        self._plan_count = 0
        self._lock = threading.Lock()
        self._conns: set[Connection] = set()
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- addresses and state ------------------------------------------------------------------

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """OpenAI-style base URL (``.../v1``)."""
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """Anthropic-style base URL (the SDK and the transport add ``/v1/messages``)."""
        return self.url

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far (a copy), oldest first."""
        with self._lock:
            return list(self._records)

    @property
    def request_count(self) -> int:
        return self._count

    @property
    def violations(self) -> int:
        """Requests refused with 429 by the server-side rpm/tpm limits."""
        return self._limits.violations

    @property
    def plan(self) -> FaultPlan:
        return self._plan

    def set_plan(self, plan: PlanLike, *, seed: int | None = None,
                 for_requests: Collection[str] | None = None) -> None:
        """Use another plan from the next request on (e.g. between test phases).

        ``for_requests``: only requests carrying one of these ids (the ``idempotency-key``
        header, llmchain's request id) take their fault from the plan; any other request is
        answered plainly and leaves the plan alone. A phase that follows one with timed-out
        calls needs this: an attempt its client gave up on can still reach the server after
        the new plan is set, and would otherwise use up a fault meant for the new phase.
        ``plan_requests`` counts the requests that took a fault from this plan."""
        with self._lock:
            self._plan = FaultPlan.coerce(plan, self._seed if seed is None else seed)
            self._plan_ids = frozenset(for_requests) if for_requests is not None else None
            self._plan_count = 0

    @property
    def plan_requests(self) -> int:
        """Requests that took their fault from the current plan (see ``set_plan``)."""
        return self._plan_count

    def _next_fault(self, request: HttpRequest) -> Fault:
        with self._lock:
            ids = self._plan_ids
            if ids is not None and request.headers.get("idempotency-key") not in ids:
                return _PLAIN
            self._plan_count += 1
            return self._plan.next()

    @property
    def open_connections(self) -> int:
        """Client connections currently open."""
        return len(self._conns)

    @property
    def requests_per_open_connection(self) -> list[int]:
        """How many requests each open client connection has carried (keep-alive reuse)."""
        return sorted(conn.served for conn in list(self._conns))

    def close_idle(self) -> int:
        """Close every idle keep-alive connection now, as a server does when its keep-alive
        timeout runs out (uvicorn: 5 s); returns how many. Thread-safe."""
        loop = self._loop
        if loop is None:
            return 0
        if loop.is_running() and threading.current_thread() is not self._thread:
            future = asyncio.run_coroutine_threadsafe(self._close_idle(), loop)
            return future.result(5)
        return self._close_idle_now()

    async def _close_idle(self) -> int:
        return self._close_idle_now()

    def _close_idle_now(self) -> int:
        idle = [conn for conn in self._conns if conn.idle]
        for conn in idle:
            conn.close()
        return len(idle)

    def clear(self) -> None:
        """Forget recorded requests and violations."""
        with self._lock:
            self._records.clear()
            self._count = self._limits.violations = 0

    # -- lifecycle ----------------------------------------------------------------------------

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Connection(self._dispatch, self._conns), self.host, self.port, backlog=2048,
            ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        await asyncio.sleep(0)  # let accepts in flight finish, so their connections end too
        for conn in list(self._conns):
            conn.reset()
        if self._server is not None:
            await self._server.wait_closed()
        self._server = None
        current = asyncio.current_task()
        rest = [t for t in asyncio.all_tasks() if t is not current]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    async def serve(self, ready: Callable[[FaultServer], None] | None = None) -> None:
        """Serve on the running loop until cancelled (what ``llmchain serve-mock`` does)."""
        await self._open()
        if ready is not None:
            ready(self)
        try:
            await asyncio.Event().wait()
        finally:
            await self._shutdown()

    def start(self) -> FaultServer:
        """Start on a random free port (unless ``port`` was given), on a background thread."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
                loop.run_until_complete(self._shutdown())
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="llmchain-fault-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop serving: open connections are reset, hanging requests end."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._thread = self._loop = None

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> FaultServer:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    def __repr__(self) -> str:
        state = f"{self.url}" if self._server is not None else "stopped"
        return f"<FaultServer {state} plan={self._plan!r} requests={self._count}>"

    # -- per request --------------------------------------------------------------------------

    def _dispatch(self, request: HttpRequest, conn: Connection) -> Reply:
        path = request.path.split("?", 1)[0]
        if path.endswith("/embeddings") and request.method == "POST":
            return self._embeddings(request, conn)
        api: Api | None = ("openai" if path.endswith("/chat/completions")
                           else "anthropic" if path.endswith("/messages") else None)
        if api is None or request.method != "POST":
            if request.method == "GET" and path in ("/health", "/v1/health"):
                return response(200, b'{"status":"ok"}', keep_alive=request.keep_alive)
            return self._refuse(request, api or "openai", 404, f"no route for {request.method} {path}")
        try:
            body = json.loads(request.body)
            ask = read_ask(api, body)
        except ValueError as exc:  # json.JSONDecodeError included
            return self._refuse(request, api, 400, f"invalid request body: {exc}")
        if self.api_key is not None and not self._authorised(api, request.headers):
            return self._refuse(request, api, 401, "Incorrect API key provided.", body)
        fault = self._next_fault(request)
        text, calls = self._answer(body, ask.schema)
        headers, refused, wait = self._limits.check(api, tokens(ask.input_chars) + tokens(len(text)))
        if refused is not None:
            self._note(request, api, body, refused, 429)
            fault = Fault("rate_limited", status=429, retry_after=max(1, round(wait + 0.5)),
                          headers=dict(headers))
            return self._responder.reply(conn, api, ask, fault, text, request.keep_alive, [])
        self._note(request, api, body, fault.label, self._responder.status_of(fault, ask))
        return self._responder.reply(conn, api, ask, fault, text, request.keep_alive, headers, calls)

    def _embeddings(self, request: HttpRequest, conn: Connection) -> Reply:
        """An embeddings request: the plan's fault and the limits apply as to completions."""
        try:
            body = json.loads(request.body)
            inputs = body["input"]
            inputs = [inputs] if isinstance(inputs, str) else inputs
            if not isinstance(inputs, list) or not all(isinstance(t, str) for t in inputs):
                raise ValueError("input must be a string or a list of strings")
        except (ValueError, KeyError, TypeError) as exc:
            return self._refuse(request, "openai", 400, f"invalid request body: {exc}")
        if self.api_key is not None and not self._authorised("openai", request.headers):
            return self._refuse(request, "openai", 401, "Incorrect API key provided.", body)
        fault = self._next_fault(request)
        chars = sum(len(t) for t in inputs)
        headers, refused, wait = self._limits.check("openai", tokens(chars))
        ask = Ask("openai", str(body.get("model", "")), False, "", chars, None, None, False)
        if refused is not None:
            self._note(request, "openai", body, refused, 429)
            fault = Fault("rate_limited", status=429, retry_after=max(1, round(wait + 0.5)),
                          headers=dict(headers))
            return self._responder.reply(conn, "openai", ask, fault, "", request.keep_alive, [])
        self._note(request, "openai", body, fault.label, self._responder.status_of(fault, ask))
        if fault.kind != "ok":
            return self._responder.reply(conn, "openai", ask, fault, "", request.keep_alive, headers)
        dims = int(body.get("dimensions") or 8)
        answer = json.dumps(embeddings_body(str(body.get("model", "")), inputs, dims))
        reply = response(200, answer.encode(), headers, keep_alive=request.keep_alive)
        if fault.delay_s <= 0:
            return reply

        async def later() -> None:
            await asyncio.sleep(fault.delay_s)
            conn.write(reply)

        return later()

    def _answer(self, body: dict[str, Any], schema: dict[str, Any] | None) -> tuple[str, list[Any]]:
        content = self._content
        if callable(content):
            answer = content(body)
            if isinstance(answer, dict):
                return str(answer.get("text") or ""), list(answer.get("tool_calls") or ())
            return answer, []
        if schema is not None:
            return self._responder.json_answer(schema), []
        if self._tool_calls and body.get("tools"):
            results = tool_results(body["messages"])
            if results is None:
                return "", self._tool_calls
            return "Tool results: " + "; ".join(results), []
        if content == "echo":
            messages = body["messages"]
            for message in reversed(messages):
                # the last user turn that is not only tool results (Anthropic sends those as user)
                if message.get("role") == "user" and describe(message.get("content")):
                    return describe(message["content"]), []
            return "", []
        return content, []

    def _authorised(self, api: Api, headers: dict[str, str]) -> bool:
        if headers.get("authorization") == f"Bearer {self.api_key}":
            return True  # OpenAI, and recent Anthropic SDKs
        return api == "anthropic" and headers.get("x-api-key") == self.api_key

    def _note(self, request: HttpRequest, api: Api | None, body: Any, label: str,
              status: int | None) -> None:
        with self._lock:
            self._count += 1
            if self.record:
                self._records.append(RecordedRequest(self._count, api, request.method, request.path,
                                                     body, request.headers, label, status))

    def _refuse(self, request: HttpRequest, api: Api, status: int, message: str,
                body: Any = None) -> bytes:
        self._note(request, api, body, str(status), status)
        payload = json.dumps(error_body(api, status, message)).encode()
        return response(status, payload, keep_alive=request.keep_alive)
