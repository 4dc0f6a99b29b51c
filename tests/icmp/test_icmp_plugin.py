"""The icmp plugin at packet level, with the real ipv4 plugin, scapy on the far end of an
IP-medium memory link, and the virtual clock."""

from __future__ import annotations

import errno

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from icmp_support import (
    RecordingTransport,
    RecordingTransportPlugin,
    Wire,
    datagram,
    icmp_of,
    ip_of,
)
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, UDPerror, defragment, fragment

from layers.errors import ConfigurationError
from layers.links.base import RX_CSUM_VERIFIED
from layers.protocols import EchoReply, EchoService, ErrorReporter, TransportProtocol
from layers.wire import checksum, ip4, verify

US = "10.0.0.1"
PEER = "10.0.0.2"


def icmp_wire(**settings: object) -> Wire:
    return Wire(["ipv4", "icmp"], settings=dict(settings))


def udp_wire(**settings: object) -> tuple[Wire, RecordingTransport, RecordingTransport]:
    udp = RecordingTransport("fake-udp", 17)
    tcp = RecordingTransport("fake-tcp", 6)
    w = Wire(["ipv4", "icmp", RecordingTransportPlugin(udp, tcp)], settings=dict(settings))
    return w, udp, tcp


_WIRES: dict[str, Wire] = {}


def _shared_wire(kind: str) -> Wire:
    """One stack for all examples of a hypothesis test (a stack per example is slow)."""
    if kind not in _WIRES:
        _WIRES[kind] = udp_wire()[0] if kind == "fuzz" else icmp_wire()
    return _WIRES[kind]


def replies(w: Wire) -> list[IP]:
    return [IP(raw) for raw in w.take()]


# --- composition -----------------------------------------------------------------------


def test_one_object_is_transport_echo_service_and_reporter() -> None:
    w = icmp_wire()
    icmp = w.stack.transports[1]
    assert icmp.name == "icmp" and icmp.protocol == 1
    assert isinstance(icmp, TransportProtocol) and isinstance(icmp, EchoService)
    assert isinstance(icmp, ErrorReporter)
    assert w.stack.errors is icmp
    assert w.stack.find(EchoService) is icmp  # type: ignore[type-abstract]


def test_bad_settings_name_the_fix() -> None:
    with pytest.raises(ConfigurationError, match=r"icmp\.msgs_burst"):
        icmp_wire(**{"icmp.msgs_burst": 0})
    with pytest.raises(ConfigurationError, match=r"icmp\.ratemask"):
        icmp_wire(**{"icmp.ratemask": "lots"})
    with pytest.raises(ConfigurationError, match=r"error_max_length"):
        icmp_wire(**{"icmp.error_max_length": 20})


# --- echo replies ------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 56, 1000, 1472])
def test_echo_reply_scapy_oracle(size: int) -> None:
    w = icmp_wire()
    payload = bytes((i * 31 + 7) & 0xFF for i in range(size))
    w.inject(bytes(IP(src=PEER, dst=US, tos=0x10) / ICMP(type=8, id=0xABCD, seq=4242) / payload))
    (rep,) = replies(w)
    assert rep.src == US and rep.dst == PEER and rep.tos == 0x10
    icmp = rep[ICMP]
    assert icmp.type == 0 and icmp.code == 0
    assert icmp.id == 0xABCD and icmp.seq == 4242
    assert bytes(icmp.payload) == payload
    raw = bytes(icmp)
    assert verify(raw)
    # scapy's own checksum of the same message equals ours
    redo = ICMP(type=0, id=0xABCD, seq=4242) / payload
    assert ICMP(bytes(redo)).chksum == icmp.chksum
    c = w.stack.counter("icmp")
    assert c["in_echos"] == 1 and c["out_echo_reps"] == 1 and c["in_msgs"] == 1


@settings(max_examples=150, deadline=None)
@given(
    code=st.integers(0, 255),
    ident=st.integers(0, 0xFFFF),
    seq=st.integers(0, 0xFFFF),
    payload=st.binary(max_size=64),
)
def test_incremental_reply_checksum_is_always_right(
    code: int, ident: int, seq: int, payload: bytes
) -> None:
    w = _shared_wire("echo")
    w.inject(bytes(IP(src=PEER, dst=US) / ICMP(type=8, code=code, id=ident, seq=seq) / payload))
    (rep,) = replies(w)
    raw = bytes(rep[ICMP])
    assert verify(raw)
    assert raw[0] == 0 and raw[1] == code and raw[4:] == bytes(
        ICMP(type=8, code=code, id=ident, seq=seq) / payload
    )[4:]


def test_4000_byte_ping_arrives_fragmented_and_reply_is_fragmented() -> None:
    w = icmp_wire()
    payload = bytes(range(256)) * 15 + bytes(range(160))  # 4000 bytes
    req = IP(src=PEER, dst=US, id=777) / ICMP(type=8, id=9, seq=1) / payload
    frags = fragment(req, fragsize=1480)
    assert len(frags) == 3
    for f in frags:
        w.inject(bytes(f))
    out = replies(w)
    assert len(out) == 3 and all(p.flags.MF or p.frag for p in out)
    assert all(len(p) <= 1500 for p in out)
    (whole,) = defragment(out)
    whole = IP(bytes(whole))
    assert whole.src == US and whole[ICMP].type == 0 and whole[ICMP].id == 9
    assert bytes(whole[ICMP].payload) == payload
    assert verify(bytes(whole[ICMP]))


@pytest.mark.parametrize("dst", ["10.0.0.255", "255.255.255.255"])
def test_broadcast_echo_is_ignored_by_default(dst: str) -> None:
    w = icmp_wire()
    w.inject(bytes(IP(src=PEER, dst=dst) / ICMP(type=8, id=1, seq=1)))
    assert w.take() == []
    assert w.stack.counter("icmp").drops["broadcast_echo"] == 1


def test_broadcast_echo_answered_from_our_address_when_enabled() -> None:
    w = icmp_wire(**{"icmp.echo_ignore_broadcasts": False})
    w.inject(bytes(IP(src=PEER, dst="10.0.0.255") / ICMP(type=8, id=1, seq=2) / b"hi"))
    (rep,) = replies(w)
    assert rep.src == US and rep[ICMP].type == 0 and bytes(rep[ICMP].payload) == b"hi"


def test_echo_ignore_all() -> None:
    w = icmp_wire(**{"icmp.echo_ignore_all": "true"})
    w.inject(bytes(IP(src=PEER, dst=US) / ICMP(type=8)))
    assert w.take() == [] and w.stack.counter("icmp").drops["echo_ignored"] == 1


def test_reply_comes_from_the_address_the_request_was_sent_to() -> None:
    w = icmp_wire()
    w.iface.add_address(ip4("10.0.0.9"), 24)
    w.inject(bytes(IP(src=PEER, dst="10.0.0.9") / ICMP(type=8, id=3, seq=3)))
    (rep,) = replies(w)
    assert rep.src == "10.0.0.9"


# --- malformed input ---------------------------------------------------------------------


def test_bad_checksum_and_truncated_are_dropped_and_counted() -> None:
    w = icmp_wire()
    raw = bytearray(bytes(IP(src=PEER, dst=US) / ICMP(type=8, id=1, seq=1) / b"abcd"))
    raw[-1] ^= 0xFF  # breaks the ICMP checksum, not the IP one
    w.inject(bytes(raw))
    w.inject(bytes(IP(src=PEER, dst=US, proto=1) / b"\x08\x00\x00"))
    assert w.take() == []
    drops = w.stack.counter("icmp").drops
    assert drops["bad_checksum"] == 1 and drops["truncated"] == 1
    assert w.stack.counter("icmp")["in_msgs"] == 0


@pytest.mark.parametrize("size", [0, 1, 57, 505, 1001])
def test_checksum_is_checked_at_every_size_odd_ones_included(size: int) -> None:
    w = icmp_wire()
    good = bytes(IP(src=PEER, dst=US) / ICMP(type=8, id=1, seq=1) / (bytes(range(256)) * 4)[:size])
    w.inject(good)
    (rep,) = replies(w)
    assert rep[ICMP].type == 0 and len(rep[ICMP].payload) == size
    bad = bytearray(good)
    bad[-1 if size else -3] ^= 0x01
    w.inject(bytes(bad))
    assert w.take() == []
    zero = IP(src=PEER, dst=US, proto=1) / bytes(8 + size)  # sums to zero: not all ones
    w.inject(bytes(zero))
    assert w.take() == []
    assert w.stack.counter("icmp").drops["bad_checksum"] == 2


def test_link_verified_checksum_is_honoured() -> None:
    w = icmp_wire()
    raw = bytearray(bytes(IP(src=PEER, dst=US) / ICMP(type=8, id=1, seq=1, chksum=0x1234)))
    icmp = w.stack.transports[1]
    icmp.receive(datagram(w, bytes(raw)))
    assert w.take() == []
    icmp.receive(datagram(w, bytes(raw), flags=RX_CSUM_VERIFIED))
    (rep,) = replies(w)
    assert rep[ICMP].type == 0


def test_unknown_types_are_counted() -> None:
    w = icmp_wire()
    w.inject(bytes(IP(src=PEER, dst=US) / ICMP(type=42, code=0) / b"xxxx"))
    w.inject(bytes(IP(src=PEER, dst=US) / ICMP(type=4) / bytes(IP(src=US, dst=PEER) / UDP())))
    c = w.stack.counter("icmp")
    assert c["in_type42"] == 1 and c.drops["unsupported_type"] == 1
    assert c["in_src_quenchs"] == 1  # counted, otherwise ignored
    assert w.take() == []


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200), st.integers(0, 3))
def test_fuzz_receive_never_raises(data: bytes, flags: int) -> None:
    w = _shared_wire("fuzz")
    icmp = w.stack.transports[1]
    pkt = bytes(IP(src=PEER, dst=US, proto=1) / data)
    icmp.receive(datagram(w, pkt, flags=flags))
    # and with a valid checksum, so the parsers past the checksum run too
    if len(data) >= 4:
        fixed = bytearray(data)
        fixed[2:4] = b"\x00\x00"
        fixed[2:4] = checksum(fixed).to_bytes(2, "big")
        icmp.receive(datagram(w, bytes(IP(src=PEER, dst=US, proto=1) / bytes(fixed))))
        w.inject(bytes(IP(src=PEER, dst=US, proto=1) / bytes(fixed)))
    w.take()
    assert w.stack.counter("stack").drops["internal_error"] == 0


# --- our echo requests -------------------------------------------------------------------


def test_echo_request_and_reply_with_scapy_peer() -> None:
    w = icmp_wire()
    got: list[EchoReply | OSError] = []
    icmp_of(w).echo(
        ip4(PEER), ident=0x4321, seq=7, payload=b"ping!", callback=got.append, ttl=17
    )
    (req,) = replies(w)
    assert req.src == US and req.dst == PEER and req.ttl == 17
    assert req[ICMP].type == 8 and req[ICMP].id == 0x4321 and req[ICMP].seq == 7
    assert bytes(req[ICMP].payload) == b"ping!"
    assert verify(bytes(req[ICMP]))
    w.net.run_for(0.25)
    # a reply from someone else, or with another seq, does not match
    w.inject(bytes(IP(src="10.0.0.3", dst=US) / ICMP(type=0, id=0x4321, seq=7) / b"ping!"))
    w.inject(bytes(IP(src=PEER, dst=US) / ICMP(type=0, id=0x4321, seq=8) / b"ping!"))
    assert got == []
    assert w.stack.counter("icmp").drops["unmatched_echo_reply"] == 2
    w.inject(bytes(IP(src=PEER, dst=US, ttl=61) / ICMP(type=0, id=0x4321, seq=7) / b"ping!"))
    assert len(got) == 1
    reply = got[0]
    assert isinstance(reply, EchoReply)
    assert reply.src == ip4(PEER) and reply.seq == 7 and reply.ttl == 61 and reply.size == 13
    assert reply.rtt == pytest.approx(0.25)
    w.net.run_for(5.0)  # the timeout was cancelled: no second callback
    assert len(got) == 1 and not icmp_of(w).pending


def test_echo_timeout_on_the_virtual_clock() -> None:
    w = icmp_wire()
    got: list[EchoReply | OSError] = []
    icmp_of(w).echo(
        ip4(PEER), ident=1, seq=1, payload=b"", callback=got.append, timeout=2.0
    )
    w.net.run_for(1.999)
    assert got == []
    w.net.run_for(0.002)
    (err,) = got
    assert isinstance(err, TimeoutError) and err.errno == errno.ETIMEDOUT
    # a late reply matches nothing
    w.inject(bytes(IP(src=PEER, dst=US) / ICMP(type=0, id=1, seq=1)))
    assert len(got) == 1


@pytest.mark.parametrize(
    ("icmp_type", "code", "expected", "cls"),
    [
        (3, 1, errno.EHOSTUNREACH, OSError),
        (3, 0, errno.ENETUNREACH, OSError),
        (3, 3, errno.ECONNREFUSED, ConnectionRefusedError),
        (3, 13, errno.EHOSTUNREACH, OSError),
        (11, 0, errno.EHOSTUNREACH, OSError),
        (12, 0, errno.EPROTO, OSError),
    ],
)
def test_icmp_error_quoting_our_request_fails_the_echo(
    icmp_type: int, code: int, expected: int, cls: type[OSError]
) -> None:
    w = icmp_wire()
    got: list[EchoReply | OSError] = []
    icmp_of(w).echo(
        ip4("192.0.2.5"), ident=55, seq=2, payload=b"x" * 20, callback=got.append
    )
    w.stack.add_route("192.0.2.0/24", gateway=PEER)
    got.clear()
    icmp_of(w).echo(
        ip4("192.0.2.5"), ident=56, seq=2, payload=b"x" * 20, callback=got.append
    )
    (req,) = [p for p in replies(w) if p[ICMP].id == 56]
    err_pkt = IP(src=PEER, dst=US) / ICMP(type=icmp_type, code=code) / bytes(req)[:28]
    w.inject(bytes(err_pkt))
    (err,) = got
    assert type(err) is cls and err.errno == expected
    assert err.reporter == ip4(PEER)  # type: ignore[attr-defined]
    assert err.icmp_type == icmp_type and err.icmp_code == code  # type: ignore[attr-defined]
    assert not icmp_of(w).pending


def test_no_route_fails_the_echo_with_enetunreach() -> None:
    w = icmp_wire()
    got: list[EchoReply | OSError] = []
    icmp_of(w).echo(ip4("192.0.2.5"), ident=1, seq=1, payload=b"", callback=got.append)
    (err,) = got
    assert isinstance(err, OSError) and err.errno == errno.ENETUNREACH
    assert err.icmp_type is None  # type: ignore[attr-defined]
    assert not icmp_of(w).pending


def test_echo_argument_checks() -> None:
    icmp = icmp_of(icmp_wire())
    with pytest.raises(ConfigurationError):
        icmp.echo(ip4(PEER), ident=70000, seq=1, payload=b"", callback=print)
    with pytest.raises(ConfigurationError):
        icmp.echo(ip4(PEER), ident=1, seq=1, payload=b"", callback=print, timeout=0)
    icmp.echo(ip4(PEER), ident=1, seq=1, payload=b"", callback=print)
    with pytest.raises(ConfigurationError, match="pending"):
        icmp.echo(ip4(PEER), ident=1, seq=1, payload=b"", callback=print)


def test_stopping_the_stack_fails_pending_echoes() -> None:
    w = icmp_wire()
    got: list[EchoReply | OSError] = []
    icmp_of(w).echo(ip4(PEER), ident=1, seq=1, payload=b"", callback=got.append)
    w.stack.stop()
    (err,) = got
    assert isinstance(err, OSError) and err.errno == errno.ENETDOWN


# --- ICMP errors received ----------------------------------------------------------------


def test_dest_unreachable_goes_to_the_quoted_transport() -> None:
    w, udp, tcp = udp_wire()
    sent = bytes(IP(src=US, dst="192.0.2.7", id=5) / UDP(sport=5353, dport=53) / b"query")
    w.inject(bytes(IP(src=PEER, dst=US) / ICMP(type=3, code=3) / sent[:28]))
    assert tcp.errors == []
    (e,) = udp.errors
    assert e.errno == errno.ECONNREFUSED and e.protocol == 17
    assert e.src == ip4(US) and e.dst == ip4("192.0.2.7")
    assert e.quote == sent[20:28]
    assert e.reporter == ip4(PEER) and e.icmp_type == 3 and e.icmp_code == 3 and not e.local
    # a longer quote (Linux sends up to 576 bytes) is passed on whole
    sent = bytes(IP(src=US, dst="192.0.2.7") / TCP(sport=40000, dport=80, flags="S"))
    w.inject(bytes(IP(src=PEER, dst=US) / ICMP(type=11, code=0) / sent))
    (e,) = tcp.errors
    assert e.errno == errno.EHOSTUNREACH and e.quote == sent[20:] and e.icmp_type == 11
    assert w.stack.counter("icmp")["in_time_excds"] == 1


def test_frag_needed_passes_the_mtu_and_updates_the_path_mtu() -> None:
    w, udp, _ = udp_wire()
    dst = "192.0.2.7"
    w.stack.add_route("192.0.2.0/24", gateway=PEER)
    assert ip_of(w).path_mtu(ip4(dst)) == 1500
    sent = bytes(IP(src=US, dst=dst, flags="DF") / UDP(sport=1, dport=2) / bytes(1400))
    w.inject(bytes(IP(src=PEER, dst=US) / ICMP(type=3, code=4, nexthopmtu=1280) / sent[:28]))
    (e,) = udp.errors
    assert e.errno == errno.EMSGSIZE and e.mtu == 1280
    assert ip_of(w).path_mtu(ip4(dst)) == 1280
    # a router from before RFC 1191 says 0: the next plateau below the quoted length
    w.inject(bytes(IP(src=PEER, dst=US) / ICMP(type=3, code=4, nexthopmtu=0) / sent[:28]))
    assert udp.errors[1].mtu == 1006  # quoted total length 1428 -> plateau 1006


@pytest.mark.parametrize(
    ("quote", "reason"),
    [
        (b"\x45" + bytes(10), "quote_truncated"),
        (b"\x65" + bytes(27), "quote_bad_version"),
        (bytes(IP(src=US, dst=PEER, proto=99) / bytes(8)), "quote_unknown_protocol"),
    ],
)
def test_unusable_errors_are_dropped_and_counted(quote: bytes, reason: str) -> None:
    w, udp, _ = udp_wire()
    w.inject(bytes(IP(src=PEER, dst=US) / ICMP(type=3, code=1) / quote))
    assert udp.errors == []
    assert w.stack.counter("icmp").drops[reason] == 1


# --- sending errors ----------------------------------------------------------------------


def received_udp(w: Wire, udp: RecordingTransport, pkt: IP):  # type: ignore[no-untyped-def]
    w.inject(bytes(pkt))
    return udp.received[-1]


def test_port_unreachable_quotes_header_and_payload() -> None:
    w, udp, _ = udp_wire()
    pkt = IP(src=PEER, dst=US, id=321, tos=0x08) / UDP(sport=1234, dport=9) / b"hello world"
    dg = received_udp(w, udp, pkt)
    w.stack.errors.destination_unreachable(dg, 3)
    (err,) = replies(w)
    assert err.src == US and err.dst == PEER and err.tos == 0xC8
    assert err[ICMP].type == 3 and err[ICMP].code == 3
    assert verify(bytes(err[ICMP]))
    # the whole offending datagram fits in 576 bytes: all of it is quoted
    assert bytes(err)[28:] == bytes(pkt)
    assert err[IPerror].id == 321 and err[UDPerror].dport == 9
    c = w.stack.counter("icmp")
    assert c["out_dest_unreachs"] == 1 and c["out_msgs"] == 1


def test_quote_is_cut_at_576_bytes() -> None:
    w, udp, _ = udp_wire()
    pkt = IP(src=PEER, dst=US) / UDP(sport=1234, dport=9) / (bytes(range(256)) * 4)
    dg = received_udp(w, udp, pkt)
    w.stack.errors.destination_unreachable(dg, 3)
    (err,) = replies(w)
    assert len(err) == 576
    assert bytes(err)[28:] == bytes(pkt)[:548]


def test_smaller_error_max_length_still_quotes_header_and_8_bytes() -> None:
    w, udp, _ = udp_wire(**{"icmp.error_max_length": 68})
    pkt = IP(src=PEER, dst=US) / UDP(sport=1234, dport=9) / bytes(100)
    w.stack.errors.time_exceeded(received_udp(w, udp, pkt), 0)
    (err,) = replies(w)
    assert len(err) == 68 and bytes(err)[28:] == bytes(pkt)[:40]
    assert err[ICMP].type == 11
    # a 60-byte header leaves no room under 68 bytes: the header and 8 bytes still go
    pkt = IP(src=PEER, dst=US, options=b"\x01" * 40) / UDP(sport=1234, dport=9) / bytes(100)
    w.net.run_for(10)  # past the per-destination rate limit
    w.stack.errors.time_exceeded(received_udp(w, udp, pkt), 0)
    (err,) = replies(w)
    assert bytes(err)[28:] == bytes(pkt)[:68]


def test_parameter_problem_pointer() -> None:
    w, udp, _ = udp_wire()
    dg = received_udp(w, udp, IP(src=PEER, dst=US) / UDP() / b"z")
    w.stack.errors.parameter_problem(dg, 9)
    (err,) = replies(w)
    assert err[ICMP].type == 12 and err[ICMP].ptr == 9


def test_protocol_unreachable_through_ipv4() -> None:
    w = icmp_wire()
    pkt = IP(src=PEER, dst=US, proto=99, id=4444) / (b"\x01\x02\x03\x04" * 10)
    w.inject(bytes(pkt))
    (err,) = replies(w)
    assert err[ICMP].type == 3 and err[ICMP].code == 2 and err.src == US
    assert bytes(err)[28:] == bytes(pkt)
    assert err[IPerror].proto == 99 and err[IPerror].id == 4444


def test_no_error_about_an_icmp_error() -> None:
    w = icmp_wire()
    for t in (3, 11, 12, 5, 4, 200):
        inner = bytes(IP(src=US, dst=PEER) / UDP())
        raw = bytes(IP(src=PEER, dst=US) / ICMP(type=t, code=0) / inner)
        w.stack.errors.destination_unreachable(datagram(w, raw), 2)
    assert w.take() == []
    assert w.stack.counter("icmp").drops["error_about_error"] == 6
    # but an echo request is a query: an error about it is allowed
    raw = bytes(IP(src=PEER, dst=US) / ICMP(type=8))
    w.stack.errors.destination_unreachable(datagram(w, raw), 2)
    assert len(w.take()) == 1


@pytest.mark.parametrize("dst", ["10.0.0.255", "255.255.255.255", "224.0.0.1"])
def test_no_error_about_a_broadcast_or_multicast(dst: str) -> None:
    w = icmp_wire()
    raw = bytes(IP(src=PEER, dst=dst) / UDP(dport=9))
    w.stack.errors.destination_unreachable(datagram(w, raw, broadcast=False), 3)
    assert w.take() == []
    assert w.stack.counter("icmp").drops["error_to_broadcast"] == 1


def test_no_error_about_a_link_broadcast_or_to_a_broadcast_source() -> None:
    from layers.links.base import RX_BROADCAST

    w = icmp_wire()
    raw = bytes(IP(src=PEER, dst=US) / UDP(dport=9))
    w.stack.errors.destination_unreachable(datagram(w, raw, flags=RX_BROADCAST), 3)
    for src in ("0.0.0.0", "10.0.0.255", "127.0.0.1", "224.1.1.1", "240.0.0.1"):
        raw = bytes(IP(src=src, dst=US) / UDP(dport=9))
        w.stack.errors.destination_unreachable(datagram(w, raw), 3)
    assert w.take() == []
    drops = w.stack.counter("icmp").drops
    assert drops["error_to_broadcast"] == 1 and drops["error_to_bad_source"] == 5


def test_no_error_about_a_non_initial_fragment() -> None:
    w = icmp_wire()
    later = bytes(IP(src=PEER, dst=US, proto=17, frag=185, flags="MF") / bytes(64))
    w.stack.errors.destination_unreachable(datagram(w, later), 3)
    assert w.take() == []
    assert w.stack.counter("icmp").drops["error_about_fragment"] == 1
    first = bytes(IP(src=PEER, dst=US, proto=17, frag=0, flags="MF") / bytes(64))
    w.stack.errors.destination_unreachable(datagram(w, first), 3)
    assert len(w.take()) == 1


def test_reporter_argument_checks() -> None:
    w = icmp_wire()
    dg = datagram(w, bytes(IP(src=PEER, dst=US) / UDP()))
    with pytest.raises(ConfigurationError):
        w.stack.errors.destination_unreachable(dg, 256)
    with pytest.raises(ConfigurationError):
        w.stack.errors.time_exceeded(dg, 2)
    with pytest.raises(ConfigurationError):
        w.stack.errors.parameter_problem(dg, 300)


# --- rate limiting -----------------------------------------------------------------------


def _unreach(w: Wire, src: str = PEER, n: int = 1) -> int:
    raw = bytes(IP(src=src, dst=US) / UDP(dport=9) / b"x")
    for _ in range(n):
        w.stack.errors.destination_unreachable(datagram(w, raw), 3)
    return len(w.take())


def test_per_destination_limit_like_linux() -> None:
    w = icmp_wire()
    assert _unreach(w, n=20) == 6  # a burst of 6 (XRLIM_BURST_FACTOR) per destination
    drops = w.stack.counter("icmp").drops
    assert drops["rate_limited_host"] == 14
    w.net.run_for(0.5)
    assert _unreach(w) == 0
    w.net.run_for(0.5)
    assert _unreach(w, n=3) == 1  # one token a second (icmp.ratelimit = 1.0)
    assert _unreach(w, src="10.0.0.3", n=3) == 3  # another destination has its own bucket
    w.net.run_for(60)
    assert _unreach(w, n=10) == 6  # refilled, capped at the burst


def test_global_limit_like_linux() -> None:
    w = icmp_wire(**{"icmp.msgs_per_sec": 100, "icmp.msgs_burst": 10})
    sent = sum(_unreach(w, src=f"10.0.0.{i}") for i in range(2, 30))
    assert sent == 10
    assert w.stack.counter("icmp").drops["rate_limited_global"] == 18
    w.net.run_for(0.05)  # 100/s: five more tokens
    assert sum(_unreach(w, src=f"10.0.0.{i}") for i in range(30, 40)) == 5


def test_rate_limits_can_be_disabled_and_echo_replies_are_not_limited() -> None:
    w = icmp_wire(**{"icmp.ratelimit": 0, "icmp.msgs_per_sec": 0})
    assert _unreach(w, n=200) == 200
    w = icmp_wire()
    for i in range(100):
        w.inject(bytes(IP(src=PEER, dst=US) / ICMP(type=8, id=1, seq=i)))
    assert len(w.take()) == 100  # type 0 is not in the default ratemask 0x1818
    w = icmp_wire(**{"icmp.ratemask": "0x1819"})
    for i in range(10):
        w.inject(bytes(IP(src=PEER, dst=US) / ICMP(type=8, id=1, seq=i)))
    assert len(w.take()) == 6  # bit 0 set: echo replies are limited like errors


def test_errors_to_ourselves_are_not_limited() -> None:
    w, udp, _ = udp_wire()
    raw = bytes(IP(src=US, dst=US) / UDP(sport=7, dport=9) / b"x")
    for _ in range(20):
        w.stack.errors.destination_unreachable(datagram(w, raw), 3)
    w.net.run_for(0.0)  # looped back by ipv4 to our own icmp, then to the transport
    assert len(udp.errors) == 20
    assert all(e.errno == errno.ECONNREFUSED and e.reporter == ip4(US) for e in udp.errors)
