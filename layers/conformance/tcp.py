"""The testbench's end of a TCP connection, with sequence numbers relative to each side's ISN.

Like packetimpact's ``TCPIPv4`` connection: the peer remembers its own ISN and next sequence
number and, once it has seen the DUT's SYN or SYN-ACK, the DUT's. In :meth:`TCPPeer.send` and
:meth:`TCPPeer.expect`, ``seq=`` is relative to the sender's ISN and ``ack=`` to the other
side's, so ``peer.expect("A", ack=1)`` means "an ACK of our SYN" whatever the ISNs were.

Flags are written as Scapy writes them (``"S"``, ``"SA"``, ``"FA"``, ``"R"``, ``"RA"``). When
matching, the flags given must be set and, of S, F, R and A, the ones not given must be clear;
PSH, URG, ECE and CWR are "don't care".

``TCPPeer(..., family=6)`` speaks TCP over IPv6 (the testbench's and the DUT's IPv6
addresses; ``tos`` is then the traffic class).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.packet import Packet, Raw

from layers.conformance.duts.base import DUT
from layers.conformance.testbench import Testbench

MASK = 0xFFFFFFFF
Options = Sequence[tuple[str, Any]]
_CORE = {"S": 0x02, "F": 0x01, "R": 0x04, "A": 0x10}


def flags_match(got: int, want: str) -> bool:
    need = 0
    for ch in want:
        if ch in _CORE:
            need |= _CORE[ch]
        elif ch not in "PUEC":
            raise ValueError(f"unknown TCP flag {ch!r} in {want!r}")
    core = int(got) & 0x17
    return core == need


def payload_of(pkt: Packet) -> bytes:
    """The TCP payload of ``pkt`` (without any Ethernet padding)."""
    tcp = pkt[TCP]
    if IPv6 in pkt and IP not in pkt:
        ip6 = pkt[IPv6]
        n = ip6.plen - (len(bytes(ip6.payload)) - len(bytes(tcp))) - tcp.dataofs * 4
        return bytes(tcp.payload)[: max(n, 0)]
    ip = pkt[IP]
    n = ip.len - ip.ihl * 4 - tcp.dataofs * 4
    return bytes(tcp.payload)[: max(n, 0)]


def option(pkt: Packet, name: str) -> Any:
    """The value of TCP option ``name`` ("MSS", "WScale", "Timestamp", "SAckOK", "SAck"), or
    None when absent (SAckOK's value is ``b""``, so test it with ``is not None``)."""
    for key, value in pkt[TCP].options:
        if key == name:
            return value
    return None


def after(a: int, b: int) -> bool:
    """Sequence number ``a`` is after ``b`` (modulo 2**32)."""
    return 0 < ((a - b) & MASK) < 0x80000000


class TCPPeer:
    """One connection between the testbench (``tb``) and the DUT."""

    def __init__(
        self,
        tb: Testbench,
        dut: DUT,
        *,
        port: int | None = None,
        dut_port: int | None = None,
        isn: int | None = None,
        window: int = 65535,
        mss: int | None = None,
        family: int = 4,
    ) -> None:
        self.tb = tb
        self.family = family
        self.dut = dut
        self.port = port if port is not None else random.randint(40000, 60000)
        self.dut_port = dut_port
        self.isn = isn if isn is not None else random.getrandbits(32)
        #: absolute: our next sequence number
        self.snd_nxt = self.isn
        self.dut_isn: int | None = None
        #: absolute: the next DUT sequence number we expect
        self.rcv_nxt: int | None = None
        self.window = window
        self.mss = mss if mss is not None else (1460 if family == 4 else 1440)
        self.timestamps = False
        self.ts_recent = 0
        self._ts_base = random.getrandbits(31)
        #: the TSval of the last segment we sent with timestamps
        self.last_tsval = 0
        #: options the DUT sent in its SYN or SYN-ACK
        self.dut_syn: Packet | None = None

    # --- numbers ------------------------------------------------------------------------
    def rel(self, seq: int) -> int:
        """An absolute number of *our* sequence space, relative to our ISN."""
        return (seq - self.isn) & MASK

    def dut_rel(self, seq: int) -> int:
        """An absolute number of the DUT's sequence space, relative to its ISN."""
        assert self.dut_isn is not None, "the DUT's ISN is not known yet"
        return (seq - self.dut_isn) & MASK

    @property
    def snd_rel(self) -> int:
        return self.rel(self.snd_nxt)

    @property
    def rcv_rel(self) -> int:
        assert self.rcv_nxt is not None
        return self.dut_rel(self.rcv_nxt)

    def ts_now(self) -> int:
        return (self._ts_base + int(self.tb.now * 1000)) & MASK

    # --- sending ------------------------------------------------------------------------
    def segment(
        self,
        flags: str = "A",
        payload: bytes = b"",
        *,
        seq: int | None = None,
        ack: int | None = None,
        window: int | None = None,
        options: Options | None = None,
        tos: int = 0,
    ) -> Packet:
        """A segment from us (``seq`` relative to our ISN, ``ack`` to the DUT's; ``tos`` is
        the IP ToS byte, whose low two bits are the ECN field)."""
        s = (self.isn + seq) & MASK if seq is not None else self.snd_nxt
        if ack is not None:
            assert self.dut_isn is not None
            a = (self.dut_isn + ack) & MASK
        elif "A" in flags and self.rcv_nxt is not None:
            a = self.rcv_nxt
        else:
            a = 0
        opts = list(options) if options is not None else []
        if options is None and self.timestamps and "R" not in flags:
            self.last_tsval = self.ts_now()
            opts = [("NOP", None), ("NOP", None), ("Timestamp", (self.last_tsval, self.ts_recent))]
        tcp = TCP(sport=self.port, dport=self.dut_port, seq=s, ack=a, flags=flags,
                  window=self.window if window is None else window, options=opts)
        pkt = (IP(src=self.tb.ip, dst=self.dut.ip, tos=tos) if self.family == 4
               else IPv6(src=self.tb.ip6, dst=self.dut.ip6, tc=tos)) / tcp
        if payload:
            pkt = pkt / Raw(payload)
        return pkt

    def send(self, flags: str = "A", payload: bytes = b"", **kw: Any) -> Packet:
        """Send a segment; without an explicit ``seq`` it advances our next sequence number."""
        pkt = self.segment(flags, payload, **kw)
        self.tb.send(pkt)
        if kw.get("seq") is None:
            self.snd_nxt = (self.snd_nxt + len(payload) + ("S" in flags) + ("F" in flags)) & MASK
        return pkt

    # --- receiving ----------------------------------------------------------------------
    def _predicate(
        self, flags: str | None, seq: int | None, ack: int | None, payload: bytes | None,
        data: bool | None, where: Callable[[Packet], bool] | None,
    ) -> Callable[[Packet], bool]:
        def ok(pkt: Packet) -> bool:
            t = pkt[TCP]
            if self.dut_port is not None and t.sport != self.dut_port:
                return False
            if flags is not None and not flags_match(t.flags, flags):
                return False
            if seq is not None and (self.dut_isn is None or t.seq != (self.dut_isn + seq) & MASK):
                return False
            if ack is not None and t.ack != (self.isn + ack) & MASK:
                return False
            body = payload_of(pkt)
            if payload is not None and body != payload:
                return False
            if data is not None and bool(body) != data:
                return False
            return where is None or where(pkt)

        return ok

    def template(self) -> Packet:
        """What the DUT's segments on this connection look like."""
        if self.family == 6:
            return IPv6(src=self.dut.ip6, dst=self.tb.ip6) / TCP(dport=self.port)
        return IP(src=self.dut.ip, dst=self.tb.ip) / TCP(dport=self.port)

    def try_expect(
        self, flags: str | None = None, *, timeout: float = 1.0, seq: int | None = None,
        ack: int | None = None, payload: bytes | None = None, data: bool | None = None,
        where: Callable[[Packet], bool] | None = None,
    ) -> Packet | None:
        template = self.template()
        got = self.tb.try_expect(template, timeout,
                                 self._predicate(flags, seq, ack, payload, data, where))
        if got is not None:
            self._learn(got)
        return got

    def expect(
        self, flags: str | None = None, *, timeout: float = 1.0, seq: int | None = None,
        ack: int | None = None, payload: bytes | None = None, data: bool | None = None,
        where: Callable[[Packet], bool] | None = None, what: str = "",
    ) -> Packet:
        """The next segment from the DUT on this connection matching all that is given."""
        template = self.template()
        desc = what or f"flags={flags} seq={seq} ack={ack}"
        got = self.tb.expect(template, timeout,
                             self._predicate(flags, seq, ack, payload, data, where), what=desc)
        self._learn(got)
        return got

    def expect_none(
        self, flags: str | None = None, *, window: float = 0.3, seq: int | None = None,
        ack: int | None = None, data: bool | None = None,
        where: Callable[[Packet], bool] | None = None, what: str = "",
    ) -> None:
        template = self.template()
        self.tb.expect_none(template, window,
                            self._predicate(flags, seq, ack, None, data, where), what=what)

    def _learn(self, pkt: Packet) -> None:
        t = pkt[TCP]
        if self.dut_port is None:
            self.dut_port = int(t.sport)
        if int(t.flags) & 0x02 and self.dut_isn is None:
            self.dut_isn = int(t.seq)
            self.rcv_nxt = (self.dut_isn + 1) & MASK
            self.dut_syn = pkt
            return
        if self.rcv_nxt is None:
            return
        end = (int(t.seq) + len(payload_of(pkt)) + (int(t.flags) & 0x01)) & MASK
        if t.seq == self.rcv_nxt and after(end, self.rcv_nxt):
            self.rcv_nxt = end
        ts = option(pkt, "Timestamp")
        if ts is not None:
            self.ts_recent = int(ts[0])

    # --- handshakes ---------------------------------------------------------------------
    def syn_options(self, *, mss: int | None = None, wscale: int | None = None,
                    timestamps: bool = False, sack: bool = False) -> list[tuple[str, Any]]:
        opts: list[tuple[str, Any]] = [("MSS", self.mss if mss is None else mss)]
        if sack:
            opts.append(("SAckOK", b""))
        if timestamps:
            opts.append(("Timestamp", (self.ts_now(), 0)))
        if wscale is not None:
            opts += [("NOP", None), ("WScale", wscale)]
        return opts

    def connect(self, options: Options | None = None, *, timeout: float = 1.0) -> Packet:
        """Active open from the testbench to a listening DUT: SYN, SYN-ACK, ACK."""
        opts = list(options) if options is not None else self.syn_options()
        self.send("S", options=opts)
        synack = self.expect("SA", ack=1, timeout=timeout, what="SYN-ACK")
        self._negotiate(opts, synack)
        self.send("A")
        return synack

    def accept(self, options: Options | None = None, *, timeout: float = 2.0) -> Packet:
        """Passive open: expect the DUT's SYN, answer SYN-ACK, expect its ACK."""
        syn = self.expect("S", timeout=timeout, what="SYN from the DUT")
        opts = list(options) if options is not None else self.syn_options()
        if any(k == "Timestamp" for k, _ in opts):
            ts = option(syn, "Timestamp")
            opts = [(k, (self.ts_now(), int(ts[0]) if ts else 0)) if k == "Timestamp" else (k, v)
                    for k, v in opts]
        self.send("SA", options=opts)
        self._negotiate(opts, syn)
        self.expect("A", ack=1, what="ACK of our SYN-ACK")
        return syn

    def _negotiate(self, ours: Options, theirs: Packet) -> None:
        offered = any(k == "Timestamp" for k, _ in ours)
        self.timestamps = offered and option(theirs, "Timestamp") is not None

    def recv_data(self, n: int, *, timeout: float = 2.0, ack: bool = True) -> bytes:
        """Collect ``n`` bytes the DUT sends in order, acknowledging each segment."""
        out = b""
        deadline = self.tb.now + timeout
        while len(out) < n:
            left = deadline - self.tb.now
            assert left > 0, f"got {len(out)} of {n} bytes from DUT {self.dut.name}"
            before = self.rcv_nxt
            pkt = self.expect("A", data=True, timeout=left, what=f"data ({len(out)} of {n})")
            if self.rcv_nxt != before:
                out += payload_of(pkt)
            if ack:
                self.send("A")
        return out


__all__ = ["MASK", "TCPPeer", "after", "flags_match", "option", "payload_of"]


# --- set-ups the TCP tests share -----------------------------------------------------------

#: the port DUT listeners use
DUT_PORT = 8080


def listen(dut: DUT, port: int = DUT_PORT, *, family: int = 4, **sockopts: int) -> int:
    """A DUT socket listening on ``port`` (socket options set before ``listen``); IPv6 on
    ``::`` with ``family=6``."""
    s = dut.socket("tcp" if family == 4 else "tcp6")
    for name, value in sockopts.items():
        dut.setsockopt(s, name, value)
    dut.bind(s, "0.0.0.0" if family == 4 else "::", port)
    dut.listen(s, 16)
    return s


def open_passive(
    dut: DUT, tb: Testbench, *, options: Options | None = None, window: int = 65535,
    port: int = DUT_PORT, family: int = 4, **sockopts: int,
) -> tuple[TCPPeer, int, Packet]:
    """An established connection the testbench opened to a DUT listener:
    ``(peer, accepted socket, the DUT's SYN-ACK)``."""
    lsock = listen(dut, port, family=family, **sockopts)
    peer = TCPPeer(tb, dut, dut_port=port, window=window, family=family)
    synack = peer.connect(options)
    got = dut.accept(lsock, timeout=2.0)
    assert got is not None, f"DUT {dut.name} did not accept the connection"
    return peer, got[0], synack


def open_active(
    dut: DUT, tb: Testbench, *, options: Options | None = None, window: int = 65535,
    port: int = 9090, family: int = 4, **sockopts: int,
) -> tuple[TCPPeer, int, Packet]:
    """An established connection the DUT opened to the testbench:
    ``(peer, connected socket, the DUT's SYN)``."""
    s = dut.socket("tcp" if family == 4 else "tcp6")
    for name, value in sockopts.items():
        dut.setsockopt(s, name, value)
    dut.connect(s, tb.ip if family == 4 else tb.ip6, port)
    peer = TCPPeer(tb, dut, port=port, window=window, family=family)
    syn = peer.accept(options)
    assert dut.wait_connected(s, timeout=2.0), f"DUT {dut.name} did not complete connect()"
    return peer, s, syn


__all__ += ["DUT_PORT", "listen", "open_active", "open_passive"]
