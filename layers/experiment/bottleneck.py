"""The dumbbell's shared link: rate, queue discipline, propagation delay and random loss.

The rate and the queue come from the bottleneck wrapper :mod:`layers.links.shaper` with a
discipline from :mod:`layers.qdisc`; the propagation delay is the memory link's latency and
random loss a seeded :class:`~layers.links.faults.FaultLink` on the data direction, so the
model's ``p`` is exactly the probability that a data packet is lost. This module only adapts
those instruments to a scenario; it holds no queue of its own. Without the shaper installed
the link has delay and loss but no rate: results then say ``"shaped": false``.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import Any

from layers.errors import ConfigurationError
from layers.experiment.metrics import rounded
from layers.experiment.scenario import LinkSpec, Scenario, ScenarioError
from layers.experiment.seeds import substream
from layers.links.base import Link
from layers.links.faults import FaultLink
from layers.links.memory import MemoryLink


def shaper_module() -> Any | None:
    """``layers.links.shaper`` when installed, else None."""
    try:
        return importlib.import_module("layers.links.shaper")
    except ImportError:
        return None


@contextlib.contextmanager
def queue_errors(scenario: Scenario) -> Iterator[None]:
    """The shaper's complaints about the queue, as one line naming the file and the key."""
    try:
        yield
    except ConfigurationError as exc:
        key = "link.queue" if "queue discipline" in str(exc) else "link.queue_options"
        raise ScenarioError(f"{scenario.source}: {key}: {exc}") from None


class Bottleneck:
    """Both directions of the bottleneck and what they measured.

    ``forward`` and ``reverse`` are the two ends of a memory link pair (latency 0) given by
    the caller; the data direction (forward) gets the scenario's rate, delay and queue, and
    after its wire the random loss; the reverse (ACK) direction the same rate and delay with
    a drop-tail queue long enough never to drop."""

    #: the ACK direction's queue: long enough that ACKs are never what a run measures
    REVERSE_LIMIT = 10_000

    def __init__(self, scenario: Scenario, forward: Link, reverse: Link) -> None:
        self.scenario = scenario
        link = scenario.link
        seed = scenario.experiment.seed
        mod = shaper_module()
        self.shaped = mod is not None
        mtu = scenario.experiment.mtu
        self.limit = link.queue_limit.resolve(scenario.bdp_bytes(), mtu)
        self._counted = forward
        self.loss: FaultLink | None = None
        data: Link = forward
        if link.loss > 0:
            self.loss = FaultLink(forward, loss=float(link.loss),
                                  seed=substream(seed, "link.loss"), direction="tx")
            data = self.loss
        self.direction: Any = None
        if mod is None:
            if link.queue != "droptail":
                raise ConfigurationError(
                    f"{scenario.source}: link.queue: {link.queue!r} needs the bottleneck "
                    f"wrapper (layers.links.shaper), which this installation lacks; use "
                    f"\"droptail\"")
            # no rate and no queue: the memory links carry the delay
            for end in (forward, reverse):
                if isinstance(end, MemoryLink):
                    end.latency = float(link.delay)
            self.forward = data
            self.reverse = reverse
            return
        settings: dict[str, Any] = {("limit" if self.limit[0] == "packets" else "limit_bytes"):
                                    self.limit[1]}
        settings.update(link.queue_options)
        with queue_errors(scenario):
            fwd_shape = mod.Shape(rate=float(link.rate), delay=float(link.delay), queue=link.queue,
                                  queue_settings=settings, direction="tx",
                                  seed=substream(seed, "link.queue.forward") & 0xFFFFFFFF)
        rev_shape = mod.Shape(rate=float(link.rate), delay=float(link.delay), queue="droptail",
                              queue_settings={"limit": self.REVERSE_LIMIT}, direction="tx",
                              seed=substream(seed, "link.queue.reverse") & 0xFFFFFFFF)
        # Loss after the wire (a packet lost in transit has used the link): the shaper
        # wraps the fault link.
        with queue_errors(scenario):
            shaper = mod.ShaperLink(data, tx=fwd_shape)
        self.direction = shaper.tx
        self.forward = shaper
        self.reverse = mod.ShaperLink(reverse, tx=rev_shape)

    def sample(self) -> dict[str, Any]:
        """The queue right now, for the link trace."""
        return queue_sample(self.direction) if self.direction is not None else {}

    @property
    def bytes_sent(self) -> int:
        """Bytes the data direction has carried so far."""
        if self.direction is not None:
            return int(self.direction.delivered_bytes)
        return self._counted.stats.tx_bytes

    def stats(self, duration: float) -> dict[str, Any]:
        """Utilization, queueing delay, drops and marks of the data direction."""
        d = self.direction
        out = link_stats(self.scenario.link, self.limit, d, duration,
                         self.loss.count("loss") if self.loss is not None else 0)
        if d is None:
            sent = self._counted.stats.tx_bytes
            out.update({
                "bytes": sent, "packets": self._counted.stats.tx_frames,
                "utilization": rounded(sent * 8.0 / (float(self.scenario.link.rate) * duration)),
                "drops": 0, "marks": 0, "drop_reasons": {}, "mark_reasons": {},
                "queue_delay_mean_s": 0.0, "queue_delay_p95_s": 0.0, "queue_max_packets": 0,
            })
        return out


def queue_sample(direction: Any) -> dict[str, Any]:
    """The queue of a shaped direction (a shaper's per-direction state) right now: one row of
    the link trace, virtual or TAP."""
    backlog = direction.qdisc.backlog
    return {"queue_packets": len(direction.qdisc), "queue_bytes": backlog,
            "queue_delay_s": backlog * 8.0 / direction.rate, "drops": direction.dropped,
            "marks": direction.marked}


def link_stats(link: LinkSpec, limit: tuple[str, int], direction: Any, duration: float,
               random_losses: int) -> dict[str, Any]:
    """The ``link`` object of a run's results, virtual or TAP: the scenario's link and the
    queue ``limit`` it resolved to, and what the shaped data ``direction`` (a shaper's
    per-direction state) carried, dropped, marked and queued over ``duration`` seconds. With
    ``direction`` None (no shaper) only the link's own part."""
    out: dict[str, Any] = {
        "shaped": direction is not None,
        "rate_bps": float(link.rate),
        "queue": link.queue,
        "queue_limit": f"{limit[1]}{'p' if limit[0] == 'packets' else 'B'}",
        "random_losses": random_losses,
    }
    if direction is None:
        return out
    st = direction.qdisc.stats
    series = direction.series
    out.update({
        "bytes": int(direction.delivered_bytes),
        "packets": int(direction.delivered),
        "utilization": rounded(min(1.0, direction.busy_time / duration) if duration > 0
                               else 0.0),
        "drops": direction.dropped,
        "marks": direction.marked,
        "drop_reasons": dict(sorted(st.drops.items())),
        "mark_reasons": dict(sorted(st.marks.items())),
        "queue_delay_mean_s": rounded(st.sojourn_mean),
        "queue_delay_p95_s": rounded(series.percentile(95) if series is not None else None),
        "queue_max_packets": st.max_qlen,
    })
    return out
