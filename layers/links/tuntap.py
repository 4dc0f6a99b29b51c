"""TAP and TUN link drivers (Linux ``/dev/net/tun``).

::

    link = TapLink.open("tap0", mtu=1500)     # Ethernet frames; the stack has its own MAC
    link = TunLink.open("tun0")               # bare IP packets
    link = TunLink.open("tun0", pi=True)      # with the 4-byte packet-information header

Opening a name that does not exist creates a non-persistent device that disappears when the
link is closed; opening a device made beforehand (``ip tuntap add NAME mode tap``) attaches to
it, and :meth:`close` gives it back its previous up/down state and MTU.

The device is created in the network namespace of the *calling thread* (the namespace is fixed
when ``/dev/net/tun`` is opened). Everything else about the device (looking it up, up/down, MTU,
reading its MAC, giving it back its state on close) goes through pyroute2
(:class:`layers.netdev.Netlink`), whose rtnetlink socket is opened at the same moment, so it
keeps addressing that namespace whatever thread closes the link later. That lets a test open a
TAP inside ``NetNamespace.entered()`` and run the stack outside. Only the descriptor's own
requests stay ioctls: ``TUNSETIFF``/``TUNGETIFF`` (attach, name) and the offload negotiation,
which exist only on the ``/dev/net/tun`` descriptor and have no rtnetlink equivalent.

A device made beforehand for a user (``layers tap create NAME --user U``, or ``ip tuntap add``
with ``user``) can be attached by that user without privileges; the link then changes the
device's state only where asked to (changing it needs CAP_NET_ADMIN).

**Offloads.** With ``offload=True`` (the default) the driver asks for ``IFF_VNET_HDR``, sets the
header size with ``TUNSETVNETHDRSZ`` to the 10-byte legacy ``struct virtio_net_hdr`` (flags,
gso_type, hdr_len, gso_size, csum_start, csum_offset, in host byte order; the 12-byte v1 header
only adds ``num_buffers``, which a tap ignores), and enables ``TUN_F_CSUM | TUN_F_TSO4 |
TUN_F_TSO6`` with ``TUNSETOFFLOAD``. Linux then hands over TCP segments of up to 64 KiB at once,
over IPv4 and IPv6, and accepts them from us (gso_type TCPV4 or TCPV6), and marks received
packets whose checksum it vouches for (or has left partial, since the packet never touched a
wire). If any of these ioctls fails the device is reopened without the
header and :attr:`capabilities` say there is no offload.

The kernel's end of a TAP has its own MAC (:attr:`TapLink.device_mac`); the stack is another host
on that virtual wire and uses :attr:`TapLink.mac` (given, or random locally administered).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import select
import struct
from collections.abc import Callable
from typing import Any, ClassVar, Self

import attrs

from layers.errors import ConfigurationError
from layers.links.base import (
    GSO_TCPV4,
    GSO_TCPV6,
    MAX_MTU,
    MIN_MTU,
    RX_CSUM_VERIFIED,
    Gather,
    Link,
    LinkCapabilities,
    Medium,
    TxOffload,
)
from layers.netdev import DeviceState, Netlink, is_netlink_error, netlink_errno
from layers.wire.addr import mac as parse_mac
from layers.wire.addr import mac_str
from layers.wire.ethernet import ETH_HLEN, ETH_P_IP, ETH_P_IPV6

log = logging.getLogger("layers.links.tuntap")

TUN_DEVICE = "/dev/net/tun"
IFNAMSIZ = 16

# ioctls on the /dev/net/tun descriptor (linux/if_tun.h)
TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
TUNGETFEATURES = 0x800454CF
TUNGETIFF = 0x800454D2
TUNSETVNETHDRSZ = 0x400454D8

IFF_TUN = 0x0001
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000

TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04

TUN_PKT_STRIP = 0x0001  # packet-information flag: the packet did not fit the read buffer

VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
VIRTIO_NET_HDR_F_DATA_VALID = 2
VIRTIO_NET_HDR_GSO_NONE = 0
VIRTIO_NET_HDR_GSO_TCPV4 = 1
VIRTIO_NET_HDR_GSO_TCPV6 = 4
#: our GSO types (layers.links.base) as the virtio header spells them
_VIRTIO_GSO = {GSO_TCPV4: VIRTIO_NET_HDR_GSO_TCPV4, GSO_TCPV6: VIRTIO_NET_HDR_GSO_TCPV6}

#: legacy struct virtio_net_hdr, host byte order (the tap's default, not TUNSETVNETBE)
VNET_HDR = struct.Struct("=BBHHHH")
VNET_HDR_LEN = VNET_HDR.size  # 10
PI_HDR = struct.Struct("!HH")  # flags, protocol (an ethertype)
PI_LEN = PI_HDR.size

_IFREQ_FLAGS = struct.Struct("16sH22x")
_ZERO_VNET = bytes(VNET_HDR_LEN)
_CSUM_FLAGS = VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID
#: errors meaning the device is gone (deleted under us, or the fd detached)
_GONE = frozenset({errno.EBADFD, errno.ENODEV, errno.ENXIO, errno.EBADF})

#: the ioctl used for every request (tests replace it to simulate a kernel without offloads)
_ioctl = fcntl.ioctl

#: the largest frame a read can return: 64 KiB GSO packet + Ethernet (+VLAN) + both headers
RX_BUFSIZE = 65535 + ETH_HLEN + 4 + VNET_HDR_LEN + PI_LEN + 64


def _ifreq_name(name: str) -> bytes:
    return name.encode()


def _check_name(name: str) -> None:
    raw = name.encode()
    if len(raw) >= IFNAMSIZ:
        raise ConfigurationError(
            f"interface name {name!r} is {len(raw)} bytes; Linux allows at most {IFNAMSIZ - 1}: "
            f"choose a shorter name"
        )
    if "/" in name or any(c.isspace() for c in name) or name in (".", ".."):
        raise ConfigurationError(
            f"interface name {name!r} is not valid: no '/', no spaces; for example tap0"
        )


def _open_error(exc: OSError, name: str, kind: str) -> OSError:
    """The exception to raise for a failed open/TUNSETIFF, with a message naming the fix."""
    code = exc.errno or 0
    if code == errno.ENOENT:
        why = (
            f"{TUN_DEVICE} does not exist: load the tun module (modprobe tun) or create the node "
            f"(mkdir -p /dev/net && mknod {TUN_DEVICE} c 10 200)"
        )
    elif code in (errno.EPERM, errno.EACCES):
        why = (
            f"not allowed to open {kind} device {name!r}: run as root or with CAP_NET_ADMIN, "
            f"or have root create it for your user first (layers tap create {name} --user $USER"
            f"{' --tun' if kind == 'tun' else ''})"
        )
    elif code == errno.EBUSY:
        why = (
            f"{kind} device {name!r} is in use by another process; close that one or pick "
            f"another name"
        )
    elif code == errno.EINVAL:
        why = (
            f"{name!r} exists but is not a {kind} device of this kind (a {kind} made with "
            f"'layers tap create {name}{' --tun' if kind == 'tun' else ''}' or 'ip tuntap add "
            f"{name} mode {kind}', without multi_queue, is needed); delete it or pick another "
            f"name"
        )
    else:
        why = f"cannot open {kind} device {name!r}: {os.strerror(code)}"
    return type(exc)(code, why)


class _TunTapLink(Link):
    """What TAP and TUN share: the fd, headers, offload negotiation, and restoring the device."""

    MODE: ClassVar[int] = 0
    KIND: ClassVar[str] = ""
    medium: ClassVar[Medium] = Medium.ETHERNET

    def __init__(self) -> None:
        super().__init__()
        self._fd = -1
        self._nl: Netlink | None = None
        self._index = 0
        self.pi = False
        self.vnet_hdr = False
        #: True when opening created the device (it disappears on close)
        self.created = False
        self._saved_up: bool | None = None
        self._saved_mtu: int | None = None
        self._set_offload = False
        self._gone = False
        self._l2len = ETH_HLEN if self.medium is Medium.ETHERNET else 0
        self._hlen = 0
        self._vnet_cache: dict[TxOffload, bytes] = {}
        #: asks whether another frame is waiting (see :meth:`recv_burst`)
        self._poller: select.poll | None = None
        #: the kernel side's MAC on a TAP (chicken-tun's tun-mac), not the stack's; None on TUN
        self.device_mac: bytes | None = None

    # --- opening ----------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        name: str,
        *,
        mtu: int | str | None = None,
        mac: bytes | str | None = None,
        pi: bool | str = False,
        offload: bool | str = True,
        up: bool | str = True,
    ) -> Self:
        """Open (creating if needed) the device ``name`` in the calling thread's namespace.

        ``mtu`` sets the device MTU (None: keep it); ``mac`` is the stack's address on a TAP
        (None: random, locally administered); ``pi`` adds the 4-byte packet-information header;
        ``offload`` negotiates the virtio header (checksum offload and TSO, falling back
        cleanly); ``up`` brings the device up. Options may be strings (from a link spec)."""
        _check_name(name)
        mtu_value: int | None = None
        if mtu is not None:
            try:
                mtu_value = int(mtu)
            except (TypeError, ValueError):
                raise ConfigurationError(f"mtu={mtu!r} should be a number, e.g. 1500") from None
            if not MIN_MTU <= mtu_value <= MAX_MTU:
                raise ConfigurationError(f"mtu={mtu} is out of range; use {MIN_MTU}..{MAX_MTU}")
        if cls.medium is Medium.IP and mac is not None:
            raise ConfigurationError("a TUN link carries IP packets and has no MAC; drop mac=")
        self = cls()
        try:
            self._open(
                name,
                mtu=mtu_value,
                mac=mac,
                pi=_as_bool(pi, "pi"),
                offload=_as_bool(offload, "offload"),
                up=_as_bool(up, "up"),
            )
        except BaseException:
            self._teardown()
            raise
        return self

    def _open(
        self, name: str, *, mtu: int | None, mac: bytes | str | None, pi: bool, offload: bool,
        up: bool,
    ) -> None:
        # rtnetlink in the calling thread's namespace, where /dev/net/tun puts the device
        self._nl = Netlink()
        want_vnet = offload
        while True:
            self._fd = self._attach(name, pi=pi, vnet=want_vnet)
            self.name = self._device_name()
            if not want_vnet or self._negotiate_offloads():
                break
            # the kernel refused part of the negotiation: start again without the header
            os.close(self._fd)
            self._fd = -1
            want_vnet = False
        self.pi = pi
        self.vnet_hdr = want_vnet
        self._hlen = (PI_LEN if pi else 0) + (VNET_HDR_LEN if want_vnet else 0)

        dev = self._device()
        self._index = dev.index
        # A device that existed before we attached is a persistent one (a non-persistent
        # device lives only while its creator holds it, and then attaching fails with EBUSY);
        # one TUNSETIFF made for us is not. One request tells both.
        existed = dev.persistent
        self.created = not existed
        if existed:
            self._saved_up = dev.up
            self._saved_mtu = dev.mtu
        change_mtu = mtu if mtu is not None and mtu != dev.mtu else None
        bring_up = True if up and not dev.up else None
        if change_mtu is not None or bring_up:
            self._configure(up=bring_up, mtu=change_mtu)  # raises if the kernel refuses
            dev = attrs.evolve(dev, up=dev.up or bool(bring_up),
                               mtu=change_mtu if change_mtu is not None else dev.mtu)
        cur_mtu = dev.mtu

        self.capabilities = LinkCapabilities(
            medium=self.medium,
            mtu=cur_mtu,
            rx_checksum=want_vnet,
            tx_checksum=want_vnet,
            gso_max_size=65535 if want_vnet else 0,
        )
        if self.medium is Medium.ETHERNET:
            self.device_mac = dev.mac
            if mac is None:
                raw = bytearray(os.urandom(6))
                raw[0] = (raw[0] & 0xFC) | 0x02  # locally administered, unicast
                if bytes(raw) == self.device_mac:
                    raw[5] ^= 1
                self.mac = bytes(raw)
            else:
                m = parse_mac(mac)
                if m[0] & 1:
                    raise ConfigurationError(
                        f"mac={mac_str(m)} is a multicast address; a host needs a unicast one "
                        f"(first byte even, e.g. 02:...)"
                    )
                if m == self.device_mac:
                    raise ConfigurationError(
                        f"mac={mac_str(m)} is the kernel side's own address on {self.name}; the "
                        f"stack is a second host on this wire and needs another address"
                    )
                self.mac = m

    def _attach(self, name: str, *, pi: bool, vnet: bool) -> int:
        try:
            fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            raise _open_error(exc, name, self.KIND) from None
        flags = self.MODE | (0 if pi else IFF_NO_PI) | (IFF_VNET_HDR if vnet else 0)
        try:
            _ioctl(fd, TUNSETIFF, _IFREQ_FLAGS.pack(_ifreq_name(name), flags))
        except OSError as exc:
            os.close(fd)
            raise _open_error(exc, name, self.KIND) from None
        return fd

    def _negotiate_offloads(self) -> bool:
        """Header size and offload flags; False (after logging why) if the kernel refuses."""
        try:
            _ioctl(self._fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
            _ioctl(self._fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
        except OSError as exc:
            log.info("%s: no offloads (%s); continuing without the virtio header", self.name, exc)
            return False
        self._set_offload = True
        return True

    def _device_name(self) -> str:
        raw = _ioctl(self._fd, TUNGETIFF, bytes(_IFREQ_FLAGS.size))
        return bytes(_IFREQ_FLAGS.unpack(raw)[0]).split(b"\0", 1)[0].decode()

    # --- device configuration through rtnetlink (pyroute2) --------------------------------
    @property
    def netlink(self) -> Netlink:
        """The rtnetlink handle of the device's namespace (for configuring its host side)."""
        if self._nl is None:
            raise ConfigurationError(f"{self.name} is closed")
        return self._nl

    @property
    def ifindex(self) -> int:
        return self._index

    def _device(self) -> DeviceState:
        dev = self.netlink.device(self.name)
        if dev is None:
            raise OSError(errno.ENODEV, f"{self.name} disappeared while being opened")
        return dev

    def _configure(self, *, up: bool | None = None, mtu: int | None = None) -> None:
        """Change the device's state; a refusal becomes a ConfigurationError naming the fix."""
        try:
            self.netlink.set(self._index, up=up, mtu=mtu)
        except Exception as exc:
            if not is_netlink_error(exc):
                raise
            code = netlink_errno(exc) or 0
            what = " and ".join(
                w for w in (f"MTU {mtu}" if mtu is not None else "",
                            ("up" if up else "down") if up is not None else "") if w)
            if code in (errno.EPERM, errno.EACCES):
                raise ConfigurationError(
                    f"cannot set {self.name} {what}: changing a device needs CAP_NET_ADMIN; "
                    f"run as root, or have root prepare it (layers tap create {self.name} "
                    f"--user $USER leaves it up) and leave out --mtu"
                ) from None
            if mtu is not None and code == errno.EINVAL:
                raise ConfigurationError(
                    f"cannot set the MTU of {self.name} to {mtu}: the device refuses it; "
                    f"use {MIN_MTU}..{MAX_MTU}"
                ) from None
            raise ConfigurationError(
                f"cannot set {self.name} {what}: {os.strerror(code)}"
            ) from None

    # --- runner interface -------------------------------------------------------------
    def fileno(self) -> int | None:
        return self._fd if self._fd >= 0 else None

    def recv(self) -> tuple[bytes, int] | None:
        got = self.recv_view()
        if got is None or type(got[0]) is bytes:
            return got  # type: ignore[return-value]
        return bytes(got[0]), got[1]

    def recv_view(self) -> tuple[bytes | memoryview, int] | None:
        """:meth:`recv` without copying the frame out of the read buffer when a header
        (virtio, packet information) precedes it: a read-only ``memoryview`` of an immutable
        ``bytes`` object. The asyncio runner prefers this where a link has it; the stack
        copes with views, other consumers get ``bytes`` from :meth:`recv`."""
        if self._gone or self._fd < 0:
            return None
        hlen = self._hlen
        while True:
            try:
                data = os.read(self._fd, RX_BUFSIZE)
            except BlockingIOError:
                return None
            except InterruptedError:
                continue
            except OSError as exc:
                self.stats.rx_errors += 1
                if exc.errno in _GONE:
                    self._device_gone(exc)
                return None
            n = len(data)
            if n <= hlen:
                if n == 0:  # EOF: the device is gone
                    self._device_gone(None)
                    return None
                self.stats.rx_errors += 1
                continue
            flags = 0
            if self.pi and PI_HDR.unpack_from(data)[0] & TUN_PKT_STRIP:
                self.stats.rx_errors += 1  # truncated by the kernel; cannot happen with our size
                continue
            if self.vnet_hdr and data[PI_LEN if self.pi else 0] & _CSUM_FLAGS:
                flags = RX_CSUM_VERIFIED
            self.stats.rx_frames += 1
            self.stats.rx_bytes += n - hlen
            return (memoryview(data)[hlen:] if hlen else data), flags

    def recv_burst(
        self, deliver: Callable[[Any, bytes | memoryview, int], None], arg: Any, budget: int
    ) -> int:
        """Read up to ``budget`` frames, handing each to ``deliver(arg, frame, flags)`` as
        :meth:`recv_view` returns them, and return how many were read (``budget``: more may
        be waiting). What the asyncio runner calls when the descriptor is readable.

        A read that finds nothing raises (and the runner catches) BlockingIOError, which costs
        about six times a ``poll``: after the first frame a ``poll(0)`` asks whether another is
        waiting, so a lone frame (a ping, a request) costs no failed read; a burst is read
        until EAGAIN as before. The link's statistics are added once per call."""
        if self._gone or self._fd < 0:
            return 0
        fd = self._fd
        hlen = self._hlen
        pi = self.pi
        flag_at = (PI_LEN if pi else 0) if self.vnet_hdr else -1
        read = os.read
        poller = self._poller
        if poller is None:
            poller = self._poller = select.poll()
            poller.register(fd, select.POLLIN)
        stats = self.stats
        got = nbytes = 0
        try:
            while got < budget:
                try:
                    data = read(fd, RX_BUFSIZE)
                except BlockingIOError:
                    break
                except InterruptedError:
                    continue
                except OSError as exc:
                    stats.rx_errors += 1
                    if exc.errno in _GONE:
                        self._device_gone(exc)
                    break
                n = len(data)
                if n <= hlen:
                    if n == 0:  # EOF: the device is gone
                        self._device_gone(None)
                        break
                    stats.rx_errors += 1
                    continue
                if pi and PI_HDR.unpack_from(data)[0] & TUN_PKT_STRIP:
                    stats.rx_errors += 1  # truncated by the kernel; cannot happen with our size
                    continue
                got += 1
                nbytes += n - hlen
                deliver(arg, memoryview(data)[hlen:] if hlen else data,
                        RX_CSUM_VERIFIED if flag_at >= 0 and data[flag_at] & _CSUM_FLAGS else 0)
                if got == 1 and not poller.poll(0):
                    break  # a lone frame: nothing more is waiting
                if self._gone or self._fd != fd:
                    break  # closed or gone while the stack handled the frame
        finally:
            stats.rx_frames += got
            stats.rx_bytes += nbytes
        return got

    def readable(self) -> bool:
        """Whether a frame is waiting, without reading it (a ``poll(0)``: what a busy-polling
        runner spins on, much cheaper than a read that fails)."""
        if self._gone or self._fd < 0:
            return False
        poller = self._poller
        if poller is None:
            poller = self._poller = select.poll()
            poller.register(self._fd, select.POLLIN)
        return bool(poller.poll(0))

    def send(self, frame: bytes | bytearray | memoryview, offload: TxOffload | None = None) -> None:
        self.send_gather((frame,), offload)

    def send_gather(self, parts: Gather, offload: TxOffload | None = None) -> None:
        """One frame from its pieces with one ``os.writev`` (virtio and packet-information
        headers in front): the payload is never copied into a joined frame."""
        if self._gone or self._fd < 0:
            self.stats.tx_dropped += 1
            return
        bufs: tuple[Any, ...] = parts  # writev takes the tuple as it is: no list per frame
        if self.vnet_hdr:
            if offload is None:
                vnet = _ZERO_VNET
            else:
                vnet = self._vnet_cache.get(offload)  # type: ignore[assignment]
                if vnet is None:
                    vnet = self._vnet(offload)
            bufs = (vnet, *parts)
        if self.pi:
            bufs = (self._pi_header(parts[0]), *bufs)
        try:
            n = os.writev(self._fd, bufs) if len(bufs) > 1 else os.write(self._fd, bufs[0])
        except BlockingIOError:
            self.stats.tx_dropped += 1
            return
        except OSError as exc:
            self.stats.tx_errors += 1
            if exc.errno in _GONE:
                self._device_gone(exc)
            return
        self.stats.tx_frames += 1
        self.stats.tx_bytes += n - self._hlen

    def _vnet(self, offload: TxOffload) -> bytes:
        """The virtio header for ``offload`` (remembered: a connection reuses a few)."""
        l2 = self._l2len
        vnet = VNET_HDR.pack(
            VIRTIO_NET_HDR_F_NEEDS_CSUM if offload.csum_offset else 0,
            _VIRTIO_GSO.get(offload.gso_type, VIRTIO_NET_HDR_GSO_NONE),
            offload.hdr_len + l2 if offload.hdr_len else 0,
            offload.gso_size,
            offload.csum_start + l2 if offload.csum_offset else 0,
            offload.csum_offset,
        )
        if len(self._vnet_cache) < 256:
            self._vnet_cache[offload] = vnet
        return vnet

    def _pi_header(self, frame: bytes | bytearray | memoryview) -> bytes:
        if self.medium is Medium.ETHERNET:
            proto = (frame[12] << 8) | frame[13] if len(frame) >= ETH_HLEN else 0
        else:
            version = frame[0] >> 4 if len(frame) else 0
            proto = ETH_P_IP if version == 4 else ETH_P_IPV6 if version == 6 else 0
        return PI_HDR.pack(0, proto)

    def _device_gone(self, exc: OSError | None) -> None:
        """The device vanished (deleted under us): stop reading without crashing the stack.

        A dead tun descriptor polls as an error forever, which would make an event loop spin.
        The descriptor number is kept (the runner still holds it) but now refers to an idle
        eventfd that never becomes readable; replacing the file also drops it from any epoll
        set it was registered in."""
        if self._gone:
            return
        self._gone = True
        log.warning("%s: device gone (%s); link stopped", self.name, exc or "end of file")
        try:
            idle = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            try:
                os.dup2(idle, self._fd)
            finally:
                os.close(idle)
        except OSError:
            pass

    @property
    def gone(self) -> bool:
        """True once the device disappeared under the link."""
        return self._gone

    # --- closing ----------------------------------------------------------------------
    def close(self) -> None:
        """Close the device, leaving it as it was found.

        A device this link created disappears with its descriptor. A device that existed gets
        back its up/down state and MTU, and its offload flags are cleared (a tap made with
        ``layers tap create`` or ``ip tuntap add`` starts with none)."""
        if self._fd < 0 and self._nl is None:
            return
        try:
            if not self.created and not self._gone and self._fd >= 0:
                self._restore()
        finally:
            self._teardown()

    def _restore(self) -> None:
        try:
            if self._set_offload:
                _ioctl(self._fd, TUNSETOFFLOAD, 0)
            now = self._device()
            mtu = (self._saved_mtu if self._saved_mtu is not None and now.mtu != self._saved_mtu
                   else None)
            up = (self._saved_up if self._saved_up is not None and now.up != self._saved_up
                  else None)
            if mtu is not None or up is not None:
                self._configure(up=up, mtu=mtu)
        except (OSError, ConfigurationError) as exc:
            log.warning("%s: could not restore the device's state: %s", self.name, exc)

    def _teardown(self) -> None:
        self._poller = None
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1
        if self._nl is not None:
            self._nl.close()
            self._nl = None

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict[str, object]:
        d = super().describe()
        d.update(
            kind=type(self).__name__,
            pi=self.pi,
            offload=self.vnet_hdr,
            gso_max_size=self.capabilities.gso_max_size,
            created=self.created,
        )
        return d


def _as_bool(value: object, key: str) -> bool:
    if isinstance(value, str):
        low = value.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigurationError(f"{key}={value!r} should be true or false")
    return bool(value)


class TapLink(_TunTapLink):
    """A TAP device: Ethernet frames between the stack and the Linux kernel."""

    MODE = IFF_TAP
    KIND = "tap"
    medium = Medium.ETHERNET

    def describe(self) -> dict[str, object]:
        d = super().describe()
        d["mac"] = mac_str(self.mac) if self.mac else None
        d["device_mac"] = mac_str(self.device_mac) if self.device_mac else None
        return d


class TunLink(_TunTapLink):
    """A TUN device: bare IP packets (medium IP, no MAC, no neighbour resolution)."""

    MODE = IFF_TUN
    KIND = "tun"
    medium = Medium.IP

