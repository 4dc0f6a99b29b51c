"""The dumbbell's shared link: rate, queue discipline, propagation delay and random loss.

The rate and the queue come from the bottleneck wrapper :mod:`layers.links.shaper` with a
discipline from :mod:`layers.qdisc`; the propagation delay is the memory link's latency and
random loss a seeded :class:`~layers.links.faults.FaultLink` on the data direction, so the
model's ``p`` is exactly the probability that a data packet is lost. This module only adapts
those instruments to a scenario; it holds no queue of its own. Without the shaper installed
the link has delay and loss but no rate: results then say ``"shaped": false``.
"""

from __future__ import annotations

import importlib
from typing import Any

from layers.errors import ConfigurationError
from layers.experiment.scenario import Scenario
from layers.experiment.seeds import substream
from layers.links.base import Link
from layers.links.faults import FaultLink


def shaper_module() -> Any | None:
    """``layers.links.shaper`` when installed, else None."""
    try:
        return importlib.import_module("layers.links.shaper")
    except ImportError:
        return None


class Bottleneck:
    """Both directions of the bottleneck and what they measured."""

    def __init__(self, scenario: Scenario, forward: Link, reverse: Link) -> None:
        self.scenario = scenario
        link = scenario.link
        seed = scenario.experiment.seed
        self._shaper = shaper_module()
        self.shaped = self._shaper is not None
        self.queues: list[Any] = []
        mtu = scenario.experiment.mtu
        self.limit = link.queue_limit.resolve(scenario.bdp_bytes(), mtu)
        data: Link = forward
        if self._shaper is not None:
            data = self._shape(forward, link.queue, self.limit, dict(link.queue_options),
                               substream(seed, "link.queue.forward"))
            reverse = self._shape(reverse, "droptail", ("packets", 10_000), {},
                                  substream(seed, "link.queue.reverse"))
        elif link.queue != "droptail":
            raise ConfigurationError(
                f"{scenario.source}: link.queue: {link.queue!r} needs the bottleneck wrapper "
                f"(layers.links.shaper), which this installation lacks; use \"droptail\" or "
                f"install a layers with it"
            )
        self.loss: FaultLink | None = None
        if link.loss > 0:
            self.loss = FaultLink(data, loss=float(link.loss), seed=substream(seed, "link.loss"),
                                  direction="tx")
            data = self.loss
        self.forward = data
        self.reverse = reverse
        self._fwd_inner = forward

    def _shape(self, inner: Link, queue: str, limit: tuple[str, int],
               options: dict[str, Any], seed: int) -> Link:
        raise ConfigurationError("the bottleneck wrapper's interface is not supported yet")

    def sample(self) -> dict[str, Any]:
        """The queue right now, for the link trace."""
        return {}

    def stats(self, duration: float) -> dict[str, Any]:
        """Utilization, queueing delay, drops and marks of the data direction."""
        link = self.scenario.link
        sent = self._fwd_inner.stats.tx_bytes
        out: dict[str, Any] = {
            "shaped": self.shaped,
            "rate_bps": float(link.rate),
            "queue": link.queue,
            "queue_limit": f"{self.limit[1]}{'p' if self.limit[0] == 'packets' else 'B'}",
            "bytes": sent,
            "packets": self._fwd_inner.stats.tx_frames,
            "utilization": sent * 8.0 / (float(link.rate) * duration) if duration > 0 else 0.0,
            "random_losses": self.loss.count("loss") if self.loss is not None else 0,
            "drops": 0,
            "marks": 0,
            "queue_delay_mean_s": 0.0,
            "queue_delay_p95_s": 0.0,
        }
        return out
