"""IPv6 against Linux over a TAP: ``ping -6`` from the test's own namespace reaches
``layers up --address 2001:db8::2/64`` (with IPv4 beside it), after neighbour discovery and
our duplicate address detection, and Linux's neighbour table learns the stack's MAC."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from linux_tools import LayersUp, devname, layers, ping_ok

from layers.netns import NetNamespace

pytestmark = pytest.mark.root

Start = Callable[..., LayersUp]
LINUX6 = "2001:db8::1"
STACK6 = "2001:db8::2"


def _wait_preferred(up: LayersUp, address: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = up.request("report")["report"]
        rows = {r["address"]: r for r in report.get("addresses6", [])}
        if rows.get(address, {}).get("state") == "preferred":
            return report
        time.sleep(0.1)
    raise AssertionError(f"{address} never left duplicate address detection: {rows}")


def test_ping6_from_linux_reaches_layers_up(netns: NetNamespace, layers_up: Start) -> None:
    tap = devname()
    up = layers_up("--link", f"tap:{tap}", "--address", "10.82.0.2/24",
                   "--address", f"{STACK6}/64", "--gateway", "10.82.0.1",
                   "--gateway", LINUX6)
    assert f"10.82.0.2/24, {STACK6}/64 on {tap}" in up.ready_line, up.ready_line
    assert f"gateway 10.82.0.1 gateway {LINUX6}" in up.ready_line, up.ready_line
    netns.run(["ip", "-6", "addr", "add", f"{LINUX6}/64", "dev", tap, "nodad"])
    report = _wait_preferred(up, STACK6)
    link_local = [r for r in report["addresses6"] if str(r["address"]).startswith("fe80:")]
    assert link_local and link_local[0]["state"] == "preferred"

    out = ping_ok(netns, STACK6, "-6", "-s", "100")
    assert f"108 bytes from {STACK6}" in out
    # larger than the MTU: Linux fragments, we reassemble and fragment our reply
    out = ping_ok(netns, STACK6, "-6", "-s", "3000", count=2)
    assert f"3008 bytes from {STACK6}" in out
    # Linux resolved us through NDP: it holds our MAC for the address
    neigh = netns.run(["ip", "-6", "neigh", "show", STACK6, "dev", tap]).stdout
    assert "lladdr" in neigh, neigh
    # and we resolved Linux
    rows = up.request("report")["report"]["ndp"]
    assert any(r["address"] == LINUX6 and r["mac"] for r in rows), rows
    routes = up.layers("routes", "-6")
    assert re.search(r"^2001:db8::/64\s+::\s+\S+\s+0\s+connected$", routes, re.M), routes
    assert re.search(r"^fe80::/64\s", routes, re.M), routes
    # the IPv6 default gateway given beside the IPv4 one
    assert re.search(rf"^::/0\s+{re.escape(LINUX6)}\s+\S+\s+0\s+static$", routes, re.M), routes
    ndp = up.layers("ndp")
    assert re.search(rf"^{re.escape(LINUX6)}\s+[0-9a-f:]{{17}}\s+(reachable|stale|delay)",
                     ndp, re.M), ndp
    assert "Inet addr:10.82.0.2/255.255.255.0" in up.layers("netstat")
    counters = up.request("report")["report"]["counters"]
    assert counters["ipv6"]["counters"]["ReasmOKs"] >= 2
    assert counters["icmpv6"]["counters"]["out_echo_reps"] >= 5


def test_curl_over_ipv6_reaches_layers_up_and_the_stack_reaches_linux(
    netns: NetNamespace, layers_up: Start
) -> None:
    tap = devname()
    up = layers_up("--link", f"tap:{tap}", "--address", "10.83.0.2/24",
                   "--address", f"{STACK6}/64", "--serve", "http:80")
    netns.run(["ip", "-6", "addr", "add", f"{LINUX6}/64", "dev", tap, "nodad"])
    _wait_preferred(up, STACK6)
    r = netns.run(["curl", "-sS", "-g", "--max-time", "10", f"http://[{STACK6}]/"],
                  check=False, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout, "an empty page"
    report = up.request("report")["report"]
    assert report["counters"]["tcp"]["counters"]["PassiveOpens"] == 1
    assert report["counters"]["ipv6"]["counters"]["InDelivers"] >= 4
    out = up.layers("netstat")
    assert f"inet6 addr: {STACK6}/64 Scope:Global" in out


def test_layers_ping_reaches_linux_over_ipv6(netns: NetNamespace) -> None:
    tap = devname()
    netns.run(["ip", "tuntap", "add", tap, "mode", "tap"])
    netns.run(["ip", "-6", "addr", "add", "2001:db8:1::1/64", "dev", tap, "nodad"])
    r = layers(netns, "ping", "--link", f"tap:{tap}", "--address", "2001:db8:1::2/64",
               "--set", "ndp.dad_transmits=0", "-c", "3", "-i", "0.2", "2001:db8:1::1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PING 2001:db8:1::1 (2001:db8:1::1) 56(104) bytes of data." in r.stdout
    assert "3 packets transmitted, 3 received" in r.stdout, r.stdout
    assert "64 bytes from 2001:db8:1::1: icmp_seq=1 ttl=64" in r.stdout, r.stdout
