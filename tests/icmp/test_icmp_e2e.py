"""Stack to stack over VirtualNetwork with the real ipv4 plugin: echo, fragmentation,
timeouts and errors travelling back to the transport that caused them."""

from __future__ import annotations

import errno
from typing import Any

import pytest
from icmp_support import RecordingTransport, RecordingTransportPlugin, icmp_of, ip_of

from layers.links.base import Medium
from layers.protocols import EchoReply
from layers.stack import Stack
from layers.virtual import VirtualNetwork
from layers.wire import ip4

A, B = "10.0.0.1", "10.0.0.2"


def pair(
    plugins_a: list[Any] | None = None,
    plugins_b: list[Any] | None = None,
    *,
    latency: float = 0.001,
    settings_b: dict[str, object] | None = None,
) -> tuple[VirtualNetwork, Stack, Stack]:
    net = VirtualNetwork()
    a = net.new_stack(plugins_a or ["ipv4", "icmp"], name="a")
    b = net.new_stack(plugins_b or ["ipv4", "icmp"], name="b", settings=settings_b)
    net.link(a, b, addresses=(f"{A}/24", f"{B}/24"), latency=latency, medium=Medium.IP)
    a.start()
    b.start()
    return net, a, b


@pytest.mark.parametrize("size", [56, 1400, 4000])
def test_ping_sizes_stack_to_stack(size: int) -> None:
    net, a, b = pair()
    got: list[EchoReply | OSError] = []
    payload = bytes((i * 13) & 0xFF for i in range(size))
    icmp_of(a).echo(ip4(B), ident=99, seq=1, payload=payload, callback=got.append)
    assert net.run_until_true(lambda: bool(got), timeout=2.0)
    (reply,) = got
    assert isinstance(reply, EchoReply)
    assert reply.src == ip4(B) and reply.seq == 1 and reply.size == 8 + size
    assert reply.ttl == 64
    assert reply.rtt == pytest.approx(0.002)  # two one-way latencies
    cb = b.counter("icmp")
    assert cb["in_echos"] == 1 and cb["out_echo_reps"] == 1
    ipb = b.counter("ipv4")
    if size + 28 > 1500:
        assert ipb["FragCreates"] >= 3 and ipb["ReasmOKs"] == 1  # fragmented both ways
    assert a.counter("icmp")["in_echo_reps"] == 1


def test_many_pings_keep_identity() -> None:
    net, a, _b = pair()
    got: list[EchoReply | OSError] = []
    for seq in range(50):
        icmp_of(a).echo(ip4(B), ident=7, seq=seq, payload=bytes([seq]) * seq,
                        callback=got.append)
    net.run_for(1.0)
    assert sorted(r.seq for r in got if isinstance(r, EchoReply)) == list(range(50))
    assert all(r.size == 8 + r.seq for r in got if isinstance(r, EchoReply))


def test_ping_timeout_when_the_peer_ignores_echo() -> None:
    net, a, _b = pair(settings_b={"icmp.echo_ignore_all": True})
    got: list[EchoReply | OSError] = []
    icmp_of(a).echo(ip4(B), ident=1, seq=1, payload=b"", callback=got.append, timeout=3.0)
    net.run_for(2.9)
    assert got == []
    net.run_for(0.2)
    (err,) = got
    assert isinstance(err, TimeoutError)


def test_protocol_unreachable_reaches_the_sending_transport() -> None:
    rec = RecordingTransport("proto99", 99)
    net, a, b = pair(["ipv4", "icmp", RecordingTransportPlugin(rec)])
    ip_of(a).send(ip4(B), 99, b"\x12\x34\x56\x78payload!")
    net.run_for(0.1)
    (e,) = rec.errors
    assert e.errno == errno.ENOPROTOOPT and e.icmp_type == 3 and e.icmp_code == 2
    assert e.src == ip4(A) and e.dst == ip4(B) and e.protocol == 99
    assert e.quote == b"\x12\x34\x56\x78payload!"  # all of it fits in 576 bytes
    assert e.reporter == ip4(B)
    assert b.counter("icmp")["out_dest_unreachs"] == 1


class _Handler:
    def __init__(self) -> None:
        self.errors: list[OSError] = []

    def on_datagram(self, data: bytes, src: int, sport: int) -> None:
        pass

    def on_error(self, exc: OSError) -> None:
        self.errors.append(exc)

    def on_close(self, exc: OSError | None) -> None:
        pass


def test_udp_port_unreachable_round_trip() -> None:
    """b's udp reports a closed port through b's icmp; a's icmp hands the error to a's udp,
    which fails the connected endpoint with ECONNREFUSED."""
    net, a, b = pair(["ipv4", "icmp", "udp"], ["ipv4", "icmp", "udp"])
    handler = _Handler()
    udp_a = a.protocol("udp")
    ep = udp_a.open_datagram_endpoint(handler, remote=(ip4(B), 9))
    ep.sendto(b"anyone there?")
    net.run_for(0.1)
    (exc,) = handler.errors
    assert isinstance(exc, ConnectionRefusedError)
    assert b.counter("icmp")["out_dest_unreachs"] == 1
    assert a.counter("icmp")["in_dest_unreachs"] == 1


def ethernet_pair() -> tuple[VirtualNetwork, Stack, Stack]:
    net = VirtualNetwork()
    a = net.new_stack(["arp", "ipv4", "icmp"], name="a")
    b = net.new_stack(["arp", "ipv4", "icmp"], name="b")
    net.link(a, b, addresses=(f"{A}/24", f"{B}/24"), latency=0.0005)
    a.start()
    b.start()
    return net, a, b


def test_4000_byte_ping_over_ethernet_with_arp() -> None:
    net, a, _b = ethernet_pair()
    got: list[EchoReply | OSError] = []
    payload = bytes(range(250)) * 16
    icmp_of(a).echo(ip4(B), ident=1, seq=1, payload=payload, callback=got.append)
    assert net.run_until_true(lambda: bool(got), timeout=2.0)
    (reply,) = got
    assert isinstance(reply, EchoReply) and reply.size == 4008


def test_arp_failure_fails_the_echo_with_ehostunreach() -> None:
    net, a, _b = ethernet_pair()
    got: list[EchoReply | OSError] = []
    icmp_of(a).echo(ip4("10.0.0.77"), ident=1, seq=1, payload=b"", callback=got.append,
                    timeout=60.0)
    assert net.run_until_true(lambda: bool(got), timeout=30.0)
    (err,) = got
    assert isinstance(err, OSError) and err.errno == errno.EHOSTUNREACH
    assert err.icmp_type is None  # type: ignore[attr-defined]  # a local error
    assert not icmp_of(a).pending
