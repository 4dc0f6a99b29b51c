"""The example third-party plugin (examples/framecount), loaded through its entry point."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from layers import CompositionError, Stack, hookimpl
from layers.frame import Frame
from layers.loader import describe_plugins
from layers.protocols import EchoReply, EchoService
from layers.virtual import VirtualNetwork
from layers.wire.addr import ip4

TOY_ETHERTYPE = 0x88B5  # IEEE local experimental


def test_entry_point_is_installed() -> None:
    infos = {i.name: i for i in describe_plugins()}
    assert "framecount" in infos, "pip install -e examples/framecount (make venv does)"
    assert infos["framecount"].distribution == "layers-framecount"
    assert infos["framecount"].layer == "frame-hook"


def test_counts_raw_frames_per_ethertype_both_ways(vnet: VirtualNetwork) -> None:
    # Only the core and framecount: no protocol handles the frames, the counts still happen.
    a = vnet.new_stack(["framecount"])
    b = vnet.new_stack(["framecount"])
    ia, ib = vnet.link(a, b)
    a.start()
    b.start()
    assert ib.mac is not None
    for _ in range(3):
        ia.send_ethernet(ib.mac, TOY_ETHERTYPE, b"x" * 46)
    ia.send_ethernet(ib.mac, 0x0800, b"\x45" + b"\x00" * 45)
    ia.transmit(b"\x00" * 10)  # a runt
    vnet.run_for(1.0)

    sent, got = a.counter("framecount"), b.counter("framecount")
    assert sent["tx_0x88b5"] == 3 and sent["tx_0x0800"] == 1 and sent["tx_runt"] == 1
    assert got["rx_0x88b5"] == 3 and got["rx_0x0800"] == 1 and got["rx_runt"] == 1
    assert not any(k.startswith("rx_") for k in sent) and not any(k.startswith("tx_") for k in got)
    # the stack still dropped what nobody handles; framecount only watched
    assert ib.counters.drops["unknown_ethertype"] == 4
    rows = {(r["direction"], r["ethertype"]): r for r in b.report()["framecount"]}
    assert rows[("rx", "0x88b5")]["frames"] == 3
    assert rows[("rx", "0x0800")]["name"] == "ipv4"


class DropToy:
    """An inner filter: framecount (outer wrapper) sees the frames it drops as filtered."""

    @hookimpl(wrapper=True, tryfirst=False)
    def layers_frame_received(self, stack: Stack, frame: Frame) -> Generator[None, None, None]:
        data = frame.data
        if len(data) >= 14 and (data[12] << 8 | data[13]) == TOY_ETHERTYPE:
            frame.drop("toy_filtered")
        yield


def test_sees_frames_dropped_by_other_filters(vnet: VirtualNetwork) -> None:
    a = vnet.new_stack(["framecount"])
    b = vnet.new_stack(["framecount", DropToy()])
    ia, ib = vnet.link(a, b)
    a.start()
    b.start()
    assert ib.mac is not None
    ia.send_ethernet(ib.mac, TOY_ETHERTYPE, b"y" * 46)
    vnet.run_for(1.0)
    c = b.counter("framecount")
    assert c["rx_0x88b5"] == 1
    assert c["rx_filtered"] == 1
    assert ib.counters.drops["toy_filtered"] == 1


def test_counts_a_ping_exchange(vnet: VirtualNetwork) -> None:
    plugins = ["arp", "ipv4", "icmp", "framecount"]
    a, b = vnet.pair(plugins)
    echo = a.find(EchoService)  # type: ignore[type-abstract]
    assert echo is not None, "the icmp plugin provides EchoService"
    replies: list[object] = []
    for seq in (1, 2, 3):
        echo.echo(ip4("10.0.0.2"), ident=7, seq=seq, payload=b"p" * 56,
                  callback=replies.append, timeout=1.0)
    vnet.run_for(2.0)
    assert [type(r) for r in replies] == [EchoReply] * 3
    ca, cb = a.counter("framecount"), b.counter("framecount")
    # one ARP request out and one reply in on the pinging side; the reverse on the other
    assert ca["tx_0x0806"] >= 1 and ca["rx_0x0806"] >= 1
    assert cb["rx_0x0806"] >= 1 and cb["tx_0x0806"] >= 1
    # three echo requests one way, three replies the other
    assert ca["tx_0x0800"] == 3 and cb["rx_0x0800"] == 3
    assert cb["tx_0x0800"] == 3 and ca["rx_0x0800"] == 3
    assert ca["tx_0x0806"] == cb["rx_0x0806"] and cb["tx_0x0806"] == ca["rx_0x0806"]


def test_absent_when_blocked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAYERS_DISABLE_PLUGINS", "framecount")
    stack = Stack()
    assert stack.pm.get_plugin("framecount") is None
    assert stack._rx_hooked is False  # nothing left hooking frames: the fast path again
    assert "framecount" not in stack.report()
    listed = {i.name: i.status for i in describe_plugins()}
    assert listed["framecount"] == "disabled"


def test_asking_for_it_while_blocked_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAYERS_DISABLE_PLUGINS", "framecount")
    with pytest.raises(CompositionError, match="LAYERS_DISABLE_PLUGINS"):
        Stack(["framecount"])
