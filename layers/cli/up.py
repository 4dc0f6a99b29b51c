"""``layers up``: compose a stack on a device and run it in the foreground, with its control
socket (for ``netstat``/``routes``/``arp``) and any ``--serve`` services, until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal

from layers.cli.common import Commands, compose, describe_link, link_name, require
from layers.control import ControlServer, parse_address, socket_path
from layers.services import SERVICES, Service, parse_serve, start_services, stop_services
from layers.tracing import TraceRequest, add_up_options
from layers.wire.addr import ip4_str


async def _up(args: argparse.Namespace) -> int:
    from layers.runtime import AsyncioRunner

    loop = asyncio.get_running_loop()
    name = link_name(require(args, "link"))
    control_path = parse_address(args.control) if args.control else socket_path(name)
    for spec in args.serve:
        parse_serve(spec)  # fail before touching any device
    trace = TraceRequest.from_args(args)
    stack, iface = compose(args, loop.time)
    runner = AsyncioRunner(stack, loop)
    control: ControlServer | None = None
    services: list[Service] = []
    tracer = None
    stop = asyncio.Event()
    try:
        tracer = trace.start(stack) if trace else None
        runner.start()
        control = await ControlServer.start(
            stack, control_path, {"interface": iface.name, "link": args.link}
        )
        services = await start_services(stack, args.serve)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        addrs = ", ".join(f"{ip4_str(a)}/{p}" for a, p in iface.addresses)
        gateway = f" gateway {args.gateway}" if args.gateway else ""
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
    up.add_argument("--serve", action="append", default=[], metavar="SPEC",
                    help="run a service on the stack (repeatable): " + "; ".join(
                        f"{k}:PORT {v}" if k != "http" else v for k, v in SERVICES.items()))
    add_up_options(up)
