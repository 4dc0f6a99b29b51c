"""The ``layers`` command: compose and run stacks, ping, and look inside a running stack.

::

    layers up      --link tap:tap0 --address 10.0.0.2/24 [--gateway 10.0.0.1]
    layers ping    --link tap:tap0 --address 10.0.0.2/24 10.0.0.1 [-c N] [-i S] [-s SIZE]
    layers nc      --link tap:tap0 --address 10.0.0.2/24 [-u] [-l] 10.0.0.1 7
    layers plugins
    layers netstat [-s] | layers routes | layers arp      (against a running ``layers up``)
    layers demo

Configuration mistakes print one line that names the fix and exit with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from layers import __version__
from layers.control import ControlServer, NoStackRunning, find_socket, request, socket_path
from layers.errors import CompositionError, ConfigurationError
from layers.interface import Interface
from layers.links.base import Link
from layers.loader import BLOCK_ENV, describe_plugins, parse_plugin_list
from layers.services import SERVICES, UdpEcho, parse_serve, stream_handler
from layers.stack import Stack
from layers.wire.addr import ip4, ip4_network, ip4_str, prefix_mask

PROG = "layers"


def _err(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


# --- composing a stack from the common options -------------------------------------------


def _stack_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("stack options")
    g.add_argument("--link", metavar="tap:NAME|tun:NAME",
                   help="the device to attach: a TAP (Ethernet) or TUN (IP) interface; made "
                        "if absent, left as found on exit")
    g.add_argument("--address", metavar="A/N", help="the stack's address, e.g. 10.0.0.2/24")
    g.add_argument("--gateway", metavar="IP", help="default route via this neighbour")
    g.add_argument("--mtu", type=int, metavar="N", help="link MTU (default: the device's)")
    g.add_argument("--mac", metavar="MAC", help="the stack's MAC on a TAP (default: random)")
    g.add_argument("--plugins", metavar="LIST",
                   help=f"comma list of plugins to compose (default: all installed minus "
                        f"{BLOCK_ENV})")
    g.add_argument("--pcap", metavar="FILE", help="write every frame to FILE (tcpdump -r FILE)")
    g.add_argument("--faults", metavar="SPEC",
                   help="inject faults on the link, e.g. loss=5%%,delay=10ms,seed=1")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                   help="a stack setting such as arp.timeout=2 (repeatable)")
    g.add_argument("--no-offload", action="store_true",
                   help="do not negotiate checksum/segmentation offload with a TAP")
    g.add_argument("--pi", action="store_true",
                   help="use the 4-byte packet-information header on the device")
    return p


def parse_settings(items: Iterable[str]) -> dict[str, str]:
    settings: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(
                f"--set {item!r} should be KEY=VALUE, e.g. --set arp.timeout=2"
            )
        settings[key.strip()] = value.strip()
    return settings


def _link_name(spec: str) -> str:
    scheme, sep, name = spec.partition(":")
    if not sep or not name or scheme not in ("tap", "tun"):
        raise ConfigurationError(
            f"--link {spec!r} should be tap:NAME or tun:NAME, for example --link tap:tap0"
        )
    if len(name) > 15:
        raise ConfigurationError(f"interface name {name!r} is longer than Linux's 15 characters")
    return name


def _require(args: argparse.Namespace, what: str) -> str:
    value = getattr(args, what)
    if not value:
        example = {"link": "--link tap:tap0", "address": "--address 10.0.0.2/24"}[what]
        raise ConfigurationError(f"say which {what} the stack uses: {example}")
    return str(value)


def _open_error(spec: str, exc: OSError) -> ConfigurationError:
    """The link drivers' OSErrors already say what to do; keep that, add the spec."""
    why = exc.strerror or str(exc)
    if exc.errno == errno.ENOENT and "tun" not in why:
        why += "; is /dev/net/tun there? (modprobe tun)"
    return ConfigurationError(f"--link {spec}: {why}")


def _unwraps_to(link: Link, target: Link) -> bool:
    seen: Link | None = link
    while seen is not None:
        if seen is target:
            return True
        seen = getattr(seen, "inner", None)
    return False


def compose(args: argparse.Namespace, clock: Callable[[], float]) -> tuple[Stack, Interface]:
    """A stack with one interface, from the common stack options. Nothing is left open on error."""
    spec = _require(args, "link")
    name = _link_name(spec)
    address = _require(args, "address")
    ip4_network(address)  # validate before touching any device
    if args.gateway:
        ip4(args.gateway)
    settings = parse_settings(args.settings)
    stack = Stack(parse_plugin_list(args.plugins), clock=clock, settings=settings, name=name)
    options: dict[str, Any] = {}
    if args.mtu is not None:
        if not 68 <= args.mtu <= 65535:
            raise ConfigurationError(f"--mtu {args.mtu} must be in 68..65535")
        options["mtu"] = args.mtu
    if args.mac:
        from layers.wire.addr import mac

        options["mac"] = mac(args.mac)
    if args.pi:
        options["pi"] = True
    if args.no_offload:
        options["offload"] = False
    try:
        device = stack.open_link(spec, **options)
    except OSError as exc:
        raise _open_error(spec, exc) from None
    link = device
    try:
        # capture next to the device (what was on the wire), faults between capture and stack
        if args.pcap:
            from layers.links.pcap import PcapLink

            try:
                link = PcapLink(link, args.pcap)
            except OSError as exc:
                raise ConfigurationError(
                    f"--pcap {args.pcap}: {exc.strerror or exc}; pick a writable path"
                ) from None
        if args.faults:
            from layers.links.faults import FaultLink, parse_faults

            link = FaultLink(link, **parse_faults(args.faults))
        iface = stack.add_interface(link, address=address)
        if args.gateway:
            stack.add_route("default", gateway=args.gateway)
    except BaseException:
        if not any(_unwraps_to(i.link, device) for i in stack.interfaces):
            link.close()
        stack.stop()
        raise
    return stack, iface


def _describe_link(iface: Interface) -> str:
    kind = _link_type(iface.describe())
    mac = f", MAC {iface.describe()['mac']}" if iface.mac else ""
    return f"{kind}{mac}, MTU {iface.mtu}"


def _link_type(d: Mapping[str, Any]) -> str:
    kind = str((d.get("link") or {}).get("kind", "")).lower()
    for word in ("tap", "tun", "memory"):
        if word in kind:
            return word.upper()
    return "ETHERNET" if d.get("medium") == "ethernet" else "IP"


# --- layers up --------------------------------------------------------------------------


async def _up(args: argparse.Namespace) -> int:
    from layers.runtime import AsyncioRunner

    loop = asyncio.get_running_loop()
    name = _link_name(_require(args, "link"))
    control_path = Path(args.control) if args.control else socket_path(name)
    for spec in args.serve:
        parse_serve(spec)  # fail before touching any device
    stack, iface = compose(args, loop.time)
    runner = AsyncioRunner(stack, loop)
    control: ControlServer | None = None
    services: list[Any] = []
    stop = asyncio.Event()
    try:
        runner.start()
        control = await ControlServer.start(
            stack, control_path, {"interface": iface.name, "link": args.link}
        )
        services = await _start_services(stack, args.serve)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        addrs = ", ".join(f"{ip4_str(a)}/{p}" for a, p in iface.addresses)
        gateway = f" gateway {args.gateway}" if args.gateway else ""
        served = "".join(f" serving {s}" for s in args.serve)
        print(
            f"layers up: {addrs} on {iface.name} ({_describe_link(iface)}){gateway}{served}; "
            f"control {control_path}; plugins {','.join(_plugin_names(stack))}; "
            f"Ctrl-C to stop",
            flush=True,
        )
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        for service in services:
            await _stop_service(service)
        if control is not None:
            await control.close()
        if runner.running:
            runner.stop()
        else:
            stack.stop()
    print(f"layers up: stopped; {iface.name} left as found", flush=True)
    return 0


def _plugin_names(stack: Stack) -> list[str]:
    return sorted(n for n, p in stack.pm.list_name_plugin() if p is not None and n != "core")


# --- services for `layers up --serve` -------------------------------------------------------

async def _start_services(stack: Stack, specs: Sequence[str]) -> list[Any]:
    parsed = [parse_serve(spec) for spec in specs]  # all checked before any starts
    started: list[Any] = []
    try:
        for kind, port, arg in parsed:
            if kind == "udp-echo":
                from layers.datagrams import create_datagram_endpoint

                transport, _ = await create_datagram_endpoint(
                    stack, UdpEcho, local_addr=("0.0.0.0", port))
                started.append(transport)
                continue
            from layers.streams import start_server

            handler = stream_handler(kind, arg)
            started.append(await start_server(stack, handler, "0.0.0.0", port))
    except BaseException:
        for service in started:
            await _stop_service(service)
        raise
    return started


async def _stop_service(service: Any) -> None:
    service.close()
    wait_closed = getattr(service, "wait_closed", None)
    if wait_closed is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(wait_closed(), timeout=1.0)


def cmd_up(args: argparse.Namespace) -> int:
    return asyncio.run(_up(args))


# --- layers ping --------------------------------------------------------------------------


async def _ping(args: argparse.Namespace) -> int:
    from layers.ping import ping, summarize
    from layers.runtime import AsyncioRunner

    loop = asyncio.get_running_loop()
    dst = ip4(args.destination)
    if args.count is not None and args.count < 1:
        raise ConfigurationError("-c must be at least 1")
    if args.interval <= 0:
        raise ConfigurationError("-i must be a positive number of seconds, e.g. -i 0.2")
    stack, _iface = compose(args, loop.time)
    runner = AsyncioRunner(stack, loop)
    results: list[Any] = []
    try:
        runner.start()
        size = args.size
        if not 0 <= size <= 65507:
            raise ConfigurationError(f"-s {size}: the payload must be 0..65507 bytes")
        print(f"PING {ip4_str(dst)} ({ip4_str(dst)}) {size}({size + 28}) bytes of data.",
              flush=True)
        async for result in ping(stack, dst, count=args.count, interval=args.interval,
                                 size=size, timeout=args.timeout, ttl=args.ttl):
            results.append(result)
            print(format_ping_result(result), flush=True)
    except asyncio.CancelledError:
        pass  # Ctrl-C: print the statistics so far, as iputils does
    finally:
        runner.stop()
    summary = summarize(results)
    print()
    print(f"--- {ip4_str(dst)} ping statistics ---")
    print(str(summary))
    return 0 if summary.received else 1


def format_ping_result(result: Any) -> str:
    """One iputils-style line (``64 bytes from ...``, ``From ... Destination Host Unreachable``,
    ``no answer yet for icmp_seq=N``): :class:`layers.ping.PingResult` formats itself."""
    return str(result)


def cmd_ping(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_ping(args))
    except KeyboardInterrupt:
        return 130


# --- layers nc ----------------------------------------------------------------------------

NC_MAX_DATAGRAM = 65507


class _Stdin:
    """Chunks of a file descriptor, read by a daemon thread (works for pipes, files and
    terminals alike, which the event loop cannot all watch). Empty bytes mean EOF, forever."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self._fd = fd
        self._loop = loop
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._started = False
        self.eof = False

    def _run(self) -> None:
        while True:
            try:
                chunk = os.read(self._fd, 1 << 16)
            except OSError:
                chunk = b""
            try:
                self._loop.call_soon_threadsafe(self._queue.put_nowait, chunk)
            except RuntimeError:
                return  # the loop is gone
            if not chunk:
                return

    async def get(self) -> bytes:
        if self.eof:
            return b""
        if not self._started:
            self._started = True
            import threading

            threading.Thread(target=self._run, name="layers-nc-stdin", daemon=True).start()
        chunk = await self._queue.get()
        if not chunk:
            self.eof = True
        return chunk


def _nc_error(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by peer"
    if isinstance(exc, TimeoutError) or exc.errno == errno.ETIMEDOUT:
        return "connection timed out"
    if exc.errno == errno.EHOSTUNREACH:
        return "no route to host"
    if exc.errno == errno.ENETUNREACH:
        return "network is unreachable"
    if exc.errno is not None:
        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__


class Netcat:
    """``layers nc``: stdin to the network, the network to stdout (TCP or UDP, client or
    listener), on a running stack. Usable from tests with any fd and binary file."""

    def __init__(
        self,
        stack: Stack,
        *,
        stdin_fd: int = 0,
        stdout: Any = None,
        stderr: Any = None,
        verbose: bool = False,
        quit_after: float | None = None,
    ) -> None:
        self.stack = stack
        self.stdin_fd = stdin_fd
        self.stdout = stdout if stdout is not None else sys.stdout.buffer
        self.stderr = stderr if stderr is not None else sys.stderr
        self.verbose = verbose
        self.quit_after = quit_after if quit_after is not None and quit_after >= 0 else None
        self._stdin: _Stdin | None = None

    def _say(self, text: str) -> None:
        if self.verbose:
            print(text, file=self.stderr, flush=True)

    def _out(self, data: bytes) -> None:
        self.stdout.write(data)
        self.stdout.flush()

    def _interactive(self) -> bool:
        try:
            return os.isatty(self.stdin_fd)
        except OSError:
            return False

    @property
    def stdin(self) -> _Stdin:
        if self._stdin is None:
            self._stdin = _Stdin(self.stdin_fd, asyncio.get_running_loop())
        return self._stdin

    # --- TCP ------------------------------------------------------------------------------
    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Stdin into the connection (FIN at stdin's EOF), the connection to stdout, until
        the peer closes. When the peer finishes first, the rest of stdin still goes out
        (a half-closed peer reads on), unless stdin is a terminal."""
        stdin = self.stdin

        async def to_net() -> None:
            while chunk := await stdin.get():
                writer.write(chunk)
                await writer.drain()
            if not writer.is_closing():
                writer.write_eof()

        async def to_out() -> None:
            loop = asyncio.get_running_loop()
            while data := await reader.read(1 << 16):
                # written by a worker thread: a slow stdout closes the TCP window instead of
                # stalling the stack's loop
                await loop.run_in_executor(None, self._out, data)

        out_task = asyncio.ensure_future(to_out())
        net_task = asyncio.ensure_future(to_net())
        finished = False
        try:
            await asyncio.wait({out_task, net_task}, return_when=asyncio.FIRST_COMPLETED)
            if net_task.done() and net_task.exception() is not None:
                net_task.result()  # raises: the connection failed while sending
            if not out_task.done():
                # stdin ended first (FIN sent): the rest of the peer's data, then its FIN
                if self.quit_after is None:
                    await out_task
                else:
                    await asyncio.wait({out_task}, timeout=self.quit_after)
            if out_task.done():
                out_task.result()  # raises: reset, timed out
                if not net_task.done() and not self._interactive():
                    # The peer finished first, but may only have half-closed: send the rest
                    # of a pipe or file (a peer that closed entirely answers with RST).
                    await net_task
            finished = True
        finally:
            for task in (out_task, net_task):
                task.cancel()
            writer.close()
            # The stack lives in this process: exit only once the peer has everything (our
            # FIN acknowledged), as the kernel goes on delivering after nc's close() returns.
            limit = (self.quit_after if finished else 1.0)
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(writer.wait_closed(), limit)

    async def tcp_connect(self, host: str, port: int, *, source_port: int | None = None,
                          timeout: float | None = None) -> int:
        from layers.streams import open_connection

        local = ("0.0.0.0", source_port) if source_port else None
        reader, writer = await asyncio.wait_for(
            open_connection(self.stack, host, port, local_addr=local), timeout)
        self._say(f"Connection to {host} {port} port [tcp/*] succeeded!")
        await self._pump(reader, writer)
        return 0

    async def tcp_listen(self, host: str | None, port: int, *, keep: bool = False) -> int:
        from layers.streams import start_server

        accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
        accepted = asyncio.Queue()

        def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.put_nowait((reader, writer))

        server = await start_server(self.stack, on_connect, host or "0.0.0.0", port,
                                    backlog=1 if not keep else 16)
        self._say(f"Listening on {host or '0.0.0.0'} {server.sockets[0].getsockname()[1]}")
        try:
            while True:
                reader, writer = await accepted.get()
                if not keep:
                    server.close()  # one connection: later SYNs are refused
                peer = writer.get_extra_info("peername")
                self._say(f"Connection received on {peer[0]} {peer[1]}")
                try:
                    await self._pump(reader, writer)
                except OSError as exc:
                    if not keep:
                        raise
                    print(f"{PROG} nc: {_nc_error(exc)}", file=self.stderr, flush=True)
                if not keep:
                    return 0
        finally:
            server.close()

    # --- UDP ------------------------------------------------------------------------------
    async def _send_lines(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        """Each line of stdin (or each 65507 bytes without a newline) is one datagram."""
        stdin = self.stdin
        pending = b""
        while chunk := await stdin.get():
            pending += chunk
            while True:
                cut = pending.find(b"\n")
                if cut < 0 and len(pending) < NC_MAX_DATAGRAM:
                    break
                end = cut + 1 if 0 <= cut < NC_MAX_DATAGRAM else NC_MAX_DATAGRAM
                await send(pending[:end])
                pending = pending[end:]
        if pending:
            await send(pending)

    async def udp(self, host: str | None, port: int, *, listen: bool = False,
                  keep: bool = False, source_port: int | None = None) -> int:
        from layers.datagrams import create_datagram_endpoint

        loop = asyncio.get_running_loop()
        failed: asyncio.Future[OSError] = loop.create_future()
        peer_known = asyncio.Event()
        nc = self

        class Proto(asyncio.DatagramProtocol):
            def __init__(self) -> None:
                self.peer: tuple[str, int] | None = None

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                if listen:
                    if self.peer is None or keep:
                        if self.peer != addr:
                            nc._say(f"Connection received on {addr[0]} {addr[1]}")
                        self.peer = addr
                        peer_known.set()
                    elif addr != self.peer:
                        return  # as a connected socket would
                nc._out(data)

            def error_received(self, exc: Exception) -> None:
                if isinstance(exc, OSError) and not failed.done():
                    failed.set_result(exc)

        proto = Proto()
        if listen:
            transport, _ = await create_datagram_endpoint(
                self.stack, lambda: proto, local_addr=(host or "0.0.0.0", port))
            self._say(f"Bound on {host or '0.0.0.0'} {port}")
        else:
            assert host is not None
            local = ("0.0.0.0", source_port) if source_port else None
            transport, _ = await create_datagram_endpoint(
                self.stack, lambda: proto, local_addr=local, remote_addr=(host, port))
            self._say(f"Connection to {host} {port} port [udp/*] succeeded!")

        async def send(data: bytes) -> None:
            if listen:
                await peer_known.wait()
                transport.sendto(data, proto.peer)
            else:
                transport.sendto(data)
            await asyncio.sleep(0)  # let an ICMP error from the last datagram arrive

        sender = asyncio.ensure_future(self._send_lines(send))
        try:
            waiting: set[asyncio.Future[Any]] = {sender, failed}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if not failed.done():
                sender.result()
                if self.quit_after is None:
                    await failed  # until Ctrl-C, or an error (port unreachable)
                else:
                    await asyncio.wait({failed}, timeout=self.quit_after)
            if failed.done():
                raise failed.result()
            return 0
        finally:
            sender.cancel()
            transport.close()


def _nc_target(args: argparse.Namespace) -> tuple[str | None, int]:
    words = list(args.target)
    if args.listen:
        if args.source_port is not None and not words:
            words = [str(args.source_port)]
        if len(words) == 1:
            host, port_text = None, words[0]
        elif len(words) == 2:
            host, port_text = words
        else:
            raise ConfigurationError("nc -l takes [HOST] PORT, e.g. layers nc -l 7")
    else:
        if len(words) != 2:
            raise ConfigurationError("nc takes HOST PORT, e.g. layers nc 10.0.0.1 7 "
                                     "(or -l [HOST] PORT to listen)")
        host, port_text = words
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigurationError(f"nc: port {port_text!r} should be a number in 1..65535")
    if host is not None:
        ip4(host)  # a dotted quad: this stack resolves no names
    return host, int(port_text)


async def _nc(args: argparse.Namespace) -> int:
    from layers.runtime import AsyncioRunner

    host, port = _nc_target(args)
    if args.keep and not args.listen:
        raise ConfigurationError("-k only makes sense with -l")
    if args.timeout is not None and args.timeout <= 0:
        raise ConfigurationError("-w wants a positive number of seconds")
    loop = asyncio.get_running_loop()
    stack, _iface = compose(args, loop.time)
    runner = AsyncioRunner(stack, loop)
    nc = Netcat(stack, verbose=args.verbose, quit_after=args.quit_after)
    try:
        runner.start()
        if args.udp:
            return await nc.udp(host, port, listen=args.listen, keep=args.keep,
                                source_port=args.source_port)
        if args.listen:
            return await nc.tcp_listen(host, port, keep=args.keep)
        assert host is not None
        return await nc.tcp_connect(host, port, source_port=args.source_port,
                                    timeout=args.timeout)
    except OSError as exc:
        where = f"{host} port {port}" if host is not None else f"port {port}"
        print(f"{PROG} nc: {where}: {_nc_error(exc)}", file=sys.stderr, flush=True)
        return 1
    finally:
        runner.stop()


def cmd_nc(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_nc(args))
    except KeyboardInterrupt:
        return 130


# --- layers plugins ---------------------------------------------------------------------


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Left-aligned columns, two spaces apart."""
    body = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in body:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
              for row in body]
    return "\n".join(lines)


def cmd_plugins(args: argparse.Namespace) -> int:
    infos = describe_plugins()
    if not infos:
        print("no plugins installed (pip install a distribution with entry points in group "
              "'layers')")
        return 0
    print(table(("NAME", "VERSION", "LAYER", "DISTRIBUTION", "STATUS"),
                [(i.name, i.version, i.layer, i.distribution, i.status) for i in infos]))
    return 0


# --- netstat, routes, arp (through the control socket) ------------------------------------


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def format_interfaces(report: Mapping[str, Any]) -> str:
    out = []
    for d in report.get("interfaces", []):
        name = str(d.get("name", "?"))
        pad = " " * max(len(name) + 1, 8)
        state = "UP" if d.get("up") else "DOWN"
        mac = f" HWaddr {str(d['mac']).upper()}" if d.get("mac") else ""
        out.append(f"{name.ljust(len(pad) - 1)} {state} Type:{_link_type(d)}{mac} "
                   f"MTU:{d.get('mtu', '?')}")
        for text in d.get("addresses", []):
            a, _, p = str(text).partition("/")
            mask = prefix_mask(int(p or 32))
            bcast = (ip4(a) & mask) | (~mask & 0xFFFFFFFF)
            out.append(f"{pad}Inet addr:{a}/{ip4_str(mask)} Bcast:{ip4_str(bcast)}")
        c = d.get("counters", {})
        rx, tx = int(c.get("rx_bytes", 0)), int(c.get("tx_bytes", 0))
        out.append(f"{pad}RX packets:{c.get('rx_frames', 0)} bytes:{rx} ({human_bytes(rx)})  "
                   f"TX packets:{c.get('tx_frames', 0)} bytes:{tx} ({human_bytes(tx)})")
        drops = d.get("drops", {})
        if drops:
            why = ", ".join(f"{k} {v}" for k, v in sorted(drops.items()))
            out.append(f"{pad}dropped:{sum(drops.values())} ({why})")
    return "\n".join(out)


def format_connections(report: Mapping[str, Any]) -> str:
    rows = []
    for r in report.get("listeners", []) or []:
        rows.append((r.get("proto", "?"), r.get("recv_q", 0), r.get("send_q", 0),
                     r.get("local", "?"), r.get("remote", "*:*"), r.get("state", "LISTEN")))
    for r in report.get("connections", []) or []:
        rows.append((r.get("proto", "?"), r.get("recv_q", 0), r.get("send_q", 0),
                     r.get("local", "?"), r.get("remote", "*:*"), r.get("state", "")))
    if not rows:
        return "Active connections: none"
    return "Active connections\n" + table(
        ("Proto", "Recv-Q", "Send-Q", "Local Address", "Foreign Address", "State"), rows)


def format_netstat(report: Mapping[str, Any]) -> str:
    return format_interfaces(report) + "\n\n" + format_connections(report)


def format_statistics(report: Mapping[str, Any]) -> str:
    """``netstat -s``: every counter per protocol, and drops by reason."""
    out = []
    groups: list[tuple[str, Mapping[str, Any], Mapping[str, Any]]] = []
    for name, snap in sorted((report.get("counters") or {}).items()):
        groups.append((name, snap.get("counters", {}), snap.get("drops", {})))
    for d in report.get("interfaces", []):
        groups.append((f"interface {d.get('name')}", d.get("counters", {}), d.get("drops", {})))
    for name, counters, drops in groups:
        out.append(f"{name}:")
        shown = False
        for key, value in sorted(counters.items()):
            if key == "dropped":
                continue
            out.append(f"    {value} {key.replace('_', ' ')}")
            shown = True
        if drops:
            out.append(f"    {sum(drops.values())} dropped:")
            for reason, value in sorted(drops.items(), key=lambda kv: (-kv[1], kv[0])):
                out.append(f"        {value} {reason.replace('_', ' ')}")
            shown = True
        if not shown:
            out.pop()  # nothing counted yet: leave the group out
    return "\n".join(out) if out else "nothing counted yet"


def format_routes(report: Mapping[str, Any]) -> str:
    rows = [(r.get("destination"), r.get("gateway"), r.get("netmask"), r.get("interface"))
            for r in report.get("routes", [])]
    return table(("Destination", "Gateway", "Netmask", "Interface"), rows)


def format_arp(report: Mapping[str, Any]) -> str:
    rows = []
    for r in report.get("arp", []) or []:
        expires = r.get("expires")  # seconds until the entry's current state ends
        if isinstance(expires, int | float):
            expires_text = f"{expires:.1f}s"
        else:
            expires_text = "-" if expires is None else str(expires)
        rows.append((r.get("address", "?"), r.get("mac") or "(incomplete)",
                     r.get("state", ""), expires_text, r.get("interface", "")))
    if not rows:
        return "ARP cache: empty" if "arp" in report else (
            "no ARP table: this stack has no neighbour resolver (no arp plugin, or a TUN link)")
    return table(("Address", "HWaddress", "State", "Expires", "Iface"), rows)


def _query(args: argparse.Namespace) -> dict[str, Any]:
    name = args.name
    if not name and args.link:
        name = _link_name(args.link)
    path = find_socket(control=args.control, name=name)
    return request(path, "report")


def cmd_netstat(args: argparse.Namespace) -> int:
    response = _query(args)
    report = response["report"]
    print(format_statistics(report) if args.statistics else format_netstat(report))
    return 0


def cmd_routes(args: argparse.Namespace) -> int:
    print(format_routes(_query(args)["report"]))
    return 0


def cmd_arp(args: argparse.Namespace) -> int:
    response = _query(args)
    print(format_arp(response["report"]))
    return 0


# --- layers demo ------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from layers.demo import run_demo

    return run_demo(memory=args.memory)


# --- the parser -------------------------------------------------------------------------


def _client_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("which stack")
    g.add_argument("--name", help="the interface of the `layers up` to ask (default: the only "
                                  "one running)")
    g.add_argument("--link", metavar="tap:NAME|tun:NAME", help="same as --name NAME")
    g.add_argument("--control", metavar="PATH", help="the control socket to ask")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A userspace TCP/IP stack built from plugins.",
        epilog="Exit status: 0 success, 1 no reply / no stack running, 2 configuration error.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    stack_opts = _stack_options()
    client_opts = _client_options()

    up = sub.add_parser("up", parents=[stack_opts], help="run a stack on a TAP/TUN until Ctrl-C",
                        description="Compose a stack on a TAP or TUN device and run it in the "
                                    "foreground until SIGINT/SIGTERM.")
    up.add_argument("--control", metavar="PATH",
                    help="control socket path (default /run/layers/NAME.sock, or "
                         "/tmp/layers-UID/NAME.sock when not root)")
    up.add_argument("--serve", action="append", default=[], metavar="SPEC",
                    help="run a service on the stack (repeatable): " + "; ".join(
                        f"{k}:PORT {v}" if k != "http" else v for k, v in SERVICES.items()))
    up.set_defaults(func=cmd_up)

    p = sub.add_parser("ping", parents=[stack_opts], help="compose a stack and ping from it",
                       description="Compose a stack, send ICMP echo requests, print the replies "
                                   "like iputils ping.")
    p.add_argument("destination", metavar="DEST")
    p.add_argument("-c", dest="count", type=int, default=None, help="stop after N replies/losses")
    p.add_argument("-i", dest="interval", type=float, default=1.0, help="seconds between requests")
    p.add_argument("-s", dest="size", type=int, default=56, help="payload bytes (default 56)")
    p.add_argument("-W", dest="timeout", type=float, default=1.0,
                   help="seconds to wait for each reply")
    p.add_argument("-t", dest="ttl", type=int, default=None, help="IP time to live")
    p.set_defaults(func=cmd_ping)

    nc = sub.add_parser(
        "nc", parents=[stack_opts], help="netcat over a stack: stdin to TCP/UDP, replies to stdout",
        description="Compose a stack and run netcat on it: stdin goes into a TCP connection "
                    "(FIN at stdin's end, like nc -N), the connection goes to stdout until the "
                    "peer closes. -u sends each line as a UDP datagram; -l listens instead.",
        epilog="Exit status: 0 done, 1 network error (connection refused, reset, timed out, "
               "unreachable), 2 configuration error.")
    nc.add_argument("target", nargs="*", metavar="HOST PORT",
                    help="where to connect; with -l: [HOST] PORT to listen on")
    nc.add_argument("-u", dest="udp", action="store_true", help="UDP instead of TCP")
    nc.add_argument("-l", dest="listen", action="store_true",
                    help="listen (accept one connection, or take the first UDP sender as peer)")
    nc.add_argument("-k", dest="keep", action="store_true",
                    help="with -l: keep listening after a connection ends")
    nc.add_argument("-p", dest="source_port", type=int, metavar="PORT",
                    help="source port (with -l: the port to listen on)")
    nc.add_argument("-q", dest="quit_after", type=float, metavar="SECS",
                    help="after stdin's end, quit within SECS even if the peer goes on "
                         "(default: wait for the peer; forever for UDP)")
    nc.add_argument("-w", dest="timeout", type=float, metavar="SECS",
                    help="give up connecting after SECS")
    nc.add_argument("-v", dest="verbose", action="store_true",
                    help="say on stderr when connected")
    nc.set_defaults(func=cmd_nc)

    pl = sub.add_parser("plugins", help="list installed plugins")
    pl.set_defaults(func=cmd_plugins)

    ns = sub.add_parser("netstat", parents=[client_opts],
                        help="interfaces and connections of a running stack")
    ns.add_argument("-s", "--statistics", action="store_true",
                    help="per-protocol counters and drops by reason")
    ns.set_defaults(func=cmd_netstat)
    rt = sub.add_parser("routes", parents=[client_opts], help="routing table of a running stack")
    rt.set_defaults(func=cmd_routes)
    ar = sub.add_parser("arp", parents=[client_opts], help="ARP cache of a running stack")
    ar.set_defaults(func=cmd_arp)

    demo = sub.add_parser("demo", help="a guided tour: Linux and the stack ping each other")
    demo.add_argument("--memory", action="store_true",
                      help="run between two stacks over an in-memory link even as root")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except NoStackRunning as exc:
        _err(str(exc))
        return 1
    except (ConfigurationError, CompositionError) as exc:
        _err(str(exc))
        return 2
    except BrokenPipeError:
        # the reader went away (`layers netstat | head`): quietly, as other tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except ImportError as exc:
        _err(f"this installation lacks {exc.name or exc}; reinstall layers (make venv)")
        return 2
    except OSError as exc:
        _err(str(exc))
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))


__all__ = ["build_parser", "compose", "main"]
