"""The reference DUT: the Linux kernel in a network namespace of its own.

Per test: a new namespace with IPv6 off (no router solicitations or MLD on the wire) unless
the test is of the IPv6 family (then IPv6 is on for the TAP only: no router solicitations,
no router advertisements accepted, no duplicate address detection; MLD reports do go out), a
TAP
device opened by the testbench inside it (the testbench owns the descriptor: every frame the
kernel sends on the TAP is the testbench's to read, every frame it writes the kernel receives),
the DUT address on that TAP (through pyroute2), and the socket agent (:mod:`.linux_agent`)
started inside. Settings the suite uses are mapped to the namespace's sysctls.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from layers.conformance.capabilities import Everything
from layers.conformance.duts.agent import AgentDUT, AgentProcess
from layers.conformance.duts.base import DUT_IP, DUT_IP6, PREFIX, PREFIX6, TB_MAC
from layers.conformance.media import TapMedium
from layers.links.tuntap import TapLink
from layers.netns import NetNamespace

DEV = "dut0"


def _bool(v: Any) -> str:
    return "1" if str(v).lower() in ("1", "true", "yes", "on") else "0"


#: suite setting -> (sysctl name, converter)
SYSCTLS: dict[str, tuple[str, Callable[[Any], str]]] = {
    "ipv4.reasm_timeout": ("net.ipv4.ipfrag_time", lambda v: str(max(1, math.ceil(float(v))))),
    "icmp.ratelimit": ("net.ipv4.icmp_ratelimit", lambda v: str(round(float(v) * 1000))),
    "icmp.echo_ignore_broadcasts": ("net.ipv4.icmp_echo_ignore_broadcasts", _bool),
    "tcp.sack": ("net.ipv4.tcp_sack", _bool),
    "tcp.timestamps": ("net.ipv4.tcp_timestamps", _bool),
    "tcp.window_scaling": ("net.ipv4.tcp_window_scaling", _bool),
    "tcp.ecn": ("net.ipv4.tcp_ecn", lambda v: str(int(v))),
    "tcp.syn_retries": ("net.ipv4.tcp_syn_retries", lambda v: str(int(v))),
    "tcp.synack_retries": ("net.ipv4.tcp_synack_retries", lambda v: str(int(v))),
    "tcp.retries2": ("net.ipv4.tcp_retries2", lambda v: str(int(v))),
    "tcp.fin_timeout": ("net.ipv4.tcp_fin_timeout", lambda v: str(max(1, round(float(v))))),
    "arp.timeout": (f"net.ipv4.neigh.{DEV}.retrans_time_ms",
                    lambda v: str(round(float(v) * 1000))),
    "arp.retries": (f"net.ipv4.neigh.{DEV}.mcast_solicit", lambda v: str(int(v))),
    "ipv6.reasm_timeout": ("net.ipv6.ip6frag_time", lambda v: str(max(1, math.ceil(float(v))))),
    "ndp.retrans_timer": (f"net.ipv6.neigh.{DEV}.retrans_time_ms",
                          lambda v: str(round(float(v) * 1000))),
    "ndp.delay_first_probe": (f"net.ipv6.neigh.{DEV}.delay_first_probe_time",
                              lambda v: str(max(1, round(float(v))))),
    "ndp.reachable_time": (f"net.ipv6.neigh.{DEV}.base_reachable_time_ms",
                           lambda v: str(round(float(v) * 1000))),
    "ndp.max_unicast_solicit": (f"net.ipv6.neigh.{DEV}.ucast_solicit", lambda v: str(int(v))),
    "ndp.max_multicast_solicit": (f"net.ipv6.neigh.{DEV}.mcast_solicit",
                                  lambda v: str(int(v))),
}

#: the IPv6 family's tests: IPv6 on for the TAP alone, quiet (these before disable_ipv6=0)
IPV6_SYSCTLS = (
    (f"net.ipv6.conf.{DEV}.accept_ra", "0"),
    (f"net.ipv6.conf.{DEV}.router_solicitations", "0"),
    (f"net.ipv6.conf.{DEV}.accept_dad", "0"),
    (f"net.ipv6.conf.{DEV}.dad_transmits", "0"),
    (f"net.ipv6.conf.{DEV}.disable_ipv6", "0"),
)


class LinuxDUT(AgentDUT):
    name = "linux"

    def __init__(self, ns: NetNamespace, medium: TapMedium, mac: bytes, agent: AgentProcess):
        super().__init__(medium, mac, Everything(), agent)
        self.ns = ns

    def shutdown_dut(self) -> None:
        try:
            self.agent.close()
        finally:
            try:
                self.medium.close()
            finally:
                self.ns.delete()


IFA_F_TENTATIVE = 0x40


def _wait_ipv6_ready(ipr: Any, index: int, timeout: float = 5.0) -> None:
    """Until the global and the link-local address are both usable: even without duplicate
    address detection the kernel clears their tentative flag from a work queue, and a packet
    to a tentative address is dropped unanswered."""
    import socket
    import time

    deadline = time.monotonic() + timeout
    while True:
        ready = {m.get("address") for m in ipr.addr("dump", index=index, family=socket.AF_INET6)
                 if not (m.get("flags", 0) | (m.get("IFA_FLAGS") or 0)) & IFA_F_TENTATIVE}
        if DUT_IP6 in ready and any(a.startswith("fe80:") for a in ready):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Linux DUT's IPv6 addresses are not ready: {ready}")
        time.sleep(0.01)


def make_linux_dut(settings: Mapping[str, Any], *, ipv6: bool = False) -> LinuxDUT:
    unknown = sorted(k for k in settings if k not in SYSCTLS)
    if unknown:
        raise ValueError(
            f"the Linux DUT has no equivalent for setting(s) {', '.join(unknown)}; known: "
            f"{', '.join(sorted(SYSCTLS))}"
        )
    ns = NetNamespace(prefix="lcf")
    ns.create()
    medium: TapMedium | None = None
    try:
        ns.run(["sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; "
                            "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6"])
        with ns.entered():
            link = TapLink.open(DEV, offload=False, mac=TB_MAC, up=False)
        medium = TapMedium(link)
        assert link.device_mac is not None
        script = Path(__file__).with_name("linux_agent.py")
        proc = ns.popen([sys.executable, "-I", "-S", str(script)],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        agent = AgentProcess(proc, "the Linux socket agent")
        for key, value in settings.items():
            name, convert = SYSCTLS[key]
            agent.request("sysctl", {"name": name, "value": convert(value)})
        if ipv6:
            for name, value in IPV6_SYSCTLS:
                agent.request("sysctl", {"name": name, "value": value})
        with ns.netlink() as nl:
            index = nl.lookup(DEV)
            assert index is not None
            nl.add_address(index, f"{DUT_IP}/{PREFIX}")
            nl.set(index, up=True)
        if ipv6:
            from pyroute2 import IPRoute

            with IPRoute(netns=ns.name, flags=0, groups=0) as ipr:
                ipr.addr("add", index=index, address=DUT_IP6, prefixlen=PREFIX6)
                _wait_ipv6_ready(ipr, index)
        return LinuxDUT(ns, medium, link.device_mac, agent)
    except BaseException:
        if medium is not None:
            medium.close()
        ns.delete()
        raise
