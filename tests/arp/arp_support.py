"""Test support for the arp plugin.

* :class:`Recorder`: a network protocol test double on ethertype 0x0800 that needs a neighbour
  resolver (like IPv4) and records what it receives and every ``unreachable()`` upcall, with the
  virtual time it arrived. It stands in for IPv4's side of the contract, not for ARP.
* :class:`RawRig`: one stack (arp + a Recorder) whose link's far end is held by the test, so
  tests inject crafted frames and read every frame the stack sends, with its time.
* :func:`pair`: two stacks joined by a memory link, each with arp and a Recorder.
"""

from __future__ import annotations

from typing import Any

from layers.hookspecs import hookimpl
from layers.interface import Interface
from layers.links.memory import MemoryLink
from layers.stack import Stack
from layers.virtual import VirtualNetwork
from layers.wire.addr import BROADCAST_MAC, ip4
from layers.wire.arp import ARPOP_REPLY, ARPOP_REQUEST, ARPPacket, build_arp
from layers.wire.ethernet import ETH_HEADER, ETH_P_ARP, ETH_P_IP

PEER_MAC = bytes.fromhex("020000000099")


class Recorder:
    name = "recorder"
    ethertype = ETH_P_IP
    ip_version = None
    needs_neighbour_resolver = True

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.got: list[bytes] = []
        #: (time, payload, errno) per unreachable() upcall
        self.unreachable_calls: list[tuple[float, bytes, int]] = []

    def receive(self, interface: Interface, packet: memoryview, flags: int) -> None:
        self.got.append(bytes(packet))

    def unreachable(self, interface: Interface, packet: bytes, errno: int) -> None:
        self.unreachable_calls.append((self.stack.now, bytes(packet), errno))


class RecorderPlugin:
    def __init__(self) -> None:
        self.recorder: Recorder | None = None

    @hookimpl
    def layers_network_protocols(self, stack: Stack) -> list[Any]:
        self.recorder = Recorder(stack)
        return [self.recorder]


def recorder(stack: Stack) -> Recorder:
    proto = stack.protocol("recorder")
    assert isinstance(proto, Recorder)
    return proto


def pair(
    net: VirtualNetwork,
    settings: dict[str, Any] | None = None,
    *,
    latency: float = 0.0,
    start: bool = True,
) -> tuple[Stack, Stack]:
    a = net.new_stack(["arp", RecorderPlugin()], settings=settings, name="a")
    b = net.new_stack(["arp", RecorderPlugin()], settings=settings, name="b")
    net.link(a, b, addresses=("10.0.0.1/24", "10.0.0.2/24"), latency=latency)
    if start:
        a.start()
        b.start()
    return a, b


def arp_frame(
    op: int,
    sender_mac: bytes,
    sender_ip: str | int,
    target_ip: str | int,
    *,
    target_mac: bytes = b"\x00" * 6,
    dst: bytes = BROADCAST_MAC,
    src: bytes | None = None,
) -> bytes:
    body = build_arp(op, sender_mac, ip4(sender_ip), target_mac, ip4(target_ip))
    return ETH_HEADER.pack(dst, src or sender_mac, ETH_P_ARP) + body


class RawRig:
    """A stack whose only link's other end belongs to the test."""

    def __init__(
        self,
        settings: dict[str, Any] | None = None,
        *,
        address: str = "10.0.0.1/24",
        start: bool = True,
    ) -> None:
        self.net = VirtualNetwork()
        base = {"arp.gratuitous_count": 0}
        base.update(settings or {})
        self.stack = self.net.new_stack(["arp", RecorderPlugin()], settings=base, name="dut")
        self.link, self.raw = MemoryLink.pair(("dut0", "raw0"))
        self.raw.mac = PEER_MAC
        self.raw.attach(self.net.clock)
        self.iface = self.stack.add_interface(self.link, address=address)
        assert self.iface.mac is not None
        self.mac: bytes = self.iface.mac
        self.recorder = recorder(self.stack)
        self.arp = self.stack.protocol("arp")
        self.resolver = self.arp.resolvers[self.iface]
        #: (time, frame) for every frame the stack sent, in order
        self.sent: list[tuple[float, bytes]] = []
        if start:
            self.stack.start()
            self.drain()

    @property
    def counters(self) -> Any:
        return self.stack.counters["arp"]

    def drain(self) -> list[bytes]:
        """Collect what the stack sent since the last call."""
        new = []
        while (got := self.raw.recv()) is not None:
            new.append(got[0])
            self.sent.append((self.net.now, got[0]))
        return new

    def inject(self, frame: bytes) -> list[bytes]:
        """Deliver ``frame`` to the stack now; return the frames it sent in response."""
        self.raw.send(frame)
        self.net.run_for(0)
        return self.drain()

    def run_for(self, seconds: float) -> list[bytes]:
        """Run the clock, collecting sent frames with the time they left; return the new ones."""
        new: list[bytes] = []
        deadline = self.net.now + seconds
        while True:
            nxt = self.net.next_event()
            if nxt is None or nxt > deadline:
                break
            self.net.step()
            new.extend(self.drain())
        self.net.clock.advance_to(deadline)
        return new

    def output(self, next_hop: str, payload: bytes) -> None:
        self.iface.output(ip4(next_hop), ETH_P_IP, payload)

    def reply_from_peer(self, peer_ip: str, peer_mac: bytes = PEER_MAC) -> list[bytes]:
        """The peer answers the stack's request for ``peer_ip`` with a unicast reply."""
        assert self.iface.address is not None
        return self.inject(
            arp_frame(ARPOP_REPLY, peer_mac, peer_ip, self.iface.address,
                      target_mac=self.mac, dst=self.mac)
        )

    def request_from_peer(
        self, peer_ip: str, target_ip: str, peer_mac: bytes = PEER_MAC
    ) -> list[bytes]:
        return self.inject(arp_frame(ARPOP_REQUEST, peer_mac, peer_ip, target_ip))


def arp_of(frame: bytes) -> ARPPacket | None:
    """The ARP packet in an Ethernet frame, or None when it is not ARP."""
    if ETH_HEADER.unpack_from(frame)[2] != ETH_P_ARP:
        return None
    return ARPPacket.from_bytes(frame[14:])


def dst_of(frame: bytes) -> bytes:
    return frame[:6]
