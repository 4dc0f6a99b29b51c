"""Network namespaces for tests and the demo: create, run commands inside, enter, delete.

Everything the stack does in tests happens inside a namespace made here, with no uplink, and
removed afterwards (also when the test fails). Only processes started through a namespace
object are ever killed, by PID.

``NetNamespace.entered()`` moves the *calling thread* into the namespace (setns), so a TAP or
TUN opened there belongs to it while the stack itself runs in this process.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from typing import Any

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"


def have_root_and_tun() -> tuple[bool, str]:
    """Whether namespaces and TAP/TUN can be used here, and if not, why."""
    if os.geteuid() != 0:
        return False, "needs root (network namespaces and /dev/net/tun)"
    if not os.path.exists("/dev/net/tun"):
        return False, "needs /dev/net/tun (load the tun module)"
    if shutil.which("ip") is None:
        return False, "needs the ip command (Debian package iproute2)"
    return True, ""


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns failed: {os.strerror(err)}")


class NetNamespace:
    """A named network namespace this process created and will delete."""

    def __init__(self, name: str | None = None, prefix: str = "layers") -> None:
        self.name = name or f"{prefix}-{os.getpid()}-{secrets.token_hex(3)}"
        self.created = False
        self._procs: list[subprocess.Popen[Any]] = []

    def create(self) -> NetNamespace:
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        self.created = True
        self.run(["ip", "link", "set", "lo", "up"])
        return self

    def exec_args(self, cmd: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *cmd]

    def run(
        self, cmd: Sequence[str], *, check: bool = True, timeout: float = 60, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` inside the namespace and wait; output captured as text."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(self.exec_args(cmd), check=check, timeout=timeout, **kw)

    def popen(self, cmd: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start ``cmd`` inside the namespace; it is killed (by PID) when the namespace goes."""
        proc = subprocess.Popen(self.exec_args(cmd), **kw)
        self._procs.append(proc)
        return proc

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Run the body with the calling thread inside the namespace."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(os.path.join(NETNS_DIR, self.name), os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(target)
            os.close(home)

    def stop_processes(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)
        self._procs.clear()

    def delete(self) -> None:
        self.stop_processes()
        if self.created:
            subprocess.run(["ip", "netns", "del", self.name], check=False, capture_output=True)
            self.created = False

    def __enter__(self) -> NetNamespace:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.delete()
