"""The built-in services (layers.services) between two stacks on a real-time memory link."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from layers import Stack
from layers.errors import ConfigurationError
from layers.links import MemoryLink
from layers.runtime import AsyncioRunner
from layers.services import HttpServer, parse_serve, stream_handler

Client = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


def run(handler: Callable[..., Awaitable[None]], body: Callable[[Client], Awaitable[None]]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        la, lb = MemoryLink.pair()
        plugins = ["arp", "ipv4", "icmp", "tcp"]
        a = Stack(plugins, clock=loop.time, settings={"arp.gratuitous_count": 0})
        b = Stack(plugins, clock=loop.time, settings={"arp.gratuitous_count": 0})
        a.add_interface(la, address="10.0.0.1/24")
        b.add_interface(lb, address="10.0.0.2/24")
        runners = [AsyncioRunner(a, loop), AsyncioRunner(b, loop)]
        for r in runners:
            r.start()
        try:
            server = await b.start_server(handler, "10.0.0.2", 80)
            await asyncio.wait_for(body(lambda: a.open_connection("10.0.0.2", 80)), 20)
            server.close()
        finally:
            for r in runners:
                r.stop()

    asyncio.run(main())


async def response(
    reader: asyncio.StreamReader, head_request: bool = False
) -> tuple[str, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = {}
    for line in head[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.lower()] = v.strip()
    if head_request:
        return head[0], headers, b""
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return head[0], headers, body


def test_keep_alive_pipelining_and_close(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("first file\n")
    (tmp_path / "b.html").write_text("<p>second</p>")
    srv = HttpServer(tmp_path)

    async def body(connect: Client) -> None:
        reader, writer = await connect()
        # two pipelined requests on one persistent connection, then one that closes
        writer.write(
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b.html HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        status, headers, got = await response(reader)
        assert status == "HTTP/1.1 200 OK" and got == b"first file\n"
        assert headers["content-type"] == "text/plain" and "connection" not in headers
        status, headers, got = await response(reader, head_request=True)
        assert status == "HTTP/1.1 200 OK" and headers["content-length"] == "13"
        # HEAD carried no body, so what follows is the next response
        writer.write(b"GET /b.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, headers, got = await response(reader)
        assert got == b"<p>second</p>" and headers["connection"] == "close"
        assert await reader.read() == b""  # the server closed
        assert srv.requests == 3

    run(srv, body)


def test_errors_and_confinement(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "index.html").write_text("index")
    (tmp_path / "with space.txt").write_text("spaced")
    srv = HttpServer(tmp_path)

    async def ask(connect: Client, raw: bytes) -> tuple[str, dict[str, str], bytes]:
        reader, writer = await connect()
        writer.write(raw)
        try:
            return await response(reader)
        finally:
            writer.close()

    async def body(connect: Client) -> None:
        assert (await ask(connect, b"GET /sub/ HTTP/1.1\r\nHost: x\r\n\r\n"))[2] == b"index"
        got = await ask(connect, b"GET /with%20space.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        assert got[2] == b"spaced"
        for evil in (b"/../../etc/passwd", b"/%2e%2e/%2e%2e/etc/passwd", b"/nope"):
            got = await ask(connect, b"GET " + evil + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            assert got[0] == "HTTP/1.1 404 Not Found"
        got = await ask(connect, b"GET / HTTP/1.1\r\n\r\n")
        assert got[0] == "HTTP/1.1 400 Bad Request" and b"Host" in got[2]
        got = await ask(connect, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        assert got[0] == "HTTP/1.1 405 Method Not Allowed" and got[1]["allow"] == "GET, HEAD"
        got = await ask(connect, b"BREW /pot\r\n\r\n")
        assert got[0] == "HTTP/1.1 400 Bad Request"
        many = b"".join(b"X-%d: y\r\n" % i for i in range(200))
        got = await ask(connect, b"GET / HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        assert got[0] == "HTTP/1.1 431 Request Header Fields Too Large"
        # HTTP/1.0 without keep-alive: one response, then the server closes
        reader, writer = await connect()
        writer.write(b"GET /sub/ HTTP/1.0\r\n\r\n")
        status, headers, got_body = await response(reader)
        assert status == "HTTP/1.1 200 OK" and headers["connection"] == "close"
        assert got_body == b"index"
        assert await reader.read() == b""

    run(srv, body)


def test_large_file_is_streamed_intact(tmp_path: Path) -> None:
    blob = bytes(range(256)) * 8192 + b"tail"  # 2 MiB and a bit
    (tmp_path / "blob.bin").write_bytes(blob)

    async def body(connect: Client) -> None:
        reader, writer = await connect()
        writer.write(b"GET /blob.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, got = await response(reader)
        assert status == "HTTP/1.1 200 OK"
        assert headers["content-type"] == "application/octet-stream"
        assert hashlib.sha256(got).digest() == hashlib.sha256(blob).digest()
        writer.close()

    run(HttpServer(tmp_path), body)


def test_builtin_page_and_echo() -> None:
    async def body(connect: Client) -> None:
        reader, writer = await connect()
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"Hello from a layers stack" in (await response(reader))[2]

    run(HttpServer(), body)

    async def echo_body(connect: Client) -> None:
        reader, writer = await connect()
        writer.write(b"ping\n" * 1000)
        writer.write_eof()
        assert await reader.read() == b"ping\n" * 1000  # echoed, then half-closed back

    run(stream_handler("echo"), echo_body)


def test_parse_serve_errors_name_the_fix(tmp_path: Path) -> None:
    assert parse_serve("http:80:" + str(tmp_path)) == ("http", 80, str(tmp_path))
    with pytest.raises(ConfigurationError, match="unknown service"):
        parse_serve("gopher:70")
    with pytest.raises(ConfigurationError, match="give a port"):
        parse_serve("echo:99999")
    with pytest.raises(ConfigurationError, match="not a directory"):
        parse_serve("http:80:/no/such/dir")
