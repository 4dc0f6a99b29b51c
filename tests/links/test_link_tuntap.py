"""TAP and TUN drivers against the Linux kernel, each test inside its own network namespace.

Name-validation and error-message tests need no root; the rest are ``@pytest.mark.root``.
"""

from __future__ import annotations

import errno
import json
import os
import select
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from scapy.all import ARP, ICMP, IP, TCP, UDP, Ether, Raw  # type: ignore[attr-defined]

from layers.errors import ConfigurationError
from layers.links import (
    GSO_TCPV4,
    RX_CSUM_VERIFIED,
    FaultLink,
    Medium,
    TapLink,
    TunLink,
    TxOffload,
    tuntap,
)
from layers.netns import NetNamespace
from layers.wire.addr import mac_str
from layers.wire.checksum import fold, pseudo_header_sum

TAP = "ltap0"
TUN = "ltun0"
PROBE_ETHERTYPE = 0x88B5


# --- helpers ----------------------------------------------------------------------------------


def open_in(ns: NetNamespace, cls: Any, name: str, **options: Any) -> Any:
    with ns.entered():
        return cls.open(name, **options)


def link_info(ns: NetNamespace, name: str) -> dict[str, Any]:
    out = ns.run(["ip", "-j", "-d", "-s", "link", "show", name]).stdout
    info: dict[str, Any] = json.loads(out)[0]
    return info


def device_exists(ns: NetNamespace, name: str) -> bool:
    return ns.run(["ip", "link", "show", name], check=False).returncode == 0


def wait_frame(
    link: TapLink | TunLink, match: Callable[[bytes], bool], timeout: float = 5.0
) -> tuple[bytes, int]:
    """The first received frame ``match`` accepts (others are skipped)."""
    deadline = time.monotonic() + timeout
    fd = link.fileno()
    assert fd is not None
    while True:
        got = link.recv()
        if got is not None:
            if match(got[0]):
                return got
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no matching frame arrived")
        select.select([fd], [], [], left)


def is_arp_request_for(ip: str) -> Callable[[bytes], bool]:
    def match(frame: bytes) -> bool:
        p = Ether(frame)
        return ARP in p and p[ARP].op == 1 and p[ARP].pdst == ip

    return match


def packet_socket(ns: NetNamespace, name: str, ethertype: int) -> socket.socket:
    with ns.entered():
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype))
    s.bind((name, ethertype))
    s.settimeout(5.0)
    return s


# --- no root needed ---------------------------------------------------------------------------


def test_name_too_long_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="at most 15"):
        TapLink.open("a-very-long-name0")
    with pytest.raises(ConfigurationError, match="not valid"):
        TunLink.open("a/b")


def test_string_options_from_a_link_spec_are_parsed() -> None:
    assert tuntap._as_bool("off", "pi") is False and tuntap._as_bool("yes", "up") is True
    with pytest.raises(ConfigurationError, match="should be a number"):
        TapLink.open("tap0", mtu="big")


def test_bad_options_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match=r"68\.\.65535"):
        TapLink.open("tap0", mtu=20)
    with pytest.raises(ConfigurationError, match="no MAC"):
        TunLink.open("tun0", mac="02:00:00:00:00:01")
    with pytest.raises(ConfigurationError, match="true or false"):
        TapLink.open("tap0", offload="maybe")


def test_missing_tun_device_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tuntap, "TUN_DEVICE", "/nonexistent/net/tun")
    with pytest.raises(OSError, match="modprobe tun") as info:
        TapLink.open("tap0")
    assert info.value.errno == errno.ENOENT


def test_permission_error_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    real_ioctl = tuntap._ioctl

    def ioctl(fd: int, request: int, arg: Any = 0) -> Any:
        if request == tuntap.TUNSETIFF:
            raise PermissionError(errno.EPERM, "Operation not permitted")
        return real_ioctl(fd, request, arg)

    monkeypatch.setattr(tuntap, "_ioctl", ioctl)
    if not os.path.exists(tuntap.TUN_DEVICE):
        pytest.skip("needs /dev/net/tun to get as far as TUNSETIFF")
    try:
        fd = os.open(tuntap.TUN_DEVICE, os.O_RDWR)
    except OSError:
        pytest.skip("cannot open /dev/net/tun here")
    os.close(fd)
    with pytest.raises(PermissionError, match=r"CAP_NET_ADMIN.*layers tap create tap0 --user"):
        TapLink.open("tap0")


# --- TAP ----------------------------------------------------------------------------------------


@pytest.mark.root
def test_tap_created_in_namespace_is_up_with_mtu_and_own_mac(netns: NetNamespace) -> None:
    link = open_in(netns, TapLink, TAP, mtu=1400)
    try:
        info = link_info(netns, TAP)
        assert "UP" in info["flags"]
        assert info["mtu"] == 1400
        assert link.capabilities.mtu == 1400
        assert link.capabilities.medium is Medium.ETHERNET
        assert info["address"] == mac_str(link.device_mac)
        assert link.mac != link.device_mac
        assert link.mac[0] & 0x03 == 0x02  # locally administered unicast
        assert link.created
        assert link.describe()["device_mac"] == info["address"]
    finally:
        link.close()
    assert not device_exists(netns, TAP)


@pytest.mark.root
def test_tap_given_mac_is_used_and_kernel_mac_refused(netns: NetNamespace) -> None:
    link = open_in(netns, TapLink, TAP, mac="02:11:22:33:44:55", up=False)
    try:
        assert link.mac == bytes.fromhex("021122334455")
        assert "UP" not in link_info(netns, TAP)["flags"]
        kernel_mac = mac_str(link.device_mac)
    finally:
        link.close()
    netns.run(["ip", "tuntap", "add", TAP, "mode", "tap"])
    netns.run(["ip", "link", "set", TAP, "address", kernel_mac])
    with pytest.raises(ConfigurationError, match="kernel side's own address"):
        open_in(netns, TapLink, TAP, mac=kernel_mac)
    with pytest.raises(ConfigurationError, match="multicast"):
        open_in(netns, TapLink, TAP, mac="01:00:5e:00:00:01")
    assert device_exists(netns, TAP)  # the failed opens left the device alone


@pytest.mark.root
@pytest.mark.parametrize("offload", [True, False])
def test_tap_receives_arp_request_from_linux(netns: NetNamespace, offload: bool) -> None:
    link = open_in(netns, TapLink, TAP, offload=offload)
    try:
        netns.run(["ip", "addr", "add", "10.9.0.1/24", "dev", TAP])
        netns.popen(["ping", "-c", "1", "-W", "1", "10.9.0.2"], stdout=open(os.devnull, "w"))
        frame, flags = wait_frame(link, is_arp_request_for("10.9.0.2"))
        p = Ether(frame)
        assert p.src == mac_str(link.device_mac) and p.dst == "ff:ff:ff:ff:ff:ff"
        assert p[ARP].psrc == "10.9.0.1"
        assert flags == 0  # nothing for the kernel to vouch for in an ARP packet
        assert link.stats.rx_frames >= 1
    finally:
        link.close()


@pytest.mark.root
@pytest.mark.parametrize("offload", [True, False])
def test_frame_we_send_arrives_in_linux(netns: NetNamespace, offload: bool) -> None:
    link = open_in(netns, TapLink, TAP, offload=offload)
    try:
        sock = packet_socket(netns, TAP, PROBE_ETHERTYPE)
        before = link_info(netns, TAP)["stats64"]["rx"]["packets"]
        frame = link.device_mac + link.mac + struct.pack("!H", PROBE_ETHERTYPE) + b"hi" * 30
        link.send(frame)
        assert sock.recv(2048) == frame
        sock.close()
        assert link_info(netns, TAP)["stats64"]["rx"]["packets"] == before + 1
        assert link.stats.tx_frames == 1 and link.stats.tx_bytes == len(frame)
    finally:
        link.close()


@pytest.mark.root
@pytest.mark.parametrize("offload", [True, False])
def test_recv_burst_reads_what_is_waiting_within_the_budget(
    netns: NetNamespace, offload: bool
) -> None:
    link = open_in(netns, TapLink, TAP, offload=offload)
    try:
        sock = packet_socket(netns, TAP, PROBE_ETHERTYPE)
        got: list[tuple[str, bytes, int]] = []

        def deliver(arg: str, frame: bytes | memoryview, flags: int) -> None:
            got.append((arg, bytes(frame), flags))

        def probe(i: int) -> bytes:
            eth = link.mac + link.device_mac + struct.pack("!H", PROBE_ETHERTYPE)
            return eth + bytes([i]) * 50

        while link.recv() is not None:  # whatever Linux sent on its own (IPv6 ND, MLD)
            pass
        before = link.stats.rx_frames
        for i in range(3):  # queued on the device when send returns
            sock.send(probe(i))
        assert link.recv_burst(deliver, "if", 2) == 2  # the budget: more may be waiting
        assert link.recv_burst(deliver, "if", 8) >= 1  # the rest, until EAGAIN
        while link.recv_burst(deliver, "if", 8):
            pass
        mine = [(a, f) for a, f, _ in got if f[12:14] == struct.pack("!H", PROBE_ETHERTYPE)]
        assert mine == [("if", probe(i)) for i in range(3)]
        assert link.stats.rx_frames - before == len(got)
        got.clear()
        sock.send(probe(7))  # a lone frame: read, and a poll says nothing more is waiting
        assert link.readable()
        assert link.recv_burst(deliver, "if", 8) >= 1
        assert probe(7) in [f for _, f, _ in got]
        sock.close()
    finally:
        link.close()
    assert link.recv_burst(deliver, "if", 8) == 0  # closed: nothing, no error
    assert not link.readable()


@pytest.mark.root
def test_vnet_header_negotiation_result(netns: NetNamespace) -> None:
    on = open_in(netns, TapLink, TAP)
    off = open_in(netns, TapLink, "ltap1", offload=False)
    try:
        assert on.vnet_hdr and not off.vnet_hdr
        assert link_info(netns, TAP)["linkinfo"]["info_data"]["vnet_hdr"] is True
        assert link_info(netns, "ltap1")["linkinfo"]["info_data"]["vnet_hdr"] is False
        caps = on.capabilities
        assert (caps.rx_checksum, caps.tx_checksum, caps.gso_max_size) == (True, True, 65535)
        caps = off.capabilities
        assert (caps.rx_checksum, caps.tx_checksum, caps.gso_max_size) == (False, False, 0)
    finally:
        on.close()
        off.close()


@pytest.mark.root
def test_offload_refused_by_kernel_falls_back_cleanly(
    netns: NetNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_ioctl = tuntap._ioctl

    def ioctl(fd: int, request: int, arg: Any = 0) -> Any:
        if request == tuntap.TUNSETOFFLOAD and arg:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_ioctl(fd, request, arg)

    monkeypatch.setattr(tuntap, "_ioctl", ioctl)
    link = open_in(netns, TapLink, TAP)
    try:
        assert not link.vnet_hdr
        assert link.capabilities.gso_max_size == 0 and not link.capabilities.rx_checksum
        assert link_info(netns, TAP)["linkinfo"]["info_data"]["vnet_hdr"] is False
        # and it works: frames start with the Ethernet header, not a virtio header
        netns.run(["ip", "addr", "add", "10.9.0.1/24", "dev", TAP])
        netns.popen(["ping", "-c", "1", "-W", "1", "10.9.0.2"], stdout=open(os.devnull, "w"))
        wait_frame(link, is_arp_request_for("10.9.0.2"))
    finally:
        link.close()
    assert not device_exists(netns, TAP)


@pytest.mark.root
def test_udp_from_linux_is_marked_checksum_verified_with_offload(netns: NetNamespace) -> None:
    results = {}
    for offload in (True, False):
        link = open_in(netns, TapLink, TAP, offload=offload)
        try:
            netns.run(["ip", "addr", "add", "10.9.0.1/24", "dev", TAP])
            netns.run(["ip", "neigh", "add", "10.9.0.2", "lladdr", mac_str(link.mac),
                       "dev", TAP])
            netns.run([sys.executable, "-c",
                       "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM);"
                       "s.sendto(b'x'*100, ('10.9.0.2', 9999))"])
            frame, flags = wait_frame(link, lambda f: UDP in Ether(f) and Ether(f)[UDP].dport
                                      == 9999)
            results[offload] = flags
            if not offload:  # no offload: the kernel computed a real checksum
                p = Ether(frame)
                chk = p[UDP].chksum
                del p[UDP].chksum
                assert Ether(bytes(p))[UDP].chksum == chk
        finally:
            link.close()
    assert results == {True: RX_CSUM_VERIFIED, False: 0}


# --- TCP offloads: Linux sends us 64 KiB super-segments and accepts ours ----------------------

_CLIENT = r"""
import socket, sys
s = socket.create_connection(("10.9.0.2", 5000), timeout=10)
s.sendall(b"L" * 100000)
got = b""
while len(got) < 4000:
    chunk = s.recv(65536)
    if not chunk:
        break
    got += chunk
sys.stdout.write("%d %d\n" % (len(got), got.count(b"S")))
"""


@pytest.mark.root
def test_tcp_gso_both_ways(netns: NetNamespace) -> None:
    link = open_in(netns, TapLink, TAP)
    assert link.vnet_hdr
    try:
        netns.run(["ip", "addr", "add", "10.9.0.1/24", "dev", TAP])
        netns.run(["ip", "neigh", "add", "10.9.0.2", "lladdr", mac_str(link.mac), "dev", TAP])
        client = netns.popen([sys.executable, "-c", _CLIENT], stdout=-1, text=True)
        eth = Ether(src=mac_str(link.mac), dst=mac_str(link.device_mac))
        ip = IP(src="10.9.0.2", dst="10.9.0.1")

        def is_tcp(f: bytes) -> bool:
            return TCP in Ether(f)

        syn = Ether(wait_frame(link, is_tcp)[0])
        assert syn[TCP].flags == "S"
        cport, irs, iss = syn[TCP].sport, syn[TCP].seq, 7000
        link.send(bytes(eth / ip / TCP(sport=5000, dport=cport, flags="SA", seq=iss,
                                       ack=irs + 1, window=65535,
                                       options=[("MSS", 1460), ("WScale", 7)])))
        rcv_nxt = irs + 1
        biggest = 0
        flags_seen = set()
        while rcv_nxt < irs + 1 + 100000:
            frame, flags = wait_frame(link, is_tcp)
            seg = Ether(frame)[TCP]
            n = len(bytes(seg.payload))
            if n == 0:
                continue
            biggest = max(biggest, len(frame))
            flags_seen.add(flags)
            if seg.seq == rcv_nxt:
                rcv_nxt += n
            link.send(bytes(eth / ip / TCP(sport=5000, dport=cport, flags="A", seq=iss + 1,
                                           ack=rcv_nxt, window=65535)))
        assert biggest > 1514, "Linux sent no GSO super-segment"
        assert flags_seen == {RX_CSUM_VERIFIED}

        # our 4000-byte super-segment, checksum left partial, segmented by the link
        payload = b"S" * 4000
        tcp = bytearray(bytes(TCP(sport=5000, dport=cport, flags="PA", seq=iss + 1,
                                  ack=rcv_nxt, window=65535)) + payload)
        partial = fold(pseudo_header_sum(0x0A090002, 0x0A090001, 6, len(tcp)))
        tcp[16:18] = partial.to_bytes(2, "big")
        ip_bytes = bytes(IP(src="10.9.0.2", dst="10.9.0.1", proto=6, len=20 + len(tcp)))
        frame = link.device_mac + link.mac + b"\x08\x00" + ip_bytes + bytes(tcp)
        link.send(frame, TxOffload(csum_start=20, csum_offset=16, gso_type=GSO_TCPV4,
                                   gso_size=1448, hdr_len=40))
        assert link.stats.tx_errors == 0
        out, _ = client.communicate(timeout=10)
        assert out.split() == ["4000", "4000"]
    finally:
        link.close()


# --- TUN ------------------------------------------------------------------------------------


@pytest.mark.root
@pytest.mark.parametrize("pi", [False, True])
def test_tun_answers_ping(netns: NetNamespace, pi: bool) -> None:
    link = open_in(netns, TunLink, TUN, pi=pi, mtu=1300)
    try:
        assert link.capabilities.medium is Medium.IP and link.mac is None
        assert link.device_mac is None
        info = link_info(netns, TUN)
        assert info["linkinfo"]["info_data"]["pi"] is pi
        assert info["mtu"] == 1300 and "UP" in info["flags"]
        netns.run(["ip", "addr", "add", "10.9.1.1/24", "dev", TUN])
        ping = netns.popen(["ping", "-c", "1", "-W", "5", "10.9.1.2"], stdout=-1, text=True)

        def is_echo(f: bytes) -> bool:
            return f[0] >> 4 == 4 and ICMP in IP(f) and IP(f)[ICMP].type == 8

        request = IP(wait_frame(link, is_echo)[0])
        assert request.src == "10.9.1.1" and request.dst == "10.9.1.2"
        reply = IP(src="10.9.1.2", dst="10.9.1.1") / ICMP(
            type=0, id=request[ICMP].id, seq=request[ICMP].seq
        ) / Raw(bytes(request[ICMP].payload))
        link.send(bytes(reply))
        out, _ = ping.communicate(timeout=10)
        assert ping.returncode == 0, out
        assert "1 received" in out
    finally:
        link.close()
    assert not device_exists(netns, TUN)


# --- cleanup and errors ---------------------------------------------------------------------


@pytest.mark.root
def test_created_device_disappears_on_close(netns: NetNamespace) -> None:
    for cls, name in ((TapLink, TAP), (TunLink, TUN)):
        link = open_in(netns, cls, name)
        assert device_exists(netns, name)
        link.close()
        link.close()  # idempotent
        assert not device_exists(netns, name)
        assert link.fileno() is None


@pytest.mark.root
@pytest.mark.parametrize("was_up", [False, True])
def test_pre_existing_device_is_restored_on_close(netns: NetNamespace, was_up: bool) -> None:
    netns.run(["ip", "tuntap", "add", TAP, "mode", "tap"])
    netns.run(["ip", "link", "set", TAP, "mtu", "1300"])
    if was_up:
        netns.run(["ip", "link", "set", TAP, "up"])
    link = open_in(netns, TapLink, TAP, mtu=1400)
    try:
        assert not link.created
        info = link_info(netns, TAP)
        assert info["mtu"] == 1400 and "UP" in info["flags"]
    finally:
        link.close()
    info = link_info(netns, TAP)
    assert info["mtu"] == 1300
    assert ("UP" in info["flags"]) is was_up
    assert info["linkinfo"]["info_data"]["persist"] is True
    # and it can be attached again
    open_in(netns, TapLink, TAP).close()
    assert device_exists(netns, TAP)


@pytest.mark.root
def test_busy_device_and_wrong_kind_name_the_fix(netns: NetNamespace) -> None:
    link = open_in(netns, TapLink, TAP)
    try:
        with pytest.raises(OSError, match="in use by another process") as info:
            open_in(netns, TapLink, TAP)
        assert info.value.errno == errno.EBUSY
    finally:
        link.close()
    netns.run(["ip", "tuntap", "add", TUN, "mode", "tun"])
    with pytest.raises(OSError, match="not a tap device") as info:
        open_in(netns, TapLink, TUN)
    assert info.value.errno == errno.EINVAL
    assert device_exists(netns, TUN)


@pytest.mark.root
def test_vanished_device_does_not_crash_or_spin(netns: NetNamespace) -> None:
    link = open_in(netns, TapLink, TAP)
    try:
        fd = link.fileno()
        assert fd is not None
        ep = select.epoll()
        ep.register(fd, select.EPOLLIN)
        netns.run(["ip", "link", "del", TAP])
        while link.recv() is not None:
            pass
        assert link.gone
        assert link.stats.rx_errors >= 1
        link.send(b"\x00" * 60)  # counted, not raised
        assert link.stats.tx_dropped == 1
        assert ep.poll(0.1) == []  # an event loop would not spin on the dead descriptor
        ep.close()
    finally:
        link.close()


@pytest.mark.root
def test_fault_link_on_a_tap_holds_and_releases_on_the_attached_clock(
    netns: NetNamespace,
) -> None:
    tap = open_in(netns, TapLink, TAP)
    link = FaultLink(tap, delay=0.2, direction="tx", seed=1)
    link.attach(time.monotonic)
    try:
        sock = packet_socket(netns, TAP, PROBE_ETHERTYPE)
        frame = tap.device_mac + tap.mac + struct.pack("!H", PROBE_ETHERTYPE) + bytes(50)
        t0 = time.monotonic()
        link.send(frame)
        deadline = link.next_deadline()
        assert deadline is not None and deadline == pytest.approx(t0 + 0.2, abs=0.05)
        sock.settimeout(0.05)
        with pytest.raises(TimeoutError):
            sock.recv(2048)
        time.sleep(max(0.0, deadline - time.monotonic()))
        link.poll(time.monotonic())
        sock.settimeout(5.0)
        assert sock.recv(2048) == frame
        sock.close()
    finally:
        link.close()
    assert not device_exists(netns, TAP)


@pytest.mark.root
def test_wrapped_tap_under_the_asyncio_runner(netns: NetNamespace, tmp_path: Any) -> None:
    """TAP + FaultLink(rx delay) + PcapLink in a real stack on asyncio: a frame Linux sends
    reaches the stack after the delay, and both directions land in the capture."""
    import asyncio

    from links_support import PROBE_ETHERTYPE as ETYPE
    from links_support import ProbePlugin, probe

    from layers.links import PcapLink
    from layers.links.pcap import read_pcap
    from layers.runtime import AsyncioRunner
    from layers.stack import Stack

    async def main() -> tuple[list[float], float, bytes]:
        loop = asyncio.get_running_loop()
        stack = Stack([ProbePlugin(echo=False)], clock=loop.time)
        tap = open_in(netns, TapLink, TAP)
        link = PcapLink(FaultLink(tap, delay=0.1, direction="rx", seed=1), tmp_path / "t.pcap")
        iface = stack.add_interface(link)
        runner = AsyncioRunner(stack, loop)
        runner.start()
        try:
            sock = packet_socket(netns, TAP, ETYPE)
            t0 = loop.time()
            sock.send(tap.mac + tap.device_mac + struct.pack("!H", ETYPE) + b"from linux")
            for _ in range(200):
                if probe(stack).got:
                    break
                await asyncio.sleep(0.01)
            assert tap.device_mac is not None
            iface.send_ethernet(tap.device_mac, ETYPE, b"from the stack")
            reply = sock.recv(2048)
            sock.close()
            return [t for t, _, _ in probe(stack).got], t0, reply
        finally:
            runner.stop()

    arrivals, t0, reply = asyncio.run(main())
    assert len(arrivals) == 1
    assert 0.1 - 0.01 <= arrivals[0] - t0 < 1.0
    assert reply.endswith(b"from the stack")
    _, records = read_pcap(tmp_path / "t.pcap")
    bodies = [r[1][14:] for r in records]
    assert b"from linux" in bodies and b"from the stack" in bodies
    assert not device_exists(netns, TAP)  # runner.stop() closed the links
