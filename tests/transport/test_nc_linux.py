"""``layers nc`` as a subprocess in the test's namespace against Linux's own netcat
(netcat-openbsd) and kernel sockets: TCP both ways with half-close, refused, UDP both ways
and port unreachable."""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from linux_tools import LAYERS, layers_env
from transport_support import (
    LINUX_IP,
    STACK_IP,
    blob,
    kernel_socket,
    premade_tap,
)

from layers.netns import NetNamespace

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("nc") is None, reason="needs nc (netcat-openbsd)"),
]


def nc_args(dev: str, *args: str) -> list[str]:
    return [*LAYERS, "nc", "--link", f"tap:{dev}", "--address", f"{STACK_IP}/24", *args]


def wait_listening(netns: NetNamespace, port: int, proto: str = "t", timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = netns.run(["ss", f"-{proto}lnH"], check=False).stdout
        if f":{port} " in out:
            return
        time.sleep(0.02)
    raise AssertionError(f"nothing listens on {port}")


def wait_stderr(proc: subprocess.Popen[bytes], text: bytes, timeout: float = 15) -> bytes:
    """Read the process's stderr until ``text`` shows up."""
    assert proc.stderr is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stderr, selectors.EVENT_READ)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while text not in seen and time.monotonic() < deadline:
            if sel.select(timeout=0.1):
                chunk = os.read(proc.stderr.fileno(), 4096)
                if not chunk:
                    break
                seen += chunk
    finally:
        sel.close()
    assert text in seen, seen
    return seen


@contextlib.contextmanager
def data_file(tmp_path: object, name: str, data: bytes) -> Iterator[str]:
    path = os.path.join(str(tmp_path), name)
    with open(path, "wb") as f:
        f.write(data)
    yield path


def test_our_nc_to_linux_nc_both_ways(netns: NetNamespace, tmp_path: object) -> None:
    dev = premade_tap(netns)
    ours, theirs = blob(300_000, 1), blob(200_000, 2)
    out_path = os.path.join(str(tmp_path), "linux-out")
    with data_file(tmp_path, "theirs", theirs) as their_file, \
            open(their_file, "rb") as their_stdin, open(out_path, "wb") as their_stdout:
        # Linux's nc writes to a file: a pipe nobody drains yet would close its window
        linux = netns.popen(["nc", "-N", "-l", LINUX_IP, "7500"], stdin=their_stdin,
                            stdout=their_stdout, stderr=subprocess.PIPE)
        wait_listening(netns, 7500)
        r = netns.run(nc_args(dev, LINUX_IP, "7500"), input=ours, text=False, timeout=60,
                      check=False, env=layers_env())
        assert r.returncode == 0, r.stderr
        assert r.stdout == theirs
        _, err = linux.communicate(timeout=20)
        assert linux.returncode == 0, err
    with open(out_path, "rb") as f:
        assert f.read() == ours


def test_linux_nc_to_our_nc_listener(netns: NetNamespace, tmp_path: object) -> None:
    dev = premade_tap(netns)
    ours, theirs = blob(250_000, 3), blob(400_000, 4)
    out_path = os.path.join(str(tmp_path), "our-out")
    with data_file(tmp_path, "ours", ours) as our_file, open(our_file, "rb") as our_stdin, \
            open(out_path, "wb") as our_stdout:
        listener = netns.popen(nc_args(dev, "-l", "-v", "7501"), stdin=our_stdin,
                               stdout=our_stdout, stderr=subprocess.PIPE, env=layers_env())
        seen = wait_stderr(listener, b"Listening on 0.0.0.0 7501")
        r = netns.run(["nc", "-N", STACK_IP, "7501"], input=theirs, text=False, timeout=60,
                      check=False)
        assert r.returncode == 0, r.stderr
        assert r.stdout == ours
        _, err = listener.communicate(timeout=20)
        assert listener.returncode == 0, err
        assert b"Connection received on " + LINUX_IP.encode() in seen + err
    with open(out_path, "rb") as f:
        assert f.read() == theirs


def test_refused_and_unreachable_are_one_line_and_exit_1(netns: NetNamespace) -> None:
    dev = premade_tap(netns)
    r = netns.run(nc_args(dev, LINUX_IP, "7999"), input="", timeout=30, check=False,
                  env=layers_env())
    assert r.returncode == 1
    assert r.stderr.strip() == f"layers nc: {LINUX_IP} port 7999: connection refused"
    assert r.stdout == ""
    # nobody at .9 answers ARP: the stack gives up on the neighbour
    r = netns.run(nc_args(dev, "--set", "arp.retries=1", "--set", "arp.timeout=0.2",
                          "10.77.0.9", "80"), input="", timeout=30, check=False,
                  env=layers_env())
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("layers nc: 10.77.0.9 port 80: "), r.stderr
    assert "Traceback" not in r.stderr


def test_udp_lines_to_a_linux_socket_and_replies(netns: NetNamespace) -> None:
    dev = premade_tap(netns)
    sock = kernel_socket(netns, socket.SOCK_DGRAM)
    sock.setblocking(True)
    sock.settimeout(10)
    sock.bind((LINUX_IP, 5400))
    seen: list[bytes] = []

    def echo() -> None:
        with contextlib.suppress(OSError):
            while len(seen) < 3:
                data, addr = sock.recvfrom(65535)
                seen.append(data)
                sock.sendto(data.upper(), addr)

    t = threading.Thread(target=echo)
    t.start()
    try:
        r = netns.run(nc_args(dev, "-u", "-q", "1", LINUX_IP, "5400"),
                      input="alpha\nbeta\ngamma", timeout=30, check=False, env=layers_env())
        assert r.returncode == 0, r.stderr
        assert seen == [b"alpha\n", b"beta\n", b"gamma"]
        assert r.stdout == "ALPHA\nBETA\nGAMMA"
    finally:
        t.join(10)
        sock.close()


def test_linux_nc_udp_to_our_listener(netns: NetNamespace) -> None:
    dev = premade_tap(netns)
    listener = netns.popen(nc_args(dev, "-u", "-l", "-v", "-q", "2", "5401"),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=layers_env())
    wait_stderr(listener, b"Bound on 0.0.0.0 5401")
    r = netns.run(["nc", "-u", "-q", "0", STACK_IP, "5401"], input="datagram one\n",
                  timeout=20, check=False)
    assert r.returncode == 0, r.stderr
    out, err = listener.communicate(timeout=20)
    assert listener.returncode == 0, err
    assert out == b"datagram one\n"


def test_udp_port_unreachable_is_connection_refused(netns: NetNamespace) -> None:
    dev = premade_tap(netns)
    proc = netns.popen(nc_args(dev, "-u", LINUX_IP, "5999"), stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=layers_env())
    assert proc.stdin is not None
    proc.stdin.write(b"is anyone there?\n")
    proc.stdin.flush()
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert err.decode().strip() == f"layers nc: {LINUX_IP} port 5999: connection refused"
