"""``layers up``: compose a stack on a device and run it in the foreground, with its control
socket (for ``netstat``/``routes``/``arp``) and any ``--serve`` services, until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal

from layers.cli.common import Commands, compose, describe_link, link_name, require
from layers.control import ControlServer, parse_address, socket_path
from layers.errors import ConfigurationError
from layers.links.base import Link
from layers.netdev import HostSide, Netlink
from layers.services import SERVICES, Service, parse_serve, start_services, stop_services
from layers.tracing import TraceRequest, add_up_options
from layers.wire.addr import ip4_str
from layers.wire.ipv6 import ip6_str, is_link_local6


def _device_netlink(link: Link | None) -> tuple[Netlink, str]:
    """The TAP/TUN under any wrappers (pcap, faults, shaper): its rtnetlink handle and name."""
    while link is not None:
        nl = getattr(link, "netlink", None)
        if isinstance(nl, Netlink):
            return nl, link.name
        link = getattr(link, "inner", None)
    raise ConfigurationError("--peer configures Linux's side of a TAP or TUN; this link has none")


async def _up(args: argparse.Namespace) -> int:
    from layers.runtime import AsyncioRunner, check_busy_poll

    loop = asyncio.get_running_loop()
    check_busy_poll(args.busy_poll / 1e6)  # before any device is touched
    name = link_name(require(args, "link"))
    control_path = parse_address(args.control) if args.control else socket_path(name)
    for spec in args.serve:
        parse_serve(spec)  # fail before touching any device
    peer = HostSide.check(args.peer, require(args, "address")) if args.peer else None
    trace = TraceRequest.from_args(args)
    stack, iface = compose(args, loop.time)
    runner = AsyncioRunner(stack, loop, busy_poll=args.busy_poll / 1e6)
    control: ControlServer | None = None
    services: list[Service] = []
    tracer = None
    host: HostSide | None = None
    stop = asyncio.Event()
    try:
        if peer is not None:
            host = await HostSide.configure(*_device_netlink(iface.link), peer)
        tracer = trace.start(stack) if trace else None
        runner.start()
        control = await ControlServer.start(
            stack, control_path, {"interface": iface.name, "link": args.link}
        )
        services = await start_services(stack, args.serve)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        addrs = ", ".join([f"{ip4_str(a)}/{p}" for a, p in iface.addresses] + [
            f"{ip6_str(a)}/{p}" for a, p in iface.addresses6 if not is_link_local6(a)])
        gateway = "".join(f" gateway {g}" for g in args.gateway or ())
        gateway += f" peer {peer}" if peer is not None else ""
        served = "".join(f" serving {s}" for s in args.serve)
        print(
            f"layers up: {addrs} on {iface.name} ({describe_link(iface)}){gateway}{served}; "
            f"control {control_path}; plugins {','.join(stack.plugin_names)}; "
            + (f"{trace}; " if trace else "") + "Ctrl-C to stop",
            flush=True,
        )
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await stop_services(services)
        if control is not None:
            await control.close()
        if host is not None:
            await host.restore()  # before the link closes and gives the device back
        if runner.running:
            runner.stop()
        else:
            stack.stop()
        if tracer is not None:
            tracer.close()  # after the stack: its last samples are in
    print(f"layers up: stopped; {iface.name} left as found", flush=True)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    return asyncio.run(_up(args))


def add_commands(commands: Commands) -> None:
    up = commands.add("up", cmd_up, stack=True, help="run a stack on a TAP/TUN until Ctrl-C",
                      description="Compose a stack on a TAP or TUN device and run it in the "
                                  "foreground until SIGINT/SIGTERM.")
    up.add_argument("--control", metavar="PATH",
                    help="control socket: a path, or @NAME for an abstract one (default "
                         "@layers/NAME, private to this network namespace)")
    up.add_argument("--peer", metavar="A/N",
                    help="give Linux's side of the TAP/TUN this address and bring it up "
                         "(removed on exit if layers added it), e.g. 10.0.0.1/24")
    up.add_argument("--serve", action="append", default=[], metavar="SPEC",
                    help="run a service on the stack (repeatable): " + "; ".join(
                        f"{k}:PORT {v}" if k != "http" else v for k, v in SERVICES.items()))
    up.add_argument("--busy-poll", type=float, default=0.0, metavar="USEC",
                    help="after draining the device, keep reading it for this many "
                         "microseconds before waiting on the event loop (like Linux's "
                         "net.core.busy_poll): lower latency, a CPU spinning; default 0 (off)")
    add_up_options(up)
