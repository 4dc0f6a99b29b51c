"""The one module of Linux-side test support (``tests/`` is on ``sys.path`` because
``tests/conftest.py`` lives in it): a ``layers up`` subprocess in a namespace, a Linux peer
script run as a subprocess there, ``layers`` commands, ping and ``ip link`` state inside a
namespace, our stack on a TAP there, Linux's sockets there, and nftables rules. The test
directories keep only their own peer scripts and addresses (``tcp/linux_support.py``,
``transport/transport_support.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from layers.links.base import Link
from layers.links.faults import FaultLink
from layers.links.tuntap import TapLink
from layers.netns import NetNamespace
from layers.runtime import AsyncioRunner
from layers.stack import Stack

LAYERS = [sys.executable, "-m", "layers"]


def layers_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without its block-list, plus ``extra``."""
    env = dict(os.environ)
    env.pop("LAYERS_DISABLE_PLUGINS", None)
    env.update(extra or {})
    return env


class LayersUp:
    """A ``layers up ARGS`` subprocess inside a namespace, until :meth:`stop` (by PID)."""

    def __init__(self, ns: NetNamespace, args: Sequence[str], env: dict[str, str] | None = None,
                 prefix: Sequence[str] = ()):
        """``prefix`` goes before the command (a wrapper that execs it, e.g. to drop root)."""
        self.ns = ns
        self.proc: subprocess.Popen[str] = ns.popen(
            [*prefix, *LAYERS, "up", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=layers_env(env),
        )
        self.ready_line = ""
        self.output: list[str] = []

    def wait_ready(self, timeout: float = 15.0) -> str:
        """Wait for the one line ``layers up`` prints when it is ready, and return it."""
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                    continue
                line = self.proc.stdout.readline()
                if not line:
                    err = self.proc.stderr.read() if self.proc.stderr else ""
                    raise AssertionError(f"layers up exited {self.proc.wait()}: {err.strip()}")
                self.output.append(line)
                if line.startswith("layers up:"):
                    self.ready_line = line.strip()
                    return self.ready_line
        finally:
            sel.close()
        raise AssertionError("layers up did not say it was ready in time")

    @property
    def control(self) -> str:
        m = re.search(r"control (\S+);", self.ready_line)
        assert m, self.ready_line
        return m.group(1)

    def request(self, what: str = "report") -> dict[str, Any]:
        """Ask this stack's control socket directly. Default control sockets are abstract
        Unix sockets, private to the namespace, so the request is made from inside it."""
        from layers.control import request

        with self.ns.entered():
            return request(self.control, what)

    def layers(self, *args: str) -> str:
        """Run ``layers ARGS --control <this one's socket>`` and return its stdout."""
        r = self.ns.run([*LAYERS, *args, "--control", self.control], env=layers_env(),
                        check=False, timeout=30)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, str, str]:
        """Signal the process (by PID) and collect its exit status and output."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, "".join(self.output) + out, err


@contextlib.asynccontextmanager
async def peer_process(
    netns: NetNamespace, script: str, args: Sequence[str]
) -> AsyncIterator[Any]:
    """``python -c SCRIPT ARGS`` in the namespace; a ``*-server`` mode must print "listening"
    first. Killed (by PID) if still running afterwards."""
    proc = await asyncio.create_subprocess_exec(
        *netns.exec_args([sys.executable, "-c", script, *args]),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        if args[0].endswith("-server"):
            line = await asyncio.wait_for(proc.stdout.readline(), 10)  # type: ignore[union-attr]
            assert line.strip() == b"listening", line
        yield proc
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


async def peer_output(proc: Any, timeout: float = 60.0) -> list[str]:
    """Wait for a peer script to finish successfully; its stdout split into words."""
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode == 0, err.decode()
    return out.decode().split()


# --- names, commands and state on the Linux side ------------------------------------------


def devname(prefix: str = "lt") -> str:
    """A device name unique across concurrent runs (control sockets are named after it)."""
    return f"{prefix}{secrets.token_hex(3)}"


def layers(ns: NetNamespace, *args: str, timeout: float = 30.0,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a ``layers`` command inside ``ns`` and wait for it."""
    return ns.run([*LAYERS, *args], check=False, timeout=timeout, env=layers_env(env))


def ping_ok(ns: NetNamespace, dst: str, *extra: str, count: int = 3,
            timeout: float = 30.0) -> str:
    """Linux pings ``dst`` from inside ``ns``; returns the output, asserting every reply came."""
    r = ns.run(["ping", "-n", "-c", str(count), "-i", "0.05", "-W", "2", *extra, dst],
               check=False, timeout=timeout)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{count} received" in r.stdout, r.stdout
    return r.stdout


def link_state(ns: NetNamespace, name: str) -> dict[str, Any] | None:
    """``ip -j link show NAME`` inside ``ns`` as a dict, or None when the device is absent."""
    r = ns.run(["ip", "-d", "-j", "link", "show", name], check=False)
    if r.returncode != 0:
        return None
    data = json.loads(r.stdout)
    return dict(data[0]) if data else None


def blob(n: int, seed: int = 7) -> bytes:
    """``n`` seeded bytes: the same on both sides of a transfer (the peer scripts use seed 7)."""
    return random.Random(seed).randbytes(n)


# --- our stack on a TAP in the namespace, Linux's sockets there ---------------------------


def tap_device(netns: NetNamespace, linux_ip: str, *, offload: bool = True,
               prefix: str = "tp") -> TapLink:
    """A TAP opened inside ``netns`` with Linux's side at ``linux_ip``/24, up, no IPv6."""
    dev = devname(prefix)
    with netns.entered():
        tap = TapLink.open(dev, offload=offload)
    netns.run(["sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1"], check=False)
    netns.run(["ip", "addr", "add", f"{linux_ip}/24", "dev", dev])
    netns.run(["ip", "link", "set", dev, "up"])
    return tap


@contextlib.asynccontextmanager
async def stack_on_tap(
    netns: NetNamespace, *, linux_ip: str, stack_ip: str, plugins: Sequence[str],
    offload: bool = True, settings: dict[str, Any] | None = None,
    faults: dict[str, Any] | None = None, wrap: Callable[[Link], Link] | None = None,
    name: str = "linux-peer", prefix: str = "tp",
) -> AsyncIterator[tuple[Stack, str]]:
    """Our stack at ``stack_ip``/24 on a fresh TAP, run by the current loop; yields (stack,
    device name). ``wrap`` wraps the TAP (a shaper, say) before ``faults`` do."""
    tap = tap_device(netns, linux_ip, offload=offload, prefix=prefix)
    link: Link = wrap(tap) if wrap else tap
    if faults:
        link = FaultLink(link, **faults)
    loop = asyncio.get_running_loop()
    runner: AsyncioRunner | None = None
    stack: Stack | None = None
    try:
        stack = Stack(list(plugins), clock=loop.time, name=name, settings=settings)
        stack.add_interface(link, address=f"{stack_ip}/24")
        runner = AsyncioRunner(stack, loop)
        runner.start()
        yield stack, tap.name
    finally:
        if runner is not None:
            runner.stop()
        else:
            if stack is not None:
                stack.stop()
            link.close()


def kernel_socket(netns: NetNamespace, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A Linux socket that belongs to ``netns`` (non-blocking, for the test's own loop)."""
    with netns.entered():
        sock = socket.socket(socket.AF_INET, kind)
    sock.setblocking(False)
    return sock


# --- nftables on the Linux side (this kernel has no netem) ---------------------------------


def nft(netns: NetNamespace, *commands: str) -> None:
    """Run nft commands (one ruleset text) inside the namespace."""
    netns.run(["nft", "-f", "-"], input="\n".join(commands) + "\n")
