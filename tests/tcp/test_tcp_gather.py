"""The send path hands the link a frame in pieces: Ethernet, IPv4 and TCP headers built beside
a view of the application's own buffer, so no payload byte is copied before the device's
scatter-gather write (``Link.send_gather``; a TAP writes them with one ``os.writev``)."""

from __future__ import annotations

import asyncio
from collections.abc import Generator

from layers import hookimpl
from layers.frame import Frame
from layers.links.base import Gather, Link, LinkWrapper, TxOffload
from layers.stack import Stack
from layers.virtual import VirtualNetwork
from layers.wire import ip4


class Recording(LinkWrapper):
    """Remembers the pieces of every frame sent, then sends the frame joined."""

    def __init__(self, inner: Link) -> None:
        super().__init__(inner)
        self.gathered: list[Gather] = []

    def send_gather(self, parts: Gather, offload: TxOffload | None = None) -> None:
        self.gathered.append(parts)
        super().send_gather(parts, offload)


def test_application_bytes_reach_the_link_as_views_and_arrive_whole() -> None:
    net = VirtualNetwork()
    links: list[Recording] = []

    def wrap(link: Link) -> Link:
        links.append(Recording(link))
        return links[-1]

    a, b = net.pair(["arp", "ipv4", "tcp"], wrap=wrap)
    got = bytearray()

    class Sink(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            got.extend(data)

    b.protocol("tcp").listen(Sink, 0, 9)
    conn = a.protocol("tcp").connect(Sink(), ip4("10.0.0.2"), 9)
    net.run_for(0.1)
    payload = bytes(range(256)) * 400  # 100 KiB: written by reference, sent in MSS pieces
    conn.write(payload)
    assert net.run_until_true(lambda: len(got) >= len(payload), timeout=30)
    assert bytes(got) == payload
    data_frames = [parts for parts in links[0].gathered
                   if any(isinstance(p, memoryview) and p.obj is payload for p in parts)]
    # every byte of the payload went out as a view of the application's object
    assert sum(len(parts[-1]) for parts in data_frames) >= len(payload)
    for parts in data_frames:
        # the headers may come as separate pieces or, from ipv4's egress cache, Ethernet
        # and IPv4 in one; either way they are small and the data is the application's
        *headers, data = parts
        head = b"".join(bytes(p) for p in headers)
        assert head[12:14] == b"\x08\x00" and head[14] == 0x45
        assert 14 + 20 + 20 <= len(head) <= 14 + 60 + 60
        assert isinstance(data, memoryview) and data.obj is payload


def test_a_per_frame_hook_sees_one_contiguous_frame() -> None:
    """Hooks may read or rewrite a frame: they get it joined, the same bytes the link would."""
    seen: list[bytes] = []

    class Tap:
        @hookimpl(wrapper=True)
        def layers_frame_sending(self, stack: Stack, frame: Frame) -> Generator[None, None, None]:
            seen.append(bytes(frame.data))
            yield

    net = VirtualNetwork()
    a = net.new_stack(["arp", "ipv4", "tcp", Tap()])
    b = net.new_stack(["arp", "ipv4", "tcp"])
    net.link(a, b, addresses=("10.0.0.1/24", "10.0.0.2/24"))
    a.start()
    b.start()
    got = bytearray()

    class Sink(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            got.extend(data)

    b.protocol("tcp").listen(Sink, 0, 9)
    conn = a.protocol("tcp").connect(Sink(), ip4("10.0.0.2"), 9)
    net.run_for(0.1)
    conn.write(b"x" * 5000)
    assert net.run_until_true(lambda: len(got) >= 5000, timeout=30)
    assert bytes(got) == b"x" * 5000
    assert any(f.endswith(b"x" * 100) and f[12:14] == b"\x08\x00" for f in seen)


def test_a_segment_across_two_written_buffers_leaves_as_views_of_both() -> None:
    """With checksum offload nothing needs the payload contiguous: a segment whose bytes lie
    in two of the application's buffers goes to the link as a view of each (no join)."""
    net = VirtualNetwork()
    a = net.new_stack(["arp", "ipv4", "tcp"], name="a")
    b = net.new_stack(["arp", "ipv4", "tcp"], name="b")
    links: list[Recording] = []

    def wrap(link: Link) -> Link:
        links.append(Recording(link))
        return links[-1]

    net.link(a, b, addresses=("10.0.0.1/24", "10.0.0.2/24"), wrap=wrap, checksum_offload=True)
    a.start()
    b.start()
    got = bytearray()

    class Sink(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            got.extend(data)

    b.protocol("tcp").listen(Sink, 0, 9)
    conn = a.protocol("tcp").connect(Sink(), ip4("10.0.0.2"), 9)
    net.run_for(0.1)
    chunks = [bytes([i]) * 20000 for i in range(6)]  # 20 kB each: queued by reference
    for chunk in chunks:
        conn.write(chunk)
    assert net.run_until_true(lambda: len(got) >= 120000, timeout=30)
    assert bytes(got) == b"".join(chunks)
    ids = {id(c) for c in chunks}
    straddling = [parts for parts in links[0].gathered
                  if sum(isinstance(p, memoryview) and id(p.obj) in ids for p in parts) >= 2]
    assert straddling, "no segment went out as views of two buffers"
    for parts in links[0].gathered:
        # the payload is only ever views of the written buffers: no joined copy
        assert all(len(p) <= 60 or (isinstance(p, memoryview) and id(p.obj) in ids)
                   for p in parts), [type(p) for p in parts]
