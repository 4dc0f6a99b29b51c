"""``layers demo`` (what ``make demo`` runs): a guided tour in about five seconds.

As root, with /dev/net/tun: make a network namespace with a TAP device in it (pyroute2 makes the
namespace and gives Linux's side its address), run a layers stack on the TAP in this process,
and let the two ping each other.
Then show what each side learned (ARP) and the stack's counters, and clean everything up (also
on failure or Ctrl-C).

Without root (or with ``--memory``): the same tour between two layers stacks joined by an
in-memory link, in real time on asyncio.

Nothing leaves the namespace: it has no uplink, and the addresses (10.77.0.0/24) exist only
inside it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from layers.cli.common import Commands
from layers.cli.report import format_arp
from layers.interface import Interface
from layers.links.memory import MemoryLink
from layers.netdev import Netlink
from layers.netns import NetNamespace, have_root_and_tun
from layers.runtime import AsyncioRunner
from layers.services import start_services, stop_services
from layers.stack import Stack
from layers.wire.addr import ip4

LINUX_ADDR = "10.77.0.1"
STACK_ADDR = "10.77.0.2"
PREFIX = 24
PINGS = 3


class Narrator:
    """Prints the tour: headings, steps, and indented evidence (command output, tables)."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out
        self.step_no = 0

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def step(self, text: str) -> None:
        self.step_no += 1
        self.say()
        self.say(f"Step {self.step_no}: {text}")

    def show(self, text: str, prefix: str = "    | ") -> None:
        for line in text.rstrip("\n").splitlines():
            self.say(prefix + line)

    def result(self, text: str) -> None:
        self.say(f"    => {text}")


def _plugins_of(stack: Stack) -> str:
    return ", ".join(stack.plugin_names)


async def stack_pings(
    n: Narrator, stack: Stack, dst: str, count: int = PINGS, interval: float = 0.2
) -> int:
    """Ping ``dst`` from ``stack`` through :mod:`layers.ping`, narrating; the replies received."""
    from layers.ping import ping

    got = 0
    async for result in ping(stack, ip4(dst), count=count, interval=interval, size=56,
                             timeout=1.0):
        n.show(str(result))
        got += result.ok
    return got


def _arp_rows(stack: Stack) -> list[dict[str, Any]]:
    rows = stack.report().get("arp") or []
    return [dict(r) for r in rows]


def _show_arp(n: Narrator, who: str, stack: Stack) -> None:
    n.say(f"    {who} (its ARP cache, as `layers arp` shows it):")
    n.show(format_arp(stack.report()), prefix="    |   ")


def _show_counters(n: Narrator, stack: Stack, names: Sequence[str] = ("arp", "ipv4", "icmp")
                   ) -> None:
    report = stack.report()
    counters = report.get("counters", {})
    for name in names:
        snap = counters.get(name)
        if not snap:
            continue
        parts = [f"{v} {k.replace('_', ' ')}" for k, v in sorted(snap["counters"].items())
                 if k != "dropped" and v]
        drops = snap.get("drops") or {}
        if drops:
            parts.append("dropped: " + ", ".join(f"{v} {k}" for k, v in sorted(drops.items())))
        n.say(f"    {name:6} " + ("; ".join(parts) if parts else "(nothing)"))
    for d in report.get("interfaces", []):
        c = d.get("counters", {})
        drops = d.get("drops") or {}
        extra = ("; dropped: " + ", ".join(f"{v} {k}" for k, v in sorted(drops.items()))
                 if drops else "")
        n.say(f"    {d['name']:6} {c.get('rx_frames', 0)} frames in, "
              f"{c.get('tx_frames', 0)} frames out{extra}")


def has_tcp(stack: Stack) -> bool:
    try:
        from layers.streams import stream_service

        stream_service(stack)
    except Exception:
        return False
    return True


async def http_get(stack: Stack, host: str, port: int, path: str = "/") -> tuple[str, bytes]:
    """Fetch ``path`` with the stack's own TCP client: (status line, body)."""
    from layers.streams import open_connection

    reader, writer = await asyncio.wait_for(open_connection(stack, host, port), 5)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0].decode(errors="replace"), body


# --- as root: Linux <-> stack over a TAP in a namespace ------------------------------------


async def _run(ns: NetNamespace, *cmd: str, timeout: float = 20.0) -> tuple[int, str]:
    """Run ``cmd`` inside the namespace without blocking the stack's loop."""
    proc = await asyncio.create_subprocess_exec(
        *ns.exec_args(cmd), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:  # cancelled or timed out: end the process we started
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    return proc.returncode or 0, out.decode(errors="replace")


@contextlib.contextmanager
def _namespace() -> Iterator[NetNamespace]:
    ns = NetNamespace(prefix="layers-demo")
    try:
        ns.create()
        yield ns
    finally:
        ns.delete()


async def tap_demo(n: Narrator) -> bool:
    loop = asyncio.get_running_loop()
    tap = "ldemo0"
    with _namespace() as ns:
        n.say("Setting up")
        n.say(f"  * a network namespace, {ns.name}: a private copy of Linux's network with no")
        n.say("    way out, so nothing here can touch your real network")
        with ns.entered():
            stack = Stack(clock=loop.time, name=tap)
            try:
                iface = stack.add_interface(f"tap:{tap}", address=f"{STACK_ADDR}/{PREFIX}")
            except BaseException:
                stack.stop()
                raise
        runner = AsyncioRunner(stack, loop)
        ns_netlink = ns.netlink()
        try:
            iface_index = ns_netlink.lookup(tap)
            assert iface_index is not None
            device_mac = getattr(iface.link, "device_mac", None)
            n.say(f"  * a TAP device, {tap}, inside it: Linux sees a network card; this process")
            n.say("    holds the other end of its cable")
            # Keep the demo's picture simple: no IPv6 chatter on this link.
            with ns.entered(), contextlib.suppress(OSError):
                Path(f"/proc/sys/net/ipv6/conf/{tap}/disable_ipv6").write_text("1")
            # Linux's side of the cable, through pyroute2 (what `layers up --peer` does)
            await ns_netlink.aadd_address(iface_index, ipaddress.IPv4Interface(
                f"{LINUX_ADDR}/{PREFIX}"))
            n.say(f"  * Linux's side of {tap}: {LINUX_ADDR}/{PREFIX}"
                  + (f", MAC {_mac(device_mac)}" if device_mac else ""))
            n.say(f"  * the layers stack on the TAP: {STACK_ADDR}/{PREFIX}, MAC {_mac(iface.mac)}")
            n.say(f"    plugins: {_plugins_of(stack)} (each one a separately installed package)")
            runner.start()
            return await _tap_steps(n, ns, ns_netlink, stack, iface, tap)
        finally:
            ns_netlink.close()
            with ns.entered():  # close the TAP where it lives
                if runner.running:
                    runner.stop()
                else:
                    stack.stop()
            n.say()
            n.say(f"Cleaning up: stack stopped, {tap} and namespace {ns.name} removed.")


def _mac(value: bytes | None) -> str:
    return ":".join(f"{b:02x}" for b in value) if value else "?"


async def _tap_steps(n: Narrator, ns: NetNamespace, nl: Netlink, stack: Stack,
                     iface: Interface, tap: str) -> bool:
    ok = True
    n.step(f"Linux pings the stack: ping -c {PINGS} {STACK_ADDR} (inside {ns.name})")
    n.say(f"    Linux first asks \"who has {STACK_ADDR}?\" (ARP): the stack's arp plugin answers;")
    n.say("    then its icmp plugin answers each echo request.")
    rc, out = await _run(ns, "ping", "-c", str(PINGS), "-i", "0.2", "-W", "2", STACK_ADDR)
    n.show(out)
    if rc == 0:
        n.result("Linux got replies from the stack")
    else:
        n.result(f"no replies (ping exited {rc})")
        ok = False

    n.step(f"the stack pings Linux: layers.ping from {STACK_ADDR} to {LINUX_ADDR}")
    got = await stack_pings(n, stack, LINUX_ADDR)
    n.result(f"{got} of {PINGS} replies from Linux")
    ok = ok and got > 0

    n.step("what each side learned about the other (ARP)")
    index = await nl.adevice(tap)
    neighbours = await nl.aneighbours(index.index) if index is not None else []
    n.say(f"    Linux (its neighbour table on {tap}, as `ip neigh show dev {tap}` shows it):")
    out = "".join(f"{addr} lladdr {_mac(mac)}\n" for addr, mac in neighbours if mac)
    n.show(out or "(empty)\n", prefix="    |   ")
    _show_arp(n, "the stack", stack)
    linux_knows = any(mac == iface.mac for _, mac in neighbours)
    stack_knows = any(r.get("address") == LINUX_ADDR and r.get("mac") for r in _arp_rows(stack))
    n.result(f"Linux knows the stack's MAC: {'yes' if linux_knows else 'NO'}; "
             f"the stack knows Linux's: {'yes' if stack_knows else 'NO'}")
    ok = ok and linux_knows and stack_knows

    if has_tcp(stack):
        ok = await _tap_http_steps(n, ns, stack) and ok
    else:
        n.say()
        n.say("(HTTP steps skipped: this installation has no TCP plugin)")

    n.step("the stack's counters (`layers netstat -s` shows them for a running `layers up`)")
    _show_counters(n, stack, ("arp", "ipv4", "icmp", "tcp"))
    return ok


LINUX_PAGE = "<p>Hello from Linux's python -m http.server</p>\n"


async def _tap_http_steps(n: Narrator, ns: NetNamespace, stack: Stack) -> bool:
    ok = True
    n.step(f"Linux fetches a page from the stack: curl http://{STACK_ADDR}/")
    n.say("    The stack serves HTTP with its tcp plugin (as `layers up --serve http:80` does).")
    services = await start_services(stack, ["http:80"])
    try:
        rc, out = await _run(ns, "curl", "-sS", "-m", "5", "-i", f"http://{STACK_ADDR}/")
        n.show(out.replace("\r", ""))
        ok = rc == 0 and bool(out) and " 200 " in out.splitlines()[0]
        n.result("Linux got the stack's page" if ok else f"curl failed (exit {rc})")
    finally:
        await stop_services(services)

    n.step(f"the stack fetches a page from Linux: python -m http.server on {LINUX_ADDR}:8000")
    with tempfile.TemporaryDirectory() as www:
        Path(www, "index.html").write_text(LINUX_PAGE)
        server = await asyncio.create_subprocess_exec(
            *ns.exec_args([sys.executable, "-m", "http.server", "8000", "--bind", LINUX_ADDR,
                           "--directory", www]),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        try:
            status, body = "", b""
            for _ in range(50):  # until the server listens
                try:
                    status, body = await http_get(stack, LINUX_ADDR, 8000)
                    break
                except ConnectionRefusedError:
                    await asyncio.sleep(0.1)
            n.show(f"{status}\n\n{body.decode(errors='replace')}")
            got = body.decode(errors="replace") == LINUX_PAGE
            n.result("the stack's TCP client got Linux's page" if got else "no page")
            ok = ok and got
        finally:
            if server.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    server.kill()  # the server this demo started
                await server.wait()
    return ok


# --- without root: two stacks over an in-memory link ---------------------------------------


async def memory_demo(n: Narrator) -> bool:
    loop = asyncio.get_running_loop()
    left, right = MemoryLink.pair(("mem0", "mem1"))
    a = Stack(clock=loop.time, name="alice")
    b = Stack(clock=loop.time, name="bob")
    runners: list[AsyncioRunner] = []
    try:
        ia = a.add_interface(left, address=f"{LINUX_ADDR}/{PREFIX}")
        ib = b.add_interface(right, address=f"{STACK_ADDR}/{PREFIX}")
        n.say("Setting up")
        n.say("  * two layers stacks in this process, joined by an in-memory cable (no device,")
        n.say("    no root): alice and bob, each running on asyncio in real time")
        n.say(f"  * alice: {LINUX_ADDR}/{PREFIX} on mem0, MAC {_mac(ia.mac)}")
        n.say(f"  * bob:   {STACK_ADDR}/{PREFIX} on mem1, MAC {_mac(ib.mac)}")
        n.say(f"    plugins: {_plugins_of(a)} (each one a separately installed package)")
        for stack in (a, b):
            runner = AsyncioRunner(stack, loop)
            runner.start()
            runners.append(runner)

        n.step(f"alice pings bob ({STACK_ADDR})")
        n.say(f"    alice first asks \"who has {STACK_ADDR}?\" (ARP), then sends echo requests;")
        n.say("    bob's icmp plugin answers them.")
        got_ab = await stack_pings(n, a, STACK_ADDR)
        n.result(f"{got_ab} of {PINGS} replies")
        n.step(f"bob pings alice ({LINUX_ADDR})")
        got_ba = await stack_pings(n, b, LINUX_ADDR)
        n.result(f"{got_ba} of {PINGS} replies (no ARP request this time: bob learned alice's "
                 f"MAC from her request)")

        if has_tcp(a):
            n.step(f"bob fetches a page from alice's HTTP service (http://{LINUX_ADDR}/)")
            services = await start_services(a, ["http:80"])
            try:
                status, body = await http_get(b, LINUX_ADDR, 80)
            finally:
                await stop_services(services)
            n.show(f"{status}\n\n{body.decode(errors='replace')}")
            fetched = status.split()[1:2] == ["200"]
            n.result("bob's TCP client got the page" if fetched else "no page")
            got_ab = got_ab if fetched else 0

        n.step("what each side learned about the other (ARP)")
        _show_arp(n, "alice", a)
        _show_arp(n, "bob", b)
        n.step("counters")
        n.say("    alice:")
        _show_counters(n, a, ("arp", "ipv4", "icmp", "tcp"))
        n.say("    bob:")
        _show_counters(n, b, ("arp", "ipv4", "icmp", "tcp"))
        return got_ab > 0 and got_ba > 0
    finally:
        for runner in runners:
            runner.stop()
        for stack in (a, b):
            stack.stop()
        n.say()
        n.say("Cleaning up: both stacks stopped.")


# --- entry point ---------------------------------------------------------------------------


def run_demo(*, memory: bool = False, out: TextIO = sys.stdout) -> int:
    n = Narrator(out)
    can, why = have_root_and_tun()
    if not memory and can and shutil.which("ping") is None:
        can, why = False, "needs Linux's ping (Debian package iputils-ping)"
    started = time.monotonic()
    if memory or not can:
        if not memory:
            n.say(f"layers demo: a TAP in a network namespace {why}; running the same tour "
                  f"between two stacks over an in-memory link instead.")
        else:
            n.say("layers demo: two stacks over an in-memory link.")
        n.say()
        runner = memory_demo
    else:
        n.say(f"layers demo: Linux (in a throwaway network namespace) and a layers stack "
              f"(this process, pid {os.getpid()}) ping each other over a TAP device.")
        n.say()
        runner = tap_demo
    try:
        ok = asyncio.run(runner(n))
    except KeyboardInterrupt:
        n.say("interrupted; everything was cleaned up")
        return 130
    n.say()
    if ok:
        n.say(f"Done in {time.monotonic() - started:.1f}s: every step worked.")
        return 0
    n.say("Some steps did not work (see above).")
    return 1


def cmd_demo(args: argparse.Namespace) -> int:
    return run_demo(memory=args.memory)


def add_commands(commands: Commands) -> None:
    demo = commands.add("demo", cmd_demo,
                        help="a guided tour: Linux and the stack ping each other")
    demo.add_argument("--memory", action="store_true",
                      help="run between two stacks over an in-memory link even as root")
