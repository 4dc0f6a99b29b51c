"""An in-memory link pair: two stacks joined with no device and no root.

Frames sent on one end arrive at the other after ``latency`` seconds of the attached clock
(virtual or real). Used by the virtual-clock tests, the rootless demo and experiments.

**Checksum offload** (``checksum_offload=True``, off by default): both ends are stacks of ours,
so the pair may behave as a veth pair does in Linux (``CHECKSUM_PARTIAL`` crossing a virtual
wire), or as Linux's ``lo`` and :mod:`layers.links.loopback` do. The link declares
``tx_checksum`` and ``rx_checksum``: a transport leaves its checksum partial (the pseudo-header
sum in the field, :class:`~layers.links.base.TxOffload` saying where), the frame crosses as it
is, and the receiving end hands it up with ``RX_CSUM_VERIFIED``, so neither stack passes over
the payload. Frames sent without an offload (ICMP, ARP, a segment a transport checksummed
itself) arrive unflagged and are verified as usual. What crosses carries partial checksums, as
on a veth pair: a capture (:mod:`layers.links.pcap`) or a test reading the far end sees them
as ``incorrect``. A :class:`~layers.links.faults.FaultLink` that corrupts such a frame first
completes its checksum and drops the offload (netem's ``skb_checksum_help``), so the receiver
verifies it and catches the flipped bit. Leave it off where a test reads checksums on the wire
(the conformance suite's testbench does).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from typing import Any

from layers.links.base import RX_CSUM_VERIFIED, Link, LinkCapabilities, Medium, TxOffload
from layers.wire.ethernet import ETH_HLEN


class MemoryLink(Link):
    #: a frame sent to this end wakes it
    notifies_deadline = True

    def __init__(
        self,
        name: str = "mem0",
        *,
        mtu: int = 1500,
        medium: Medium = Medium.ETHERNET,
        mac: bytes | None = None,
        latency: float = 0.0,
        queue_limit: int = 4096,
        checksum_offload: bool = False,
    ) -> None:
        super().__init__()
        self.name = name
        self.capabilities = LinkCapabilities(
            medium=medium, mtu=mtu, rx_checksum=checksum_offload, tx_checksum=checksum_offload
        )
        #: partial checksums cross and arrive as verified (see the module docstring)
        self.checksum_offload = checksum_offload
        if medium is Medium.ETHERNET:
            # locally administered unicast address
            self.mac = mac or bytes([0x02]) + os.urandom(5)
        self.latency = latency
        self.queue_limit = queue_limit
        self.peer: MemoryLink | None = None
        #: (arrival time, frame, RX_* flags)
        self._inbox: deque[tuple[float, bytes, int]] = deque()
        self._max_frame = mtu + (ETH_HLEN if medium is Medium.ETHERNET else 0)

    @classmethod
    def pair(
        cls,
        names: tuple[str, str] = ("mem0", "mem1"),
        *,
        mtu: int = 1500,
        medium: Medium = Medium.ETHERNET,
        latency: float = 0.0,
        checksum_offload: bool = False,
    ) -> tuple[MemoryLink, MemoryLink]:
        a = cls(names[0], mtu=mtu, medium=medium, latency=latency,
                checksum_offload=checksum_offload)
        b = cls(names[1], mtu=mtu, medium=medium, latency=latency,
                checksum_offload=checksum_offload)
        a.peer, b.peer = b, a
        return a, b

    def _now(self) -> float:
        return self._clock() if self._clock is not None else 0.0

    def send(self, frame: bytes | bytearray | memoryview, offload: TxOffload | None = None) -> None:
        peer = self.peer
        n = len(frame)
        if peer is None or n > self._max_frame or len(peer._inbox) >= peer.queue_limit:
            self.stats.tx_dropped += 1
            return
        stats = self.stats
        stats.tx_frames += 1
        stats.tx_bytes += n
        flags = (RX_CSUM_VERIFIED if offload is not None and offload.csum_offset
                 and self.checksum_offload else 0)
        clock = self._clock
        peer._inbox.append(((clock() if clock is not None else 0.0) + self.latency,
                            bytes(frame), flags))
        if peer._wakeup is not None:
            peer._wakeup()

    def recv(self) -> tuple[bytes, int] | None:
        inbox = self._inbox
        if not inbox:
            return None
        clock = self._clock
        if inbox[0][0] > (clock() if clock is not None else 0.0):
            return None
        _, frame, flags = inbox.popleft()
        stats = self.stats
        stats.rx_frames += 1
        stats.rx_bytes += len(frame)
        return frame, flags

    def deliver_due(self, now: float, receive: Callable[[Any, bytes, int], None],
                    iface: Any) -> bool:
        """``receive(iface, frame, flags)`` for every frame due by ``now``, in order (those
        that arrive meanwhile too): what a loop of :meth:`recv` does, in one call for the
        virtual-time loop. True if there was any."""
        inbox = self._inbox
        stats = self.stats
        got = False
        while inbox and inbox[0][0] <= now:
            _, frame, flags = inbox.popleft()
            stats.rx_frames += 1
            stats.rx_bytes += len(frame)
            got = True
            receive(iface, frame, flags)
        return got

    def next_deadline(self) -> float | None:
        return self._inbox[0][0] if self._inbox else None

    def close(self) -> None:
        self._inbox.clear()
        if self.peer is not None:
            self.peer.peer = None
            self.peer = None
