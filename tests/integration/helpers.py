"""Helpers for tests that run the stack against Linux inside a namespace of their own.

A stack runs either in the test process (its TAP opened inside ``ns.entered()``, driven by
asyncio) or as a ``layers up`` subprocess started with ``ns.popen`` (so it lives in the
namespace and is killed by PID when the namespace goes).
"""

from __future__ import annotations

import os
import re
import secrets
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from layers.netns import NetNamespace

LAYERS = [sys.executable, "-m", "layers"]


def devname(prefix: str = "lt") -> str:
    """A device name unique across concurrent runs (control sockets are named after it)."""
    return f"{prefix}{secrets.token_hex(3)}"


class LayersUp:
    """A ``layers up`` subprocess inside a namespace."""

    def __init__(self, ns: NetNamespace, args: Sequence[str], env: dict[str, str] | None = None):
        self.ns = ns
        full_env = dict(os.environ)
        full_env.pop("LAYERS_DISABLE_PLUGINS", None)
        full_env.update(env or {})
        self.proc: subprocess.Popen[str] = ns.popen(
            [*LAYERS, "up", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=full_env,
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

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, str, str]:
        """Signal the process (by PID) and collect its exit status and output."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, "".join(self.output) + out, err


def layers(ns: NetNamespace, *args: str, timeout: float = 30.0,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a ``layers`` command inside ``ns`` and wait for it."""
    full_env = dict(os.environ)
    full_env.pop("LAYERS_DISABLE_PLUGINS", None)
    full_env.update(env or {})
    return ns.run([*LAYERS, *args], check=False, timeout=timeout, env=full_env)


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
    import json

    r = ns.run(["ip", "-d", "-j", "link", "show", name], check=False)
    if r.returncode != 0:
        return None
    data = json.loads(r.stdout)
    return dict(data[0]) if data else None
