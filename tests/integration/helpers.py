"""Helpers for tests that run the stack against Linux inside a namespace of their own.

A stack runs either in the test process (its TAP opened inside ``ns.entered()``, driven by
asyncio) or as a ``layers up`` subprocess started with ``ns.popen`` (so it lives in the
namespace and is killed by PID when the namespace goes).
"""

from __future__ import annotations

import secrets
import subprocess
from typing import Any

from linux_tools import LAYERS, layers_env

from layers.netns import NetNamespace


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
    import json

    r = ns.run(["ip", "-d", "-j", "link", "show", name], check=False)
    if r.returncode != 0:
        return None
    data = json.loads(r.stdout)
    return dict(data[0]) if data else None
