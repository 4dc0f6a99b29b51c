"""The core's own plugin: the built-in link drivers and the innermost per-frame hook impls.

It is registered first in every plugin manager, under the name ``core``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from layers.hookspecs import hookimpl

if TYPE_CHECKING:
    from layers.frame import Frame
    from layers.interface import Interface
    from layers.links.base import Link
    from layers.stack import Stack


def _tap(name: str, **options: Any) -> Link:
    from layers.links.tuntap import TapLink

    return TapLink.open(name, **options)


def _tun(name: str, **options: Any) -> Link:
    from layers.links.tuntap import TunLink

    return TunLink.open(name, **options)


@hookimpl
def layers_link_drivers() -> Mapping[str, Callable[..., Link]]:
    return {"tap": _tap, "tun": _tun}


@hookimpl
def layers_queue_disciplines() -> Iterable[Any]:
    from layers.qdisc import BUILTIN_QDISCS

    return BUILTIN_QDISCS


@hookimpl
def layers_interface_up(stack: Stack, interface: Interface) -> None:
    # A link wrapper with counters of its own (a shaper's queues) shows them in the stack's
    # report (`layers netstat -s`) by offering ``stack_counters(interface_name)``.
    link: object = interface.link
    while link is not None:
        offer = getattr(link, "stack_counters", None)
        if offer is not None:
            stack.counters.update(offer(interface.name))
        link = getattr(link, "inner", None)


@hookimpl
def layers_frame_received(stack: Stack, frame: Frame) -> None:
    frame.handled = True
    if frame.drop_reason is not None:
        frame.interface.counters.drop(frame.drop_reason)
    else:
        stack.dispatch(frame.interface, frame.data, frame.flags)


@hookimpl
def layers_frame_sending(stack: Stack, frame: Frame) -> None:
    frame.handled = True
    if frame.drop_reason is not None:
        frame.interface.counters.drop(frame.drop_reason)
    else:
        frame.interface.link.send(frame.data, frame.offload)
