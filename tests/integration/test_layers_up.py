"""The ``layers`` command against Linux: ``layers up`` as a subprocess in the test's namespace,
``layers ping``/``netstat``/``routes``/``arp``/``plugins``/``demo`` as one-shot commands."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from linux_tools import LAYERS, LayersUp, devname, layers, link_state, ping_ok

from layers.netns import NetNamespace

pytestmark = pytest.mark.root

Start = Callable[..., LayersUp]
LINUX = "10.81.0.1"
STACK = "10.81.0.2"


def _address(ns: NetNamespace, dev: str, addr: str = f"{LINUX}/24") -> None:
    ns.run(["ip", "addr", "add", addr, "dev", dev])


def test_up_without_a_device_makes_one_and_removes_it(
    netns: NetNamespace, layers_up: Start
) -> None:
    tap = devname()
    assert link_state(netns, tap) is None
    up = layers_up("--link", f"tap:{tap}", "--address", f"{STACK}/24", "--gateway", LINUX)
    assert re.match(rf"layers up: {STACK}/24 on {tap} \(TAP, MAC [0-9a-f:]{{17}}, MTU 1500\) "
                    rf"gateway {LINUX}; control @layers/{tap}; plugins \S*icmp\S*;",
                    up.ready_line), up.ready_line
    state = link_state(netns, tap)
    assert state is not None and "UP" in state["flags"]
    _address(netns, tap)
    ping_ok(netns, STACK)
    rc, out, err = up.stop(signal.SIGTERM)
    assert rc == 0, err
    assert "Traceback" not in err
    assert "stopped" in out
    assert link_state(netns, tap) is None, "the device layers up made is gone"


def test_up_on_a_premade_device_leaves_it_as_found(netns: NetNamespace, layers_up: Start) -> None:
    tap = devname()
    netns.run(["ip", "tuntap", "add", tap, "mode", "tap"])
    _address(netns, tap)
    before = link_state(netns, tap)
    assert before is not None and "UP" not in before["flags"] and before["mtu"] == 1500

    up = layers_up("--link", f"tap:{tap}", "--address", f"{STACK}/24", "--mtu", "1400")
    during = link_state(netns, tap)
    assert during is not None and "UP" in during["flags"] and during["mtu"] == 1400
    out = ping_ok(netns, STACK, "-s", "1300")
    assert f"1308 bytes from {STACK}" in out

    rc, _out, err = up.stop(signal.SIGTERM)
    assert rc == 0, err
    after = link_state(netns, tap)
    assert after is not None, "a device made beforehand must survive"
    assert "UP" not in after["flags"] and after["mtu"] == 1500
    # Linux's side still has the address its owner gave it
    addrs = netns.run(["ip", "-4", "-o", "addr", "show", "dev", tap]).stdout
    assert f"{LINUX}/24" in addrs


def test_sigint_also_stops_cleanly(netns: NetNamespace, layers_up: Start) -> None:
    tap = devname()
    up = layers_up("--link", f"tap:{tap}", "--address", f"{STACK}/24")
    rc, _out, err = up.stop(signal.SIGINT)
    assert rc == 0, err
    assert "Traceback" not in err
    assert link_state(netns, tap) is None


def test_tun_with_only_ipv4_and_icmp(netns: NetNamespace, layers_up: Start) -> None:
    tun = devname("tu")
    up = layers_up("--link", f"tun:{tun}", "--address", f"{STACK}/24", "--plugins", "ipv4,icmp")
    assert "(TUN, MTU 1500)" in up.ready_line and "plugins icmp,ipv4;" in up.ready_line
    _address(netns, tun)
    ping_ok(netns, STACK)
    ping_ok(netns, STACK, "-s", "4000")  # fragments over a TUN too

    report = up.request()["report"]
    assert report["plugins"] == ["icmp", "ipv4"]
    assert "arp" not in report and "arp" not in report["counters"]
    assert [(i["name"], i["medium"]) for i in report["interfaces"]] == [("lo", "ip"),
                                                                        (tun, "ip")]

    r = layers(netns, "netstat", "--name", tun)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("lo      UP Type:IP MTU:65536"), r.stdout  # lo first, as Linux
    assert re.search(rf"^{tun}\s+UP Type:TUN MTU:1500", r.stdout, re.M), r.stdout
    r = layers(netns, "arp", "--name", tun)
    assert r.returncode == 0 and "no ARP table" in r.stdout
    rc, _out, err = up.stop()
    assert rc == 0, err


def test_netstat_routes_arp_against_a_running_up(netns: NetNamespace, layers_up: Start) -> None:
    tap = devname()
    up = layers_up("--link", f"tap:{tap}", "--address", f"{STACK}/24", "--gateway", LINUX)
    _address(netns, tap)
    ping_ok(netns, STACK, count=4)
    device_mac = json.loads(netns.run(["ip", "-j", "link", "show", tap]).stdout)[0]["address"]

    r = layers(netns, "netstat", "--link", f"tap:{tap}")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("lo "), lines[0]  # lo comes first, as in Linux
    lines = lines[next(i for i, line in enumerate(lines) if line.startswith(tap)):]
    assert re.match(rf"{tap} UP Type:TAP HWaddr [0-9A-F:]{{17}} MTU:1500", lines[0]), lines[0]
    assert f"Inet addr:{STACK}/255.255.255.0 Bcast:10.81.0.255" in lines[1]
    assert re.match(r"\s+inet6 addr: fe80::\S+/64 Scope:Link", lines[2]), lines[2]
    m = re.search(r"RX packets:(\d+) bytes:(\d+) .* TX packets:(\d+) bytes:(\d+)", lines[3])
    assert m and int(m.group(1)) >= 5 and int(m.group(3)) >= 5, lines[3]
    assert "Active connections" in r.stdout

    r = layers(netns, "netstat", "-s", "--name", tap)
    assert r.returncode == 0, r.stderr
    icmp = r.stdout.split("icmp:\n", 1)[1]
    assert re.search(r"^\s+4 in echos$", icmp, re.M), r.stdout
    assert "ipv4:" in r.stdout and "arp:" in r.stdout

    r = layers(netns, "routes", "--name", tap)
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines()]
    assert rows[0] == ["Destination", "Gateway", "Netmask", "Interface"]
    assert ["10.81.0.0", "0.0.0.0", "255.255.255.0", tap] in rows
    assert ["0.0.0.0", LINUX, "0.0.0.0", tap] in rows

    r = layers(netns, "arp", "--control", up.control)
    assert r.returncode == 0, r.stderr
    assert re.search(rf"^{re.escape(LINUX)}\s+{device_mac}\s+\w+", r.stdout, re.M), r.stdout

    up.stop()
    r = layers(netns, "netstat", "--name", tap)
    assert r.returncode == 1 and "no layers stack is running" in r.stderr


def test_a_second_up_on_a_busy_device_fails_with_one_line(
    netns: NetNamespace, layers_up: Start
) -> None:
    tap = devname()
    layers_up("--link", f"tap:{tap}", "--address", f"{STACK}/24")
    r = layers(netns, "up", "--link", f"tap:{tap}", "--address", "10.81.0.3/24", timeout=15)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "in use by another process" in r.stderr or "already running" in r.stderr


def test_layers_ping_from_the_stack_to_linux(netns: NetNamespace) -> None:
    tap = devname()
    netns.run(["ip", "tuntap", "add", tap, "mode", "tap"])
    netns.run(["ip", "link", "set", tap, "up"])
    _address(netns, tap)
    r = layers(netns, "ping", "--link", f"tap:{tap}", "--address", f"{STACK}/24",
               "-c", "3", "-i", "0.05", LINUX)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"PING {LINUX} ({LINUX}) 56(84) bytes of data."
    replies = [ln for ln in lines if ln.startswith("64 bytes from")]
    assert len(replies) == 3
    assert re.fullmatch(rf"64 bytes from {LINUX}: icmp_seq=1 ttl=64 time=\d+\.\d{{3}} ms",
                        replies[0])
    assert f"--- {LINUX} ping statistics ---" in lines
    assert "3 packets transmitted, 3 received, 0% packet loss" in r.stdout
    assert re.search(r"rtt min/avg/max/mdev = [\d.]+/[\d.]+/[\d.]+/[\d.]+ ms", r.stdout)

    # Nobody has .9: ARP fails, no reply, exit 1
    r = layers(netns, "ping", "--link", f"tap:{tap}", "--address", f"{STACK}/24",
               "-c", "1", "-W", "1", "10.81.0.9")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "1 packets transmitted, 0 received" in r.stdout
    assert link_state(netns, tap) is not None


def test_blocked_plugin_is_absent(netns: NetNamespace, layers_up: Start) -> None:
    block = {"LAYERS_DISABLE_PLUGINS": "udp"}
    r = layers(netns, "plugins", env=block)
    assert r.returncode == 0 and re.search(r"^udp\s.*\sdisabled$", r.stdout, re.M)
    r = layers(netns, "plugins")
    assert re.search(r"^udp\s.*\sdefault$", r.stdout, re.M)

    tap1, tap2 = devname(), devname()
    with_it = layers_up("--link", f"tap:{tap1}", "--address", f"{STACK}/24")
    without = layers_up("--link", f"tap:{tap2}", "--address", "10.82.0.2/24", env=block)
    assert "udp" in with_it.ready_line and "udp" not in without.ready_line
    rep_with: dict[str, Any] = with_it.request()["report"]
    rep_without: dict[str, Any] = without.request()["report"]
    assert "udp" in rep_with["plugins"] and "udp" not in rep_without["plugins"]
    # asking for it by name while blocked is an error, not a silent omission
    r = layers(netns, "up", "--link", f"tap:{devname()}", "--address", "10.83.0.2/24",
               "--plugins", "arp,ipv4,icmp,udp", env=block)
    assert r.returncode == 2 and "disabled by LAYERS_DISABLE_PLUGINS" in r.stderr


def test_up_with_pcap_and_faults(netns: NetNamespace, layers_up: Start, tmp_path: Any) -> None:
    from layers.links.pcap import read_pcap

    tap = devname()
    pcap = tmp_path / "up.pcap"
    up = layers_up("--link", f"tap:{tap}", "--address", f"{STACK}/24", "--pcap", str(pcap),
                   "--faults", "loss=100%,dir=tx,seed=1")
    _address(netns, tap)
    r = netns.run(["ping", "-n", "-c", "2", "-i", "0.05", "-W", "1", STACK], check=False)
    assert "0 received" in r.stdout, "every frame the stack sends is lost"
    rc, _out, err = up.stop()
    assert rc == 0, err
    linktype, records = read_pcap(pcap)
    assert linktype == 1  # Ethernet
    # the capture sits next to the device: it saw Linux's ARP requests arrive
    assert any(rec[1][12:14] == b"\x08\x06" for rec in records)


def test_demo_exits_0(netns: NetNamespace) -> None:
    # The demo makes (and deletes) its own namespace; run it as the user would.
    r = subprocess.run([*LAYERS, "demo"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "every step worked" in r.stdout
    assert "Linux knows the stack's MAC: yes; the stack knows Linux's: yes" in r.stdout
    assert "Linux got the stack's page" in r.stdout and "got Linux's page" in r.stdout


UDP_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
for size in (5, 1400, 4000):
    s.sendto(b"u" * size, (sys.argv[1], 7))
    data, addr = s.recvfrom(65535)
    print(len(data), addr[0], addr[1])
"""


def test_up_serves_udp_echo_to_linux(netns: NetNamespace, layers_up: Start) -> None:
    tap = devname()
    up = layers_up("--link", f"tap:{tap}", "--address", f"{STACK}/24", "--serve", "udp-echo:7")
    assert "serving udp-echo:7" in up.ready_line
    _address(netns, tap)
    r = netns.run([sys.executable, "-c", UDP_CLIENT, STACK], check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:3] == [f"5 {STACK} 7", f"1400 {STACK} 7", f"4000 {STACK} 7"]
    rc, _out, err = up.stop()
    assert rc == 0, err


def test_bad_serve_spec_is_a_configuration_error(netns: NetNamespace) -> None:
    r = layers(netns, "up", "--link", f"tap:{devname()}", "--address", f"{STACK}/24",
               "--serve", "gopher:70")
    assert r.returncode == 2 and "unknown service 'gopher'" in r.stderr


def test_tun_with_packet_information_header(netns: NetNamespace, layers_up: Start) -> None:
    tun = devname("tu")
    up = layers_up("--link", f"tun:{tun}", "--address", f"{STACK}/24", "--pi",
                   "--plugins", "ipv4,icmp")
    _address(netns, tun)
    ping_ok(netns, STACK)
    [tun_report] = [i for i in up.request()["report"]["interfaces"] if i["name"] == tun]
    assert tun_report["link"]["pi"] is True
    rc, _out, err = up.stop()
    assert rc == 0, err


def test_layers_ping_until_interrupted_prints_statistics(netns: NetNamespace) -> None:
    tap = devname()
    netns.run(["ip", "tuntap", "add", tap, "mode", "tap"])
    netns.run(["ip", "link", "set", tap, "up"])
    _address(netns, tap)
    proc = netns.popen([*LAYERS, "ping", "--link", f"tap:{tap}", "--address", f"{STACK}/24",
                        "-i", "0.05", LINUX], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    assert proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(4)]  # PING header and three replies
    assert all(ln.startswith("64 bytes from") for ln in lines[1:]), lines
    proc.send_signal(signal.SIGINT)  # the process this test started
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert m and int(m.group(2)) >= 3, out


TCP_CLIENT = """
import socket, sys
host = sys.argv[1]
with socket.create_connection((host, 7), timeout=5) as s:       # echo
    blob = bytes(range(256)) * 400                                # 100 KiB, many segments
    s.sendall(blob)
    s.shutdown(socket.SHUT_WR)
    got = b""
    while chunk := s.recv(65536):
        got += chunk
    print("echo", got == blob, len(got))
with socket.create_connection((host, 9), timeout=5) as s:       # discard
    s.sendall(b"x" * 50000)
    s.shutdown(socket.SHUT_WR)
    print("discard", s.recv(10) == b"")
"""


def test_up_serves_tcp_echo_discard_and_http_to_linux(
    netns: NetNamespace, layers_up: Start, tmp_path: Any
) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("<p>served by layers</p>\n")
    (www / "big.txt").write_bytes(b"0123456789abcdef" * 8192)  # 128 KiB
    tap = devname()
    up = layers_up("--link", f"tap:{tap}", "--address", f"{STACK}/24", "--serve", "echo:7",
                   "--serve", "discard:9", "--serve", f"http:80:{www}")
    _address(netns, tap)
    r = netns.run([sys.executable, "-c", TCP_CLIENT, STACK], check=False, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["echo True 102400", "discard True"]

    r = netns.run(["curl", "-sS", "-m", "10", f"http://{STACK}/"], check=False)
    assert r.returncode == 0 and r.stdout == "<p>served by layers</p>\n", r.stderr
    r = netns.run(["curl", "-sS", "-m", "10", "-o", "/dev/null", "-w",
                   "%{http_code} %{size_download}", f"http://{STACK}/big.txt"], check=False)
    assert r.stdout == "200 131072", r.stdout + r.stderr
    r = netns.run(["curl", "-sS", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}",
                   f"http://{STACK}/../../etc/passwd", "--path-as-is"], check=False)
    assert r.stdout == "404"
    r = layers(netns, "netstat", "--name", tap)
    listening = {tuple(line.split()[3:]) for line in r.stdout.splitlines()
                 if line.startswith("tcp")}
    assert {("0.0.0.0:7", "*:*", "LISTEN"), ("0.0.0.0:9", "*:*", "LISTEN"),
            ("0.0.0.0:80", "*:*", "LISTEN")} <= listening, r.stdout
    rc, _out, err = up.stop()
    assert rc == 0, err
