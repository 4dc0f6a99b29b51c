"""Router discovery and SLAAC against Linux over a TAP: ``layers up``'s router solicitation
reaches a raw ICMPv6 socket in the test's own namespace (joined to all-routers), which answers
with a crafted router advertisement (the kernel fills in the checksum); the stack forms its
address from the prefix, takes the router as default gateway and the MTU option, and Linux
pings the autoconfigured address. The same socket, joined to ff02::16, sees our MLDv2 report."""

from __future__ import annotations

import re
import select
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import pytest
from linux_tools import LayersUp, devname, link_state, ping_ok

from layers.netns import NetNamespace
from layers.wire.ipv6 import eui64_interface_id, ip6, ip6_str, solicited_node

pytestmark = pytest.mark.root

Start = Callable[..., LayersUp]
ROUTER_LL = "fe80::1"
PREFIX = "2001:db8:5::"
STACK_MAC = "02:00:00:00:05:02"


def _router_socket(netns: NetNamespace, ifindex: int) -> socket.socket:
    with netns.entered():
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
    for name in ("ff02::2", "ff02::16"):  # all-routers, all MLDv2 routers
        group = socket.inet_pton(socket.AF_INET6, name) + struct.pack("@I", ifindex)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, group)
    sock.bind((ROUTER_LL, 0, 0, ifindex))
    return sock


def _wait_for(sock: socket.socket, icmp_type: int, timeout: float,
              seen: list[bytes]) -> tuple[bytes, Any]:
    """The first ICMPv6 message of ``icmp_type`` Linux delivers to ``sock`` (the kernel has
    checked its checksum); every message read goes to ``seen``."""
    for data in seen:
        if data[0] == icmp_type:
            return data, None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        data, addr = sock.recvfrom(2048)
        seen.append(data)
        if data and data[0] == icmp_type:
            return data, addr
    raise AssertionError(f"no ICMPv6 type {icmp_type} from layers up reached Linux: {seen}")


def _ra(router_mac: bytes) -> bytes:
    body = bytes((64, 0)) + (1800).to_bytes(2, "big") + bytes(8)
    body += bytes((1, 1)) + router_mac  # source link-layer address
    body += bytes((5, 1, 0, 0)) + (1400).to_bytes(4, "big")  # MTU
    body += (bytes((3, 4, 64, 0xC0)) + (7200).to_bytes(4, "big") + (3600).to_bytes(4, "big")
             + bytes(4) + ip6(PREFIX).to_bytes(16, "big"))  # prefix information, L and A
    return bytes((134, 0, 0, 0)) + body  # the kernel computes the ICMPv6 checksum


def test_slaac_from_a_linux_side_router_advertisement(netns: NetNamespace,
                                                      layers_up: Start) -> None:
    tap = devname()
    netns.run(["ip", "tuntap", "add", tap, "mode", "tap"])
    netns.run(["ip", "link", "set", tap, "up"])
    netns.run(["ip", "-6", "addr", "add", f"{ROUTER_LL}/64", "dev", tap, "nodad"])
    netns.run(["ip", "-6", "addr", "add", f"{PREFIX}1/64", "dev", tap, "nodad"])
    state = link_state(netns, tap)
    assert state is not None
    ifindex, mac_text = int(state["ifindex"]), str(state["address"])
    sock = _router_socket(netns, ifindex)
    try:
        up = layers_up("--link", f"tap:{tap}", "--address", "10.85.0.2/24", "--mac", STACK_MAC)
        seen: list[bytes] = []
        rs, source = _wait_for(sock, 133, 5.0, seen)  # router solicitation
        assert len(rs) >= 8
        sock.sendto(_ra(bytes.fromhex(mac_text.replace(":", ""))), ("ff02::1", 0, 0, ifindex))
        slaac = ip6_str(ip6(PREFIX) | eui64_interface_id(bytes.fromhex(
            STACK_MAC.replace(":", ""))))
        deadline = time.monotonic() + 8.0
        rows: dict[str, Any] = {}
        while time.monotonic() < deadline:
            rows = {r["address"]: r for r in up.request("report")["report"]["addresses6"]}
            if rows.get(slaac, {}).get("state") == "preferred":
                break
            time.sleep(0.1)
        assert rows.get(slaac, {}).get("state") == "preferred", (slaac, rows, source)
        assert rows[slaac]["origin"] == "autoconf" and rows[slaac]["prefix_length"] == 64
        # MLDv2: Linux received (checksum checked) our report of the solicited-node group
        _wait_for(sock, 143, 3.0, seen)
        groups = set()
        for msg in seen:
            if msg[0] == 143:
                for i in range(int.from_bytes(msg[6:8], "big")):
                    groups.add((msg[8 + 20 * i], int.from_bytes(msg[12 + 20 * i:28 + 20 * i],
                                                                 "big")))
        assert (4, solicited_node(ip6(slaac))) in groups, groups  # CHANGE_TO_EXCLUDE
    finally:
        sock.close()
    routes = up.layers("routes", "-6")
    assert re.search(rf"^::/0\s+{ROUTER_LL}\s+{tap}\s+1024\s+ra$", routes, re.M), routes
    out = ping_ok(netns, slaac, "-6", "-s", "1300", count=2)
    assert f"1308 bytes from {slaac}" in out
    counters = up.request("report")["report"]["counters"]["ndp"]["counters"]
    assert counters["ra_accepted"] == 1 and counters["ra_mtu_updates"] == 1
    assert counters["slaac_addresses"] == 1
