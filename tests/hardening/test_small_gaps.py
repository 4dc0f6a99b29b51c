"""Linux behaviours that were missing: ARP announces addresses added after start, IPv4 output
through a down interface fails with ENETDOWN, and our own broadcasts reach our own sockets."""

from __future__ import annotations

import errno

from layers.virtual import VirtualNetwork
from layers.wire.addr import ip4


class Handler:
    def __init__(self) -> None:
        self.got: list[tuple[bytes, int, int]] = []
        self.errors: list[OSError] = []

    def on_datagram(self, data: bytes, src: int, sport: int) -> None:
        self.got.append((data, src, sport))

    def on_error(self, exc: OSError) -> None:
        self.errors.append(exc)

    def on_close(self, exc: OSError | None) -> None:
        pass


def test_an_address_added_after_start_is_announced() -> None:
    net = VirtualNetwork()
    a, b = net.pair(["arp", "ipv4"])
    net.run_for(5.0)
    before = b.counters["arp"]["rx_gratuitous"]
    a.interfaces[0].add_address(ip4("10.0.0.7"), 24)
    net.run_for(5.0)
    # announced now and again (arp.gratuitous_count), as at start
    assert b.counters["arp"]["rx_gratuitous"] - before == a.protocol("arp").cfg.gratuitous_count
    assert a.counters["arp"]["tx_gratuitous"] >= 2 * a.protocol("arp").cfg.gratuitous_count


def test_sending_through_a_down_interface_is_enetdown() -> None:
    net = VirtualNetwork()
    a, b = net.pair(["arp", "ipv4", "tcp"])
    net.run_for(1.0)
    a.set_interface_up(a.interfaces[0].name, False)
    heard = b.interfaces[0].counters["rx_frames"]
    got: list[BaseException | None] = []
    a.protocol("tcp").connect(object(), ip4("10.0.0.2"), 80, on_connected=got.append)
    net.run_for(1.0)
    assert len(got) == 1 and isinstance(got[0], OSError) and got[0].errno == errno.ENETDOWN
    assert a.counters["ipv4"].drops["interface_down"] == 1
    assert b.interfaces[0].counters["rx_frames"] == heard  # nothing left
    # up again: ARP announces, connections go through
    a.set_interface_up(a.interfaces[0].name, True)
    assert a.interfaces[0].up
    net.run_for(1.0)
    assert b.counters["arp"]["rx_gratuitous"] >= 1


def test_our_own_broadcast_reaches_our_own_socket() -> None:
    net = VirtualNetwork()
    a, b = net.pair(["arp", "ipv4", "udp"])
    mine, theirs = Handler(), Handler()
    ep = a.protocol("udp").open_datagram_endpoint(mine, local_port=9999, allow_broadcast=True)
    b.protocol("udp").open_datagram_endpoint(theirs, local_port=9999)
    for dst in ("10.0.0.255", "255.255.255.255"):
        ep.sendto(b"hello " + dst.encode(), ip4(dst), 9999)
    net.run_for(0.1)
    assert [d for d, _, _ in mine.got] == [b"hello 10.0.0.255", b"hello 255.255.255.255"]
    assert all(src == ip4("10.0.0.1") and sport == 9999 for _, src, sport in mine.got)
    assert len(theirs.got) == 2
