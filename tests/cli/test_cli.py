"""The ``layers`` command without devices: argument errors, plugin listing, the control socket
served by a stack running on asyncio over an in-memory link, and the report formats."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from layers.cli import main
from layers.cli.report import format_arp, format_netstat, format_routes, format_statistics
from layers.control import ControlServer, NoStackRunning, find_socket, request
from layers.errors import ConfigurationError
from layers.links.memory import MemoryLink
from layers.ping import ping
from layers.runtime import AsyncioRunner
from layers.stack import Stack

# --- configuration errors: one line naming the fix, exit 2, never a traceback ------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["up"], "--link tap:tap0"),
        (["up", "--link", "tap:x0"], "--address 10.0.0.2/24"),
        (["up", "--link", "eth0", "--address", "10.0.0.2/24"], "tap:NAME or tun:NAME"),
        (["up", "--link", "tap:x0", "--address", "10.0.0.2"], "needs a prefix length"),
        (["up", "--link", "tap:x0", "--address", "10.0.0.2/24", "--gateway", "10.0.0"],
         "not an IPv4 address"),
        (["up", "--link", "tap:x0", "--address", "10.0.0.2/24", "--set", "arp.timeout"],
         "should be KEY=VALUE"),
        (["up", "--link", "tap:x0", "--address", "10.0.0.2/24", "--plugins", "arp,nosuch"],
         "unknown plugin 'nosuch'"),
        (["up", "--link", "tap:x0", "--address", "10.0.0.2/24", "--mtu", "20"], "68..65535"),
        (["up", "--link", "tap:averyveryverylongname", "--address", "10.0.0.2/24"],
         "15 characters"),
        (["ping", "--link", "tap:x0", "--address", "10.0.0.2/24", "10.0.0.300"],
         "not an IPv4 address"),
        (["up", "--link", "tap:x0", "--address", "10.0.0.2/24", "--busy-poll", "50000"],
         "use 0 (off) to 10000 us"),
        (["up", "--link", "tap:x0", "--address", "10.0.0.2/24", "--busy-poll", "-1"],
         "e.g. --busy-poll 200"),
    ],
)
def test_configuration_errors_exit_2_with_one_line(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_blocked_plugin_asked_for_by_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LAYERS_DISABLE_PLUGINS", "icmp")
    assert main(["up", "--link", "tap:x0", "--address", "10.0.0.2/24",
                 "--plugins", "arp,ipv4,icmp"]) == 2
    assert "disabled by LAYERS_DISABLE_PLUGINS" in capsys.readouterr().err


def test_transport_without_network_layer_is_a_composition_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["up", "--link", "tun:x0", "--address", "10.0.0.2/24", "--plugins", "icmp"]) == 2
    assert "add ipv4 to --plugins" in capsys.readouterr().err


def test_plugins_table(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "LAYER", "DISTRIBUTION", "STATUS"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    for name in ("arp", "ipv4", "icmp", "framecount"):
        assert name in rows
    assert rows["framecount"][-2:] == ["layers-framecount", "opt-in"]
    assert rows["ipv4"][-2:] == ["layers-ipv4", "default"]

    monkeypatch.setenv("LAYERS_DISABLE_PLUGINS", "framecount")
    assert main(["plugins"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()}
    assert rows["framecount"][-1] == "disabled"


# --- the control socket ------------------------------------------------------------------


def test_no_stack_running_is_said_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(NoStackRunning, match="no layers stack is running"):
        find_socket(directory=tmp_path)
    with pytest.raises(NoStackRunning, match="no layers stack is running on tap9"):
        find_socket(name="tap9", directory=tmp_path)
    assert main(["netstat", "--control", str(tmp_path / "nope.sock")]) == 1
    assert "no layers stack is running" in capsys.readouterr().err


def test_find_socket_picks_the_only_one_or_asks(tmp_path: Path) -> None:
    socks = []
    for name in ("tapa", "tapb"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(tmp_path / f"{name}.sock"))
        socks.append(s)
    try:
        with pytest.raises(NoStackRunning, match=r"several .*tapa, tapb.*--name"):
            find_socket(directory=tmp_path)
        assert find_socket(name="tapb", directory=tmp_path) == tmp_path / "tapb.sock"
        (tmp_path / "tapa.sock").unlink()
        assert find_socket(directory=tmp_path) == tmp_path / "tapb.sock"
    finally:
        for s in socks:
            s.close()


def test_stale_socket_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "dead.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))  # bound, never listening: what a killed `layers up` leaves behind
    s.close()
    with pytest.raises(NoStackRunning, match="stale"):
        request(path)


async def _two_stacks(
    plugins: list[str] | None = None,
) -> tuple[Stack, Stack, list[AsyncioRunner]]:
    loop = asyncio.get_running_loop()
    left, right = MemoryLink.pair(("mem0", "mem1"))
    a = Stack(plugins, clock=loop.time, name="mem0")
    b = Stack(plugins, clock=loop.time, name="mem1")
    a.add_interface(left, address="10.9.0.1/24")
    b.add_interface(right, address="10.9.0.2/24")
    a.add_route("default", gateway="10.9.0.2")
    runners = [AsyncioRunner(a, loop), AsyncioRunner(b, loop)]
    for r in runners:
        r.start()
    return a, b, runners


def test_control_socket_serves_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mem0.sock"

    async def scenario() -> tuple[dict[str, Any], list[int]]:
        a, _b, runners = await _two_stacks(["arp", "ipv4", "icmp", "framecount"])
        server = await ControlServer.start(a, path, {"interface": "mem0"})
        try:
            got = [r.ok async for r in ping(a, "10.9.0.2", count=2, interval=0.05)]
            with pytest.raises(Exception, match="already running"):
                await ControlServer.start(a, path)
            response = await asyncio.to_thread(request, path)
            codes = [await asyncio.to_thread(main, [cmd, "--control", str(path)])
                     for cmd in ("netstat", "routes", "arp")]
            codes.append(await asyncio.to_thread(main, ["netstat", "-s", "--control", str(path)]))
            assert got == [True, True]
            return response, codes
        finally:
            await server.close()
            for r in runners:
                r.stop()

    response, codes = asyncio.run(scenario())
    assert not path.exists(), "the socket is removed when the server closes"
    assert codes == [0, 0, 0, 0]
    report = response["report"]
    assert response["interface"] == "mem0"
    assert [i["name"] for i in report["interfaces"]] == ["lo", "mem0"]  # lo first, as ip link
    assert report["counters"]["icmp"]["counters"]
    out = capsys.readouterr().out
    # netstat: the interface in slitch's shape
    assert "mem0" in out and "UP Type:MEMORY HWaddr" in out
    assert "Inet addr:10.9.0.1/255.255.255.0 Bcast:10.9.0.255" in out
    assert "Active connections: none" in out
    # routes
    assert "Destination  Gateway   Netmask        Interface" in out
    assert "0.0.0.0      10.9.0.2  0.0.0.0        mem0" in out
    # arp: the peer, learned while pinging
    assert "10.9.0.2" in out and "HWaddress" in out
    # netstat -s: protocols' counters, framecount's included
    assert "icmp:" in out and "framecount:" in out and "2 tx 0x0800" in out


def test_control_server_answers_bad_requests(tmp_path: Path) -> None:
    path = tmp_path / "x.sock"

    def raw(data: bytes) -> bytes:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(path))
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            return s.makefile("rb").read()

    async def scenario() -> list[bytes]:
        loop = asyncio.get_running_loop()
        stack = Stack([], clock=loop.time, name="x")
        server = await ControlServer.start(stack, path)
        try:
            requests = (b"not json\n", b"[1]\n", b'{"request": "reboot"}\n',
                        b'{"request": "hello"}\n')
            return [await asyncio.to_thread(raw, d) for d in requests]
        finally:
            await server.close()

    answers = asyncio.run(scenario())
    assert b"bad request" in answers[0]
    assert b"JSON object" in answers[1]
    assert b"unknown request 'reboot'" in answers[2]
    assert b'"ok": true' in answers[3] and b'"name": "x"' in answers[3]


# --- formats --------------------------------------------------------------------------------

REPORT: dict[str, Any] = {
    "interfaces": [{
        "name": "tap0", "up": True, "medium": "ethernet", "mtu": 1500,
        "mac": "02:00:00:00:00:01", "addresses": ["192.168.43.10/24"],
        "link": {"kind": "TapLink"},
        "counters": {"rx_frames": 80, "rx_bytes": 6708, "tx_frames": 2, "tx_bytes": 126},
        "drops": {"unknown_ethertype": 3},
    }],
    "routes": [
        {"destination": "192.168.43.0", "gateway": "0.0.0.0", "netmask": "255.255.255.0",
         "interface": "tap0"},
        {"destination": "0.0.0.0", "gateway": "192.168.43.1", "netmask": "0.0.0.0",
         "interface": "tap0"},
    ],
    "counters": {"ipv4": {"counters": {"InReceives": 5, "dropped": 2},
                          "drops": {"bad_checksum": 2}},
                 "udp": {"counters": {}, "drops": {}}},
    "connections": [{"proto": "tcp", "local": "192.168.43.10:80", "remote": "192.168.43.1:5000",
                     "state": "ESTABLISHED", "send_q": 0, "recv_q": 12}],
    "listeners": [{"proto": "tcp", "local": "0.0.0.0:80", "state": "LISTEN"}],
    "arp": [{"address": "192.168.43.1", "mac": "aa:bb:cc:dd:ee:ff", "state": "reachable",
             "expires": 27.25, "interface": "tap0"},
            {"address": "192.168.43.7", "mac": None, "state": "incomplete", "expires": 0.5,
             "interface": "tap0"}],
}


def test_netstat_format_follows_slitch() -> None:
    text = format_netstat(REPORT)
    lines = text.splitlines()
    assert lines[0].split() == ["tap0", "UP", "Type:TAP", "HWaddr", "02:00:00:00:00:01",
                                "MTU:1500"]
    assert "Inet addr:192.168.43.10/255.255.255.0 Bcast:192.168.43.255" in lines[1]
    assert "RX packets:80 bytes:6708 (6.6 KiB)" in lines[2]
    assert "TX packets:2 bytes:126 (126 B)" in lines[2]
    assert "dropped:3 (unknown_ethertype 3)" in lines[3]
    conn = [line.split() for line in lines if line.startswith("tcp")]
    assert conn[0] == ["tcp", "0", "0", "0.0.0.0:80", "*:*", "LISTEN"]
    assert conn[1] == ["tcp", "12", "0", "192.168.43.10:80", "192.168.43.1:5000", "ESTABLISHED"]


def test_statistics_format_lists_drops_by_reason() -> None:
    text = format_statistics(REPORT)
    assert "ipv4:\n    5 InReceives\n    2 dropped:\n        2 bad checksum" in text
    assert "udp:" not in text  # nothing counted: left out
    assert "interface tap0:\n    6708 rx bytes" in text
    assert "3 dropped:\n        3 unknown ethertype" in text


def test_routes_and_arp_formats() -> None:
    routes = format_routes(REPORT).splitlines()
    assert routes[0].split() == ["Destination", "Gateway", "Netmask", "Interface"]
    assert routes[2].split() == ["0.0.0.0", "192.168.43.1", "0.0.0.0", "tap0"]
    arp = format_arp(REPORT).splitlines()
    assert arp[1].split() == ["192.168.43.1", "aa:bb:cc:dd:ee:ff", "reachable", "27.2s", "tap0"]
    assert arp[2].split() == ["192.168.43.7", "(incomplete)", "incomplete", "0.5s", "tap0"]
    assert "no ARP table" in format_arp({"interfaces": []})
    assert format_arp({"arp": []}) == "ARP cache: empty"


# --- --serve -------------------------------------------------------------------------------


def test_parse_serve(tmp_path: Path) -> None:
    from layers.services import parse_serve

    assert parse_serve("echo:7") == ("echo", 7, None)
    assert parse_serve("udp-echo:7007") == ("udp-echo", 7007, None)
    assert parse_serve(f"http:8080:{tmp_path}") == ("http", 8080, str(tmp_path))
    for bad, why in [("ftp:21", "unknown service 'ftp'"), ("echo", "give a port"),
                     ("echo:0", "give a port"), ("echo:7:/tmp", "only http takes a directory"),
                     (f"http:80:{tmp_path / 'missing'}", "is not a directory")]:
        with pytest.raises(ConfigurationError, match=why):
            parse_serve(bad)


def test_udp_echo_service_over_a_memory_link() -> None:
    from layers.datagrams import create_datagram_endpoint
    from layers.services import start_services, stop_services

    class Client(asyncio.DatagramProtocol):
        def __init__(self) -> None:
            self.got: asyncio.Queue[tuple[bytes, Any]] = asyncio.Queue()

        def datagram_received(self, data: bytes, addr: Any) -> None:
            self.got.put_nowait((data, addr))

    async def scenario() -> tuple[bytes, Any]:
        a, b, runners = await _two_stacks(["arp", "ipv4", "icmp", "udp"])
        services = await start_services(b, ["udp-echo:7"])
        try:
            transport, client = await create_datagram_endpoint(a, Client)
            transport.sendto(b"ping?", ("10.9.0.2", 7))
            answer = await asyncio.wait_for(client.got.get(), 5)  # type: ignore[attr-defined]
            transport.close()
            return answer
        finally:
            await stop_services(services)
            for r in runners:
                r.stop()

    assert asyncio.run(scenario()) == (b"ping?", ("10.9.0.2", 7))
