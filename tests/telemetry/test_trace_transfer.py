"""End to end on the virtual clock: a TCP transfer through a lossy link with trace writers
subscribed to the sender's stack; the traces read back hold the flow's evolution, and
``layers.plotting`` draws them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from layers.errors import ConfigurationError
from layers.links.base import Link, Medium
from layers.links.faults import FaultLink
from layers.tracing import open_trace, read_trace
from layers.virtual import VirtualNetwork
from layers.wire import ip4

PAYLOAD = bytes(range(256)) * 1200  # 300 KiB


class Sink:
    def __init__(self) -> None:
        self.data = bytearray()
        self.eof = False
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool:
        self.eof = True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        pass


class Source(Sink):
    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        transport.write(PAYLOAD)
        transport.write_eof()


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The transfer, run once: ``acks.jsonl`` (every ACK) and ``sparse.csv`` (20 ms)."""
    tmp_path = tmp_path_factory.mktemp("traced")

    def wrap(link: Link) -> Link:
        return FaultLink(link, loss=0.02, seed=5)

    net = VirtualNetwork()
    settings = {"tcp.secret": "ab" * 16}
    a = net.new_stack(["ipv4", "tcp"], settings=settings, name="a")
    b = net.new_stack(["ipv4", "tcp"], settings=settings, name="b")
    net.link(a, b, addresses=("10.0.0.1/24", "10.0.0.2/24"), latency=0.005, medium=Medium.IP,
             wrap=wrap)
    a.start()
    b.start()
    sinks: list[Sink] = []

    def factory() -> Sink:
        sinks.append(Sink())
        return sinks[-1]

    b.protocol("tcp").listen(factory, 0, 5001)
    every_ack = open_trace(tmp_path / "acks.jsonl", stack=a)
    sparse = open_trace(tmp_path / "sparse.csv", stack=a, interval=0.02)
    # the receiving side's connection only, through the connection's own subscription
    receiver = open_trace(tmp_path / "receiver.jsonl")
    with every_ack, sparse, receiver:
        a.protocol("tcp").connect(Source(), ip4("10.0.0.2"), 5001)
        assert net.run_until_true(lambda: bool(sinks), timeout=30)
        receiver.attach_connection(sinks[0].transport, stack=b)
        with pytest.raises(ConfigurationError, match="no subscribe"):
            receiver.attach_connection(object())
        assert net.run_until_true(lambda: sinks[0].eof, timeout=120)
        net.run_for(1.0)
    assert bytes(sinks[0].data) == PAYLOAD
    assert not a.telemetry.active, "the writers unsubscribed on close"
    assert not b.telemetry.active
    return tmp_path


def test_transfer_through_loss_is_traced(traced: Path) -> None:
    tmp_path = traced
    trace = read_trace(tmp_path / "acks.jsonl")
    (flow,) = trace.flows.values()
    assert re.fullmatch(r"10\.0\.0\.1:\d+->10\.0\.0\.2:5001", flow.flow)
    assert len(flow) > 50, "a sample at (nearly) every ACK"
    times = flow.time
    assert times == sorted(times)
    delivered = flow["delivered"]
    assert delivered == sorted(delivered), "delivered only grows"
    assert delivered[-1] >= len(PAYLOAD)
    assert flow["retransmits"][-1] > 0, "2 % loss each way costs retransmissions"
    srtt = [x for x in flow["srtt"] if x is not None]
    assert srtt and all(0.010 <= x < 1.0 for x in srtt), "10 ms base RTT"
    assert all(c > 0 for c in flow["cwnd"]) and flow.cc

    # the receiver's connection, subscribed alone: its own flow name, the other way round
    (rflow,) = read_trace(tmp_path / "receiver.jsonl").flows.values()
    local, remote = flow.flow.split("->")
    assert rflow.flow == f"{remote}->{local}" and len(rflow) >= 1

    sparse_trace = read_trace(tmp_path / "sparse.csv")
    (sflow,) = sparse_trace.flows.values()
    assert sflow.flow == flow.flow
    assert 3 <= len(sflow) < len(flow)
    gaps = [t1 - t0 for t0, t1 in zip(sflow.time, sflow.time[1:], strict=False)]
    assert min(gaps) >= 0.02 - 1e-9

    pytest.importorskip("matplotlib")
    from layers.plotting import plot_traces

    out = tmp_path / "transfer.svg"
    plot_traces([trace, sparse_trace], out, labels=["every ACK", "20 ms"])
    svg = out.read_text()
    assert svg.count('id="line-cwnd-cwnd-f') == 2
    assert "every ACK: 10.0.0.1:" in svg and "20 ms: 10.0.0.1:" in svg


def test_delivered_counts_each_byte_once(traced: Path) -> None:
    """``delivered`` is the bytes the peer has (acknowledged or SACKed): a retransmitted
    byte is delivered once, so the transfer ends at the payload's size."""
    (flow,) = read_trace(traced / "acks.jsonl").flows.values()
    assert len(PAYLOAD) <= flow["delivered"][-1] <= len(PAYLOAD) + 2  # SYN/FIN at most
