"""``layers ping``: compose a stack and ping from it, printing what iputils ping prints."""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
from typing import Any

from layers.cli.common import Commands, compose
from layers.errors import ConfigurationError
from layers.wire.icmp import ICMP_HLEN
from layers.wire.ipv4 import IPV4_MAX_TOTAL_LENGTH, IPV4_MIN_HLEN
from layers.wire.ipv6 import ip_any, ip_str, is_ip6_int

#: IPv4 and ICMP echo headers around the payload
HEADERS = IPV4_MIN_HLEN + ICMP_HLEN
#: the largest ICMP echo payload in one IPv4 datagram (65507)
MAX_PAYLOAD = IPV4_MAX_TOTAL_LENGTH - HEADERS


async def _ping(args: argparse.Namespace) -> int:
    from layers.ping import ping, summarize
    from layers.runtime import AsyncioRunner

    loop = asyncio.get_running_loop()
    dst = ip_any(args.destination)
    headers = HEADERS + (20 if is_ip6_int(dst) else 0)  # the IPv6 header is 20 bytes longer
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
        if not 0 <= size <= MAX_PAYLOAD:
            raise ConfigurationError(f"-s {size}: the payload must be 0..{MAX_PAYLOAD} bytes")
        print(f"PING {ip_str(dst)} ({ip_str(dst)}) {size}({size + headers}) bytes of data.",
              flush=True)
        async for result in ping(stack, dst, count=args.count, interval=args.interval,
                                 size=size, timeout=args.timeout, ttl=args.ttl):
            results.append(result)
            print(result, flush=True)  # a PingResult formats itself as iputils does
    except asyncio.CancelledError:
        pass  # Ctrl-C: print the statistics so far, as iputils does
    finally:
        runner.stop()
    summary = summarize(results)
    print()
    print(f"--- {ip_str(dst)} ping statistics ---")
    print(str(summary))
    return 0 if summary.received else 1


def cmd_ping(args: argparse.Namespace) -> int:
    # Like iputils ping, take SIGINT even when started with it ignored (a shell's background
    # job): Ctrl-C or `kill -INT` ends the run with statistics instead of being lost.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return asyncio.run(_ping(args))
    except KeyboardInterrupt:
        return 130


def add_commands(commands: Commands) -> None:
    p = commands.add("ping", cmd_ping, stack=True, help="compose a stack and ping from it",
                     description="Compose a stack, send ICMP echo requests, print the replies "
                                 "like iputils ping.")
    p.add_argument("destination", metavar="DEST")
    p.add_argument("-c", dest="count", type=int, default=None, help="stop after N replies/losses")
    p.add_argument("-i", dest="interval", type=float, default=1.0, help="seconds between requests")
    p.add_argument("-s", dest="size", type=int, default=56, help="payload bytes (default 56)")
    p.add_argument("-W", dest="timeout", type=float, default=1.0,
                   help="seconds to wait for each reply")
    p.add_argument("-t", dest="ttl", type=int, default=None, help="IP time to live")
