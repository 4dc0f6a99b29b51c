"""The arp plugin against crafted frames: the test owns the far end of the link."""

from __future__ import annotations

import errno

import pytest
from arp_support import PEER_MAC, RawRig, arp_frame, arp_of, dst_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.l2 import ARP, Ether

from layers.links import MemoryLink
from layers.wire import (
    ARPOP_REPLY,
    ARPOP_REQUEST,
    BROADCAST_MAC,
    ETH_HEADER,
    ETH_P_ARP,
    ETH_P_IP,
    ip4,
    mac_str,
)

OTHER_MAC = bytes.fromhex("0200000000aa")


def _requests(frames: list[bytes]) -> list[tuple[bytes, int]]:
    """(destination MAC, target address) of each ARP request among ``frames``."""
    out = []
    for f in frames:
        p = arp_of(f)
        if p is not None and p.opcode == ARPOP_REQUEST:
            out.append((dst_of(f), p.target_ip))
    return out


# --- answering --------------------------------------------------------------------------------


def test_replies_for_every_address_of_the_interface() -> None:
    rig = RawRig()
    rig.iface.add_address(ip4("10.0.5.1"), 24)
    for target in ("10.0.0.1", "10.0.5.1"):
        (reply,) = rig.request_from_peer("10.0.0.7", target)
        s = Ether(reply)
        assert s.dst == mac_str(PEER_MAC) and s.src == mac_str(rig.mac)
        assert (s[ARP].op, s[ARP].psrc, s[ARP].hwsrc) == (2, target, mac_str(rig.mac))
        assert (s[ARP].pdst, s[ARP].hwdst) == ("10.0.0.7", mac_str(PEER_MAC))
    assert rig.counters["tx_replies"] == 2


def test_no_reply_for_other_addresses_or_other_interfaces() -> None:
    rig = RawRig()
    other = rig.stack.add_interface(MemoryLink("side"), address="10.9.0.1/24")
    assert other.address is not None
    assert rig.request_from_peer("10.0.0.7", "10.0.0.99") == []
    assert rig.request_from_peer("10.0.0.7", "10.9.0.1") == []
    assert rig.counters.drops["not_for_us"] == 2
    assert rig.counters["tx_replies"] == 0
    # RFC 826: a request not for us from an unknown sender adds nothing
    assert rig.resolver.lookup(ip4("10.0.0.7")) is None


def test_scapy_built_request_is_answered() -> None:
    rig = RawRig()
    frame = bytes(
        Ether(dst="ff:ff:ff:ff:ff:ff", src=mac_str(PEER_MAC))
        / ARP(op=1, hwsrc=mac_str(PEER_MAC), psrc="10.0.0.3", pdst="10.0.0.1")
    ) + b"\x00" * 18  # padded to the Ethernet minimum
    (reply,) = rig.inject(frame)
    assert Ether(reply)[ARP].op == 2 and Ether(reply)[ARP].psrc == "10.0.0.1"


def test_rfc5227_probe_answered_but_not_learned() -> None:
    rig = RawRig()
    (reply,) = rig.request_from_peer("0.0.0.0", "10.0.0.1")
    p = arp_of(reply)
    assert p is not None and p.opcode == ARPOP_REPLY and p.target_ip == 0
    assert dst_of(reply) == PEER_MAC
    assert rig.stack.report()["arp"] == []


# --- learning ----------------------------------------------------------------------------------


def test_merge_rule_updates_known_senders_only() -> None:
    rig = RawRig()
    rig.request_from_peer("10.0.0.7", "10.0.0.1")  # for us: added, stale
    n = rig.resolver.lookup(ip4("10.0.0.7"))
    assert n is not None and n.mac == PEER_MAC
    # a request to someone else from the known sender, with a new MAC: updated (merge)
    rig.inject(arp_frame(ARPOP_REQUEST, OTHER_MAC, "10.0.0.7", "10.0.0.50"))
    n = rig.resolver.lookup(ip4("10.0.0.7"))
    assert n is not None and n.mac == OTHER_MAC
    # unsolicited broadcast reply about an unknown host, not for us: not added
    rig.inject(arp_frame(ARPOP_REPLY, OTHER_MAC, "10.0.0.8", "10.0.0.50"))
    assert rig.resolver.lookup(ip4("10.0.0.8")) is None


def test_sender_claiming_our_address_is_a_conflict_and_defended_once() -> None:
    rig = RawRig({"arp.defend_interval": 10.0})
    out = rig.inject(arp_frame(ARPOP_REQUEST, OTHER_MAC, "10.0.0.1", "10.0.0.1"))
    assert rig.counters["conflicts"] == 1
    assert rig.counters.drops["address_conflict"] == 1
    assert rig.resolver.lookup(ip4("10.0.0.1")) is None
    (defence,) = out
    p = arp_of(defence)
    assert p is not None and p.is_gratuitous and p.sender_mac == rig.mac
    assert dst_of(defence) == BROADCAST_MAC
    # a second conflict within defend_interval: counted, not defended again
    assert rig.inject(arp_frame(ARPOP_REPLY, OTHER_MAC, "10.0.0.1", "10.0.0.9")) == []
    rig.run_for(10.0)
    assert len(rig.inject(arp_frame(ARPOP_REQUEST, OTHER_MAC, "10.0.0.1", "10.0.0.9"))) == 1
    assert rig.counters["conflicts"] == 3 and rig.counters["defences"] == 2


@pytest.mark.parametrize(
    ("sender_mac", "sender_ip", "reason"),
    [
        (BROADCAST_MAC, "10.0.0.7", "bad_sender_mac"),
        (bytes.fromhex("01005e000001"), "10.0.0.7", "bad_sender_mac"),
        (b"\x00" * 6, "10.0.0.7", "bad_sender_mac"),
        (PEER_MAC, "224.0.0.1", "bad_sender_ip"),
        (PEER_MAC, "255.255.255.255", "bad_sender_ip"),
        (PEER_MAC, "127.0.0.1", "bad_sender_ip"),
    ],
)
def test_bogus_senders_ignored(sender_mac: bytes, sender_ip: str, reason: str) -> None:
    rig = RawRig()
    out = rig.inject(arp_frame(ARPOP_REQUEST, sender_mac, sender_ip, "10.0.0.1", src=PEER_MAC))
    assert out == []
    assert rig.counters.drops[reason] == 1
    assert rig.stack.report()["arp"] == []


def test_own_frames_looped_back_are_ignored() -> None:
    rig = RawRig()
    assert rig.inject(arp_frame(ARPOP_REQUEST, rig.mac, "10.0.0.5", "10.0.0.1")) == []
    assert rig.counters.drops["looped"] == 1


# --- malformed input ------------------------------------------------------------------------


def _good() -> bytes:
    return arp_frame(ARPOP_REQUEST, PEER_MAC, "10.0.0.7", "10.0.0.1")


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (_good()[:14], "truncated"),
        (_good()[:20], "truncated"),
        (_good()[:41], "truncated"),
        (_good()[:14] + b"\x00\x06" + _good()[16:], "bad_hardware"),
        (_good()[:16] + b"\x86\xdd" + _good()[18:], "bad_protocol"),
        (_good()[:18] + b"\x08" + _good()[19:], "bad_hlen"),
        (_good()[:19] + b"\x10" + _good()[20:], "bad_plen"),
        (_good()[:20] + b"\x00\x09" + _good()[22:], "bad_opcode"),
    ],
)
def test_malformed_frames_dropped_and_counted(frame: bytes, reason: str) -> None:
    rig = RawRig()
    assert rig.inject(frame) == []
    assert rig.counters.drops[reason] == 1
    assert rig.counters["dropped"] == 1
    assert rig.stack.counters["stack"].drops["internal_error"] == 0
    assert rig.stack.report()["arp"] == []


_FUZZ_RIG = RawRig()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=80),
        # mostly-valid headers reach the deeper checks
        st.tuples(st.sampled_from([1, 2, 3]), st.binary(min_size=0, max_size=40)).map(
            lambda t: b"\x00\x01\x08\x00\x06\x04" + t[0].to_bytes(2, "big") + t[1]
        ),
    ),
    st.booleans(),
)
def test_fuzz_receive_never_raises(body: bytes, broadcast: bool) -> None:
    rig = _FUZZ_RIG
    dst = BROADCAST_MAC if broadcast else rig.mac
    rig.raw.send(ETH_HEADER.pack(dst, PEER_MAC, ETH_P_ARP) + body)
    rig.net.run_for(0.5)  # timers of anything learned run too
    rig.drain()
    # straight into the protocol object as well: receive() itself must not raise
    rig.arp.receive(rig.iface, memoryview(body), 0)
    assert rig.stack.counters["stack"].drops["internal_error"] == 0
    assert len(rig.stack.report()["arp"]) <= 1024


# --- resolution ------------------------------------------------------------------------------


def test_request_retries_spaced_then_unreachable_per_packet() -> None:
    rig = RawRig({"arp.timeout": 0.5, "arp.retries": 4, "arp.failed_time": 3.0})
    t0 = rig.net.now
    for i in range(3):
        rig.output("10.0.0.9", b"p%d" % i)
    rig.drain()
    rig.run_for(10)
    reqs = [(t - t0, f) for t, f in rig.sent if arp_of(f) is not None]
    assert [t for t, _ in reqs] == pytest.approx([0.0, 0.5, 1.0, 1.5])
    for _, f in reqs:
        p = arp_of(f)
        assert p is not None and p.target_ip == ip4("10.0.0.9") and p.sender_ip == ip4("10.0.0.1")
        assert dst_of(f) == BROADCAST_MAC
    calls = rig.recorder.unreachable_calls
    assert [(round(t - t0, 6), pkt, e) for t, pkt, e in calls] == [
        (2.0, b"p0", errno.EHOSTUNREACH),
        (2.0, b"p1", errno.EHOSTUNREACH),
        (2.0, b"p2", errno.EHOSTUNREACH),
    ]
    assert rig.counters["resolution_failures"] == 1
    assert rig.counters.drops["unresolved"] == 3
    assert rig.arp.queued == 0


def test_failed_entry_suppresses_request_floods() -> None:
    rig = RawRig({"arp.timeout": 1.0, "arp.retries": 3, "arp.failed_time": 5.0})
    rig.output("10.0.0.9", b"first")
    rig.run_for(3.0)
    assert len(_requests([f for _, f in rig.sent])) == 3
    assert rig.stack.report()["arp"][0]["state"] == "failed"
    for i in range(50):  # a flood while the failure is remembered: no requests, quick errors
        rig.output("10.0.0.9", b"flood%d" % i)
    new = rig.run_for(0.01)
    assert _requests(new) == []
    assert len(rig.recorder.unreachable_calls) == 51
    assert rig.counters.drops["neighbour_failed"] == 50
    rig.run_for(5.0)  # the failure is forgotten: the next packet asks again
    assert rig.stack.report()["arp"] == []
    rig.output("10.0.0.9", b"later")
    assert _requests(rig.drain()) == [(BROADCAST_MAC, ip4("10.0.0.9"))]


def test_late_host_learned_from_failed_state() -> None:
    """A host that comes up and announces itself while its failure is remembered is used."""
    rig = RawRig({"arp.timeout": 1.0, "arp.retries": 1, "arp.failed_time": 30.0})
    rig.output("10.0.0.9", b"x")
    rig.run_for(2)
    rig.inject(arp_frame(ARPOP_REQUEST, PEER_MAC, "10.0.0.9", "10.0.0.9"))
    rig.output("10.0.0.9", b"now")
    (frame,) = rig.drain()
    assert dst_of(frame) == PEER_MAC and frame[14:] == b"now"


def test_global_queue_bound_drops_oldest_across_neighbours() -> None:
    rig = RawRig({"arp.queue_len": 3, "arp.queue_total": 4})
    for i in range(3):
        rig.output("10.0.0.7", b"x%d" % i)
    for i in range(2):
        rig.output("10.0.0.8", b"y%d" % i)
    assert rig.arp.queued == 4
    assert rig.counters["queue_overflows"] == 1
    rig.drain()
    out = rig.reply_from_peer("10.0.0.7", PEER_MAC)
    assert [f[14:] for f in out] == [b"x1", b"x2"]  # x0 was the oldest of all
    out = rig.reply_from_peer("10.0.0.8", OTHER_MAC)
    assert [(dst_of(f), f[14:]) for f in out] == [(OTHER_MAC, b"y0"), (OTHER_MAC, b"y1")]
    assert rig.arp.queued == 0


def test_resolution_by_request_from_the_neighbour() -> None:
    """Linux does this too: a request from the neighbour we are resolving answers our own."""
    rig = RawRig()
    rig.output("10.0.0.7", b"q")
    rig.drain()
    out = rig.request_from_peer("10.0.0.7", "10.0.0.1")
    replies = [p for p in map(arp_of, out) if p is not None and p.opcode == ARPOP_REPLY]
    data = [f[14:] for f in out if arp_of(f) is None]
    assert len(replies) == 1 and data == [b"q"]
    assert [dst_of(f) for f in out] == [PEER_MAC, PEER_MAC]


def test_queued_offload_and_ethertype_preserved() -> None:
    rig = RawRig()
    rig.iface.output(ip4("10.0.0.7"), 0x88B5, b"toy")
    rig.drain()
    (frame,) = rig.reply_from_peer("10.0.0.7")
    assert ETH_HEADER.unpack_from(frame) == (PEER_MAC, rig.mac, 0x88B5)


# --- the cache ---------------------------------------------------------------------------------


def test_cache_expiry_and_unicast_poll_deletes_silent_neighbour() -> None:
    rig = RawRig({"arp.reachable_time": 5.0, "arp.delay_first_probe": 1.0, "arp.timeout": 1.0,
                  "arp.unicast_probes": 2})
    rig.output("10.0.0.7", b"a")
    rig.reply_from_peer("10.0.0.7")
    n = rig.resolver.lookup(ip4("10.0.0.7"))
    assert n is not None
    rig.drain()
    rig.run_for(4.9)
    assert rig.stack.report()["arp"][0]["state"] == "reachable"
    rig.run_for(0.2)
    assert rig.stack.report()["arp"][0]["state"] == "stale"
    t_use = rig.net.now
    rig.output("10.0.0.7", b"b")  # goes out with the cached MAC, starts the delay
    (frame,) = rig.drain()
    assert dst_of(frame) == PEER_MAC and frame[14:] == b"b"
    rig.run_for(10)  # the peer is silent
    probes = [(round(t - t_use, 6), dst_of(f)) for t, f in rig.sent if arp_of(f) and t >= t_use]
    assert probes == [(1.0, PEER_MAC), (2.0, PEER_MAC)]  # unicast, timeout apart
    assert rig.stack.report()["arp"] == []
    assert rig.counters["probe_failures"] == 1
    rig.output("10.0.0.7", b"c")  # starts over with a broadcast
    assert _requests(rig.drain()) == [(BROADCAST_MAC, ip4("10.0.0.7"))]


def test_unused_stale_entry_is_collected() -> None:
    rig = RawRig({"arp.stale_time": 20.0})
    rig.request_from_peer("10.0.0.7", "10.0.0.1")
    assert rig.stack.report()["arp"][0]["state"] == "stale"
    rig.run_for(19.9)
    assert len(rig.stack.report()["arp"]) == 1
    rig.run_for(0.2)
    assert rig.stack.report()["arp"] == []
    assert rig.stack.next_deadline() is None  # no ARP timer left behind


def test_table_is_capped() -> None:
    rig = RawRig({"arp.max_entries": 4})
    for i in range(10):
        rig.request_from_peer(f"10.0.0.{10 + i}", "10.0.0.1",
                              peer_mac=bytes.fromhex(f"0200000001{i:02x}"))
    rows = rig.stack.report()["arp"]
    assert len(rows) == 4
    assert {r["address"] for r in rows} == {f"10.0.0.{i}" for i in range(16, 20)}  # newest kept
    assert rig.counters["evictions"] == 6
    # incomplete entries are not evicted: when all are incomplete, new ones are refused
    rig2 = RawRig({"arp.max_entries": 2})
    for i in range(3):
        rig2.output(f"10.0.0.{30 + i}", b"z")
    assert len(rig2.stack.report()["arp"]) == 2
    assert rig2.counters.drops["table_full"] == 1


def test_static_entry_used_and_never_overwritten() -> None:
    rig = RawRig()
    rig.resolver.add_static("10.0.0.7", mac_str(OTHER_MAC))
    rig.output("10.0.0.7", b"s")
    (frame,) = rig.drain()
    assert dst_of(frame) == OTHER_MAC
    rig.reply_from_peer("10.0.0.7", PEER_MAC)
    rig.run_for(100)
    (row,) = rig.stack.report()["arp"]
    assert (row["state"], row["mac"], row["expires"]) == ("permanent", mac_str(OTHER_MAC), None)
    assert rig.resolver.delete("10.0.0.7") and rig.stack.report()["arp"] == []


def test_broadcast_and_multicast_next_hops_need_no_resolution() -> None:
    rig = RawRig()
    rig.output("10.0.0.255", b"b")
    rig.output("255.255.255.255", b"B")
    rig.output("224.0.0.251", b"m")
    frames = rig.drain()
    assert [(dst_of(f), f[14:]) for f in frames] == [
        (BROADCAST_MAC, b"b"),
        (BROADCAST_MAC, b"B"),
        (bytes.fromhex("01005e0000fb"), b"m"),
    ]
    assert rig.counters["tx_requests"] == 0


def test_announcements_at_start_spaced_on_the_wire() -> None:
    rig = RawRig({"arp.gratuitous_count": 3, "arp.gratuitous_interval": 2.0}, start=False)
    rig.iface.add_address(ip4("10.0.1.1"), 24)
    rig.stack.start()
    rig.drain()
    rig.run_for(10)
    seen = []
    for t, f in rig.sent:
        p = arp_of(f)
        assert p is not None and p.is_gratuitous and p.opcode == ARPOP_REQUEST
        assert dst_of(f) == BROADCAST_MAC and p.target_mac == b"\x00" * 6
        s = Ether(f)[ARP]
        assert s.psrc == s.pdst
        seen.append((t, s.psrc))
    assert seen == [
        (0.0, "10.0.0.1"), (0.0, "10.0.1.1"),
        (2.0, "10.0.0.1"), (2.0, "10.0.1.1"),
        (4.0, "10.0.0.1"), (4.0, "10.0.1.1"),
    ]


def test_stopping_cancels_timers_and_queues() -> None:
    rig = RawRig({"arp.gratuitous_count": 3})
    rig.output("10.0.0.9", b"q")
    rig.stack.stop(close_links=False)
    assert rig.arp.queued == 0
    rig.net.run_for(30)
    assert rig.recorder.unreachable_calls == []
    assert all(n.timer is None for n in rig.resolver.table.values())


def test_bad_next_hop_counted() -> None:
    rig = RawRig()
    rig.output("0.0.0.0", b"z")
    rig.output("10.0.0.1", b"z")  # our own address
    assert rig.drain() == []
    assert rig.counters.drops["bad_next_hop"] == 2


def test_ip_payload_on_the_wire_has_ip_ethertype() -> None:
    rig = RawRig()
    rig.request_from_peer("10.0.0.7", "10.0.0.1")
    rig.output("10.0.0.7", b"ip")
    (frame,) = rig.drain()
    assert ETH_HEADER.unpack_from(frame)[2] == ETH_P_IP
