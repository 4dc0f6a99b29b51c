"""Endpoints: ephemeral ports, bind and connect errors, sendto errors, ICMP error delivery,
flow control, reports, and the DatagramService contract."""

from __future__ import annotations

import errno
import itertools

import pytest
from layers_udp import UDP as UDPProtocol
from scapy.layers.inet import IP, UDP
from udp_support import Recorder, Wire

from layers.datagrams import DatagramService, open_datagram_endpoint
from layers.errors import CompositionError, ConfigurationError
from layers.links.base import Link, LinkCapabilities, Medium, TxOffload
from layers.protocols import TransportError
from layers.stack import Stack
from layers.wire import checksum, fold, ip4, pseudo_header_sum
from layers.wire.udp import build_udp, udp_checksum

US, PEER = "10.0.0.1", "10.0.0.9"


def port_of(r: Recorder) -> int:
    assert r.transport is not None
    return int(r.transport.get_extra_info("sockname")[1])


# --- ephemeral ports ---------------------------------------------------------------------


def test_ephemeral_ports_distinct_random_and_in_linux_range() -> None:
    w = Wire()
    ports = [port_of(w.open()) for _ in range(300)]
    assert len(set(ports)) == 300
    assert all(32768 <= p <= 60999 for p in ports)
    steps = {b - a for a, b in itertools.pairwise(ports)}
    assert len(steps) > 100  # not a counter: RFC 6056 randomisation


def test_ephemeral_port_range_setting_and_exhaustion() -> None:
    w = Wire(settings={"udp.port_range": "40000-40009"})
    ports = sorted(port_of(w.open()) for _ in range(10))
    assert ports == list(range(40000, 40010))
    with pytest.raises(OSError) as exc:
        w.open()
    assert exc.value.errno == errno.EAGAIN


def test_port_seed_makes_ports_reproducible() -> None:
    a = Wire(settings={"udp.port_seed": 7})
    b = Wire(settings={"udp.port_seed": 7})
    assert [port_of(a.open()) for _ in range(5)] == [port_of(b.open()) for _ in range(5)]


@pytest.mark.parametrize("bad", ["40000", "9-1", "0-10", "1-70000", "a-b"])
def test_bad_port_range_names_the_fix(bad: str) -> None:
    with pytest.raises(ConfigurationError, match=r"udp\.port_range"):
        Wire(settings={"udp.port_range": bad})


# --- bind / connect errors ---------------------------------------------------------------


def test_address_in_use() -> None:
    w = Wire()
    w.open(local_addr=("0.0.0.0", 5000))
    for addr in ("0.0.0.0", US):
        with pytest.raises(OSError) as exc:
            w.open(local_addr=(addr, 5000))
        assert exc.value.errno == errno.EADDRINUSE
    # reuse_port needs both sides to ask for it
    with pytest.raises(OSError):
        w.open(local_addr=(US, 5000), reuse_port=True)


def test_specific_then_wildcard_conflicts() -> None:
    w = Wire()
    w.iface.add_address(ip4("10.0.0.2"), 24)
    w.open(local_addr=(US, 5000))
    w.open(local_addr=("10.0.0.2", 5000))  # a different address: no conflict
    with pytest.raises(OSError) as exc:
        w.open(local_addr=("0.0.0.0", 5000))
    assert exc.value.errno == errno.EADDRINUSE


def test_port_free_again_after_close() -> None:
    w = Wire()
    r = w.open(local_addr=("0.0.0.0", 5000))
    assert r.transport is not None
    r.transport.close()
    w.open(local_addr=("0.0.0.0", 5000))


def test_address_not_available() -> None:
    w = Wire()
    with pytest.raises(OSError) as exc:
        w.open(local_addr=("10.0.0.77", 5000))
    assert exc.value.errno == errno.EADDRNOTAVAIL


def test_connect_without_route_is_enetunreach() -> None:
    w = Wire()
    with pytest.raises(OSError) as exc:
        w.open(remote_addr=("192.0.2.1", 53))
    assert exc.value.errno == errno.ENETUNREACH


def test_connect_to_broadcast_needs_allow_broadcast() -> None:
    w = Wire()
    with pytest.raises(PermissionError):
        w.open(remote_addr=("10.0.0.255", 67))
    r = w.open(remote_addr=("10.0.0.255", 67), allow_broadcast=True)
    assert r.transport is not None
    r.transport.sendto(b"hi")
    (pkt,) = w.sent()
    assert pkt.dst == "10.0.0.255"


def test_connected_endpoint_names() -> None:
    w = Wire()
    r = w.open(remote_addr=(PEER, 53))
    assert r.transport is not None
    host, port = r.transport.get_extra_info("sockname")
    assert host == US and 32768 <= port <= 60999
    assert r.transport.get_extra_info("peername") == (PEER, 53)
    u = w.open(local_addr=("0.0.0.0", 0))
    assert u.transport is not None
    assert u.transport.get_extra_info("peername") is None
    assert u.transport.get_extra_info("sockname")[0] == "0.0.0.0"


def test_bad_address_arguments_raise() -> None:
    w = Wire()
    with pytest.raises(ValueError, match=r"a\.b\.c\.d"):
        w.open(local_addr=("example.com", 53))
    with pytest.raises(ValueError):
        w.open(local_addr=("0.0.0.0", 70000))
    with pytest.raises(TypeError):
        w.open(local_addr="0.0.0.0:53")


# --- sendto ------------------------------------------------------------------------------


def test_sendto_errors() -> None:
    w = Wire()
    u = w.open()
    t = u.transport
    assert t is not None
    with pytest.raises(ValueError, match="not connected"):
        t.sendto(b"x")
    with pytest.raises(TypeError):
        t.sendto("text", (PEER, 53))  # type: ignore[arg-type]
    t.sendto(b"x", ("10.0.0.255", 67))  # broadcast without allow_broadcast
    t.sendto(b"x" * 65508, (PEER, 53))
    t.sendto(b"x", ("192.0.2.1", 53))  # no route
    assert [e.errno for e in u.errors] == [  # type: ignore[attr-defined]
        errno.EACCES, errno.EMSGSIZE, errno.ENETUNREACH]
    assert isinstance(u.errors[0], PermissionError)
    assert w.sent() == []
    c = w.open(remote_addr=(PEER, 53))
    assert c.transport is not None
    with pytest.raises(ValueError, match="Invalid address"):
        c.transport.sendto(b"x", (PEER, 54))
    c.transport.sendto(b"x", (PEER, 53))  # its own peer is fine


def test_largest_datagram_is_fragmented_and_empty_is_sent() -> None:
    w = Wire()
    u = w.open()
    assert u.transport is not None
    u.transport.sendto(b"z" * 65507, (PEER, 9))
    u.transport.sendto(b"", (PEER, 9))
    pkts = w.sent()
    assert len(pkts) > 40  # 64 KiB in 1500-byte fragments
    assert u.errors == []
    empty = pkts[-1]
    assert empty[UDP].len == 8 and bytes(empty[UDP].payload) == b""


def test_send_after_close_is_silently_dropped() -> None:
    w = Wire()
    u = w.open()
    assert u.transport is not None
    u.transport.close()
    assert u.transport.is_closing()
    u.transport.sendto(b"late", (PEER, 9))
    assert w.sent() == [] and u.errors == []
    w.net.run_until_idle()
    assert u.lost == [None]


# --- ICMP errors (delivered as TransportError, as the icmp plugin does) -------------------


def _error(w: Wire, r: Recorder, *, icmp_type: int | None, code: int | None, err: int,
           remote: tuple[str, int] = (PEER, 53)) -> None:
    assert r.transport is not None
    host, port = r.transport.get_extra_info("sockname")
    src = ip4(host) if host != "0.0.0.0" else ip4(US)
    quote = port.to_bytes(2, "big") + remote[1].to_bytes(2, "big") + b"\x00\x10\x00\x00"
    w.stack.transports[17].error(TransportError(
        errno=err, src=src, dst=ip4(remote[0]), protocol=17, quote=quote,
        reporter=ip4(remote[0]), icmp_type=icmp_type, icmp_code=code,
    ))


def test_icmp_errors_reach_connected_endpoint_only() -> None:
    w = Wire()
    conn = w.open(remote_addr=(PEER, 53))
    unconn = w.open()
    _error(w, conn, icmp_type=3, code=3, err=errno.ECONNREFUSED)
    _error(w, unconn, icmp_type=3, code=3, err=errno.ECONNREFUSED)
    assert len(conn.errors) == 1 and isinstance(conn.errors[0], ConnectionRefusedError)
    assert unconn.errors == []  # Linux without IP_RECVERR
    assert w.counters["icmp_errors_unconnected"] == 1


def test_soft_errors_reported_by_default_not_in_linux_mode() -> None:
    for soft, expected in ((True, [errno.EHOSTUNREACH, errno.EHOSTUNREACH, errno.ENOPROTOOPT]),
                           (False, [errno.ENOPROTOOPT])):
        w = Wire(settings={"udp.report_soft_errors": soft})
        conn = w.open(remote_addr=(PEER, 53))
        _error(w, conn, icmp_type=3, code=1, err=errno.EHOSTUNREACH)  # host unreachable
        _error(w, conn, icmp_type=11, code=0, err=errno.EHOSTUNREACH)  # time exceeded
        _error(w, conn, icmp_type=4, code=0, err=errno.EHOSTUNREACH)  # source quench: never
        _error(w, conn, icmp_type=3, code=2, err=errno.ENOPROTOOPT)  # protocol unreachable
        assert [e.errno for e in conn.errors] == expected  # type: ignore[attr-defined]


def test_error_for_other_peer_port_is_not_delivered() -> None:
    w = Wire()
    conn = w.open(remote_addr=(PEER, 53))
    _error(w, conn, icmp_type=3, code=3, err=errno.ECONNREFUSED, remote=(PEER, 54))
    assert conn.errors == []


# --- flow control ------------------------------------------------------------------------


def test_pause_holds_datagrams_and_resume_delivers_in_order() -> None:
    w = Wire(settings={"udp.rcvbuf": 11})
    r = w.open(local_addr=("0.0.0.0", 5000))
    t = r.transport
    assert t is not None
    t.pause_reading()  # type: ignore[attr-defined]
    assert not t.is_reading()  # type: ignore[attr-defined]
    for p in (b"one", b"two", b"three", b"four"):  # "four" no longer fits 11 bytes
        w.inject(IP(src=PEER, dst=US) / UDP(sport=1, dport=5000) / p)
    assert r.payloads == []
    rows = w.stack.report()["connections"]
    assert rows == [{"proto": "udp", "local": "0.0.0.0:5000", "remote": "*:*", "state": "-",
                     "send_q": 0, "recv_q": 11}]
    t.resume_reading()  # type: ignore[attr-defined]
    assert r.payloads == []  # delivered soon, not from inside resume_reading()
    w.net.run_until_idle()
    assert r.payloads == [b"one", b"two", b"three"]
    c = w.counters
    assert c["RcvbufErrors"] == 1 and c.drops["rcvbuf_full"] == 1
    w.inject(IP(src=PEER, dst=US) / UDP(sport=1, dport=5000) / b"five")
    assert r.payloads[-1] == b"five"


# --- reports, lifecycle, contract --------------------------------------------------------


def test_report_rows() -> None:
    w = Wire()
    w.open(local_addr=(US, 5000))
    c = w.open(remote_addr=(PEER, 53))
    rows = {r["local"]: r for r in w.stack.report()["connections"]}
    assert rows[f"{US}:5000"]["remote"] == "*:*"
    crow = rows[f"{US}:{port_of(c)}"]
    assert crow == {"proto": "udp", "local": f"{US}:{port_of(c)}", "remote": f"{PEER}:53",
                    "state": "-", "send_q": 0, "recv_q": 0}


def test_stack_stop_closes_endpoints() -> None:
    w = Wire()
    r = w.open(local_addr=("0.0.0.0", 5000))
    w.stack.stop()
    assert r.lost == [None]
    assert r.transport is not None and r.transport.is_closing()
    assert w.stack.report()["connections"] == []


def test_service_found_through_the_protocol_contract() -> None:
    w = Wire()
    service = w.stack.find(DatagramService)  # type: ignore[type-abstract]
    assert isinstance(service, UDPProtocol)
    assert w.stack.transports[17] is service


def test_a_third_party_datagram_service_serves_the_api() -> None:
    class FakeEndpoint:
        local_addr, local_port, remote_addr, remote_port = 0, 4242, None, None
        reading, recv_queue = True, 0

        def __init__(self) -> None:
            self.sent: list[tuple[bytes, int | None, int | None]] = []

        def sendto(self, data: bytes, dst: int | None = None, dport: int | None = None) -> None:
            self.sent.append((bytes(data), dst, dport))

        def pause_reading(self) -> None: ...
        def resume_reading(self) -> None: ...
        def close(self) -> None: ...

    class FakeUDP:
        name, protocol = "fake-udp", 17
        endpoint = FakeEndpoint()

        def receive(self, datagram: object) -> None: ...
        def error(self, error: object) -> None: ...

        def open_datagram_endpoint(self, handler: object, **kw: object) -> FakeEndpoint:
            self.handler = handler
            return self.endpoint

    class Plugin:
        from layers.hookspecs import hookimpl

        @hookimpl
        def layers_transport_protocols(self, stack: Stack) -> list[FakeUDP]:
            return [FakeUDP()]

    stack = Stack(["ipv4", Plugin()])
    t, p = open_datagram_endpoint(stack, Recorder)
    assert t.get_extra_info("sockname") == ("0.0.0.0", 4242)
    t.sendto(b"via fake", ("10.1.2.3", 99))
    fake = stack.transports[17]
    assert fake.endpoint.sent == [(b"via fake", ip4("10.1.2.3"), 99)]  # type: ignore[attr-defined]
    fake.handler.on_datagram(b"in", ip4("10.1.2.3"), 99)  # type: ignore[attr-defined]
    assert isinstance(p, Recorder) and p.datagrams == [(b"in", ("10.1.2.3", 99))]


def test_no_datagram_service_names_the_fix() -> None:
    stack = Stack(["ipv4"])
    with pytest.raises(CompositionError, match="add udp"):
        open_datagram_endpoint(stack, Recorder)


def test_protocol_exception_does_not_reach_the_stack(caplog: pytest.LogCaptureFixture) -> None:
    class Boom(Recorder):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            super().datagram_received(data, addr)
            raise RuntimeError("application bug")

    w = Wire()
    _, p = open_datagram_endpoint(w.stack, Boom, local_addr=("0.0.0.0", 5000))
    w.inject(IP(src=PEER, dst=US) / UDP(sport=1, dport=5000) / b"a")
    w.inject(IP(src=PEER, dst=US) / UDP(sport=1, dport=5000) / b"b")
    assert isinstance(p, Boom) and p.payloads == [b"a", b"b"]  # still open
    assert w.stack.counter("stack").drops["internal_error"] == 0
    assert "application bug" in caplog.text


# --- transmit checksum offload -----------------------------------------------------------


class OffloadLink(Link):
    """An IP-medium link that completes transport checksums (as a TAP with virtio does)."""

    def __init__(self, mtu: int = 1500) -> None:
        super().__init__()
        self.name = "off0"
        self.capabilities = LinkCapabilities(medium=Medium.IP, mtu=mtu, tx_checksum=True)
        self.frames: list[tuple[bytes, TxOffload | None]] = []

    def recv(self) -> tuple[bytes, int] | None:
        return None

    def send(self, frame: bytes | bytearray | memoryview, offload: TxOffload | None = None) -> None:
        self.frames.append((bytes(frame), offload))


def complete_like_a_device(frame: bytes, offload: TxOffload) -> bytes:
    """virtio NEEDS_CSUM: checksum from csum_start to the end (the field holds the pseudo
    header sum), store at csum_start + csum_offset; Linux sends a computed 0 as 0xFFFF."""
    out = bytearray(frame)
    c = checksum(out[offload.csum_start:]) or 0xFFFF
    at = offload.csum_start + offload.csum_offset
    out[at:at + 2] = c.to_bytes(2, "big")
    return bytes(out)


@pytest.mark.parametrize("size", [0, 1, 333, 1472])
def test_checksum_left_to_a_link_that_offers_it(size: int) -> None:
    stack = Stack(["ipv4", "udp"])
    link = OffloadLink()
    stack.add_interface(link, address=f"{US}/24")
    stack.start()
    t, _ = open_datagram_endpoint(stack, Recorder, remote_addr=(PEER, 53))
    payload = bytes((i * 7) & 0xFF for i in range(size))
    t.sendto(payload)
    ((frame, offload),) = link.frames
    assert offload is not None and offload.needs_csum
    assert (offload.csum_start, offload.csum_offset) == (20, 6)
    pseudo = fold(pseudo_header_sum(ip4(US), ip4(PEER), 17, 8 + size))
    assert int.from_bytes(frame[26:28], "big") == pseudo  # not yet the checksum
    pkt = IP(complete_like_a_device(frame, offload))
    assert bytes(pkt[UDP].payload) == payload
    want = IP(bytes(pkt))
    want[UDP].chksum = None
    assert pkt[UDP].chksum == IP(bytes(want))[UDP].chksum  # scapy agrees


def test_datagram_that_will_be_fragmented_is_checksummed_in_software() -> None:
    stack = Stack(["ipv4", "udp"])
    link = OffloadLink(mtu=576)
    stack.add_interface(link, address=f"{US}/24")
    stack.start()
    t, _ = open_datagram_endpoint(stack, Recorder, remote_addr=(PEER, 53))
    t.sendto(b"q" * 2000)
    assert len(link.frames) == 4 and all(o is None for _, o in link.frames)
    first = IP(link.frames[0][0])
    assert first[UDP].chksum == udp_checksum(ip4(US), ip4(PEER), bytes(
        build_udp(ip4(US), ip4(PEER), first[UDP].sport, 53, b"q" * 2000, with_checksum=False)))
