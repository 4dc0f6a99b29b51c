"""``layers up --trace`` and ``layers ss [-i]`` against Linux: a Linux client holds a TCP
connection to the stack's echo service while ``layers ss`` lists it."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from linux_tools import LayersUp, devname

from layers.netns import NetNamespace
from layers.tracing import read_trace

pytestmark = pytest.mark.root

Start = Callable[..., LayersUp]
LINUX = "10.83.0.1"
STACK = "10.83.0.2"

#: connects, echoes SIZE bytes through the stack, says "ready", holds on until stdin closes
CLIENT = r"""
import socket, sys
host, size = sys.argv[1], int(sys.argv[2])
s = socket.create_connection((host, 7), timeout=20)
data = bytes(range(256)) * (size // 256)
s.sendall(data)
got = bytearray()
while len(got) < len(data):
    chunk = s.recv(65536)
    if not chunk:
        break
    got += chunk
assert bytes(got) == data, len(got)
print("ready", s.getsockname()[1], flush=True)
sys.stdin.read()
s.close()
"""


def test_ss_and_trace_against_linux(netns: NetNamespace, layers_up: Start,
                                    tmp_path: Path) -> None:
    tap = devname()
    trace = tmp_path / "up.jsonl"
    up = layers_up("--link", f"tap:{tap}", "--address", f"{STACK}/24", "--serve", "echo:7",
                   "--trace", str(trace), "--trace-interval", "0.001")
    assert f"trace {trace} (jsonl every 0.001s);" in up.ready_line
    netns.run(["ip", "addr", "add", f"{LINUX}/24", "dev", tap])
    client = netns.popen([sys.executable, "-c", CLIENT, STACK, str(256 << 10)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        assert client.stdout is not None
        line = client.stdout.readline().split()
        assert line[:1] == ["ready"], (line, client.stderr.read() if client.stderr else "")
        port = line[1]
        plain = up.layers("ss")
        rows = plain.splitlines()
        assert rows[0].split()[:3] == ["State", "Recv-Q", "Send-Q"]
        assert any(re.fullmatch(rf"ESTAB\s+\d+\s+\d+\s+{STACK}:7\s+{LINUX}:{port}", r)
                   for r in rows), plain
        info = up.layers("ss", "-i").splitlines()
        i = next(n for n, r in enumerate(info) if f"{LINUX}:{port}" in r)
        details = info[i + 1]
        assert details.startswith("\t ")
        assert re.search(r"\bmss:1448\b", details), details  # Linux's MSS less timestamps
        assert re.search(r"\bcwnd:\d+\b", details) and re.search(r"\brto:\d+", details)
        assert re.search(r"\brtt:[\d.]+", details), details
        listening = up.layers("ss", "-l")
        assert re.search(r"LISTEN\s+0\s+\d+\s+0\.0\.0\.0:7\s", listening), listening
    finally:
        if client.poll() is None:
            assert client.stdin is not None
            client.stdin.close()
            try:
                client.wait(timeout=10)
            except subprocess.TimeoutExpired:
                client.kill()
                client.wait()
    rc, _out, err = up.stop(signal.SIGTERM)
    assert rc == 0, err
    assert "Traceback" not in err
    # the trace is complete once layers up has stopped: the echoed connection, from the
    # stack's side, sampled at most once a millisecond
    flows = read_trace(trace).flows
    flow = flows[f"{STACK}:7->{LINUX}:{port}"]
    assert len(flow) >= 3
    gaps = [b - a for a, b in zip(flow.time, flow.time[1:], strict=False)]
    assert min(gaps) >= 0.001 - 1e-9
    assert flow["delivered"][-1] >= 256 << 10  # the echo went back through this connection
    assert flow.cc and all(c > 0 for c in flow["cwnd"])
