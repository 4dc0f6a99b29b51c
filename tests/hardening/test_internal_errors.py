"""Every internal error is a bug: counted, reported per plugin, logged once, and fails tests."""

from __future__ import annotations

import logging

import pytest

from layers.cli.report import format_netstat, format_statistics
from layers.stack import Stack, watch_stacks
from layers.timers import VirtualClock
from layers.virtual import VirtualNetwork
from layers.wire.addr import ip4


@pytest.mark.internal_errors
def test_an_error_in_a_plugin_is_counted_named_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    vnet = VirtualNetwork()
    a, b = vnet.pair(["arp", "ipv4", "icmp"])
    b.protocol("icmp")._c = None  # its receive path now raises on every message it gets
    with caplog.at_level(logging.ERROR, logger="layers"):
        for seq in range(3):
            a.protocol("icmp").echo(ip4("10.0.0.2"), ident=1, seq=seq, payload=b"x",
                                    callback=lambda result: None, timeout=0.5)
            vnet.run_for(1.0)
    assert b.counters["stack"].drops["internal_error"] == 3
    [(plugin, where)] = b.internal_failures
    failure = b.internal_failures[(plugin, where)]
    assert plugin == "icmp" and where == "receive" and failure.count == 3
    logged = [r for r in caplog.records if "internal error" in r.getMessage()]
    assert len(logged) == 1  # once, with the traceback
    assert logged[0].exc_info is not None
    report = b.report()
    [row] = report["internal_errors"]
    assert row["count"] == 3 and "TypeError" in row["message"] and "icmp" in row["message"]
    assert "Internal errors" in format_netstat(report)
    assert "internal error" in format_statistics(report)


@pytest.mark.internal_errors
def test_the_plugin_is_found_from_the_traceback() -> None:
    clock = VirtualClock()
    s = Stack(["arp", "ipv4", "icmp", "udp", "tcp"], clock=clock)
    tcp = s.protocol("tcp")

    def fail() -> None:
        tcp.conn_options({"no_such_option": 1})  # raises inside layers_tcp

    s.call_at(0.0, fail)
    s.poll()
    [(plugin, where)] = s.internal_failures
    assert (plugin, where) == ("tcp", "timer")
    assert "layers-tcp" in s.internal_failures[(plugin, where)].distribution

    def core_fail() -> None:
        raise RuntimeError("bug in the core")

    s.call_at(0.0, core_fail)
    s.poll()
    assert ("core", "timer") in s.internal_failures


def test_watch_stacks_sees_every_stack_made_inside() -> None:
    with watch_stacks() as made:
        a, b = VirtualNetwork().pair(["arp", "ipv4"])
        Stack([])
    assert made[:2] == [a, b] and len(made) == 3
    Stack([])
    assert len(made) == 3
