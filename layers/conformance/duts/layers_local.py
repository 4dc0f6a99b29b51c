"""The layers DUT over an in-memory link, on a virtual clock.

The stack is composed from the selected plugins (``--plugins``; all installed by default) and
given the DUT address on one end of a :class:`~layers.links.memory.MemoryLink` pair; the
testbench holds the other end. Time is a :class:`~layers.timers.VirtualClock` that moves only
while the testbench (or a socket operation) waits, from event to event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

from layers.conformance.capabilities import CapabilityValue
from layers.conformance.duts.base import DUT, DUT_IP, DUT_IP6, PREFIX, PREFIX6, TB_MAC
from layers.conformance.duts.layers_sockets import LayersSockets
from layers.conformance.media import VirtualMedium
from layers.links.memory import MemoryLink
from layers.stack import Stack
from layers.timers import VirtualClock

#: the virtual clock starts here (not at 0, so nothing mistakes the start for "unset")
START = 1000.0


class LayersLocalDUT(DUT):
    name = "layers"

    def __init__(
        self,
        stack: Stack,
        medium: VirtualMedium,
        mac: bytes,
        capabilities: Mapping[str, CapabilityValue],
    ) -> None:
        super().__init__(medium, mac, capabilities)
        self.stack = stack
        self.sockets = LayersSockets(stack, medium.wait)

    def call(self, op: str, **args: Any) -> Any:
        result = self.sockets.call(op, **args)
        # let what the operation started (a SYN, a datagram) reach the wire now
        assert isinstance(self.medium, VirtualMedium)
        self.medium.settle()
        return result

    def shutdown_dut(self) -> None:
        self.sockets.close_all()
        self.stack.stop()


def make_layers_local_dut(
    plugins: Sequence[str | ModuleType | object] | None,
    settings: Mapping[str, Any],
    capabilities: Mapping[str, CapabilityValue],
    *,
    ipv6: bool = False,
) -> LayersLocalDUT:
    clock = VirtualClock(START)
    dut_link = MemoryLink("dut0")
    tb_link = MemoryLink("tb0", mac=TB_MAC)
    dut_link.peer, tb_link.peer = tb_link, dut_link
    stack = Stack(plugins, clock=clock, settings=dict(settings), name="layers-dut")
    try:
        iface = stack.add_interface(dut_link, address=f"{DUT_IP}/{PREFIX}")
        if ipv6:
            stack.add_address(iface, f"{DUT_IP6}/{PREFIX6}")
        medium = VirtualMedium(clock, tb_link)
        medium.stacks.append(stack)
        stack.start()
        assert dut_link.mac is not None
        return LayersLocalDUT(stack, medium, dut_link.mac, capabilities)
    except BaseException:
        stack.stop()
        raise
