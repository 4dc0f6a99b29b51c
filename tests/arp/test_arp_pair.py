"""Two stacks with the arp plugin on a memory link, on the virtual clock."""

from __future__ import annotations

from typing import Any

import pytest
from arp_support import Recorder, pair, recorder
from scapy.layers.l2 import ARP, Ether

from layers import CompositionError, ConfigurationError
from layers.links import MemoryLink
from layers.stack import Stack
from layers.virtual import VirtualNetwork
from layers.wire import ETH_P_IP, ip4, mac_str


def _entry(stack: Stack, address: str) -> dict[str, Any] | None:
    for row in stack.report()["arp"]:
        if row["address"] == address:
            return dict(row)
    return None


def test_request_and_reply_both_ways() -> None:
    net = VirtualNetwork()
    a, b = pair(net, {"arp.gratuitous_count": 0})
    ia, ib = a.interfaces[0], b.interfaces[0]
    assert a.report()["arp"] == [] and b.report()["arp"] == []

    ia.output(ip4("10.0.0.2"), ETH_P_IP, b"a->b")
    net.run_for(0.1)
    assert recorder(b).got == [b"a->b"]
    ca, cb = a.counters["arp"], b.counters["arp"]
    assert (ca["tx_requests"], cb["rx_requests"]) == (1, 1)
    assert (cb["tx_replies"], ca["rx_replies"]) == (1, 1)
    # a asked and got a unicast answer: reachable. b learned a from a's request: stale.
    ea, eb = _entry(a, "10.0.0.2"), _entry(b, "10.0.0.1")
    assert ea is not None and eb is not None
    assert (ea["mac"], ea["state"]) == (mac_str(ib.mac or b""), "reachable")
    assert ea["interface"] == "mem0"
    assert (eb["mac"], eb["state"]) == (mac_str(ia.mac or b""), "stale")

    # the other way needs no request: b knows a already
    ib.output(ip4("10.0.0.1"), ETH_P_IP, b"b->a")
    net.run_for(0.1)
    assert recorder(a).got == [b"b->a"]
    assert cb["tx_requests"] == 0
    # ...and a answered packets need no request either
    ia.output(ip4("10.0.0.2"), ETH_P_IP, b"again")
    net.run_for(0.1)
    assert recorder(b).got == [b"a->b", b"again"]
    assert ca["tx_requests"] == 1


def test_gratuitous_announcements_learned_by_the_peer() -> None:
    net = VirtualNetwork()
    a, b = pair(net, {"arp.gratuitous_count": 3, "arp.gratuitous_interval": 1.5})
    net.run_for(0.01)
    ea = _entry(b, "10.0.0.1")
    assert ea is not None and ea["mac"] == mac_str(a.interfaces[0].mac or b"")
    assert ea["state"] == "stale"  # an announcement is not a confirmation
    net.run_for(5)
    assert a.counters["arp"]["tx_gratuitous"] == 3
    assert b.counters["arp"]["rx_gratuitous"] == 3
    # b can send to a without asking
    b.interfaces[0].output(ip4("10.0.0.1"), ETH_P_IP, b"x")
    net.run_for(0.01)
    assert recorder(a).got == [b"x"]
    assert b.counters["arp"]["tx_requests"] == 0


def test_announcements_not_learned_when_disabled() -> None:
    net = VirtualNetwork()
    _, b = pair(net, {"arp.accept_gratuitous": False})
    net.run_for(5)
    assert b.counters["arp"]["rx_gratuitous"] == 2
    assert _entry(b, "10.0.0.1") is None


def test_queued_packets_flushed_in_order_on_reply() -> None:
    net = VirtualNetwork()
    a, b = pair(net, {"arp.gratuitous_count": 0}, latency=0.05)
    ia = a.interfaces[0]
    for i in range(3):
        ia.output(ip4("10.0.0.2"), ETH_P_IP, b"pkt%d" % i)
    e = _entry(a, "10.0.0.2")
    assert e is not None and (e["state"], e["queued"]) == ("incomplete", 3)
    assert recorder(b).got == []
    net.run_for(0.2)
    assert recorder(b).got == [b"pkt0", b"pkt1", b"pkt2"]
    assert a.counters["arp"]["tx_requests"] == 1  # one request for three packets


def test_queue_bound_drops_the_oldest() -> None:
    net = VirtualNetwork()
    a, b = pair(net, {"arp.gratuitous_count": 0, "arp.queue_len": 3}, latency=0.05)
    for i in range(5):
        a.interfaces[0].output(ip4("10.0.0.2"), ETH_P_IP, b"pkt%d" % i)
    net.run_for(0.2)
    assert recorder(b).got == [b"pkt2", b"pkt3", b"pkt4"]
    c = a.counters["arp"]
    assert c["queue_overflows"] == 2 and c.drops["queue_overflow"] == 2


def test_stale_entry_reconfirmed_by_unicast_probe() -> None:
    net = VirtualNetwork()
    settings = {"arp.gratuitous_count": 0, "arp.reachable_time": 10.0,
                "arp.delay_first_probe": 2.0, "arp.timeout": 0.5}
    a, b = pair(net, settings)
    ia = a.interfaces[0]
    ia.output(ip4("10.0.0.2"), ETH_P_IP, b"1")
    net.run_for(1)
    assert _entry(a, "10.0.0.2")["state"] == "reachable"  # type: ignore[index]
    net.run_for(10)
    assert _entry(a, "10.0.0.2")["state"] == "stale"  # type: ignore[index]
    ia.output(ip4("10.0.0.2"), ETH_P_IP, b"2")  # still sent at once, with the cached MAC
    net.run_for(0.01)
    assert recorder(b).got == [b"1", b"2"]
    assert _entry(a, "10.0.0.2")["state"] == "delay"  # type: ignore[index]
    requests_before = b.counters["arp"]["rx_requests"]
    net.run_for(2.1)  # delay_first_probe passes: one unicast probe, b answers
    assert b.counters["arp"]["rx_requests"] == requests_before + 1
    assert _entry(a, "10.0.0.2")["state"] == "reachable"  # type: ignore[index]


def test_report_rows_count_down() -> None:
    net = VirtualNetwork()
    a, _ = pair(net, {"arp.gratuitous_count": 0, "arp.reachable_time": 20.0})
    a.interfaces[0].output(ip4("10.0.0.2"), ETH_P_IP, b"1")
    net.run_for(5)
    (row,) = a.report()["arp"]
    assert set(row) >= {"address", "mac", "interface", "state", "expires"}
    assert row["expires"] == pytest.approx(15.0, abs=0.01)


def test_scapy_decodes_the_exchange_on_the_wire() -> None:
    """Capture both directions of one resolution and decode them with scapy."""
    net = VirtualNetwork()
    a = net.new_stack(["arp"], settings={"arp.gratuitous_count": 0})
    b = net.new_stack(["arp"], settings={"arp.gratuitous_count": 0})
    seen: list[bytes] = []

    class Tap(MemoryLink):
        def send(self, frame: Any, offload: Any = None) -> None:
            seen.append(bytes(frame))
            super().send(frame, offload)

    la, lb = Tap("t0"), Tap("t1")
    la.peer, lb.peer = lb, la
    ia = a.add_interface(la, address="10.0.0.1/24")
    ib = b.add_interface(lb, address="10.0.0.2/24")
    a.start()
    b.start()
    ia.output(ip4("10.0.0.2"), ETH_P_IP, b"x")  # arp alone: no protocol on 0x0800 at b
    net.run_for(0.1)
    req, rep = Ether(seen[0]), Ether(seen[1])
    assert req.dst == "ff:ff:ff:ff:ff:ff" and req.type == 0x0806
    assert (req[ARP].op, req[ARP].psrc, req[ARP].pdst) == (1, "10.0.0.1", "10.0.0.2")
    assert req[ARP].hwsrc == mac_str(ia.mac or b"")
    assert rep.dst == mac_str(ia.mac or b"") and rep.src == mac_str(ib.mac or b"")
    assert (rep[ARP].op, rep[ARP].psrc, rep[ARP].pdst) == (2, "10.0.0.2", "10.0.0.1")
    assert (rep[ARP].hwsrc, rep[ARP].hwdst) == (mac_str(ib.mac or b""), mac_str(ia.mac or b""))
    assert Ether(seen[2]).type == ETH_P_IP and bytes(Ether(seen[2]).payload)[:1] == b"x"


def test_settings_validated() -> None:
    net = VirtualNetwork()
    with pytest.raises(ConfigurationError, match=r"arp\.timout.*arp\.timeout"):
        net.new_stack(["arp"], settings={"arp.timout": 1.0})
    with pytest.raises(ConfigurationError, match=r"arp\.retries"):
        net.new_stack(["arp"], settings={"arp.retries": 0})
    with pytest.raises(ConfigurationError, match=r"arp\.reachable_time"):
        net.new_stack(["arp"], settings={"arp.reachable_time": "soon"})


def test_recorder_needs_a_resolver_without_arp() -> None:
    """The composition check the Recorder relies on: without arp, an Ethernet link is refused."""
    from arp_support import RecorderPlugin

    net = VirtualNetwork()
    s = net.new_stack([RecorderPlugin()])
    with pytest.raises(CompositionError, match="arp"):
        s.add_interface(MemoryLink("m0"), address="10.0.0.1/24")
    assert isinstance(s.protocol("recorder"), Recorder)


def test_layers_arp_table_renders_the_report() -> None:
    from layers.cli.report import format_arp

    net = VirtualNetwork()
    a, b = pair(net, {"arp.gratuitous_count": 0})
    a.interfaces[0].output(ip4("10.0.0.2"), ETH_P_IP, b"1")
    a.interfaces[0].output(ip4("10.0.0.3"), ETH_P_IP, b"2")  # nobody: stays incomplete
    net.run_for(0.5)
    text = format_arp(a.report())
    line_b = next(ln for ln in text.splitlines() if "10.0.0.2 " in ln)
    assert mac_str(b.interfaces[0].mac or b"") in line_b and "reachable" in line_b
    assert "29.5s" in line_b  # reachable since t=0, for 30 s
    line_dead = next(ln for ln in text.splitlines() if "10.0.0.3 " in ln)
    assert "incomplete" in line_dead
