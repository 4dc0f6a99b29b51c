"""PcapLink: captures read back with scapy, tcpdump and our own reader."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest
from links_support import PROBE_ETHERTYPE, probe, probe_pair, send_probe
from scapy.all import IP, UDP, Ether, Raw, rdpcap  # type: ignore[attr-defined]

from layers.errors import ConfigurationError
from layers.links import Link, Medium, MemoryLink, PcapLink
from layers.links.pcap import LINKTYPE_ETHERNET, LINKTYPE_RAW, read_pcap
from layers.timers import VirtualClock
from layers.virtual import VirtualNetwork
from layers.wire.addr import mac_str


def _exchange(tmp_path: Path) -> tuple[Path, bytes, bytes]:
    """a sends three probes to b, b echoes each; a's end is captured on the stack clock."""
    path = tmp_path / "a.pcap"
    wrapped: list[Link] = []

    def wrap(link: Link) -> Link:
        if wrapped:  # only a's end (the first wrapped)
            return link
        w = PcapLink(link, path, clock="stack")
        wrapped.append(w)
        return w

    net = VirtualNetwork(start=1000.0)
    a, b, ia, ib = probe_pair(net, echo=True, latency=0.000250, wrap=wrap)
    for i in range(3):
        net.run_until(1000.0 + i)
        send_probe(ia, ib, b"hello %d" % i)
    net.run_until_idle()
    assert len(probe(a).got) == 3
    a.stop()
    b.stop()
    assert ia.mac is not None and ib.mac is not None
    return path, ia.mac, ib.mac


def test_capture_read_back_with_scapy(tmp_path: Path) -> None:
    path, mac_a, mac_b = _exchange(tmp_path)
    pkts = rdpcap(str(path))
    assert len(pkts) == 6
    for i in range(3):
        sent, echoed = pkts[2 * i], pkts[2 * i + 1]
        assert sent[Ether].src == mac_str(mac_a) and sent[Ether].dst == mac_str(mac_b)
        assert sent[Ether].type == PROBE_ETHERTYPE
        assert bytes(sent[Ether].payload) == b"hello %d" % i
        assert echoed[Ether].src == mac_str(mac_b)
        assert bytes(echoed[Ether].payload) == b"re:hello %d" % i
        # timestamps are the virtual clock's: sent at 1000+i, echo back two latencies later
        assert float(sent.time) == pytest.approx(1000.0 + i, abs=1e-6)
        assert float(echoed.time) == pytest.approx(1000.0 + i + 0.0005, abs=1e-6)


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
def test_capture_read_back_with_tcpdump(tmp_path: Path) -> None:
    path, mac_a, mac_b = _exchange(tmp_path)
    out = subprocess.run(
        ["tcpdump", "-r", str(path), "-nn", "-e", "-tt", "-Z", "root"],
        capture_output=True, text=True, check=True, timeout=30,
    )
    lines = [ln for ln in out.stdout.splitlines() if ln and not ln[0].isspace()]
    assert len(lines) == 6, out.stdout + out.stderr
    assert lines[0].startswith("1000.000000 " + mac_str(mac_a) + " > " + mac_str(mac_b))
    assert "ethertype Unknown (0x88b5)" in lines[0]
    assert lines[1].startswith("1000.000500 " + mac_str(mac_b) + " > " + mac_str(mac_a))
    assert "truncated" not in out.stderr


def test_ip_medium_uses_linktype_raw_and_snaplen(tmp_path: Path) -> None:
    clock = VirtualClock(5.0)
    a, b = MemoryLink.pair(medium=Medium.IP)
    path = tmp_path / "raw.pcap"
    cap = PcapLink(a, path, snaplen=40, clock=clock)
    cap.attach(clock)
    b.attach(clock)
    pkt = bytes(IP(src="10.1.0.1", dst="10.1.0.2") / UDP(sport=1, dport=2) / Raw(b"z" * 100))
    cap.send(pkt)
    clock.advance_to(5.25)
    b.send(bytes(IP(src="10.1.0.2", dst="10.1.0.1") / UDP(sport=2, dport=1)))
    got = cap.recv()
    assert got is not None
    cap.close()
    linktype, records = read_pcap(path)
    assert linktype == LINKTYPE_RAW
    assert [(t, len(data), orig) for t, data, orig in records] == [
        (5.0, 40, len(pkt)), (5.25, 28, 28)
    ]
    assert records[0][1] == pkt[:40]
    pkts = rdpcap(str(path))  # scapy decodes LINKTYPE_RAW as IP
    assert pkts[1][IP].src == "10.1.0.2" and pkts[1][UDP].dport == 1
    assert pkts[0].wirelen == len(pkt)


def test_file_on_disk_is_whole_records_and_flushed_when_idle(tmp_path: Path) -> None:
    path = tmp_path / "live.pcap"
    wrapped: list[PcapLink] = []

    def wrap(link: Link) -> Link:
        if wrapped:
            return link
        wrapped.append(PcapLink(link, path, clock="stack", flush_interval=1.0))
        return wrapped[0]

    net = VirtualNetwork()
    _a, _b, ia, ib = probe_pair(net, wrap=wrap)
    send_probe(ia, ib, b"first")
    assert len(read_pcap(path)[1]) == 1  # the first record is written at once
    net.run_until(0.1)
    send_probe(ia, ib, b"second")
    send_probe(ia, ib, b"third")
    assert len(read_pcap(path)[1]) == 1  # buffered: cheap
    assert wrapped[0].next_deadline() == pytest.approx(1.0)
    net.run_until(1.5)  # idle link: the runner's poll writes the buffer
    linktype, records = read_pcap(path)
    assert linktype == LINKTYPE_ETHERNET
    assert [r[1][14:] for r in records] == [b"first", b"second", b"third"]
    assert path.stat().st_size == 24 + sum(16 + len(r[1]) for r in records)


def test_buffer_size_forces_a_write(tmp_path: Path) -> None:
    a, b = MemoryLink.pair()
    clock = VirtualClock()
    path = tmp_path / "big.pcap"
    cap = PcapLink(a, path, clock=clock, buffer_size=4096)
    cap.attach(clock)
    frame = b.mac + a.mac + b"\x88\xb5" + bytes(986)  # type: ignore[operator]
    for _ in range(10):
        cap.send(frame)
    # first record written at once, then every ~4 KiB: at least 4 more records on disk
    assert len(read_pcap(path)[1]) >= 5
    cap.close()
    assert len(read_pcap(path)[1]) == 10


def test_file_object_is_flushed_not_closed() -> None:
    a, b = MemoryLink.pair()
    buf = io.BytesIO()
    cap = PcapLink(a, buf)
    cap.attach(lambda: 0.0)
    cap.send(b.mac + a.mac + b"\x88\xb5" + b"payload")  # type: ignore[operator]
    cap.close()
    assert not buf.closed
    buf.seek(0)
    _, records = read_pcap(buf)
    assert records[0][1].endswith(b"payload")
    assert records[0][0] > 1.6e9  # wall-clock timestamp by default


def test_bad_arguments_name_the_fix(tmp_path: Path) -> None:
    a, _ = MemoryLink.pair()
    with pytest.raises(ConfigurationError, match="'stack'"):
        PcapLink(a, tmp_path / "x.pcap", clock="virtual")
    with pytest.raises(ConfigurationError, match="snaplen"):
        PcapLink(a, tmp_path / "y.pcap", snaplen=0)
