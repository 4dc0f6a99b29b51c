"""A spoofed SYN flood from Linux's side of a TAP at our stack, while a Linux client connects.

The stack (arp, ipv4, icmp, tcp) runs in this process on a TAP in a namespace the caller
made, with an echo listener; Linux's side of the TAP is LINUX_IP. A flooder process in the
namespace (``syn_flooder.py``) sends spoofed SYNs from 198.18.0.0/15 through a raw socket;
the stack's default route is Linux's side, so its SYN-ACKs to those sources go back over
the TAP to a Linux that does not forward (``ip_forward=0`` in the namespace) and drops them:
nothing leaves the namespace. Once the flood has filled the listener's SYN queue, a Linux
client (kernel sockets on this process's loop) opens connections spread over the flood; each
sends a line and must read it back echoed.

Figures: the SYNs the flooder sent and at what rate, the SYNs the stack answered (SYN cookies
and half-open connections) and at what rate, what the TAP's queue dropped on the way in,
connection success and latency (connect to echoed line), and the process's memory (RSS) when
the SYN queue was full against when the flood ended, with the timer heap and the connection
table beside it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import attrs
from linux_tools import kernel_socket, stack_on_tap

from layers.netns import NetNamespace
from layers.services import echo
from layers.streams import start_server

LINUX_IP = "10.79.0.1"
STACK_IP = "10.79.0.2"
PORT = 80
PLUGINS = ["arp", "ipv4", "icmp", "tcp"]
FLOODER = Path(__file__).with_name("syn_flooder.py")
#: a listener's last_overflow before its SYN queue first overflows
NEVER = float("-inf")


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


@attrs.define
class FloodRun:
    syncookies: int
    target_rate: float
    seconds: float
    backlog: int
    #: the flooder's own figures: {"sent", "errors", "seconds", "rate"}
    flooder: dict[str, Any] = attrs.Factory(dict)
    #: SYNs the stack answered during the flood (cookies sent + half-open connections made)
    answered: int = 0
    #: SYNs the stack dropped because its SYN queue was full (tcp.syncookies=0)
    dropped: int = 0
    #: frames the TAP's queue dropped before the stack read them (Linux's tx_dropped)
    tap_dropped: int = 0
    legit: int = 0
    connected: int = 0
    failures: list[str] = attrs.Factory(list)
    #: seconds from connect() to the echoed line, per successful client
    latencies: list[float] = attrs.Factory(list)
    rss_before: float = 0.0
    rss_after: float = 0.0
    timers_before: int = 0
    timers_after: int = 0
    conns_after: int = 0
    syn_queue_after: int = 0
    counters: dict[str, int] = attrs.Factory(dict)
    internal_errors: int = 0

    #: seconds from the SYN queue being full to the end of the flood (what ``answered``,
    #: ``dropped`` and ``tap_dropped`` count over)
    measured: float = 1e-9

    @property
    def answered_rate(self) -> float:
        return self.answered / self.measured

    def summary(self) -> dict[str, Any]:
        return {
            "syncookies": self.syncookies, "target_rate": self.target_rate,
            "seconds": self.seconds, "backlog": self.backlog,
            "flooder_sent": self.flooder.get("sent", 0),
            "flooder_rate": self.flooder.get("rate", 0),
            "stack_answered": self.answered, "stack_answered_rate": round(self.answered_rate),
            "stack_dropped_syns": self.dropped, "tap_dropped": self.tap_dropped,
            "legit": self.legit, "connected": self.connected,
            "success_rate": round(self.connected / self.legit, 3) if self.legit else None,
            "latency_p50_ms": round(percentile(self.latencies, 50) * 1000, 1),
            "latency_p99_ms": round(percentile(self.latencies, 99) * 1000, 1),
            "latency_max_ms": round(max(self.latencies, default=float("nan")) * 1000, 1),
            "rss_before_mb": round(self.rss_before, 1), "rss_after_mb": round(self.rss_after, 1),
            "timers_before": self.timers_before, "timers_after": self.timers_after,
            "conns_after": self.conns_after, "syn_queue_after": self.syn_queue_after,
            "counters": self.counters, "failures": self.failures[:5],
        }


def tap_dropped(ns: NetNamespace, dev: str) -> int:
    r = ns.run(["ip", "-j", "-s", "link", "show", dev])
    return int(json.loads(r.stdout)[0]["stats64"]["tx"]["dropped"])


async def _client(netns: NetNamespace, i: int, timeout: float) -> float:
    """One legitimate client: connect, send a line, read it back; the seconds it took."""
    loop = asyncio.get_running_loop()
    sock = kernel_socket(netns)
    t0 = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, (STACK_IP, PORT))
            line = b"legitimate client %d\n" % i
            await loop.sock_sendall(sock, line)
            got = b""
            while not got.endswith(b"\n"):
                chunk = await loop.sock_recv(sock, 1024)
                if not chunk:
                    break
                got += chunk
            if got != line:
                raise ConnectionError(f"echo {got!r} for {line!r}")
        return time.perf_counter() - t0
    finally:
        sock.close()


async def syn_flood(netns: NetNamespace, *, syncookies: int = 1, rate: float = 20_000,
                    seconds: float = 3.0, legit: int = 20, backlog: int = 64,
                    connect_timeout: float = 10.0, warmup: float = 0.5,
                    settings: dict[str, Any] | None = None) -> FloodRun:
    """Flood for ``seconds`` at ``rate`` SYNs/s (0: flat out) and connect ``legit`` clients
    over it, the first ``warmup`` seconds after the SYN queue first overflowed."""
    netns.run(["sysctl", "-qw", "net.ipv4.ip_forward=0"])
    run = FloodRun(syncookies, rate, seconds, backlog, legit=legit)
    async with stack_on_tap(netns, linux_ip=LINUX_IP, stack_ip=STACK_IP, plugins=PLUGINS,
                            settings={"tcp.syncookies": syncookies, **(settings or {})},
                            name="syn-flood", prefix="sf") as (stack, dev):
        stack.add_route("default", gateway=LINUX_IP)  # SYN-ACKs to the spoofed sources
        server = await start_server(stack, echo, "0.0.0.0", PORT, backlog=backlog)
        tcp = stack.protocol("tcp")
        c = tcp.c
        listener = tcp.listeners[(0, PORT)]
        dropped0 = tap_dropped(netns, dev)
        flooder = await asyncio.create_subprocess_exec(
            *netns.exec_args([sys.executable, str(FLOODER), STACK_IP, str(PORT), str(rate),
                              str(seconds)]),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        clients: asyncio.Future[list[float | BaseException]] | None = None
        try:
            assert flooder.stdout is not None
            line = await asyncio.wait_for(flooder.stdout.readline(), 30)
            assert line.strip() == b"flooding", line
            # the flood has begun once the SYN queue overflows
            deadline = time.monotonic() + 10
            while listener.last_overflow == NEVER and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert listener.last_overflow != NEVER, "the SYN queue never overflowed"
            await asyncio.sleep(warmup)
            run.rss_before = rss_mb()
            run.timers_before = stack.timers.entries
            answered0 = c["SyncookiesSent"] + c["PassiveOpens"]
            dropped0 = c.drops.get("listen_overflow", 0)
            tap0 = tap_dropped(netns, dev)
            t0 = time.perf_counter()
            spread = max(0.0, seconds - warmup) * 0.6 / max(1, legit)

            async def one(i: int) -> float:
                await asyncio.sleep(i * spread)
                return await _client(netns, i, connect_timeout)

            clients = asyncio.ensure_future(asyncio.gather(
                *(one(i) for i in range(legit)), return_exceptions=True))
            out, err = await asyncio.wait_for(flooder.communicate(), seconds + 30)
            assert flooder.returncode == 0, err.decode()
            run.flooder = json.loads(out.decode().splitlines()[-1])
            # the flood's figures: the stack answers what is left in the TAP's queue first
            await asyncio.sleep(0.2)
            run.measured = max(time.perf_counter() - t0, 1e-9)
            run.answered = c["SyncookiesSent"] + c["PassiveOpens"] - answered0
            run.dropped = c.drops.get("listen_overflow", 0) - dropped0
            run.tap_dropped = tap_dropped(netns, dev) - tap0
            for i, got in enumerate(await clients):
                if isinstance(got, BaseException):
                    run.failures.append(f"client {i}: {type(got).__name__}: {got}")
                else:
                    run.connected += 1
                    run.latencies.append(got)
            # what the flood left behind, once the clients have closed
            await asyncio.sleep(0.1)
            run.rss_after = rss_mb()
            run.timers_after = stack.timers.entries
            run.conns_after = len(tcp.conns)
            run.syn_queue_after = len(listener.syn_queue)
            run.counters = {k: c[k] for k in ("SyncookiesSent", "SyncookiesRecv",
                                              "SyncookiesFailed", "PassiveOpens",
                                              "ListenDrops", "ListenOverflows")}
            run.internal_errors = stack.counters["stack"].drops.get("internal_error", 0)
        finally:
            if clients is not None and not clients.done():
                clients.cancel()
                await asyncio.gather(clients, return_exceptions=True)
            if flooder.returncode is None:
                flooder.kill()
                await flooder.wait()
            server.close()
    return run


