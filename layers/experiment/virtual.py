"""The virtual medium: a dumbbell of stacks on a :class:`~layers.virtual.VirtualNetwork`.

::

    sender 0 --access 0--+                      +--access 0-- receiver 0
    sender 1 --access 1--+-- left ==bottleneck== right --+--access 1-- receiver 1
    ...                                          ...

Every flow has a sender stack and a receiver stack of its own (the installed plugins, IP
medium, no ARP). ``left`` and ``right`` are wires, not stacks: they pass bare IPv4 packets
to the port of their destination host (no TTL, no ICMP), so everything a packet meets on its
way is the bottleneck (rate, queue discipline, delay, random loss on the data direction) and
each flow's own access delay (``flow.delay``, for RTT-unfairness experiments).

The run is a function of the scenario alone: every random source is seeded from the
scenario's seed through a named substream, time is the virtual clock, and nothing reads the
wall clock, so one scenario and seed give the same results byte for byte.
"""

from __future__ import annotations

import asyncio
import random
from array import array
from collections.abc import Callable
from typing import Any, cast

import attrs

from layers.errors import ConfigurationError
from layers.experiment.bottleneck import Bottleneck
from layers.experiment.metrics import jain, mean, percentile, rounded
from layers.experiment.scenario import FlowSpec, Scenario
from layers.experiment.seeds import secret, substream
from layers.links.base import RX_CSUM_VERIFIED, Link, Medium, TxOffload
from layers.links.memory import MemoryLink
from layers.stack import Stack
from layers.telemetry import SAMPLE_FIELDS, ConnectionSample
from layers.virtual import VirtualNetwork
from layers.wire import ip4

__all__ = ["RunOutput", "available_congestion_controls", "describe_hosts", "run_virtual"]

PORT = 5001
CHUNK = bytes(64 * 1024)
#: virtual seconds between progress callbacks (at most)
PROGRESS_STEP = 0.5

Progress = Callable[[float], None]


@attrs.define
class RunOutput:
    """What one run produced: ``results`` (for results.json) and the traces."""

    results: dict[str, Any]
    #: flow label -> rows, one per sample interval
    traces: dict[str, list[dict[str, Any]]]
    #: bottleneck rows, one per sample interval
    link_trace: list[dict[str, Any]]


def available_congestion_controls() -> list[str]:
    """Names of the congestion controls the installed plugins offer."""
    from layers.congestion import collect_congestion_controls

    stack = Stack(None, name="probe")
    try:
        return sorted(collect_congestion_controls(stack.hook.layers_congestion_controls()))
    except Exception:  # an older engine's {name: factory(mss)} mappings
        names: set[str] = set()
        for answer in stack.hook.layers_congestion_controls():
            names.update(answer or {})
        return sorted(names)


def check_congestion_controls(scenario: Scenario) -> None:
    known = available_congestion_controls()
    for i, f in enumerate(scenario.flow):
        if f.cc.startswith("linux:"):
            continue
        if f.cc not in known:
            raise ConfigurationError(
                f"{scenario.source}: flow[{i}].cc: {f.cc!r} is not installed; available: "
                f"{', '.join(known)} (plugins add more through layers_congestion_controls)"
            )


# --- the wires ------------------------------------------------------------------------------

#: where the transport checksum is, by IP protocol (TCP, UDP), for a frame a wire passes on
#: with its checksum still partial
_CSUM_OFFSETS = {6: 16, 17: 6}
#: (IP header length, protocol) -> the offload a wire forwards such a frame with
_PARTIAL: dict[tuple[int, int], TxOffload] = {}


def _partial(frame: bytes | memoryview) -> TxOffload | None:
    """The offload saying that ``frame``'s transport checksum is partial (a sender left it to
    the link): a wire passes that on, as a bridge of veth pairs does, so that nobody on the
    path computes a checksum that the far end would only check."""
    key = ((frame[0] & 0x0F) * 4, frame[9])
    offload = _PARTIAL.get(key)
    if offload is None:
        off = _CSUM_OFFSETS.get(key[1])
        if off is None:
            return None
        offload = _PARTIAL[key] = TxOffload(csum_start=key[0], csum_offset=off)
    return offload


@attrs.define
class _Port:
    link: Link


class Wire:
    """A node of the virtual network that is not a stack: it hands each bare IPv4 packet to
    the port of its destination address (or to the default port). The network polls it as it
    polls a stack (``interfaces``, ``receive``, ``poll``, ``next_deadline``)."""

    #: it holds nothing for later (its next_deadline is always None)
    notifies_deadline = True

    def __init__(self, name: str) -> None:
        self.name = name
        self.interfaces: list[_Port] = []
        self.routes: dict[int, Link] = {}
        self.default: Link | None = None
        self.unroutable = 0

    def add_port(self, link: Link, clock: Callable[[], float], host: int | None = None) -> None:
        link.attach(clock)
        self.interfaces.append(_Port(link))
        if host is None:
            self.default = link
        else:
            self.routes[host] = link

    def receive(self, iface: _Port, frame: bytes | memoryview, flags: int = 0) -> None:
        if len(frame) < 20:
            self.unroutable += 1
            return
        out = self.routes.get(int.from_bytes(frame[16:20], "big"), self.default)
        if out is None or out is iface.link:
            self.unroutable += 1
            return
        out.send(frame, _partial(frame) if flags & RX_CSUM_VERIFIED else None)

    def poll(self) -> None:
        pass

    def next_deadline(self) -> float | None:
        return None


# --- the applications -----------------------------------------------------------------------

class _BulkSender(asyncio.Protocol):
    """Keeps the connection's send buffer full, or writes ``size`` bytes then EOF."""

    def __init__(self, size: int | None) -> None:
        self.remaining = size
        self.transport: Any = None
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.fill()

    def fill(self) -> None:
        t = self.transport
        for _ in range(4096):
            if self.paused or t is None or t.is_closing():
                return
            if self.remaining is None:
                t.write(CHUNK)
                continue
            n = min(len(CHUNK), self.remaining)
            if n == 0:
                return
            t.write(CHUNK[:n])
            self.remaining -= n
            if self.remaining == 0:
                t.write_eof()
                return

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.fill()

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False


class _Sink(asyncio.Protocol):
    def __init__(self, flow: _Flow) -> None:
        self.flow = flow

    def data_received(self, data: bytes) -> None:
        f = self.flow
        f.received += len(data)
        if f.first_byte is None:
            f.first_byte = f.receiver.now - f.epoch
        if f.spec.size is not None and f.received >= f.spec.size and f.done is None:
            f.done = f.receiver.now - f.epoch

    def eof_received(self) -> bool:
        return False


# --- one flow ---------------------------------------------------------------------------------

class _Flow:
    """One flow whose sender is one of our stacks."""

    def __init__(self, index: int, label: str, spec: FlowSpec, sender: Stack | None,
                 receiver: Stack, dst: int, port: int = PORT) -> None:
        self.index = index
        self.label = label
        self.spec = spec
        self.sender = sender
        self.receiver = receiver
        self.dst = dst
        self.port = port
        #: the receiver's clock reading at the experiment's time 0
        self.epoch = 0.0
        self.conn: Any = None
        self.received = 0
        self.first_byte: float | None = None
        self.done: float | None = None
        #: samples the engine gave (``conn.sample()``); 0: the fallback read the connection
        #: why the flow could not start (its connect raised), if it could not
        self.error: str | None = None
        self.telemetry_samples = 0
        #: the latest RTT measurement at each sample interval (seconds)
        self.rtts = array("d")
        self.trace: list[dict[str, Any]] = []
        self._prev_received = 0
        self._srtts = array("d")

    def start(self) -> None:
        assert self.sender is not None
        tcp = self.sender.protocol("tcp")
        try:
            self.conn = tcp.connect(_BulkSender(self.spec.size), self.dst, self.port)
        except Exception as exc:  # reported after the run, naming the flow
            self.error = f"{type(exc).__name__}: {exc}"

    def _fallback_sample(self, now: float) -> dict[str, Any]:
        """Before the engine emits telemetry: what the connection object shows."""
        conn = self.conn
        cc = getattr(conn, "cc", None)
        rtt = getattr(conn, "rtt", None)
        srtt = getattr(rtt, "srtt", None)
        snd_nxt = getattr(conn, "snd_nxt", None)
        snd_una = getattr(conn, "snd_una", None)
        row: dict[str, Any] = dict.fromkeys(SAMPLE_FIELDS)
        row.update({
            "time": now, "flow": self.label,
            "state": getattr(getattr(conn, "state", None), "name", None),
            "cc": getattr(cc, "name", self.spec.cc),
            "cwnd": getattr(cc, "cwnd", None), "ssthresh": getattr(cc, "ssthresh", None),
            "in_flight": (snd_nxt - snd_una) if isinstance(snd_nxt, int)
            and isinstance(snd_una, int) else None,
            "srtt": srtt, "rtt": srtt,
            "retransmits": self.retransmits(),
            # until the engine reports its own: what the receiver got
            "delivered": self.received,
        })
        return row

    def retransmits(self) -> int:
        if self.sender is None:
            return 0
        c = self.sender.counters.get("tcp")
        return int(c["RetransSegs"]) if c is not None else 0

    def sample(self, now: float, interval: float) -> None:
        if self.conn is None:
            return
        sample = getattr(self.conn, "sample", None)
        if callable(sample):
            # the engine's own view, built on demand: listening to every ACK through
            # stack.telemetry would cost a sample per ACK for figures taken per interval
            taken: ConnectionSample = sample()
            self.telemetry_samples += 1
            row = taken.as_dict()
            if taken.rtt is not None:
                self.rtts.append(taken.rtt)
        else:
            row = self._fallback_sample(now)
        srtt = row.get("srtt")
        if isinstance(srtt, float):
            self._srtts.append(srtt)
        row["time"] = now
        row["flow"] = self.label
        row["received"] = self.received
        row["goodput_bps"] = (self.received - self._prev_received) * 8.0 / interval
        self._prev_received = self.received
        self.trace.append(row)

    def summary(self, duration: float, base_rtt: float) -> dict[str, Any]:
        start = float(self.spec.start)
        end = self.done if self.done is not None else duration
        active = max(end - start, 1e-9)
        rtts = list(self.rtts) if len(self.rtts) else list(self._srtts)
        out: dict[str, Any] = {
            "label": self.label,
            "cc": self.spec.cc,
            "start_s": start,
            "base_rtt_s": rounded(base_rtt),
            "bytes": self.received,
            "goodput_bps": rounded(self.received * 8.0 / active, 3),
            "retransmits": self.retransmits(),
            "rtt_mean_s": rounded(mean(rtts)),
            "rtt_p95_s": rounded(percentile(rtts, 95)),
            "rtt_source": "sampled" if len(self.rtts) else "srtt",
        }
        if self.spec.size is not None:
            out["size"] = int(self.spec.size)
            out["completed"] = self.done is not None
            out["completion_time_s"] = (rounded(self.done - start)
                                        if self.done is not None else None)
        return out


# --- the run ----------------------------------------------------------------------------------

def _host(side: int, i: int) -> str:
    return f"10.{side}.{i // 250}.{i % 250 + 1}"


def _buffers(scenario: Scenario) -> int:
    """Send and receive buffers big enough that the congestion control, not a buffer,
    limits every flow: four times the largest BDP plus the queue, at least 4 MiB."""
    worst_rtt = max(scenario.base_rtt(f) for f in scenario.flows)
    need = scenario.link.rate * worst_rtt / 8.0 * 4 + scenario.bdp_bytes() * 4
    return max(4 << 20, int(need))


def run_virtual(scenario: Scenario, progress: Progress | None = None) -> RunOutput:
    """Run ``scenario`` on the virtual clock and return its results and traces."""
    if scenario.experiment.medium != "virtual":
        raise ConfigurationError(f"{scenario.source}: experiment.medium: run_virtual needs "
                                 f"\"virtual\"")
    check_congestion_controls(scenario)
    saved = random.getstate()
    # Plugins that draw from the global generator (IPv4's first IP ID) get a seeded one.
    random.seed(substream(scenario.experiment.seed, "global"))
    try:
        return _run(scenario, progress)
    finally:
        random.setstate(saved)


def _run(scenario: Scenario, progress: Progress | None) -> RunOutput:
    exp = scenario.experiment
    seed = exp.seed
    mtu = exp.mtu
    duration = float(exp.duration)
    interval = float(exp.sample_interval)
    net = VirtualNetwork()
    clock = net.clock
    left, right = Wire("left"), Wire("right")

    # Checksum offload on every memory link (both ends of each are stacks or wires of ours,
    # as across veth pairs): no checksum is computed over a payload, and none is needed
    fwd, rev = MemoryLink.pair(("btl-left", "btl-right"), mtu=mtu, medium=Medium.IP,
                               checksum_offload=True)
    bottleneck = Bottleneck(scenario, fwd, rev)
    left.add_port(bottleneck.forward, clock)
    right.add_port(bottleneck.reverse, clock)

    bufs = _buffers(scenario)
    flows: list[_Flow] = []
    senders: list[Stack] = []
    receivers: list[Stack] = []
    for i, (spec, label) in enumerate(zip(scenario.flows, scenario.labels(), strict=True)):
        common = {"tcp.sndbuf": bufs, "tcp.rcvbuf": bufs}
        snd = net.new_stack(None, name=f"{label}-sender", settings={
            **common, "tcp.secret": secret(seed, f"flow{i}.sender"),
            "tcp.congestion_control": spec.cc, **spec.settings})
        rcv = net.new_stack(None, name=f"{label}-receiver", settings={
            **common, "tcp.secret": secret(seed, f"flow{i}.receiver"), **spec.settings})
        src, dst = _host(1, i), _host(2, i)
        a_host, a_wire = MemoryLink.pair((f"acc{i}", f"left{i}"), mtu=mtu, medium=Medium.IP,
                                         latency=float(spec.delay), checksum_offload=True)
        snd.add_interface(a_host, address=f"{src}/8")
        left.add_port(a_wire, clock, ip4(src))
        b_host, b_wire = MemoryLink.pair((f"acc{i}", f"right{i}"), mtu=mtu, medium=Medium.IP,
                                         checksum_offload=True)
        rcv.add_interface(b_host, address=f"{dst}/8")
        right.add_port(b_wire, clock, ip4(dst))
        flow = _Flow(i, label, spec, snd, rcv, ip4(dst))
        rcv.protocol("tcp").listen(lambda f=flow: _Sink(f), 0, PORT)
        snd.start()
        rcv.start()
        snd.call_at(float(spec.start), flow.start)
        flows.append(flow)
        senders.append(snd)
        receivers.append(rcv)
    # The wires join the network's polling loop next to the stacks.
    net.stacks[:] = [*senders, cast(Stack, left), cast(Stack, right), *receivers]

    link_trace: list[dict[str, Any]] = []
    ticks = max(1, round(duration / interval))
    report_every = max(1, round(PROGRESS_STEP / interval))
    prev_bytes = 0
    for k in range(1, ticks + 1):
        now = k * interval if k < ticks else duration
        net.run_until(now)
        for f in flows:
            f.sample(now, interval)
        sent = bottleneck.bytes_sent
        row = {"flow": "bottleneck", "time": now, "bytes": sent,
               "throughput_bps": (sent - prev_bytes) * 8.0 / interval, **bottleneck.sample()}
        prev_bytes = sent
        link_trace.append(row)
        if progress is not None and (k % report_every == 0 or k == ticks):
            progress(now)

    for f in flows:
        if f.error is not None:
            raise ConfigurationError(
                f"{scenario.source}: flow {f.label} (cc {f.spec.cc!r}) could not start: "
                f"{f.error}; the installed TCP engine cannot run it (update layers-tcp and the "
                f"congestion-control plugin together)")
    flow_results = [f.summary(duration, scenario.base_rtt(f.spec)) for f in flows]
    link = bottleneck.stats(duration)
    data_packets = link["packets"]
    results: dict[str, Any] = {
        "experiment": exp.name,
        "scenario": scenario.to_dict(),
        "flows": flow_results,
        "link": link,
        "fairness": {"jain": rounded(jain([r["goodput_bps"] for r in flow_results]))},
        "virtual": {
            "events": net.steps,
            "bottleneck_packets": data_packets,
            "unroutable": left.unroutable + right.unroutable,
            "telemetry": all(f.telemetry_samples > 0 for f in flows),
        },
    }
    for s in net.stacks:
        if isinstance(s, Stack):
            s.stop()
    return RunOutput(results, {f.label: f.trace for f in flows}, link_trace)


def describe_hosts(scenario: Scenario) -> list[tuple[str, str, str]]:
    """(label, sender address, receiver address) per flow, for reports."""
    return [(label, _host(1, i), _host(2, i)) for i, label in enumerate(scenario.labels())]

