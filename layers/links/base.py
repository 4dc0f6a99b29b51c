"""The link-driver contract: what a stack needs from a device, and what a device declares.

A link is a bidirectional frame pipe plus its capabilities (smoltcp's ``DeviceCapabilities``,
gVisor's ``LinkEndpoint.Capabilities``). Upper layers read the capabilities: IPv4 reads the MTU,
the transports skip checksum work the link does for them, TCP sends super-segments when
``gso_max_size`` allows.

Drivers never call into the stack. A runner (asyncio or virtual clock) polls them:
``fileno()`` says when to read; links without a descriptor call the wakeup callback instead,
and links holding frames for later (latency, delay faults) say when in ``next_deadline()``.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import attrs

Clock = Callable[[], float]
Buffer = bytes | bytearray | memoryview
#: a frame (or packet) in pieces whose concatenation is the frame: headers built beside a view of
#: the payload, handed to the device in one scatter-gather write without joining them first
Gather = tuple[Buffer, ...]

# Flags that travel with a received frame (bit set).
#: the MTU range a link may have: IPv4's minimum (RFC 791) to Linux's largest (ETH_MAX_MTU)
MIN_MTU = 68
MAX_MTU = 65535

RX_CSUM_VERIFIED = 1  # the link vouches for the transport checksum (virtio DATA_VALID/NEEDS_CSUM)
RX_BROADCAST = 2  # set by the stack: link-layer broadcast or multicast destination

GSO_NONE = 0
GSO_TCPV4 = 1
GSO_TCPV6 = 4  # virtio's numbers (VIRTIO_NET_HDR_GSO_TCPV4/TCPV6)


class Medium(enum.Enum):
    ETHERNET = "ethernet"  # frames start with an Ethernet II header (TAP, memory pairs)
    IP = "ip"  # frames are bare IP packets (TUN)


@attrs.frozen
class LinkCapabilities:
    medium: Medium = Medium.ETHERNET
    mtu: int = 1500
    #: the link marks received frames whose transport checksum it verified (RX_CSUM_VERIFIED)
    rx_checksum: bool = False
    #: the link completes partial transport checksums given in :class:`TxOffload`
    tx_checksum: bool = False
    #: > 0: the link accepts TCP super-segments up to this many bytes and segments them itself
    gso_max_size: int = 0


@attrs.frozen(slots=True, cache_hash=True)
class TxOffload:
    """Work a sender leaves to the link (virtio_net_hdr semantics).

    Offsets count from the start of the network-layer packet (the IP header), so that no layer
    has to rewrite them; a link adds its own header length when it talks to the device."""

    csum_start: int = 0
    csum_offset: int = 0
    gso_type: int = GSO_NONE
    gso_size: int = 0
    hdr_len: int = 0

    @property
    def needs_csum(self) -> bool:
        return self.csum_offset != 0


@attrs.define
class LinkStats:
    rx_frames: int = 0
    rx_bytes: int = 0
    tx_frames: int = 0
    tx_bytes: int = 0
    rx_errors: int = 0
    tx_errors: int = 0
    tx_dropped: int = 0


class Link(ABC):
    """A device the stack sends frames to and receives frames from."""

    name: str = "link"
    capabilities: LinkCapabilities = LinkCapabilities()
    #: the link's own hardware address (Ethernet medium), or None
    mac: bytes | None = None
    #: True when the link calls its wakeup whenever :meth:`next_deadline` comes earlier by
    #: anything but its own :meth:`poll`/:meth:`recv` (a frame sent to it; a frame it holds
    #: for later). The virtual-time loop then reads its deadline only after it moved, instead
    #: of at every step. Each class declares it for itself (a subclass may hold frames): a
    #: class that does not is read at every step, as is a wrapper around one.
    notifies_deadline: ClassVar[bool] = False

    def __init__(self) -> None:
        self.stats = LinkStats()
        self._clock: Clock | None = None
        self._wakeup: Callable[[], None] | None = None

    # --- runner interface -------------------------------------------------------------
    def attach(self, clock: Clock) -> None:
        """Called when the link joins a stack: the clock the link must use for any timing."""
        self._clock = clock

    def fileno(self) -> int | None:
        """A descriptor that becomes readable when :meth:`recv` has a frame, or None."""
        return None

    def set_wakeup(self, callback: Callable[[], None] | None) -> None:
        """For links without a descriptor: called whenever a frame becomes receivable."""
        self._wakeup = callback

    def next_deadline(self) -> float | None:
        """When a frame held for later becomes receivable (or must be released), or None."""
        return None

    def poll(self, now: float) -> None:  # noqa: B027 - optional hook
        """Release frames held until ``now`` (delay faults); most links do nothing."""

    @abstractmethod
    def recv(self) -> tuple[bytes, int] | None:
        """One received frame and its RX_* flags, or None when nothing is waiting."""

    @abstractmethod
    def send(self, frame: bytes | bytearray | memoryview, offload: TxOffload | None = None) -> None:
        """Queue one frame for transmission. Never blocks; a full device drops and counts."""

    def send_gather(self, parts: Gather, offload: TxOffload | None = None) -> None:
        """:meth:`send` of the frame ``b"".join(parts)``. A device that can write several
        buffers at once (``os.writev``) overrides this so that no payload byte is copied on
        the way out; this default joins them."""
        self.send(b"".join(parts), offload)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device (and undo what opening it did)."""

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "kind": type(self).__name__, "mtu": self.capabilities.mtu}


class LinkWrapper(Link):
    """A link that wraps another (pcap capture, fault injection, tracing): smoltcp ``phy`` style.

    Subclasses override :meth:`recv`/:meth:`send`; everything else delegates to ``inner``."""

    def __init__(self, inner: Link) -> None:
        super().__init__()
        self.inner = inner
        self.name = inner.name
        self.capabilities = inner.capabilities
        self.mac = inner.mac

    def attach(self, clock: Clock) -> None:
        super().attach(clock)
        self.inner.attach(clock)

    def fileno(self) -> int | None:
        return self.inner.fileno()

    def set_wakeup(self, callback: Callable[[], None] | None) -> None:
        super().set_wakeup(callback)
        self.inner.set_wakeup(callback)

    def next_deadline(self) -> float | None:
        return self.inner.next_deadline()

    def poll(self, now: float) -> None:
        self.inner.poll(now)

    def recv(self) -> tuple[bytes, int] | None:
        return self.inner.recv()

    def send(self, frame: bytes | bytearray | memoryview, offload: TxOffload | None = None) -> None:
        self.inner.send(frame, offload)

    def close(self) -> None:
        self.inner.close()

    def describe(self) -> dict[str, object]:
        d = self.inner.describe()
        wrappers = d.get("wrappers")
        d["wrappers"] = [*(wrappers if isinstance(wrappers, list) else []), type(self).__name__]
        return d
