"""FaultLink corruption stays detectable when the device does the checksums (TAP offloads):
a received frame the device vouched for loses RX_CSUM_VERIFIED, and a sent frame whose
checksum the device completes has the flipped bit in that partial checksum, so every segment
the device makes from it fails verification. No root: a memory link stands for the device."""

from __future__ import annotations

from typing import Any

from layers.links.base import RX_CSUM_VERIFIED, Link, TxOffload
from layers.links.faults import FaultLink
from layers.wire.checksum import checksum


class Device(Link):
    """Records what is sent; hands out queued frames with flags."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[bytes, Any]] = []
        self.inbox: list[tuple[bytes, int]] = []

    def send(self, frame: Any, offload: TxOffload | None = None) -> None:
        self.sent.append((bytes(frame), offload))

    def recv(self) -> tuple[bytes, int] | None:
        return self.inbox.pop(0) if self.inbox else None


def _frame(payload: bytes) -> tuple[bytes, TxOffload]:
    eth = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
    ip = bytes(20)
    tcp = bytearray(20)
    tcp[16:18] = (0x1234).to_bytes(2, "big")  # a pseudo-header partial sum, as TCP leaves it
    return eth + ip + bytes(tcp) + payload, TxOffload(csum_start=20, csum_offset=16)


def _completed(frame: bytes) -> bytes:
    """What the device does: the Internet checksum over the TCP segment, seed included."""
    seg = bytearray(frame[34:])
    seg[16:18] = checksum(bytes(seg)).to_bytes(2, "big")
    return bytes(seg)


def test_offloaded_tx_frames_are_corrupted_in_the_partial_checksum() -> None:
    dev = Device()
    link = FaultLink(dev, corrupt=1.0, seed=3)
    link.attach(lambda: 0.0)
    clean_dev = Device()
    for i in range(50):
        frame, off = _frame(bytes([i]) * 1000)
        link.send(frame, off)
        clean_dev.send(frame, off)
    assert link.count("corrupt", "tx") == 50
    for (bad, off), (good, _) in zip(dev.sent, clean_dev.sent, strict=True):
        diff = [i for i in range(len(good)) if good[i] != bad[i]]
        assert len(diff) == 1 and 34 + 16 <= diff[0] < 34 + 18, diff
        assert off is not None and off.needs_csum
        # after the device completes the checksum, the good segment verifies, the bad does not
        # (a receiver adds the pseudo-header, whose sum the seed 0x1234 stands for)
        assert checksum(b"\x12\x34" + _completed(good)) == 0
        assert checksum(b"\x12\x34" + _completed(bad)) != 0


def test_plain_tx_frames_are_corrupted_anywhere_after_the_link_header() -> None:
    dev = Device()
    link = FaultLink(dev, corrupt=1.0, seed=4)
    link.attach(lambda: 0.0)
    frame, _ = _frame(bytes(1000))
    where = set()
    for _ in range(200):
        link.send(frame, None)
        bad = dev.sent[-1][0]
        (i,) = [i for i in range(len(frame)) if frame[i] != bad[i]]
        where.add(i)
    assert min(where) >= 14 and max(where) > 100


def test_corrupted_rx_frames_lose_the_verified_flag() -> None:
    dev = Device()
    link = FaultLink(dev, corrupt=0.5, seed=5)
    link.attach(lambda: 0.0)
    frame, _ = _frame(bytes(500))
    dev.inbox = [(frame, RX_CSUM_VERIFIED)] * 200
    got = [link.recv() for _ in range(200)]
    corrupted = [g for g in got if g is not None and g[0] != frame]
    clean = [g for g in got if g is not None and g[0] == frame]
    assert len(corrupted) == link.count("corrupt", "rx") > 50
    assert all(flags & RX_CSUM_VERIFIED == 0 for _, flags in corrupted)
    assert all(flags & RX_CSUM_VERIFIED for _, flags in clean)
