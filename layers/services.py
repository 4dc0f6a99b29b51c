"""inetd-style built-in services for ``layers up --serve``: echo, discard, HTTP/1.1, UDP echo.

They are ordinary asyncio stream and datagram handlers, so they run on any stack that has a
stream transport (TCP) or a datagram transport (UDP) composed, ours or a third party's.

The HTTP server is small but real HTTP/1.1 (RFC 9110/9112): persistent connections by default
(``Connection: close`` or an HTTP/1.0 request without keep-alive ends them), pipelined requests
answered in order, ``Host`` required on 1.1, GET and HEAD, bounded request line and headers,
request bodies read and discarded, percent-decoded paths confined to the served directory,
files streamed in chunks with back-pressure (``drain``) rather than read whole, and an idle
timeout between requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import errno
import mimetypes
import os
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from layers import __version__
from layers.errors import ConfigurationError

if TYPE_CHECKING:
    from layers.stack import Stack

StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

SERVICES = {
    "echo": "TCP echo (RFC 862)",
    "discard": "TCP discard (RFC 863)",
    "http": "HTTP/1.1 static files: http:PORT[:DIR] (DIR default: a built-in page)",
    "udp-echo": "UDP echo (RFC 862)",
}

HTTP_PAGE = b"<!doctype html><title>layers</title><p>Hello from a layers stack.</p>\n"
MAX_REQUEST_LINE = 8192
MAX_HEADERS = 100
MAX_HEADER_BYTES = 64 * 1024
MAX_DISCARDED_BODY = 1 << 20
IDLE_TIMEOUT = 15.0
CHUNK = 64 * 1024


def parse_serve(spec: str) -> tuple[str, int, str | None]:
    """``echo:7`` -> ("echo", 7, None); ``http:80:/srv/www`` -> ("http", 80, "/srv/www")."""
    kind, _, rest = spec.partition(":")
    port_text, _, arg = rest.partition(":")
    known = ", ".join(f"{k}:PORT" for k in SERVICES)
    if kind not in SERVICES:
        raise ConfigurationError(f"--serve {spec!r}: unknown service {kind!r}; known: {known}")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigurationError(f"--serve {spec!r}: give a port 1..65535, e.g. {kind}:7")
    if arg and kind != "http":
        raise ConfigurationError(f"--serve {spec!r}: only http takes a directory")
    if arg and not Path(arg).is_dir():
        raise ConfigurationError(f"--serve {spec!r}: {arg} is not a directory")
    return kind, int(port_text), arg or None


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """RFC 862: send back everything, half-closing when the client does."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except ConnectionError:
        pass
    finally:
        writer.close()


class Discard(asyncio.Protocol):
    """RFC 863 at the protocol level, what ``--serve discard`` runs: everything received is
    thrown away, and the connection is closed from ``eof_received``, so our FIN leaves in the
    segment that acknowledges the client's (a stream handler would be woken a loop turn
    later, after a bare ACK had gone: one more segment, and one more TAP write, per
    connection)."""

    transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        if self.transport is not None:
            self.transport.close()
        return True


#: services that run as protocols (``layers.streams.create_server``) rather than handlers
PROTOCOL_SERVICES: dict[str, Callable[[], asyncio.Protocol]] = {"discard": Discard}


async def discard(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """RFC 863 as a stream handler: read and throw away everything (``--serve`` runs
    :class:`Discard`, the same at the protocol level)."""
    try:
        while await reader.read(CHUNK):
            pass
    except ConnectionError:
        pass
    finally:
        writer.close()


class UdpEcho(asyncio.DatagramProtocol):
    """RFC 862 over UDP: each datagram goes back to its sender."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)


class _BadRequest(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


class HttpServer:
    """A static-file HTTP/1.1 server; ``root=None`` serves one built-in page at ``/``."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root).resolve() if root is not None else None
        self.requests = 0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _line(self, reader: asyncio.StreamReader, timeout: float) -> bytes:
        try:
            return await asyncio.wait_for(reader.readuntil(b"\n"), timeout)
        except asyncio.LimitOverrunError:
            raise _BadRequest("431 Request Header Fields Too Large", "line too long") from None
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise _BadRequest("400 Bad Request", "truncated request") from None
            return b""

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; True to keep the connection for another."""
        try:
            line = await self._line(reader, IDLE_TIMEOUT)
            while line in (b"\r\n", b"\n"):  # RFC 9112 2.2: ignore leading empty lines
                line = await self._line(reader, IDLE_TIMEOUT)
            if not line:
                return False  # the client closed between requests
            if len(line) > MAX_REQUEST_LINE:
                raise _BadRequest("414 URI Too Long", "request line too long")
            parts = line.decode("latin-1").split()
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                raise _BadRequest("400 Bad Request", "malformed request line")
            method, target, version = parts
            headers: dict[str, str] = {}
            size = 0
            while True:
                hline = await self._line(reader, 30.0)
                if hline in (b"\r\n", b"\n", b""):
                    break
                size += len(hline)
                if len(headers) >= MAX_HEADERS or size > MAX_HEADER_BYTES:
                    raise _BadRequest("431 Request Header Fields Too Large", "too many headers")
                name, sep, value = hline.decode("latin-1").partition(":")
                if not sep or name != name.strip() or not name:
                    raise _BadRequest("400 Bad Request", "malformed header")
                key = name.lower()
                value = value.strip()
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
        except _BadRequest as bad:
            await self._send(writer, bad.status, f"{bad}\n".encode(), "text/plain", close=True)
            return False

        self.requests += 1
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        keep = ("close" not in tokens) if version == "HTTP/1.1" else ("keep-alive" in tokens)
        if version == "HTTP/1.1" and "host" not in headers:
            await self._send(writer, "400 Bad Request", b"Host header required\n", "text/plain",
                             close=True)
            return False
        if "transfer-encoding" in headers:
            await self._send(writer, "501 Not Implemented", b"request bodies are not served\n",
                             "text/plain", close=True)
            return False
        length = headers.get("content-length", "0")
        if not length.isdigit() or int(length) > MAX_DISCARDED_BODY:
            await self._send(writer, "413 Content Too Large", b"no request bodies\n",
                             "text/plain", close=True)
            return False
        if int(length):
            await reader.readexactly(int(length))
        if method not in ("GET", "HEAD"):
            await self._send(writer, "405 Method Not Allowed", b"GET or HEAD only\n",
                             "text/plain", close=not keep, extra={"Allow": "GET, HEAD"})
            return keep
        head = method == "HEAD"
        path = urllib.parse.unquote(urllib.parse.urlsplit(target).path)
        if self.root is None:
            if path in ("/", "/index.html"):
                await self._send(writer, "200 OK", HTTP_PAGE, "text/html", head=head,
                                 close=not keep)
            else:
                await self._send(writer, "404 Not Found", b"not found\n", "text/plain",
                                 head=head, close=not keep)
            return keep
        file = self._resolve(path)
        if file is None:
            await self._send(writer, "404 Not Found", b"not found\n", "text/plain", head=head,
                             close=not keep)
            return keep
        await self._send_file(writer, file, head, close=not keep)
        return keep

    def _resolve(self, path: str) -> Path | None:
        assert self.root is not None
        if "\x00" in path:
            return None
        candidate = (self.root / path.lstrip("/")).resolve()
        if candidate.is_dir():
            candidate = candidate / "index.html"
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            return None
        return candidate

    @staticmethod
    def _head(status: str, ctype: str, length: int, close: bool,
              extra: dict[str, str] | None = None) -> bytes:
        lines = [
            f"HTTP/1.1 {status}",
            f"Date: {email.utils.formatdate(usegmt=True)}",
            f"Server: layers/{__version__}",
            f"Content-Type: {ctype}",
            f"Content-Length: {length}",
        ]
        if close:
            lines.append("Connection: close")
        lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _send(self, writer: asyncio.StreamWriter, status: str, body: bytes, ctype: str,
                    *, head: bool = False, close: bool = False,
                    extra: dict[str, str] | None = None) -> None:
        writer.write(self._head(status, ctype, len(body), close, extra))
        if not head:
            writer.write(body)
        await writer.drain()

    async def _send_file(self, writer: asyncio.StreamWriter, file: Path, head: bool,
                         close: bool) -> None:
        ctype = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        with file.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            modified = email.utils.formatdate(os.fstat(f.fileno()).st_mtime, usegmt=True)
            writer.write(self._head("200 OK", ctype, size, close, {"Last-Modified": modified}))
            remaining = 0 if head else size
            while remaining > 0:
                chunk = f.read(min(CHUNK, remaining))
                if not chunk:  # the file shrank under us: the connection cannot be reused
                    writer.close()
                    return
                remaining -= len(chunk)
                writer.write(chunk)
                await writer.drain()
        await writer.drain()


def stream_handler(kind: str, arg: str | None = None) -> StreamHandler:
    """The handler for a stream service named in ``--serve``."""
    if kind == "echo":
        return echo
    if kind == "discard":
        return discard
    if kind == "http":
        return HttpServer(arg)
    raise ConfigurationError(f"{kind!r} is not a stream service; known: echo, discard, http")


class Service(Protocol):
    """What :func:`start_services` returns per service: an asyncio server or a datagram
    transport (both close; a server also has ``wait_closed``)."""

    def close(self) -> None: ...


async def start_services(stack: Stack, specs: Sequence[str]) -> list[Service]:
    """Start the services named by ``--serve`` specs (``echo:7``, ``http:80:/srv``, ...) on a
    running ``stack``. Every spec is checked before any starts; if one fails to start, those
    already started are stopped again and the error is raised."""
    parsed = [parse_serve(spec) for spec in specs]
    started: list[Service] = []
    try:
        for i, (kind, port, arg) in enumerate(parsed):
            try:
                if kind == "udp-echo":
                    from layers.datagrams import create_datagram_endpoint

                    transport, _ = await create_datagram_endpoint(
                        stack, UdpEcho, local_addr=("0.0.0.0", port))
                    started.append(transport)
                    continue
                from layers.streams import create_server, start_server, stream_service

                hosts = ["0.0.0.0"]
                if stack.ip6 is not None and 6 in getattr(stream_service(stack),
                                                          "ip_versions", (4,)):
                    # beside 0.0.0.0, IPv6 only (as asyncio's create_server sets IPV6_V6ONLY)
                    hosts.append("::")
                protocol = PROTOCOL_SERVICES.get(kind)
                handler = stream_handler(kind, arg) if protocol is None else None
                for host in hosts:
                    options = {"v6only": True} if host == "::" else {}
                    if protocol is not None:
                        started.append(await create_server(stack, protocol, host, port,
                                                           **options))
                    else:
                        assert handler is not None
                        started.append(await start_server(stack, handler, host, port,
                                                          **options))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                raise ConfigurationError(_in_use(specs, parsed, i)) from None
    except BaseException:
        await stop_services(started)
        raise
    return started


def _in_use(specs: Sequence[str], parsed: Sequence[tuple[str, int, str | None]], i: int) -> str:
    kind, port, _ = parsed[i]
    proto = "udp" if kind == "udp-echo" else "tcp"
    earlier = [specs[j] for j, (k, p, _) in enumerate(parsed[:i])
               if p == port and ("udp" if k == "udp-echo" else "tcp") == proto]
    by = f"by --serve {earlier[0]}" if earlier else "by another socket of this stack"
    return (f"--serve {specs[i]}: {proto} port {port} is already in use on this stack ({by}); "
            f"give each service its own port")


async def stop_service(service: Service, timeout: float = 1.0) -> None:
    """Close ``service`` and wait (at most ``timeout`` seconds) until it has closed."""
    service.close()
    wait_closed = getattr(service, "wait_closed", None)
    if wait_closed is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(wait_closed(), timeout=timeout)


async def stop_services(services: Sequence[Service]) -> None:
    """Stop each of ``services`` (what :func:`start_services` returned), last started first."""
    for service in reversed(services):
        await stop_service(service)
