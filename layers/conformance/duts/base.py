"""The device-under-test interface: socket-like operations every DUT offers.

Sockets are small integers (handles). Every operation that waits takes a ``timeout`` and gives
up after it: ``recv``/``recvfrom``/``accept`` return None when nothing came in time, so a test
distinguishes "nothing yet" from an error (which is raised as ``OSError`` with the errno a Linux
socket gives: ECONNREFUSED, ECONNRESET, ETIMEDOUT...). TCP ``connect`` never blocks; the test
drives the handshake from the testbench and then calls :meth:`DUT.wait_connected`.

Addresses are strings as in the socket module: ``"a.b.c.d"`` for IPv4, ``"2001:db8::1"``
for IPv6 (sockets of kind ``udp6`` and ``tcp6``: AF_INET6, IPV6_V6ONLY as the DUT defaults).
"""

from __future__ import annotations

import errno
import ipaddress
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from layers.conformance.capabilities import CapabilityValue
from layers.conformance.media import Medium

Address = tuple[str, int]

#: what the suite calls the DUT's and the testbench's addresses (inside their own namespace or
#: memory link; never routed anywhere)
DUT_IP = "10.51.0.1"
TB_IP = "10.51.0.2"
PREFIX = 24
BROADCAST = "10.51.0.255"
TB_MAC = bytes.fromhex("020000510002")
#: a second testbench host on the same wire, for tests that need another peer
OTHER_IP = "10.51.0.3"
OTHER_MAC = bytes.fromhex("020000510003")
#: the IPv6 addresses, given to the DUT only for tests that require an IPv6 capability (the
#: documentation prefix, RFC 3849; never routed anywhere either)
DUT_IP6 = "2001:db8:51::1"
TB_IP6 = "2001:db8:51::2"
OTHER_IP6 = "2001:db8:51::3"
PREFIX6 = 64


def link_local(mac: bytes) -> str:
    """The link-local address a host forms from ``mac`` as a modified EUI-64 (RFC 4291
    appendix A), as Linux (``addr_gen_mode`` 0) and the ipv6 plugin (``eui64``) both do."""
    iid = bytes([mac[0] ^ 0x02]) + mac[1:3] + b"\xff\xfe" + mac[3:6]
    return str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + iid))


class DUT(ABC):
    """One device under test, with the medium the testbench drives it through."""

    #: "linux", "layers", "layers-tap"...
    name: str = "dut"
    ip: str = DUT_IP
    tb_ip: str = TB_IP
    broadcast: str = BROADCAST
    prefix: int = PREFIX
    tb_mac: bytes = TB_MAC
    ip6: str = DUT_IP6
    tb_ip6: str = TB_IP6
    prefix6: int = PREFIX6

    def __init__(self, medium: Medium, mac: bytes, capabilities: Mapping[str, CapabilityValue]):
        self.medium = medium
        self.mac = mac
        self.capabilities = capabilities
        self._open: set[int] = set()
        #: the capabilities the running test requires (set by the ``dut`` fixture): a test
        #: that opens a socket of a kind it did not require fails, naming the requirement
        self.required: frozenset[str] | None = None
        #: IP protocol numbers the DUT's own protocols claim (see unclaimed_protocol)
        self.claimed_protocols: frozenset[int] = frozenset()
        #: whether the DUT has its IPv6 address (:data:`DUT_IP6`): only for tests that
        #: require an IPv6 capability (the ``dut`` fixture sets it up)
        self.has_ipv6 = False

    @property
    def link_local(self) -> str:
        """The DUT's link-local address (EUI-64 from its MAC)."""
        return link_local(self.mac)

    def unclaimed_protocol(self) -> int:
        """An IP protocol number nothing in the DUT claims, for "unknown protocol" probes:
        253 or 254 (RFC 3692's experimental numbers) unless a plugin uses them, else an
        unassigned one."""
        for number in (253, 254, *range(252, 143, -1)):
            if number not in self.claimed_protocols:
                return number
        raise AssertionError("every candidate IP protocol number is claimed by the DUT")

    @property
    def virtual(self) -> bool:
        """True when time is virtual (waiting costs nothing and timing is exact)."""
        return self.medium.virtual

    # --- socket operations ------------------------------------------------------------
    @abstractmethod
    def call(self, op: str, **args: Any) -> Any:
        """Run one operation (see :mod:`layers.conformance.duts.linux_agent` for the list)."""

    def socket(self, kind: str) -> int:
        """A new ``"udp"`` or ``"tcp"`` socket (IPv4), or ``"udp6"``/``"tcp6"`` (IPv6)."""
        if self.required is not None and not any(
            name == kind or name.startswith(f"{kind}.") for name in self.required
        ):
            raise AssertionError(
                f"this test opens a {kind} socket but does not require {kind!r}: add it to its "
                f"@requires(...) (required now: {', '.join(sorted(self.required)) or 'none'}), "
                f"so that it skips on a DUT without {kind}"
            )
        s = int(self.call("socket", kind=kind))
        self._open.add(s)
        return s

    def bind(self, s: int, addr: str = "0.0.0.0", port: int = 0) -> None:
        self.call("bind", s=s, addr=addr, port=port)

    def getsockname(self, s: int) -> Address:
        got = self.call("getsockname", s=s)
        return str(got[0]), int(got[1])

    def connect(self, s: int, addr: str, port: int) -> None:
        """UDP: set the peer. TCP: start the handshake and return at once."""
        self.call("connect", s=s, addr=addr, port=port)

    def wait_connected(self, s: int, timeout: float = 2.0) -> bool:
        """True once a TCP connect completed; raises OSError when it failed."""
        return bool(self.call("wait_connected", s=s, timeout=timeout))

    def listen(self, s: int, backlog: int = 16) -> None:
        self.call("listen", s=s, backlog=backlog)

    def accept(self, s: int, timeout: float = 2.0) -> tuple[int, Address] | None:
        got = self.call("accept", s=s, timeout=timeout)
        if got is None:
            return None
        self._open.add(int(got[0]))
        return int(got[0]), (str(got[1][0]), int(got[1][1]))

    def send(self, s: int, data: bytes, timeout: float = 1.0) -> int:
        """Bytes accepted into the send buffer (0 when it stayed full for ``timeout``)."""
        return int(self.call("send", s=s, data=data, timeout=timeout))

    def sendto(self, s: int, data: bytes, addr: str, port: int) -> int:
        return int(self.call("sendto", s=s, data=data, addr=addr, port=port))

    def recv(self, s: int, n: int = 65536, timeout: float = 1.0) -> bytes | None:
        """Up to ``n`` bytes; ``b""`` at end of stream; None when nothing came in time."""
        got = self.call("recv", s=s, n=n, timeout=timeout)
        return None if got is None else bytes(got)

    def recv_exactly(self, s: int, n: int, timeout: float = 2.0) -> bytes:
        """Exactly ``n`` bytes (fewer only at end of stream or after ``timeout`` overall)."""
        out = b""
        deadline = self.medium.now() + timeout
        while len(out) < n:
            left = deadline - self.medium.now()
            if left <= 0:
                break
            got = self.recv(s, n - len(out), timeout=left)
            if not got:
                break
            out += got
        return out

    def recvfrom(
        self, s: int, n: int = 65536, timeout: float = 1.0
    ) -> tuple[bytes, Address] | None:
        got = self.call("recvfrom", s=s, n=n, timeout=timeout)
        if got is None:
            return None
        data, peer = got
        return bytes(data), (str(peer[0]), int(peer[1]))

    def shutdown(self, s: int, how: str = "wr") -> None:
        """``"wr"`` (send FIN), ``"rd"`` or ``"rdwr"``."""
        self.call("shutdown", s=s, how=how)

    def close(self, s: int) -> None:
        self._open.discard(s)
        self.call("close", s=s)

    def abort(self, s: int) -> None:
        """Close with a reset (SO_LINGER 0)."""
        self._open.discard(s)
        self.call("abort", s=s)

    def setsockopt(self, s: int, name: str, value: int) -> None:
        """``nodelay``, ``mss``, ``rcvbuf``, ``sndbuf``, ``broadcast``, ``reuseaddr``."""
        self.call("setsockopt", s=s, name=name, value=int(value))

    def state(self, s: int) -> str:
        """The TCP state as RFC 9293 names it: ``ESTABLISHED``, ``FIN-WAIT-2``..."""
        return str(self.call("state", s=s))

    def pending_error(self, s: int) -> int:
        """SO_ERROR: the errno waiting on the socket (0 for none); reading clears it."""
        return int(self.call("pending_error", s=s))

    # --- lifecycle --------------------------------------------------------------------
    def close_all(self) -> None:
        for s in sorted(self._open):
            try:
                self.call("close", s=s)
            except OSError:
                pass
        self._open.clear()

    @abstractmethod
    def shutdown_dut(self) -> None:
        """Release everything the DUT holds (namespace, processes, stack)."""

    def __repr__(self) -> str:
        return f"<DUT {self.name} {self.ip}>"


def errno_name(code: int) -> str:
    return errno.errorcode.get(code, str(code))
