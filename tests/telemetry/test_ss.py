"""``layers ss [-i]``: against a stack served over its control socket (asyncio, memory link),
and the formatting of whatever a transport's ``describe()`` holds."""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path
from typing import Any

import pytest

from layers.cli import main
from layers.cli.ss import bps, format_ss, format_tcp_info, state_name
from layers.control import ControlServer
from layers.links.memory import MemoryLink
from layers.runtime import AsyncioRunner
from layers.stack import Stack

PLUGINS = ["arp", "ipv4", "tcp"]


def test_ss_against_a_running_stack(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mem0.sock"

    async def scenario() -> list[int]:
        loop = asyncio.get_running_loop()
        left, right = MemoryLink.pair(("mem0", "mem1"), latency=0.002)
        a = Stack(PLUGINS, clock=loop.time, name="mem0")
        b = Stack(PLUGINS, clock=loop.time, name="mem1")
        a.add_interface(left, address="10.9.0.1/24")
        b.add_interface(right, address="10.9.0.2/24")
        runners = [AsyncioRunner(a, loop), AsyncioRunner(b, loop)]
        for r in runners:
            r.start()
        got = asyncio.Event()

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            data = await reader.readexactly(20000)
            writer.write(data)
            got.set()
            with contextlib.suppress(ConnectionError):
                await reader.read()  # hold the connection open until the client goes

        server_a = await a.start_server(echo, "0.0.0.0", 7)
        server = await ControlServer.start(a, path, {"interface": "mem0"})
        try:
            reader, writer = await b.open_connection("10.9.0.1", 7)
            writer.write(b"x" * 20000)
            await reader.readexactly(20000)
            await got.wait()
            codes = []
            for argv in (["ss"], ["ss", "-i"], ["ss", "-l"], ["ss", "-a", "-t", "-n"]):
                codes.append(await asyncio.to_thread(main, [*argv, "--control", str(path)]))
            writer.close()
            return codes
        finally:
            server_a.close()
            await server.close()
            for r in runners:
                r.stop()

    codes = asyncio.run(scenario())
    assert codes == [0, 0, 0, 0]
    out = capsys.readouterr().out
    plain, info, listening, everything = out.split("State")[1:]
    header = " Recv-Q Send-Q Local Address:Port Peer Address:Port"
    assert plain.splitlines()[0] == header
    assert re.fullmatch(r"ESTAB\s+0\s+\d+\s+10\.9\.0\.1:7\s+10\.9\.0\.2:\d+",
                        plain.splitlines()[1]), plain
    assert len(plain.strip().splitlines()) == 2, "no listener without -l or -a"
    lines = info.strip().splitlines()
    assert lines[1].startswith("ESTAB")
    assert lines[2].startswith("\t ")
    details = lines[2].split()
    # what today's describe() holds, in Linux's units: mss bytes, cwnd in segments, times in ms
    assert "mss:1448" in details  # 1460 less the timestamp option
    cwnd = next(w for w in details if w.startswith("cwnd:"))
    assert int(cwnd[5:]) >= 1
    rto = next(w for w in details if w.startswith("rto:"))
    assert 200.0 <= float(rto[4:]) <= 1000.0, rto
    rtt = next(w for w in details if w.startswith("rtt:"))
    assert 4.0 <= float(rtt[4:].split("/")[0]) < 50.0, rtt  # 2 ms each way, plus the loop
    assert "send" in details  # cwnd over srtt, once an RTT was measured
    assert re.search(r"LISTEN\s+0\s+\d+\s+0\.0\.0\.0:7\s+\*:\*", listening), listening
    assert "ESTAB" not in listening
    assert "LISTEN" in everything and "ESTAB" in everything


FULL: dict[str, Any] = {
    "proto": "tcp", "local": "10.0.0.2:80", "remote": "10.0.0.1:40000",
    "state": "ESTABLISHED", "send_q": 14480, "recv_q": 0, "mss": 1448,
    "ts_ok": True, "sack_ok": True, "snd_wscale": 7, "rcv_wscale": 9,
    "cc": "bbr", "cwnd": 14480 * 3, "ssthresh": 28960, "srtt": 0.0204, "rttvar": 0.0031,
    "min_rtt": 0.02, "rto": 0.22, "delivery_rate": 1.25e6, "pacing_rate": 1.5e6,
    "delivered": 144800, "bytes_acked": 144800, "retransmits": 4, "lost": 2,
    "in_flight": 20000, "snd_wnd": 65535,
    "cc_state": {"mode": "PROBE_BW", "btl_bw": 1250000.0, "pacing_gain": 1.25,
                 "full_bw_reached": True},
}


def test_tcp_info_line_in_linux_units_and_order() -> None:
    line = format_tcp_info(FULL)
    assert line == (
        "ts sack bbr wscale:7,9 rto:220 rtt:20.4/3.1 mss:1448 cwnd:30 ssthresh:20 "
        "bytes_acked:144800 send 17.0Mbps pacing_rate 12.0Mbps delivery_rate 10.0Mbps "
        "delivered:100 unacked:14 retrans:4 lost:2 minrtt:20 snd_wnd:65535 "
        "bbr:(mode:PROBE_BW,btl_bw:1.25e+06,pacing_gain:1.25,full_bw_reached:true)")


@pytest.mark.parametrize("variant", [
    {"cc": {"name": "cubic", "state": {"w_max": 10.5}}},
    {"cc": "cubic", "cc.w_max": 10.5},
    {"cc": {"name": "cubic", "w_max": 10.5}},
])
def test_cc_state_in_any_shape(variant: dict[str, Any]) -> None:
    line = format_tcp_info({"state": "ESTABLISHED", **variant})
    assert line == "cubic cubic:(w_max:10.5)"
    assert format_tcp_info({"cc": "cubic", "cc_state": {"epoch_start": None}}) == (
        "cubic cubic:(epoch_start:-)")


def test_missing_fields_are_left_out_never_guessed() -> None:
    # a minimal third-party transport's describe(): nothing to show on the -i line
    assert format_tcp_info({"proto": "tcp", "state": "SYN_SENT"}) == ""
    # nonsense values are skipped, not crashed on
    weird = {"cwnd": "lots", "srtt": None, "rto": float("nan"), "mss": None,
             "ssthresh": 1 << 31, "cc_state": "not a dict", "cc": 5}
    assert format_tcp_info(weird) == ""
    # no mss: windows in bytes, said so
    assert format_tcp_info({"cwnd": 5000}) == "cwnd:5000B"
    report = {"connections": [{"proto": "tcp", "state": "TIME_WAIT"},
                              {"proto": "udp", "local": "0.0.0.0:53"},
                              {"proto": "tcp", "state": "CLOSED", "local": "a", "remote": "b"}]}
    text = format_ss(report, info=True)
    assert text.splitlines()[1].split() == ["TIME-WAIT", "0", "0", "?", "*:*"]
    assert len(text.splitlines()) == 2, "no -i line when there is nothing to say; no UDP"
    assert "UNCONN" in format_ss(report, everything=True)
    assert format_ss({}) == "State Recv-Q Send-Q Local Address:Port Peer Address:Port"


def test_state_names_and_rates() -> None:
    assert [state_name(s) for s in ("ESTABLISHED", "SYN_RECEIVED", "FIN_WAIT_1", "LISTEN",
                                     "weird_state")] == [
        "ESTAB", "SYN-RECV", "FIN-WAIT-1", "LISTEN", "WEIRD-STATE"]
    assert [bps(x) for x in (15.0, 1500.0, 1.25e6, 1.25e9)] == [
        "120bps", "12.0Kbps", "10.0Mbps", "10.0Gbps"]
