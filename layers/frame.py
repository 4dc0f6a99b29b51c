"""The object per-frame hooks see."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from layers.interface import Interface
    from layers.links.base import TxOffload


class Frame:
    """One frame passing a per-frame hook. ``direction`` is ``"rx"`` or ``"tx"``."""

    __slots__ = ("data", "direction", "drop_reason", "flags", "handled", "interface", "offload")

    def __init__(
        self,
        interface: Interface,
        data: bytes | bytearray | memoryview,
        direction: str,
        flags: int = 0,
        offload: TxOffload | None = None,
    ) -> None:
        self.interface = interface
        self.data = data
        self.direction = direction
        self.flags = flags
        self.offload = offload
        self.drop_reason: str | None = None
        #: set by the core once it has delivered, sent or dropped the frame (innermost hook)
        self.handled = False

    @property
    def dropped(self) -> bool:
        return self.drop_reason is not None

    def drop(self, reason: str = "filtered") -> None:
        """Stop this frame; it is counted on its interface under ``reason``."""
        self.drop_reason = reason

    def __repr__(self) -> str:
        return f"<Frame {self.direction} {self.interface.name} {len(self.data)}B>"
