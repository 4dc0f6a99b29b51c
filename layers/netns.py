"""Network namespaces for tests and the demo: create, run commands inside, enter, delete.

Everything the stack does in tests happens inside a namespace made here, with no uplink, and
removed afterwards (also when the test fails). Only processes started through a namespace
object are ever killed, by PID.

Namespaces are made and removed with ``pyroute2.netns`` (the same ``/run/netns/NAME`` bind
mount ``ip netns add`` makes, so ``ip netns list`` shows them); :meth:`NetNamespace.netlink`
configures devices, addresses and routes inside one through pyroute2. Commands run inside with
``nsenter --net=/run/netns/NAME`` (util-linux).

``NetNamespace.entered()`` moves the *calling thread* into the namespace (setns), so a TAP or
TUN opened there belongs to it while the stack itself runs in this process.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from layers.netdev import Netlink

NETNS_DIR = "/run/netns"


def have_root_and_tun() -> tuple[bool, str]:
    """Whether namespaces and TAP/TUN can be used here, and if not, why."""
    if os.geteuid() != 0:
        return False, "needs root (network namespaces and /dev/net/tun)"
    if not os.path.exists("/dev/net/tun"):
        return False, "needs /dev/net/tun (load the tun module)"
    if shutil.which("nsenter") is None:
        return False, "needs the nsenter command (Debian package util-linux)"
    return True, ""


def _setns(fd: int) -> None:
    from pyroute2 import netns as pr_netns

    pr_netns.setns(fd, flags=0)  # the calling thread only; flags=0: never create one


class NetNamespace:
    """A named network namespace this process created and will delete."""

    def __init__(self, name: str | None = None, prefix: str = "layers") -> None:
        self.name = name or f"{prefix}-{os.getpid()}-{secrets.token_hex(3)}"
        self.created = False
        self._procs: list[subprocess.Popen[Any]] = []

    @property
    def path(self) -> str:
        return os.path.join(NETNS_DIR, self.name)

    def create(self) -> NetNamespace:
        from pyroute2 import netns as pr_netns

        if os.path.exists(self.path):
            raise FileExistsError(f"network namespace {self.name} already exists")
        pr_netns.create(self.name)
        self.created = True
        with self.netlink() as nl:
            lo = nl.lookup("lo")
            assert lo is not None
            nl.set(lo, up=True)
        return self

    def netlink(self) -> Netlink:
        """A :class:`layers.netdev.Netlink` bound to this namespace (close it after use)."""
        from layers.netdev import Netlink

        return Netlink(netns=self.name)

    def exec_args(self, cmd: Sequence[str]) -> list[str]:
        return ["nsenter", f"--net={self.path}", "--", *cmd]

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
        target = os.open(self.path, os.O_RDONLY)
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
            from pyroute2 import netns as pr_netns

            with contextlib.suppress(OSError):
                pr_netns.remove(self.name)
            self.created = False

    def __enter__(self) -> NetNamespace:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.delete()
