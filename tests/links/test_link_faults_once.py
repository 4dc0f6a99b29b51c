""""2% loss on this link" means each frame crossing it is lost with probability 2%, whichever
way it goes: VirtualNetwork.link(faults=...) injects once per frame, where a FaultLink on both
ends with direction="both" (the single-end default, right for a TAP) would inject twice."""

from __future__ import annotations

import pytest

from layers import ConfigurationError
from layers.links.faults import FaultLink
from layers.virtual import VirtualNetwork

FRAMES = 2000
LOSS = 0.3


def _received(vnet: VirtualNetwork, **link: object) -> tuple[float, float]:
    a, b = vnet.new_stack([]), vnet.new_stack([])
    ia, ib = vnet.link(a, b, **link)  # type: ignore[arg-type]
    assert ia.mac is not None and ib.mac is not None
    for i in range(FRAMES):
        ia.send_ethernet(ib.mac, 0x88B5, i.to_bytes(4, "big"))  # IEEE local experimental
        ib.send_ethernet(ia.mac, 0x88B5, i.to_bytes(4, "big"))
    vnet.run_for(1)
    return ib.counters["rx_frames"] / FRAMES, ia.counters["rx_frames"] / FRAMES


def test_link_faults_meet_each_frame_once() -> None:
    a_to_b, b_to_a = _received(VirtualNetwork(), faults=f"loss={LOSS:.0%},seed=5")
    for got in (a_to_b, b_to_a):
        assert got == pytest.approx(1 - LOSS, abs=0.04)  # 2000 frames: sigma ~ 0.01
    assert a_to_b != b_to_a  # the two ends draw from different seeds


def test_a_both_ways_fault_link_on_each_end_meets_each_frame_twice() -> None:
    """What the default would do on both ends, shown so the documentation stays true."""
    a_to_b, _ = _received(VirtualNetwork(), wrap=lambda end: FaultLink(end, loss=LOSS, seed=5))
    assert a_to_b == pytest.approx((1 - LOSS) ** 2, abs=0.04)


def test_link_faults_refuse_a_direction() -> None:
    vnet = VirtualNetwork()
    with pytest.raises(ConfigurationError, match="apply once per frame"):
        vnet.link(vnet.new_stack([]), vnet.new_stack([]), faults="loss=1%,dir=rx")
