"""The tap medium: real time, against the Linux kernel's TCP, in a namespace of our own.

::

            namespace (no uplink, deleted afterwards; ip_forward on inside it)
      +--------------------------------------------------------------+
      |  Linux senders (linux:NAME flows: the kernel's TCP with NAME)  |
      |        |                                                       |
      |  tapS0 10.81.1.1 <-- forwards --> tapR 10.81.0.1               |
      +-----|----------------------------------|---------------------+
            | access delay (flow.delay)        | the bottleneck: shaper (rate, delay,
      our sender stack 0 (10.81.1.2)           | queue) and random loss on the data
      (flows with our congestion control)      | direction
                                          our receiver stack (10.81.0.2)

Every flow's data converges on ``tapR``, so our senders and the kernel's share the one queue
of the bottleneck, which wraps the receiver stack's TAP: its receive direction carries the
data (rate, delay, the scenario's queue discipline, then random loss), its send direction the
ACKs (rate and delay, a long drop-tail queue). Each of our flows has a sender stack on a TAP
of its own; Linux forwards its packets to ``tapR``. A ``linux:NAME`` flow is a sender process
in the namespace whose socket uses NAME (``TCP_CONGESTION``; the namespace's
``net.ipv4.tcp_congestion_control`` is also set to the first such NAME), reporting the
kernel's ``TCP_INFO`` every sample interval.

Needs root and /dev/net/tun; runs for the scenario's duration in real time. Both sides run
on this machine's CPUs, so keep rates modest (tens of Mbit/s): the receiver stack handles
every flow's packets in one Python process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from layers.errors import ConfigurationError
from layers.experiment.bottleneck import link_stats, queue_errors, queue_sample, shaper_module
from layers.experiment.metrics import jain, rounded
from layers.experiment.scenario import FlowSpec, Scenario
from layers.experiment.seeds import secret, substream
from layers.experiment.virtual import (
    PORT,
    RunOutput,
    _buffers,
    _Flow,
    _Sink,
    check_congestion_controls,
)
from layers.links.base import Link
from layers.links.faults import FaultLink
from layers.links.memory import MemoryLink
from layers.netns import NetNamespace, have_root_and_tun
from layers.runtime import AsyncioRunner
from layers.stack import Stack
from layers.wire import ip4

__all__ = ["linux_congestion_controls", "run_tap"]

SENDER_SCRIPT = Path(__file__).with_name("linux_sender.py")
#: seconds between setting up and time 0 (ARP, the first SYNs need no head start, the
#: sender processes' Python start-up does)
LEAD = 1.0


def linux_congestion_controls() -> list[str]:
    """The kernel's available algorithms (``net.ipv4.tcp_available_congestion_control``)."""
    try:
        text = Path("/proc/sys/net/ipv4/tcp_available_congestion_control").read_text()
    except OSError:
        return []
    return text.split()


def _check(scenario: Scenario) -> None:
    ok, why = have_root_and_tun()
    if not ok:
        raise ConfigurationError(f"{scenario.source}: experiment.medium: \"tap\" {why}; run as "
                                 f"root, or use medium = \"virtual\"")
    if shaper_module() is None:
        raise ConfigurationError("medium = \"tap\" needs the bottleneck wrapper "
                                 "(layers.links.shaper)")
    ours = [f for f in scenario.flow if not f.cc.startswith("linux:")]
    if ours:
        check_congestion_controls(scenario)
    kernel = linux_congestion_controls()
    for i, f in enumerate(scenario.flow):
        if f.cc.startswith("linux:"):
            name = f.cc[6:]
            if name not in kernel:
                raise ConfigurationError(
                    f"{scenario.source}: flow[{i}].cc: the kernel offers {', '.join(kernel)}, "
                    f"not {name!r}; load it (modprobe tcp_{name}) or choose another")
            if f.delay:
                raise ConfigurationError(
                    f"{scenario.source}: flow[{i}].delay: an access delay applies to our "
                    f"stacks' links; remove it from the linux:{name} flow")


class _LinuxFlow(_Flow):
    """A flow whose sender is the kernel's TCP, in a process in the namespace."""

    def __init__(self, index: int, label: str, spec: FlowSpec, receiver: Stack, dst: int,
                 port: int) -> None:
        super().__init__(index, label, spec, None, receiver, dst, port)
        self.proc: asyncio.subprocess.Process | None = None
        self.info: dict[str, Any] | None = None
        self.kernel_retransmits = 0
        #: what getsockopt(TCP_CONGESTION) said after connecting
        self.kernel_cc: str | None = None
        self.errors: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    async def launch(self, ns: NetNamespace, duration: float, interval: float) -> None:
        size = int(self.spec.size) if self.spec.size is not None else 0
        args = ns.exec_args([sys.executable, str(SENDER_SCRIPT), "10.81.0.2", str(self.port),
                             self.spec.cc[6:], f"{duration - float(self.spec.start):.6f}",
                             str(size), f"{interval:.6f}"])
        self.proc = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "cc" in msg and "time" not in msg:
                self.kernel_cc = str(msg["cc"])
            elif "error" in msg:
                self.errors.append(str(msg["error"]))
            elif "done" in msg:
                self.kernel_retransmits = int(msg.get("retransmits", 0))
            else:
                self.info = msg
                self.kernel_retransmits = int(msg.get("retransmits", 0))
                if isinstance(msg.get("srtt"), float):
                    self.rtts.append(msg["srtt"])

    def start(self) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.write(b"go\n")

    def retransmits(self) -> int:
        return self.kernel_retransmits

    def sample(self, now: float, interval: float) -> None:
        if now < float(self.spec.start):
            return
        row: dict[str, Any] = {"time": now, "flow": self.label, "cc": self.spec.cc,
                               "state": "ESTABLISHED" if self.info else None}
        if self.info:
            row.update({k: v for k, v in self.info.items() if k not in ("time", "state")})
        row["received"] = self.received
        row["goodput_bps"] = (self.received - self._prev_received) * 8.0 / interval
        self._prev_received = self.received
        self.trace.append(row)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 5)
            if self.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._reader, 2)


def run_tap(scenario: Scenario, progress: Any = None) -> RunOutput:
    """Run ``scenario`` in real time against Linux (root only)."""
    _check(scenario)
    with NetNamespace(prefix="layers-exp") as ns:
        return asyncio.run(_run(scenario, ns, progress))


def _tap_name(tag: str) -> str:
    return f"x{tag}{os.getpid() % 1000}{secrets.token_hex(2)}"[:15]


async def _run(scenario: Scenario, ns: NetNamespace, progress: Any) -> RunOutput:
    from layers.links.shaper import Shape, ShaperLink
    from layers.links.tuntap import TapLink

    loop = asyncio.get_running_loop()
    exp, link = scenario.experiment, scenario.link
    seed = exp.seed
    duration, interval = float(exp.duration), float(exp.sample_interval)
    ns.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    kernel_ccs = [f.cc[6:] for f in scenario.flow if f.cc.startswith("linux:")]
    namespace_default = None
    if kernel_ccs:
        # The namespace's default; the kernel refuses one outside
        # net.ipv4.tcp_allowed_congestion_control in a namespace other than the initial one
        # (EPERM), which we leave alone: each sender also sets its socket's (TCP_CONGESTION,
        # allowed to root for any available algorithm) and reports what the kernel used.
        done = ns.run(["sysctl", "-qw", f"net.ipv4.tcp_congestion_control={kernel_ccs[0]}"],
                      check=False)
        namespace_default = kernel_ccs[0] if done.returncode == 0 else None
    bufs = _buffers(scenario)
    runners: list[AsyncioRunner] = []
    flows: list[_Flow] = []
    linux: list[_LinuxFlow] = []

    def tap(tag: str, linux_addr: str) -> Link:
        dev = _tap_name(tag)
        with ns.entered():
            t = TapLink.open(dev, offload=False)
        ns.run(["sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1"], check=False)
        t.netlink.add_address(t.ifindex, linux_addr)  # pyroute2; TapLink.open left it up
        return t

    # the receiver, behind the bottleneck
    mtu = exp.mtu
    limit = link.queue_limit.resolve(scenario.bdp_bytes(), mtu + 14)
    settings: dict[str, Any] = {("limit" if limit[0] == "packets" else "limit_bytes"): limit[1]}
    settings.update(link.queue_options)
    with queue_errors(scenario):
        data = Shape(rate=float(link.rate), delay=float(link.delay), queue=link.queue,
                     queue_settings=settings,
                     seed=substream(seed, "link.queue.forward") & 0xFFFFFFFF)
    acks = Shape(rate=float(link.rate), delay=float(link.delay), queue="droptail",
                 queue_settings={"limit": 10_000},
                 seed=substream(seed, "link.queue.reverse") & 0xFFFFFFFF)
    with queue_errors(scenario):
        ShaperLink(MemoryLink(), rx=data)  # check the queue before making any device
    shaper = ShaperLink(tap("r", "10.81.0.1/24"), rx=data, tx=acks)
    rlink: Link = shaper
    loss: FaultLink | None = None
    if link.loss > 0:
        loss = FaultLink(shaper, loss=float(link.loss), seed=substream(seed, "link.loss"),
                         direction="rx")
        rlink = loss
    receiver = Stack(None, clock=loop.time, name="receiver", settings={
        "tcp.sndbuf": bufs, "tcp.rcvbuf": bufs, "tcp.secret": secret(seed, "receiver")})
    receiver.add_interface(rlink, address="10.81.0.2/24")
    receiver.add_route("default", gateway="10.81.0.1")
    try:
        for i, (spec, label) in enumerate(zip(scenario.flows, scenario.labels(), strict=True)):
            port = PORT + i
            flow: _Flow
            if spec.cc.startswith("linux:"):
                lf = _LinuxFlow(i, label, spec, receiver, ip4("10.81.0.2"), port)
                linux.append(lf)
                flow = lf
            else:
                snd = Stack(None, clock=loop.time, name=f"{label}-sender", settings={
                    "tcp.sndbuf": bufs, "tcp.rcvbuf": bufs,
                    "tcp.secret": secret(seed, f"flow{i}.sender"),
                    "tcp.congestion_control": spec.cc, **spec.settings})
                access: Link = tap(f"s{i}", f"10.81.{i + 1}.1/24")
                if spec.delay:
                    access = FaultLink(access, delay=float(spec.delay),
                                       seed=substream(seed, f"flow{i}.access"))
                snd.add_interface(access, address=f"10.81.{i + 1}.2/24")
                snd.add_route("default", gateway=f"10.81.{i + 1}.1")
                flow = _Flow(i, label, spec, snd, receiver, ip4("10.81.0.2"), port)
            receiver.protocol("tcp").listen(lambda f=flow: _Sink(f), 0, port)
            flows.append(flow)
        for lf in linux:
            await lf.launch(ns, duration, interval)
        r = AsyncioRunner(receiver, loop)
        r.start()
        runners.append(r)
        for f in flows:
            if f.sender is not None:
                sr = AsyncioRunner(f.sender, loop)
                sr.start()
                runners.append(sr)
        t0 = loop.time() + LEAD
        for f in flows:
            f.epoch = t0
            loop.call_at(t0 + float(f.spec.start), f.start)
        ticks = max(1, round(duration / interval))
        link_trace: list[dict[str, Any]] = []
        d = shaper.rx
        assert d is not None
        prev = 0
        for k in range(1, ticks + 1):
            now = k * interval if k < ticks else duration
            await asyncio.sleep(max(0.0, t0 + now - loop.time()))
            for f in flows:
                f.sample(now, interval)
            sent = int(d.delivered_bytes)
            link_trace.append({"flow": "bottleneck", "time": now, "bytes": sent,
                               "throughput_bps": (sent - prev) * 8.0 / interval,
                               **queue_sample(d)})
            prev = sent
            if progress is not None and k % max(1, round(0.5 / interval)) == 0:
                progress(now)
        wall = loop.time() - t0
    finally:
        for lf in linux:
            await lf.stop()
        for rr in runners:
            rr.stop()
        for f in flows:
            if f.sender is not None and f.sender.running:
                f.sender.stop()
        if receiver.running:
            receiver.stop()
    for f in flows:
        if f.error is not None:
            raise ConfigurationError(
                f"{scenario.source}: flow {f.label} (cc {f.spec.cc!r}) could not start: "
                f"{f.error}")
    flow_results = [f.summary(duration, scenario.base_rtt(f.spec)) for f in flows]
    for f, res in zip(flows, flow_results, strict=True):
        if isinstance(f, _LinuxFlow):
            res["sender"] = "linux"
            res["rtt_source"] = "tcp_info"
            res["kernel_cc"] = f.kernel_cc
            if f.errors:
                res["errors"] = f.errors
        else:
            res["sender"] = "layers"
    link_results = link_stats(link, limit, d, wall,
                              loss.count("loss") if loss is not None else 0)
    results: dict[str, Any] = {
        "experiment": exp.name,
        "scenario": scenario.to_dict(),
        "flows": flow_results,
        "link": link_results,
        "fairness": {"jain": rounded(jain([r["goodput_bps"] for r in flow_results]))},
        "tap": {"kernel_congestion_control": kernel_ccs,
                "namespace_default_congestion_control": namespace_default,
                "elapsed_s": rounded(wall, 3)},
    }
    return RunOutput(results, {f.label: f.trace for f in flows}, link_trace)
