"""The arp plugin against the Linux kernel over a TAP, inside a namespace made by the test."""

from __future__ import annotations

import json
import secrets
import select
import time
from collections.abc import Callable

import pytest

from layers.links.tuntap import TapLink
from layers.netns import NetNamespace
from layers.stack import Stack
from layers.wire import ETH_P_IP, ip4, mac_str

pytestmark = pytest.mark.root

LINUX_IP = "10.77.0.1"
STACK_IP = "10.77.0.2"


def _pump(stack: Stack, link: TapLink, until: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Drive the stack by hand (it is sans-IO): read frames, run timers, until ``until()``."""
    iface = stack.interfaces[0]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if until():
            return True
        fd = link.fileno()
        assert fd is not None
        select.select([fd], [], [], 0.02)
        while (got := link.recv()) is not None:
            stack.receive(iface, got[0], got[1])
        stack.poll()
    return until()


def _linux_neighbour(ns: NetNamespace, dev: str, address: str) -> dict[str, object] | None:
    out = ns.run(["ip", "-j", "neigh", "show", "dev", dev]).stdout
    for row in json.loads(out or "[]"):
        if row.get("dst") == address:
            return dict(row)
    return None


def test_linux_and_the_stack_resolve_each_other(netns: NetNamespace) -> None:
    dev = f"arp{secrets.token_hex(3)}"
    with netns.entered():
        link = TapLink.open(dev, offload=False)
    stack = Stack(["arp"], settings={"arp.gratuitous_count": 1}, name="arp-linux")
    try:
        netns.run(["ip", "addr", "add", f"{LINUX_IP}/24", "dev", dev])
        netns.run(["ip", "link", "set", dev, "up"])
        iface = stack.add_interface(link, address=f"{STACK_IP}/24")
        stack.start()
        arp = stack.protocol("arp")
        resolver = arp.resolvers[iface]

        # Linux resolves the stack: a ping makes the kernel ask (nothing answers the ICMP,
        # which is fine: only the ARP exchange matters here)
        ping = netns.popen(["ping", "-n", "-c", "1", "-W", "1", STACK_IP])
        assert _pump(stack, link, lambda: ping.poll() is not None, timeout=10)
        row = _linux_neighbour(netns, dev, STACK_IP)
        assert row is not None, "Linux has no neighbour entry for the stack"
        assert row.get("lladdr") == mac_str(iface.mac or b"")
        assert stack.counters["arp"]["tx_replies"] >= 1

        # the stack learned Linux from its request (RFC 826 merge: it asked for us)
        learned = resolver.lookup(ip4(LINUX_IP))
        assert learned is not None and learned.mac == link.device_mac

        # forget it, and the stack resolves Linux with a request of its own
        resolver.flush()
        resolver.output(ip4(LINUX_IP), ETH_P_IP, b"\x45" + bytes(19))
        assert _pump(stack, link, lambda: any(
            r["address"] == LINUX_IP and r["state"] == "reachable"
            for r in stack.report()["arp"]
        ))
        n = resolver.lookup(ip4(LINUX_IP))
        assert n is not None and n.mac == link.device_mac
        assert stack.counters["arp"]["tx_requests"] == 1
        assert stack.counters["arp"]["rx_replies"] == 1
    finally:
        stack.stop()
