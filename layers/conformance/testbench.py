"""The testbench: crafted frames out, expected frames in, within time windows.

Packets are Scapy layers (Scapy is the testbench's packet library: an encoder and decoder
written independently of the stack under test). A *template* is a Scapy packet in which only
the fields given explicitly count:

* when **sending**, unset fields get sensible defaults: Ethernet addresses from the testbench to
  the DUT, IPv4 source and destination likewise, ARP sender and target; lengths and checksums
  as Scapy computes them (set ``chksum=0x1234`` to send a bad one);
* when **matching**, unset fields (and fields set to None) are "don't care". A template is
  matched layer by layer, in order, against the layers of a received frame
  (``IP(src=dut.ip)/ICMP(type=3, code=3)/IPerror()/UDPerror(dport=9)``); ``where=`` adds any
  predicate on the decoded packet.

:meth:`Testbench.expect` consumes frames up to the one that matched (the others stay in
:attr:`Testbench.skipped`, shown when an expectation fails), as packetimpact's ``Expect`` does.
Every received packet carries ``.time``, its arrival on the testbench clock.

ARP requests for the testbench's addresses are answered automatically (``tb.answer_arp =
False`` turns that off for ARP tests), so a test about ICMP never has to care about neighbour
resolution. IPv6 likewise: neighbour solicitations for the testbench's IPv6 addresses are
answered with a solicited advertisement (``tb.answer_ndp = False`` for NDP tests), and IPv6
templates get the testbench's and the DUT's IPv6 addresses (``tb.ip6``, ``tb.dut_ip6``) by
default. :meth:`Testbench.fragments6` cuts a packet into IPv6 fragments and
:meth:`Testbench.expect_datagram6` reassembles the DUT's.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable, Iterable
from typing import Any

from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6NDOptDstLLAddr,
    IPv6,
    IPv6ExtHdrFragment,
)
from scapy.layers.l2 import ARP, Ether
from scapy.packet import NoPayload, Packet, Raw

from layers.conformance.duts.base import DUT, OTHER_IP, OTHER_IP6, OTHER_MAC, link_local
from layers.conformance.media import Medium
from layers.wire.addr import ip4, ip4_str, mac_str
from layers.wire.arp import ARPOP_REPLY, ARPOP_REQUEST, build_arp
from layers.wire.ethernet import ETH_HEADER, ETH_P_ARP

Where = Callable[[Packet], bool]
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
ZERO_MAC = "00:00:00:00:00:00"
_ARP_ADDRS = struct.Struct("!6s4s6s4s")


def matches(template: Packet, pkt: Packet) -> bool:
    """Whether ``pkt`` has the layers of ``template``, in order, with its explicit fields."""
    want: Packet = template
    cur: Packet = pkt
    while not isinstance(want, NoPayload):
        found = cur.getlayer(type(want))
        if found is None:
            return False
        for name, value in want.fields.items():
            if value is None:
                continue
            if found.getfieldval(name) != value:
                return False
        want = want.payload
        cur = found.payload
    return True


def arrival(pkt: Packet) -> float:
    """When ``pkt`` reached the testbench (its clock, seconds)."""
    return float(pkt.time)


def describe(pkt: Packet) -> str:
    return f"t={arrival(pkt):.6f} {pkt.summary()}"


class ExpectationFailed(AssertionError):
    pass


class Testbench:
    """The testbench side of one test: talks to ``dut`` over ``dut.medium``."""

    __test__ = False  # not a pytest test class

    def __init__(self, dut: DUT) -> None:
        self.dut = dut
        self.medium: Medium = dut.medium
        self.mac = mac_str(dut.tb_mac)
        self.ip = dut.tb_ip
        self.dut_mac = mac_str(dut.mac)
        self.dut_ip = dut.ip
        self.broadcast = dut.broadcast
        self.other_ip = OTHER_IP
        self.other_mac = mac_str(OTHER_MAC)
        self.cursor = 0
        self.skipped: list[Packet] = []
        #: answer ARP requests for the testbench's addresses as they arrive
        self.answer_arp = True
        self.arp_hosts: dict[int, bytes] = {ip4(self.ip): dut.tb_mac, ip4(OTHER_IP): OTHER_MAC}
        self.arp_answered = 0
        self.ip6 = dut.tb_ip6
        self.dut_ip6 = dut.ip6
        self.ll = link_local(dut.tb_mac)
        self.dut_ll = dut.link_local
        self.other_ip6 = OTHER_IP6
        #: answer neighbour solicitations for the testbench's IPv6 addresses as they arrive
        self.answer_ndp = True
        self.ndp_hosts: dict[bytes, bytes] = {
            _ip6b(self.ip6): dut.tb_mac, _ip6b(self.ll): dut.tb_mac,
            _ip6b(OTHER_IP6): OTHER_MAC}
        self.ndp_answered = 0
        self.medium.on_frame = self._on_frame

    # --- time ---------------------------------------------------------------------------
    @property
    def now(self) -> float:
        return self.medium.now()

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass (virtual time runs the DUT meanwhile)."""
        self.medium.sleep(seconds)

    @property
    def virtual(self) -> bool:
        return self.medium.virtual

    # --- ARP answering ----------------------------------------------------------------
    def _on_frame(self, raw: bytes) -> None:
        if raw[12:14] == b"\x86\xdd":
            self._on_ipv6(raw)
            return
        if not self.answer_arp or len(raw) < 42 or raw[12:14] != b"\x08\x06":
            return
        if raw[14:22] != b"\x00\x01\x08\x00\x06\x04\x00\x01":
            return
        sha, spa, _, tpa = _ARP_ADDRS.unpack_from(raw, 22)
        target = int.from_bytes(tpa, "big")
        hw = self.arp_hosts.get(target)
        if hw is None:
            return
        reply = build_arp(ARPOP_REPLY, hw, target, sha, int.from_bytes(spa, "big"))
        self.arp_answered += 1
        self.medium.send(ETH_HEADER.pack(sha, hw, ETH_P_ARP) + reply)

    def _on_ipv6(self, raw: bytes) -> None:
        """A neighbour solicitation (no extension headers, hop limit 255) for one of the
        testbench's IPv6 addresses: answer with a solicited, override advertisement."""
        if not self.answer_ndp or len(raw) < 78 or raw[20] != 58 or raw[21] != 255:
            return
        if raw[54] != 135:
            return
        hw = self.ndp_hosts.get(raw[62:78])
        if hw is None:
            return
        src = raw[22:38]
        target = str(ipaddress.IPv6Address(raw[62:78]))
        dst = "ff02::1" if src == bytes(16) else str(ipaddress.IPv6Address(src))
        na = (Ether(src=mac_str(hw), dst=mac_str(raw[6:12]))
              / IPv6(src=target, dst=dst, hlim=255)
              / ICMPv6ND_NA(tgt=target, R=0, S=int(dst != "ff02::1"), O=1)
              / ICMPv6NDOptDstLLAddr(lladdr=mac_str(hw)))
        self.ndp_answered += 1
        self.medium.send(bytes(na))

    # --- sending ------------------------------------------------------------------------
    def frame(self, pkt: Packet) -> Packet:
        """``pkt`` as a whole frame, with the testbench's defaults filled in."""
        pkt = pkt.copy()
        if not isinstance(pkt, Ether):
            pkt = Ether() / pkt
        if "src" not in pkt.fields:
            pkt.src = self.mac
        if "dst" not in pkt.fields:
            pkt.dst = self.dut_mac
        ip = pkt.getlayer(IP)
        if ip is not None:
            if "src" not in ip.fields:
                ip.src = self.ip
            if "dst" not in ip.fields:
                ip.dst = self.dut_ip
        ip6 = pkt.getlayer(IPv6)
        if ip6 is not None and not isinstance(ip6.underlayer, IPv6ExtHdrFragment):
            if "src" not in ip6.fields:
                ip6.src = self.ip6
            if "dst" not in ip6.fields:
                ip6.dst = self.dut_ip6
        arp = pkt.getlayer(ARP)
        if arp is not None:
            arp.hwsrc = arp.fields.get("hwsrc", self.mac)
            arp.psrc = arp.fields.get("psrc", self.ip)
            arp.hwdst = arp.fields.get("hwdst", ZERO_MAC)
            arp.pdst = arp.fields.get("pdst", self.dut_ip)
        return pkt

    def send(self, *pkts: Packet | bytes) -> None:
        """Send each packet (an IP or ARP packet gets an Ethernet header to the DUT)."""
        for pkt in pkts:
            self.medium.send(pkt if isinstance(pkt, bytes) else bytes(self.frame(pkt)))

    def send_raw_ip(self, ip_bytes: bytes, dst_mac: str | None = None) -> None:
        """Send IPv4 bytes exactly as given, in an Ethernet frame to the DUT."""
        eth = Ether(src=self.mac, dst=dst_mac or self.dut_mac, type=0x0800)
        self.medium.send(bytes(eth) + ip_bytes)

    # --- receiving ----------------------------------------------------------------------
    def _decode(self, index: int) -> Packet:
        cap = self.medium.inbox[index]
        pkt = Ether(cap.raw)
        pkt.time = cap.time
        return pkt

    def try_expect(
        self, template: Packet, timeout: float = 1.0, where: Where | None = None
    ) -> Packet | None:
        """The next frame matching ``template`` (and ``where``) within ``timeout``, or None."""
        found: list[Packet] = []
        inbox = self.medium.inbox

        def scan() -> bool:
            while self.cursor < len(inbox):
                pkt = self._decode(self.cursor)
                self.cursor += 1
                if matches(template, pkt) and (where is None or where(pkt)):
                    found.append(pkt)
                    return True
                self.skipped.append(pkt)
            return False

        self.medium.wait(scan, timeout)
        return found[0] if found else None

    def expect(
        self, template: Packet, timeout: float = 1.0, where: Where | None = None,
        what: str = "",
    ) -> Packet:
        """Like :meth:`try_expect`, but a missing frame fails the test with what was seen."""
        start = len(self.skipped)
        got = self.try_expect(template, timeout, where)
        if got is None:
            seen = self.skipped[start:]
            lines = "\n  ".join(describe(p) for p in seen[-20:]) or "(nothing)"
            label = f" ({what})" if what else ""
            raise ExpectationFailed(
                f"no frame matching {template.summary()!r}{label} within {timeout} s on DUT "
                f"{self.dut.name}; frames seen meanwhile:\n  {lines}"
            )
        return got

    def expect_none(
        self, template: Packet, window: float = 0.5, where: Where | None = None,
        what: str = "",
    ) -> None:
        """Fail if a frame matching ``template`` arrives within ``window`` seconds."""
        got = self.try_expect(template, window, where)
        if got is not None:
            label = f" ({what})" if what else ""
            raise ExpectationFailed(
                f"unexpected frame{label} on DUT {self.dut.name}: {describe(got)}"
            )

    def collect(self, template: Packet, window: float, where: Where | None = None) -> list[Packet]:
        """Every frame matching ``template`` within ``window`` seconds."""
        out: list[Packet] = []
        deadline = self.now + window
        while True:
            left = deadline - self.now
            if left <= 0:
                break
            got = self.try_expect(template, left, where)
            if got is None:
                break
            out.append(got)
        return out

    def drain(self, settle: float = 0.0) -> None:
        """Forget every frame received so far (after ``settle`` seconds)."""
        if settle > 0:
            self.sleep(settle)
        else:
            self.medium.wait(lambda: True, 0.0)
        self.cursor = len(self.medium.inbox)

    def expect_datagram(
        self, template: Packet, timeout: float = 1.0, where: Where | None = None
    ) -> Packet:
        """The next IPv4 datagram matching ``template`` after reassembling its fragments.

        The result is ``Ether/IP/...`` with the IP header of the first fragment (offset 0, no
        MF) and ``.fragments``: how many frames carried it."""
        partial: dict[tuple[str, str, int, int], list[Packet]] = {}
        result: list[Packet] = []
        inbox = self.medium.inbox

        def scan() -> bool:
            while self.cursor < len(inbox):
                pkt = self._decode(self.cursor)
                self.cursor += 1
                ip = pkt.getlayer(IP)
                if ip is None:
                    self.skipped.append(pkt)
                    continue
                if not (ip.flags.MF or ip.frag):
                    whole: Packet | None = pkt
                    count = 1
                else:
                    key = (ip.src, ip.dst, ip.id, ip.proto)
                    frags = partial.setdefault(key, [])
                    frags.append(pkt)
                    whole = _reassemble(frags)
                    count = len(frags)
                    if whole is not None:
                        del partial[key]
                if whole is None:
                    continue
                whole.fragments = count
                if matches(template, whole) and (where is None or where(whole)):
                    result.append(whole)
                    return True
                self.skipped.append(whole)
            return False

        self.medium.wait(scan, timeout)
        if not result:
            raise ExpectationFailed(
                f"no datagram matching {template.summary()!r} within {timeout} s on DUT "
                f"{self.dut.name} (partial: {len(partial)})"
            )
        return result[0]

    # --- helpers ------------------------------------------------------------------------
    def arp_request(self, target: str | None = None, **fields: Any) -> Packet:
        """A broadcast "who-has target tell testbench" request."""
        return Ether(dst=BROADCAST_MAC, src=fields.pop("src", self.mac)) / ARP(
            op=ARPOP_REQUEST, pdst=target or self.dut_ip, **fields
        )

    def resolve_dut(self, timeout: float = 1.0) -> Packet:
        """Ask for the DUT's address and expect its reply (so the DUT also learns ours)."""
        self.send(self.arp_request())
        return self.expect(
            ARP(op=ARPOP_REPLY, psrc=self.dut_ip, pdst=self.ip), timeout, what="ARP reply"
        )

    def ping(
        self, payload: bytes = b"conformance", *, ident: int = 0x4C59, seq: int = 1,
        timeout: float = 1.0, **ip_fields: Any,
    ) -> Packet:
        """Send an echo request and expect the reply with the same identifier and sequence."""
        self.send(IP(**ip_fields) / ICMP(type=8, id=ident, seq=seq) / Raw(payload))
        return self.expect(
            IP(src=self.dut_ip, dst=self.ip) / ICMP(type=0, id=ident, seq=seq), timeout,
            what="echo reply",
        )

    def ping6(
        self, payload: bytes = b"conformance", *, ident: int = 0x4C59, seq: int = 1,
        timeout: float = 1.0, **ip_fields: Any,
    ) -> Packet:
        """Send an ICMPv6 echo request and expect the reply with the same identifier and
        sequence (from the address it was sent to, when that is unicast)."""
        self.send(IPv6(**ip_fields) / ICMPv6EchoRequest(id=ident, seq=seq, data=payload))
        dst = ip_fields.get("dst", self.dut_ip6)
        want = IPv6(src=None if ipaddress.IPv6Address(dst).is_multicast else dst,
                    dst=ip_fields.get("src", self.ip6))
        return self.expect(want / ICMPv6EchoReply(id=ident, seq=seq), timeout,
                           what="ICMPv6 echo reply")

    def fragments6(self, pkt: Packet, size: int = 1232, ident: int = 0x1A7E5,
                   order: Iterable[int] | None = None) -> list[Packet]:
        """``pkt`` (an IPv6 packet without extension headers, checksums computed whole) cut
        into fragments of ``size`` data bytes (a multiple of 8), in ``order`` (indexes)."""
        whole = IPv6(bytes(self.frame(pkt)[IPv6]))
        body = bytes(whole.payload)
        nh = whole.nh
        pieces: list[Packet] = []
        for at in range(0, len(body), size):
            chunk = body[at:at + size]
            more = int(at + size < len(body))
            pieces.append(IPv6(src=whole.src, dst=whole.dst, hlim=whole.hlim)
                          / IPv6ExtHdrFragment(nh=nh, offset=at // 8, m=more, id=ident)
                          / Raw(chunk))
        if order is not None:
            pieces = [pieces[i] for i in order]
        return pieces

    def expect_datagram6(
        self, template: Packet, timeout: float = 1.0, where: Where | None = None
    ) -> Packet:
        """The next IPv6 packet matching ``template`` after reassembling its fragments
        (``Ether/IPv6/...`` without the fragment header; ``.fragments``: how many frames
        carried it, ``.sizes``: their IPv6 lengths, header included)."""
        partial: dict[tuple[str, str, int], list[Packet]] = {}
        result: list[Packet] = []
        inbox = self.medium.inbox

        def scan() -> bool:
            while self.cursor < len(inbox):
                pkt = self._decode(self.cursor)
                self.cursor += 1
                ip6 = pkt.getlayer(IPv6)
                frag = pkt.getlayer(IPv6ExtHdrFragment)
                if ip6 is None:
                    self.skipped.append(pkt)
                    continue
                whole: Packet | None
                if frag is None:
                    pkt.fragments = 1
                    pkt.sizes = [40 + ip6.plen]
                    whole = pkt
                else:
                    key = (ip6.src, ip6.dst, int(frag.id))
                    frags = partial.setdefault(key, [])
                    frags.append(pkt)
                    whole = _reassemble6(frags)
                    if whole is not None:
                        del partial[key]
                if whole is None:
                    continue
                if matches(template, whole) and (where is None or where(whole)):
                    result.append(whole)
                    return True
                self.skipped.append(whole)
            return False

        self.medium.wait(scan, timeout)
        if not result:
            raise ExpectationFailed(
                f"no IPv6 packet matching {template.summary()!r} within {timeout} s on DUT "
                f"{self.dut.name} (partial: {len(partial)})"
            )
        return result[0]

    def udp_to(self, dport: int, payload: bytes = b"x", sport: int = 40000, **ip: Any) -> Packet:
        return IP(**ip) / UDP(sport=sport, dport=dport) / Raw(payload)


def _reassemble(frags: Iterable[Packet]) -> Packet | None:
    pieces: list[tuple[int, bytes, bool, Packet]] = []
    for f in frags:
        ip = f[IP]
        body = bytes(ip.payload)[: ip.len - ip.ihl * 4] if ip.len else bytes(ip.payload)
        pieces.append((ip.frag * 8, body, bool(ip.flags.MF), f))
    pieces.sort(key=lambda p: p[0])
    if not pieces or pieces[0][0] != 0 or pieces[-1][2]:
        return None
    data = b""
    for off, body, _, _ in pieces:
        if off > len(data):
            return None
        data = data[:off] + body if off + len(body) >= len(data) else data
    first = pieces[0][3]
    ip = first[IP].copy()
    ip.remove_payload()
    ip.flags = 0
    ip.frag = 0
    ip.len = None
    ip.chksum = None
    eth = first.copy()
    eth.remove_payload()
    whole = Ether(bytes(eth / IP(bytes(ip / Raw(data)))))
    whole.time = max(float(p[3].time) for p in pieces)
    return whole


def _ip6b(text: str) -> bytes:
    return ipaddress.IPv6Address(text).packed


def _reassemble6(frags: list[Packet]) -> Packet | None:
    pieces: list[tuple[int, bytes, bool]] = []
    for f in frags:
        frag = f[IPv6ExtHdrFragment]
        body = bytes(frag.payload)[: f[IPv6].plen - 8]
        pieces.append((int(frag.offset) * 8, body, bool(frag.m)))
    pieces.sort(key=lambda p: p[0])
    if pieces[0][0] != 0 or pieces[-1][2]:
        return None
    data = b""
    for off, body, _ in pieces:
        if off != len(data):
            return None
        data += body
    first = frags[0]
    ip6 = first[IPv6]
    rebuilt = IPv6(src=ip6.src, dst=ip6.dst, hlim=ip6.hlim, tc=ip6.tc, fl=ip6.fl,
                   nh=first[IPv6ExtHdrFragment].nh) / Raw(data)
    eth = first.copy()
    eth.remove_payload()
    whole = Ether(bytes(eth / rebuilt))
    whole.time = max(float(f.time) for f in frags)
    whole.fragments = len(frags)
    whole.sizes = [40 + f[IPv6].plen for f in frags]
    return whole


__all__ = [
    "BROADCAST_MAC", "ZERO_MAC", "ExpectationFailed", "Testbench", "arrival", "ip4_str", "matches",
]
