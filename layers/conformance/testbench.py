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
resolution.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any

from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import NoPayload, Packet, Raw

from layers.conformance.duts.base import DUT, OTHER_IP, OTHER_MAC
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


__all__ = [
    "BROADCAST_MAC", "ZERO_MAC", "ExpectationFailed", "Testbench", "arrival", "ip4_str", "matches",
]
