"""The conformance framework itself: templates, capabilities, options, the plugin's inertness."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, UDPerror
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from layers.conformance.capabilities import (
    Everything,
    normalise,
    parse_capability_option,
    requires,
    resolve,
    verdict,
)
from layers.conformance.fixtures import layers_capabilities, parse_dut_option
from layers.conformance.tcp import flags_match
from layers.conformance.testbench import matches

ROOT = Path(__file__).resolve().parents[2]


def _frame() -> Ether:
    return Ether(bytes(
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src="10.1.0.1", dst="10.1.0.2", ttl=9)
        / ICMP(type=3, code=3)
        / IPerror(src="10.1.0.2", dst="10.1.0.1", proto=17) / UDPerror(sport=1, dport=9)
    ))


def test_template_matches_given_fields_only() -> None:
    pkt = _frame()
    assert matches(IP(), pkt)
    assert matches(IP(ttl=9) / ICMP(type=3), pkt)
    assert matches(IP(src="10.1.0.1") / ICMP(code=3) / IPerror(proto=17) / UDPerror(dport=9), pkt)
    assert not matches(IP(ttl=10), pkt)
    assert not matches(ICMP(type=0), pkt)
    assert not matches(IP() / UDP(), pkt), "a quoted UDP header is not a UDP layer"
    assert not matches(IP() / ICMP() / IPerror() / UDPerror(dport=10), pkt)


def test_template_none_means_dont_care_and_layers_keep_order() -> None:
    pkt = Ether(bytes(Ether() / IP(src="1.2.3.4", dst="5.6.7.8") / TCP(flags="SA") / Raw(b"x")))
    assert matches(IP(src=None) / TCP(flags="SA"), pkt)
    assert matches(TCP() / Raw(b"x"), pkt)
    assert not matches(TCP() / Raw(b"y"), pkt)
    assert not matches(TCP() / IP(), pkt), "IP comes before TCP in the frame"


@pytest.mark.parametrize(
    ("got", "want", "ok"),
    [(0x12, "SA", True), (0x18, "A", True), (0x18, "PA", True), (0x11, "A", False),
     (0x04, "R", True), (0x14, "R", False), (0x14, "RA", True), (0x02, "SA", False)],
)
def test_tcp_flags_ignore_only_push_and_friends(got: int, want: str, ok: bool) -> None:
    assert flags_match(got, want) is ok


def test_capability_resolution() -> None:
    caps = resolve({"ipv4", "udp"}, {"tcp.sack": True}, {"ipv4.reassembly": "not yet"})
    assert caps["ipv4.reassembly"] == "not yet"
    assert caps["ipv4.options"] is True  # implied by ipv4
    assert "tcp.mss" not in caps  # tcp is not there
    assert verdict(caps, ["ipv4", "udp"], "x") is None
    assert verdict(caps, ["tcp.sack", "tcp"], "x") == (
        "skip", "DUT x lacks capability tcp (TCP (RFC 9293))")
    kind, reason = verdict(caps, ["ipv4.reassembly"], "x") or ("", "")
    assert kind == "xfail" and "ipv4.reassembly: not yet" in reason
    assert verdict(Everything(), ["tcp.sack", "icmp.rate_limit"], "linux") is None


def test_declarations_are_checked() -> None:
    assert normalise({"tcp.sack"}, "p") == {"tcp.sack": True}
    assert normalise({"tcp.sack": "why"}, "p") == {"tcp.sack": "why"}
    with pytest.raises(pytest.UsageError):
        normalise({"tcp.sack": 3}, "p")
    assert parse_capability_option("tcp.sack,-icmp.rate_limit,tcp.mss=clamped") == {
        "tcp.sack": True, "icmp.rate_limit": False, "tcp.mss": "clamped"}
    with pytest.raises(pytest.UsageError, match="unknown capability"):
        parse_capability_option("tcp.sakc")
    with pytest.raises(ValueError, match="unknown capability"):
        requires("tcp.sakc")


def test_capabilities_follow_the_composition() -> None:
    caps = layers_capabilities(["arp", "ipv4", "icmp"], {}, {})
    assert caps.get("icmp.echo") is True and caps.get("ipv4.reassembly") is True
    assert "udp" not in caps and "tcp" not in caps
    caps = layers_capabilities(["ipv4", "udp"], {}, {"udp.short_length_trim": True})
    assert caps.get("udp.short_length_trim") is True and "arp" not in caps


def test_dut_option() -> None:
    assert parse_dut_option("linux, layers,linux") == ["linux", "layers"]
    assert parse_dut_option("all") == ["layers", "linux", "layers-tap"]
    with pytest.raises(pytest.UsageError, match="unknown DUT"):
        parse_dut_option("bsd")


def _pytest(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def test_plugin_is_inert_for_other_projects(tmp_path: Path) -> None:
    (tmp_path / "test_other.py").write_text(
        "import pytest\n"
        "def test_fixture_names_stay_free(request):\n"
        "    for name in ('dut', 'tb', 'dut_kind'):\n"
        "        with pytest.raises(Exception) as exc:\n"
        "            request.getfixturevalue(name)\n"
        "        assert type(exc.value).__name__ == 'FixtureLookupError'\n"
    )
    proc = _pytest("-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_suite_without_a_dut_is_a_usage_error(tmp_path: Path) -> None:
    proc = _pytest("--pyargs", "layers.conformance.suite.test_arp", "-q", cwd=tmp_path)
    assert proc.returncode != 0
    assert "needs a device under test" in proc.stderr


def test_unknown_dut_is_a_usage_error(tmp_path: Path) -> None:
    proc = _pytest("--pyargs", "layers.conformance", "--dut=bsd", cwd=tmp_path)
    assert proc.returncode != 0 and "unknown DUT 'bsd'" in proc.stderr


def test_suite_runs_by_pyargs(tmp_path: Path) -> None:
    proc = _pytest("--pyargs", "layers.conformance.suite.test_arp", "--dut=layers",
                   "--plugins=arp,ipv4,icmp,udp", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert " passed" in proc.stdout
