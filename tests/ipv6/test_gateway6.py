"""An IPv6 default gateway: ``Stack.add_route`` and ``layers up --gateway`` take an IPv6
router beside an IPv4 one, traffic off the prefix goes through it, and ``routes -6`` shows
it."""

from __future__ import annotations

import argparse

import pytest

from layers.cli import main
from layers.cli.common import gateway_list
from layers.cli.report import format_routes6
from layers.errors import ConfigurationError
from layers.protocols import EchoReply
from layers.virtual import VirtualNetwork
from layers.wire.ipv6 import ip6

P = ["arp", "ipv4", "icmp", "ipv6", "icmpv6", "ndp"]


def test_ipv6_default_route_through_a_gateway_reaches_a_remote_prefix() -> None:
    net = VirtualNetwork()
    s = {"ndp.dad_transmits": 0}
    a = net.new_stack(P, name="a", settings=s)
    r = net.new_stack(P, name="r", settings=s)
    ia, ir = net.link(a, r, addresses=("10.0.0.1/24", "10.0.0.2/24"), latency=0.001)
    a.add_address(ia, "2001:db8::1/64")
    r.add_address(ir, "2001:db8::2/64")
    r.add_address(ir, "2001:db8:99::5/64")  # "behind" the router: a has no route to it
    a.start()
    r.start()
    net.run_for(0.01)
    got: list[EchoReply | OSError] = []
    echo = a.protocol("icmpv6").echo
    echo(ip6("2001:db8:99::5"), ident=1, seq=1, payload=b"x", callback=got.append)
    net.run_for(0.5)
    assert isinstance(got[0], OSError)  # ENETUNREACH: no route yet
    a.add_route("default", gateway="2001:db8::2")
    a.add_route("default", gateway="10.0.0.2")  # IPv4's beside it
    echo(ip6("2001:db8:99::5"), ident=1, seq=2, payload=b"x", callback=got.append)
    net.run_for(0.5)
    assert isinstance(got[1], EchoReply) and got[1].src == ip6("2001:db8:99::5")
    # the packet went to the router's MAC: the router's neighbour entry is the next hop
    assert any(row["address"] == "2001:db8::2" for row in a.report()["ndp"])
    report = a.report()
    default = [row for row in report["routes6"] if row["prefix_length"] == 0]
    assert default == [{"family": 6, "destination": "::", "prefix_length": 0,
                        "gateway": "2001:db8::2", "interface": ia.name, "metric": 0,
                        "origin": "static"}]
    assert any(row["gateway"] == "10.0.0.2" for row in report["routes"])
    text = format_routes6(report)
    assert "::/0" in text and "2001:db8::2" in text and "static" in text


def test_link_local_gateway_and_specific_routes() -> None:
    net = VirtualNetwork()
    a = net.new_stack(P, name="a", settings={"ndp.dad_transmits": 0})
    b = net.new_stack(P, name="b", settings={"ndp.dad_transmits": 0})
    ia, _ = net.link(a, b, addresses=("2001:db8::1/64", "2001:db8::2/64"))
    a.add_route("default", gateway="fe80::1")  # link-local: on the one interface
    a.add_route("2001:db8:7::/48", gateway="2001:db8::2", metric=5)
    rows = {(r["destination"], r["prefix_length"]): r for r in a.report()["routes6"]}
    assert rows[("::", 0)]["gateway"] == "fe80::1"
    assert rows[("2001:db8:7::", 48)]["metric"] == 5
    with pytest.raises(ConfigurationError, match="not on any connected IPv6 prefix"):
        a.add_route("default", gateway="2001:db8:5::1")
    with pytest.raises(ConfigurationError, match="one family"):
        a.add_route("10.1.0.0/16", gateway="2001:db8::2")
    with pytest.raises(ConfigurationError, match="one family"):
        a.add_route("2001:db8:8::/48", gateway="10.0.0.2")
    assert ia.name in format_routes6(a.report())


def test_gateway_option_takes_one_per_family() -> None:
    ns = argparse.Namespace(gateway=["10.0.0.1", "2001:db8::1"])
    assert gateway_list(ns) == ["10.0.0.1", "2001:db8::1"]
    with pytest.raises(ConfigurationError, match="at most one default gateway per family"):
        gateway_list(argparse.Namespace(gateway=["2001:db8::1", "fe80::1"]))
    with pytest.raises(ConfigurationError, match="not an IPv6 address"):
        gateway_list(argparse.Namespace(gateway=["2001:db8::zz"]))


@pytest.mark.parametrize(("gateways", "expected"), [
    (["2001:db8::1", "2001:db8::9"], "at most one default gateway per family"),
    (["2001:db8:::1"], "not an IPv6 address"),
])
def test_layers_up_refuses_bad_ipv6_gateways_before_touching_a_device(
    gateways: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["up", "--link", "tap:x0", "--address", "10.0.0.2/24"]
    for g in gateways:
        argv += ["--gateway", g]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1
