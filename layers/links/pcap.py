"""A link wrapper that captures every frame received and sent to a classic pcap file.

::

    link = PcapLink(TapLink.open("tap0"), "tap0.pcap")           # wall-clock timestamps
    link = PcapLink(memory_link, "run.pcap", clock="stack")     # the stack's (virtual) clock

``tcpdump -r``, Wireshark and scapy's ``rdpcap`` read the file. The link type is
``LINKTYPE_ETHERNET`` (1) on Ethernet media and ``LINKTYPE_RAW`` (101, bare IPv4/IPv6) on IP
media such as TUN. Timestamps have microsecond resolution.

Frames received with offloads (a TAP with the virtio header) may be larger than the MTU (GSO
super-segments) and carry partial transport checksums, exactly as ``tcpdump -i`` on the Linux
side of such a device shows them.

**Flushing.** Records are buffered in memory and written whole, never split, so the file on disk
always ends on a record boundary. The buffer is written when it holds ``buffer_size`` bytes, when
a frame passes at least ``flush_interval`` seconds after the previous write, and, on an idle link,
at the next :meth:`poll` after that interval (the wrapper announces it in
:meth:`next_deadline`). :meth:`close` and :meth:`flush` write everything.
"""

from __future__ import annotations

import io
import os
import struct
import time
from typing import BinaryIO

from layers.errors import ConfigurationError
from layers.links.base import Clock, Link, LinkWrapper, Medium, TxOffload

PCAP_MAGIC = 0xA1B2C3D4  # microsecond timestamps
PCAP_VERSION = (2, 4)
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101

_FILE_HEADER = struct.Struct("<IHHiIII")
_RECORD_HEADER = struct.Struct("<IIII")


class PcapLink(LinkWrapper):
    """Capture ``inner``'s traffic to ``path_or_file`` (a path, or a binary file object).

    ``clock``: None for wall time (``time.time``), ``"stack"`` for the clock the stack attaches
    (virtual time in VirtualNetwork tests), or any callable returning seconds. A file object is
    flushed but not closed by :meth:`close`; a path is opened here and closed there.
    """

    notifies_deadline = True

    def __init__(
        self,
        inner: Link,
        path_or_file: str | os.PathLike[str] | BinaryIO,
        snaplen: int = 262144,
        *,
        clock: Clock | str | None = None,
        flush_interval: float = 1.0,
        buffer_size: int = 1 << 16,
    ) -> None:
        super().__init__(inner)
        if snaplen <= 0:
            raise ConfigurationError(f"snaplen={snaplen} must be positive (262144 keeps all)")
        if isinstance(clock, str) and clock != "stack":
            raise ConfigurationError(
                f"clock={clock!r}: give a callable, 'stack' for the stack's clock, or None for "
                f"wall time"
            )
        self.snaplen = snaplen
        self._ts_source = clock
        self._ts: Clock = time.time if clock is None or isinstance(clock, str) else clock
        self.flush_interval = flush_interval
        self.buffer_size = buffer_size
        self._owns_file = isinstance(path_or_file, str | os.PathLike)
        self._file: BinaryIO
        self.path: str | None
        if isinstance(path_or_file, str | os.PathLike):
            self.path = os.fspath(path_or_file)
            self._file = open(self.path, "wb", buffering=0)
        else:
            name = getattr(path_or_file, "name", None)
            self.path = name if isinstance(name, str) else None
            self._file = path_or_file
        self.linktype = (
            LINKTYPE_RAW if inner.capabilities.medium is Medium.IP else LINKTYPE_ETHERNET
        )
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._last_write = float("-inf")
        self._first_pending: float | None = None
        self.frames_written = 0
        self._closed = False
        self._write(
            _FILE_HEADER.pack(PCAP_MAGIC, *PCAP_VERSION, 0, 0, snaplen, self.linktype)
        )

    # --- clock ------------------------------------------------------------------------
    def attach(self, clock: Clock) -> None:
        super().attach(clock)
        if self._ts_source == "stack":
            self._ts = clock

    # --- capture ----------------------------------------------------------------------
    def _record(self, frame: bytes | bytearray | memoryview) -> None:
        if self._closed:
            return
        ts = self._ts()
        n = len(frame)
        cap = n if n <= self.snaplen else self.snaplen
        sec = int(ts)
        usec = int((ts - sec) * 1_000_000)
        if usec >= 1_000_000:  # rounding at the edge of a second
            sec, usec = sec + 1, 999_999
        pending = self._pending
        pending.append(_RECORD_HEADER.pack(sec & 0xFFFFFFFF, usec, cap, n))
        # copy: the caller may reuse its buffer once send()/recv() returns
        pending.append(bytes(frame[:cap]) if cap < n or not isinstance(frame, bytes) else frame)
        self._pending_bytes += 16 + cap
        self.frames_written += 1
        first = self._first_pending is None
        if first:
            self._first_pending = self._now()
        if self._pending_bytes >= self.buffer_size or (
            self._now() - self._last_write >= self.flush_interval
        ):
            self.flush()
        elif first and self._wakeup is not None:
            self._wakeup()  # a flush is now due: a new deadline for the runner

    def _now(self) -> float:
        return self._clock() if self._clock is not None else time.monotonic()

    def recv(self) -> tuple[bytes, int] | None:
        got = self.inner.recv()
        if got is not None:
            self._record(got[0])
        return got

    def send(self, frame: bytes | bytearray | memoryview, offload: TxOffload | None = None) -> None:
        self._record(frame)
        self.inner.send(frame, offload)

    # --- flushing ---------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        self._file.write(data)
        if not self._owns_file:
            self._file.flush()

    def flush(self) -> None:
        """Write every buffered record (whole records only) to the file."""
        if self._pending:
            self._write(b"".join(self._pending))
            self._pending.clear()
            self._pending_bytes = 0
        self._first_pending = None
        self._last_write = self._now()

    def next_deadline(self) -> float | None:
        inner = self.inner.next_deadline()
        if self._first_pending is None:
            return inner
        mine = max(self._first_pending, self._last_write + self.flush_interval)
        return mine if inner is None or mine < inner else inner

    def poll(self, now: float) -> None:
        self.inner.poll(now)
        if self._first_pending is not None and now - self._last_write >= self.flush_interval:
            self.flush()

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            if not self._closed:
                try:
                    self.flush()
                finally:
                    self._closed = True
                    if self._owns_file:
                        self._file.close()

    def describe(self) -> dict[str, object]:
        d = super().describe()
        d["pcap"] = {"path": self.path, "frames": self.frames_written, "linktype": self.linktype}
        return d


PcapRecord = tuple[float, bytes, int]


def read_pcap(path_or_file: str | os.PathLike[str] | BinaryIO) -> tuple[int, list[PcapRecord]]:
    """``(linktype, [(timestamp, captured_bytes, original_length), ...])`` of a classic pcap.

    A small reader for tests and tools; it accepts either byte order and both the microsecond
    and the nanosecond magic."""
    if isinstance(path_or_file, str | os.PathLike):
        with open(os.fspath(path_or_file), "rb") as f:
            data = f.read()
    else:
        data = path_or_file.read()
    buf = io.BytesIO(data)
    head = buf.read(24)
    if len(head) < 24:
        raise ValueError("not a pcap file: shorter than its header")
    for order in ("<", ">"):
        magic = struct.unpack(order + "I", head[:4])[0]
        if magic in (0xA1B2C3D4, 0xA1B23C4D):
            break
    else:
        raise ValueError("not a classic pcap file (bad magic)")
    scale = 1e-6 if magic == 0xA1B2C3D4 else 1e-9
    linktype = struct.unpack(order + "I", head[20:24])[0] & 0x0FFFFFFF
    rec = struct.Struct(order + "IIII")
    out: list[PcapRecord] = []
    while True:
        h = buf.read(16)
        if len(h) < 16:
            break
        sec, frac, caplen, origlen = rec.unpack(h)
        body = buf.read(caplen)
        if len(body) < caplen:
            break
        out.append((sec + frac * scale, body, origlen))
    return linktype, out
