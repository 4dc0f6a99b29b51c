"""The layers DUT over a TAP: our stack in real time, bridged to the testbench's own TAP.

One namespace per test session holds a Linux bridge (no IP address on it) with two ports: the
TAP of the stack (``dut0``, opened by :mod:`.layers_agent` inside the namespace) and the TAP of
the testbench (``tb0``, whose descriptor the testbench reads and writes). The agent process
is started once and composes a fresh stack for every test (``reset``).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from layers.conformance.capabilities import CapabilityValue
from layers.conformance.duts.agent import AgentDUT, AgentProcess
from layers.conformance.duts.base import TB_MAC
from layers.conformance.media import TapMedium
from layers.links.tuntap import TapLink
from layers.netns import NetNamespace
from layers.wire.addr import mac as parse_mac

TB_DEV = "tb0"
DUT_DEV = "dut0"
BRIDGE = "br0"


class LayersTapDUT(AgentDUT):
    name = "layers-tap"

    def shutdown_dut(self) -> None:
        try:
            self.close_all()
        except Exception:
            pass


class LayersTapEnv:
    """The session's namespace, bridge, testbench TAP and agent."""

    def __init__(self) -> None:
        self.ns = NetNamespace(prefix="ltcf")
        self.ns.create()
        self.medium: TapMedium | None = None
        self.agent: AgentProcess | None = None
        try:
            self.ns.run(["sh", "-c",
                         "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; "
                         "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6"])
            self._bridge("add")
            with self.ns.entered():
                tb_link = TapLink.open(TB_DEV, offload=False, mac=TB_MAC)
            self.medium = TapMedium(tb_link)
            proc = self.ns.popen(
                [sys.executable, "-m", "layers.conformance.duts.layers_agent", "--dev", DUT_DEV],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            )
            self.agent = AgentProcess(proc, "the layers-over-TAP agent")
            import json

            hello = json.loads(self.agent._readline(60.0))
            self.mac = parse_mac(hello["ok"]["mac"])
            self._bridge("enslave")
        except BaseException:
            self.close()
            raise

    def _bridge(self, step: str) -> None:
        """Make the bridge (``add``), or put both TAPs on it and bring them up (``enslave``)."""
        from pyroute2 import IPRoute

        with IPRoute(netns=self.ns.name, flags=0, groups=0) as ipr:
            if step == "add":
                # no multicast snooping: IPv6 neighbour discovery goes to solicited-node
                # groups the stack may not report with MLD
                ipr.link("add", ifname=BRIDGE, kind="bridge", br_mcast_snooping=0)
                ipr.link("set", index=ipr.link_lookup(ifname=BRIDGE)[0], state="up")
                return
            bridge = ipr.link_lookup(ifname=BRIDGE)[0]
            for dev in (TB_DEV, DUT_DEV):
                ipr.link("set", index=ipr.link_lookup(ifname=dev)[0], master=bridge, state="up")

    def dut(
        self,
        plugins: list[str] | None,
        settings: Mapping[str, Any],
        capabilities: Mapping[str, CapabilityValue],
        *,
        ipv6: bool = False,
    ) -> LayersTapDUT:
        assert self.agent is not None and self.medium is not None
        self.agent.request("reset", {"plugins": plugins, "settings": dict(settings),
                                     "ipv6": ipv6})
        self.medium.reset()
        return LayersTapDUT(self.medium, self.mac, capabilities, self.agent)

    def close(self) -> None:
        try:
            if self.agent is not None:
                self.agent.close()
            if self.medium is not None:
                self.medium.close()
        finally:
            self.ns.delete()
