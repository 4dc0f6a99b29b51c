"""Test support shared by the root test directories: a ``layers up`` subprocess in a namespace
and a Linux peer script run as a subprocess there. (``tests/`` is on ``sys.path`` because
``tests/conftest.py`` lives in it.)"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from layers.netns import NetNamespace

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
