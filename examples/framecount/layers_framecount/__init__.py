"""framecount: an example third-party plugin for layers.

It counts the frames each stack receives and sends, per ethertype, and reports them in
``layers netstat -s`` (counters ``framecount``) and in ``Stack.report()["framecount"]``.

It shows the three things most plugins need:

* **per-frame wrapper hooks** (``layers_frame_received`` / ``layers_frame_sending`` with
  ``@hookimpl(wrapper=True)``): code before ``yield`` sees each frame before the stack handles
  it, code after ``yield`` sees the outcome (here: whether a filter dropped it);
* **per-stack state** kept on the stack, never in module globals (one process may run many
  stacks, and every stack shares this module): ``stack.counter("framecount")``;
* **a report** through ``layers_report``.

It imports only the core (``layers``), never another plugin.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any

from layers import Stack, hookimpl
from layers.frame import Frame
from layers.links.base import Medium
from layers.wire.ethernet import ETH_P_8021Q, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6

__version__ = "0.1.0"
#: Not part of the default selection: a per-frame hook costs every frame something, so it
#: joins a stack only when named (``--plugins arp,ipv4,icmp,framecount``).
LAYERS_OPT_IN = True

COUNTER = "framecount"
#: names shown in the report for well-known ethertypes
NAMES = {ETH_P_IP: "ipv4", ETH_P_ARP: "arp", ETH_P_IPV6: "ipv6", ETH_P_8021Q: "vlan"}
#: IP-medium links (TUN) carry no ethertype: the IP version nibble stands in for it
_BY_VERSION = {4: ETH_P_IP, 6: ETH_P_IPV6}


def ethertype_of(frame: Frame) -> int | None:
    """The frame's ethertype (or its IP version's ethertype on a TUN); None for a runt."""
    data = frame.data
    if frame.interface.medium is Medium.ETHERNET:
        if len(data) < 14:
            return None
        return (data[12] << 8) | data[13]
    if not data:
        return None
    return _BY_VERSION.get(data[0] >> 4, 0)


def _count(stack: Stack, frame: Frame) -> None:
    ethertype = ethertype_of(frame)
    key = "runt" if ethertype is None else f"0x{ethertype:04x}"
    stack.counter(COUNTER)[f"{frame.direction}_{key}"] += 1


@hookimpl(wrapper=True)
def layers_frame_received(stack: Stack, frame: Frame) -> Generator[None, None, None]:
    _count(stack, frame)
    yield  # the stack (and any inner hooks) handle the frame here
    if frame.dropped:
        stack.counter(COUNTER)["rx_filtered"] += 1


@hookimpl(wrapper=True)
def layers_frame_sending(stack: Stack, frame: Frame) -> Generator[None, None, None]:
    _count(stack, frame)
    yield
    if frame.dropped:
        stack.counter(COUNTER)["tx_filtered"] += 1


@hookimpl
def layers_report(stack: Stack) -> Mapping[str, Any]:
    rows = []
    for key, frames in sorted(stack.counter(COUNTER).items()):
        direction, _, kind = key.partition("_")
        if kind in ("filtered",):
            continue
        ethertype = int(kind, 16) if kind.startswith("0x") else None
        rows.append(
            {
                "direction": direction,
                "ethertype": kind,
                "name": NAMES.get(ethertype, "other") if ethertype is not None else "runt",
                "frames": frames,
            }
        )
    return {COUNTER: rows}
