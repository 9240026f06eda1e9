"""The lean HTTP/1.1 engine against a raw TCP server that answers with exact bytes: framing
(length, chunked, close), compression, interim answers, keep-alive and the pool, TLS."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from llmchain import ProviderError, TransportError
from llmchain.transports._h1_pool import H1Pool

Reply = bytes | Callable[[asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


class RawServer:
    """Answers request n with ``replies[n]`` (bytes, or a coroutine writing to the stream)."""

    def __init__(self, replies: list[Reply], ssl_context: ssl.SSLContext | None = None) -> None:
        self.replies, self.ssl = replies, ssl_context
        self.connections = 0
        self.requests: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                self.requests.append(head + await reader.readexactly(length))
                reply = self.replies[len(self.requests) - 1]
                if isinstance(reply, bytes):
                    writer.write(reply)
                else:
                    await reply(writer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def pool(self, scheme: str = "http", **kw: Any) -> H1Pool:
        options: dict[str, Any] = dict(where="test", limit=10, connect_timeout=2, read_timeout=2,
                                       keepalive_s=30)
        return H1Pool(f"{scheme}://127.0.0.1:{self.port}/v1/x?a=b", {"x-h": "1"}, **{**options, **kw})


def run(replies: list[Reply], body: Callable[[RawServer, H1Pool], Awaitable[Any]], **kw: Any) -> Any:
    async def main() -> Any:
        async with RawServer(replies) as server:
            pool = server.pool(**kw)
            try:
                return await body(server, pool)
            finally:
                await pool.close()
    return asyncio.run(main())


async def post(pool: H1Pool) -> tuple[int, dict[str, str], bytes]:
    return await pool.post(b'{"q": 1}', {"idempotency-key": "abc"})


def test_request_bytes_and_keep_alive() -> None:
    async def body(server: RawServer, pool: H1Pool) -> None:
        assert await post(pool) == (200, {"content-length": "2"}, b"ok")
        assert await post(pool) == (200, {"content-length": "2"}, b"ok")
        assert server.connections == 1
        assert server.requests[0] == (b"POST /v1/x?a=b HTTP/1.1\r\nhost: 127.0.0.1:%d\r\nx-h: 1\r\n"
                                      b"idempotency-key: abc\r\ncontent-length: 8\r\n\r\n"
                                      b'{"q": 1}' % server.port)
    run([OK, OK], body)


def test_chunked_with_extensions_and_trailers() -> None:
    reply = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nx-trailer: 1\r\n\r\n")

    async def body(server: RawServer, pool: H1Pool) -> None:
        assert (await post(pool))[2] == b"hello world"
        assert (await post(pool))[2] == b"ok"
        assert server.connections == 1  # the trailers were consumed: the connection is clean
    run([reply, OK], body)


def test_gzip_bodies() -> None:
    packed = gzip.compress(b'{"answer": "zipped"}')
    whole = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n%s" % (len(packed), packed)
    half = len(packed) // 2
    chunked = (b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n"
               b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, packed[:half], len(packed) - half, packed[half:]))

    async def body(server: RawServer, pool: H1Pool) -> None:
        assert (await post(pool))[2] == b'{"answer": "zipped"}'
        assert (await post(pool))[2] == b'{"answer": "zipped"}'
    run([whole, chunked], body)


def test_close_delimited_and_connection_close_are_not_reused() -> None:
    async def until_close(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nall of ")
        await writer.drain()
        writer.write(b"it")
        writer.close()

    closing = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 3\r\n\r\nbye"

    async def body(server: RawServer, pool: H1Pool) -> None:
        assert (await post(pool))[2] == b"all of it"
        assert (await post(pool))[2] == b"bye"
        assert (await post(pool))[2] == b"ok"
        assert server.connections == 3
    run([until_close, closing, OK], body)


def test_interim_answers_are_skipped_and_heads_may_arrive_byte_by_byte() -> None:
    async def slowly(writer: asyncio.StreamWriter) -> None:
        for byte in b"HTTP/1.1 100 Continue\r\n\r\n" + OK:
            writer.write(bytes([byte]))
            await writer.drain()

    async def body(server: RawServer, pool: H1Pool) -> None:
        assert await post(pool) == (200, {"content-length": "2"}, b"ok")
    run([slowly], body)


@pytest.mark.parametrize("reply", [b"SSH-2.0-OpenSSH_9.6\r\n\r\n", b"HTTP/1.1 abc\r\n\r\n",
                                   b"HTTP/1.1 200 OK\r\ncontent-length: lots\r\n\r\n"])
def test_not_http_is_a_provider_error(reply: bytes) -> None:
    async def body(server: RawServer, pool: H1Pool) -> None:
        with pytest.raises(ProviderError, match="malformed HTTP response"):
            await post(pool)
    run([reply], body)


def test_a_connection_closed_while_idle_is_not_reused() -> None:
    async def answer_then_close(writer: asyncio.StreamWriter) -> None:
        writer.write(OK)
        await writer.drain()
        writer.close()

    async def body(server: RawServer, pool: H1Pool) -> None:
        await post(pool)
        await asyncio.sleep(0.05)  # the server's FIN arrives while the connection is idle
        assert (await post(pool))[2] == b"ok"
        assert server.connections == 2
    run([answer_then_close, OK], body)


def test_idle_connections_expire() -> None:
    async def body(server: RawServer, pool: H1Pool) -> None:
        await post(pool)
        await asyncio.sleep(0.1)
        await post(pool)
        assert server.connections == 2
    run([OK, OK], body, keepalive_s=0.05)


def test_a_cut_body_is_a_transport_error() -> None:
    async def cut(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
        await writer.drain()
        writer.close()

    async def body(server: RawServer, pool: H1Pool) -> None:
        with pytest.raises(TransportError, match="before the answer was complete"):
            await post(pool)
    run([cut], body)


def test_the_pool_limit_queues_and_survives_cancelled_waiters() -> None:
    async def slow(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.05)
        writer.write(OK)

    async def body(server: RawServer, pool: H1Pool) -> None:
        first = asyncio.create_task(post(pool))
        await asyncio.sleep(0.01)
        waiting = asyncio.create_task(post(pool))  # queued behind the only connection
        await asyncio.sleep(0.01)
        waiting.cancel()
        results = await asyncio.gather(first, post(pool), post(pool), return_exceptions=False)
        assert [r[2] for r in results] == [b"ok"] * 3
        assert waiting.cancelled() and server.connections == 1
    run([slow, slow, slow, slow], body, limit=1)


def test_streamed_chunks_arrive_as_sent() -> None:
    sent = asyncio.Event()

    async def paced(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked"
                     b"\r\n\r\n6\r\nfirst\n\r\n")
        await writer.drain()
        await sent.wait()
        writer.write(b"7\r\nsecond\n\r\n0\r\n\r\n")

    async def body(server: RawServer, pool: H1Pool) -> None:
        async with pool.stream(b"{}", None) as answer:
            assert (answer.status, answer.content_type) == (200, "text/event-stream")
            chunks = answer.iter_chunks()
            assert await chunks.__anext__() == b"first\n"  # before the server sends the rest
            sent.set()
            assert [c async for c in chunks] == [b"second\n"]
        assert (await post(pool))[2] == b"ok"
        assert server.connections == 1
    run([paced, OK], body)


def test_an_abandoned_stream_closes_its_connection() -> None:
    reply = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n"

    async def body(server: RawServer, pool: H1Pool) -> None:
        async with pool.stream(b"{}", None) as answer:
            assert await answer.iter_chunks().__anext__() == b"ab"
        assert (await post(pool))[2] == b"ok"
        assert server.connections == 2
    run([reply, OK], body)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust it, as a private CA would be
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def main() -> None:
        async with RawServer([OK, OK], ssl_context=server_ctx) as server:
            pool = server.pool("https")
            assert (await post(pool))[2] == b"ok"
            assert (await post(pool))[2] == b"ok"
            assert server.connections == 1
            await pool.close()
    asyncio.run(main())
