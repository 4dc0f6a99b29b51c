"""The loopback device (Linux's ``lo``): an in-memory IP-medium link to the stack itself.

Every stack with IPv4 gets one, named ``lo``, holding 127.0.0.1/8 (opt out with
``ipv4.loopback=false``). It has Linux's MTU (65536) and declares checksum offload both ways,
as Linux's ``lo`` does (NETIF_F_HW_CSUM): transports leave their checksum partial and the
receiving side trusts it, so traffic to ourselves costs no checksum work.

IPv4 hands packets for 127/8 and for the stack's own addresses straight to the receive path on
the stack's next poll (``stack.call_soon``). A frame written to the device itself (a raw
``Interface.transmit`` on ``lo``) is queued and the wakeup callback the stack installs drains
it one poll later, too: nothing is ever delivered re-entrantly, on the virtual clock or on
asyncio.
"""

from __future__ import annotations

from collections import deque

from layers.links.base import RX_CSUM_VERIFIED, Link, LinkCapabilities, Medium, TxOffload

#: Linux's loopback MTU (drivers/net/loopback.c: 64 KiB)
LOOPBACK_MTU = 65536
#: frames queued on the device before it drops (Linux's backlog, netdev_max_backlog)
LOOPBACK_QUEUE = 1000


class LoopbackLink(Link):
    def __init__(self, name: str = "lo", *, queue_limit: int = LOOPBACK_QUEUE) -> None:
        super().__init__()
        self.name = name
        self.capabilities = LinkCapabilities(
            medium=Medium.IP, mtu=LOOPBACK_MTU, rx_checksum=True, tx_checksum=True
        )
        self.queue_limit = queue_limit
        self._inbox: deque[tuple[bytes, int]] = deque()

    def send(self, frame: bytes | bytearray | memoryview, offload: TxOffload | None = None) -> None:
        if len(frame) > LOOPBACK_MTU or len(self._inbox) >= self.queue_limit:
            self.stats.tx_dropped += 1
            return
        self.stats.tx_frames += 1
        self.stats.tx_bytes += len(frame)
        flags = RX_CSUM_VERIFIED if offload is not None and offload.needs_csum else 0
        self._inbox.append((bytes(frame), flags))
        if self._wakeup is not None:
            self._wakeup()

    def recv(self) -> tuple[bytes, int] | None:
        if not self._inbox:
            return None
        frame, flags = self._inbox.popleft()
        self.stats.rx_frames += 1
        self.stats.rx_bytes += len(frame)
        return frame, flags

    def count(self, length: int) -> None:
        """Account one packet IPv4 looped back without writing it to the device."""
        stats = self.stats
        stats.tx_frames += 1
        stats.tx_bytes += length
        stats.rx_frames += 1
        stats.rx_bytes += length

    def close(self) -> None:
        self._inbox.clear()
