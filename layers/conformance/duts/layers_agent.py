"""The socket agent of the layers-over-TAP DUT: our stack on a TAP, real time.

Run inside the DUT namespace (``python -m layers.conformance.duts.layers_agent --dev dut0``).
It opens the TAP once and keeps it; ``reset`` composes a fresh stack on it for each test (so
the expensive start-up is paid once per session). Requests and replies are the JSON lines of
:mod:`.linux_agent`; socket operations go through :class:`.layers_sockets.LayersSockets`.

The stack is pumped by hand, without asyncio: between requests the agent waits on stdin, the
TAP and the stack's next deadline together; while an operation waits (``recv`` with a timeout)
it pumps the TAP and timers only.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import select
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from layers.conformance.duts.base import DUT_IP, DUT_IP6, PREFIX, PREFIX6
from layers.conformance.duts.layers_sockets import LayersSockets
from layers.links.tuntap import TapLink
from layers.stack import Stack
from layers.wire.addr import mac_str


class Agent:
    def __init__(self, dev: str, offload: bool) -> None:
        self.link = TapLink.open(dev, offload=offload, up=True)
        fd = self.link.fileno()
        assert fd is not None
        self.fd: int = fd
        self.stack: Stack | None = None
        self.sockets: LayersSockets | None = None

    # --- pumping ----------------------------------------------------------------------
    def _drain(self) -> None:
        stack = self.stack
        while (got := self.link.recv()) is not None:
            if stack is not None:
                stack.receive(stack.interfaces[0], got[0], got[1])
        if stack is not None:
            stack.poll()

    def _timeout(self, limit: float) -> float:
        stack = self.stack
        d = stack.next_deadline() if stack is not None else None
        if d is None:
            return limit
        return max(0.0, min(limit, d - time.monotonic()))

    def wait(self, condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            self._drain()
            if condition():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return condition()
            select.select([self.fd], [], [], self._timeout(left))

    # --- requests ---------------------------------------------------------------------
    def reset(self, plugins: list[str] | None, settings: dict[str, Any],
              ipv6: bool = False) -> dict[str, Any]:
        if self.sockets is not None:
            self.sockets.close_all()
        if self.stack is not None:
            self.stack.stop(close_links=False)
        self.stack = self.sockets = None
        while self.link.recv() is not None:
            pass
        stack = Stack(plugins, clock=time.monotonic, settings=settings, name="layers-tap-dut")
        iface = stack.add_interface(self.link, address=f"{DUT_IP}/{PREFIX}")
        if ipv6:
            stack.add_address(iface, f"{DUT_IP6}/{PREFIX6}")
        stack.start()
        self.stack = stack
        self.sockets = LayersSockets(stack, self.wait)
        return {"mac": mac_str(self.link.mac or b"")}

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.pop("op")
        try:
            if op == "reset":
                return {"ok": self.reset(req.get("plugins"), req.get("settings") or {},
                                         bool(req.get("ipv6")))}
            if self.sockets is None:
                raise RuntimeError("no stack yet: send reset first")
            for key in ("data",):
                if isinstance(req.get(key), str):
                    req[key] = base64.b64decode(req[key])
            result = self.sockets.call(op, **req)
            self._drain()
            if isinstance(result, bytes):
                result = base64.b64encode(result).decode()
            elif op == "recvfrom" and isinstance(result, list):
                result = [base64.b64encode(result[0]).decode(), result[1]]
            return {"ok": result}
        except OSError as exc:
            return {"errno": exc.errno or 0, "error": str(exc)}
        except Exception:
            return {"fail": traceback.format_exc()}

    def run(self) -> None:
        stdin = sys.stdin.fileno()
        out = sys.stdout
        out.write(json.dumps({"ok": {"mac": mac_str(self.link.mac or b"")}}) + "\n")
        out.flush()
        buf = b""
        while True:
            r, _, _ = select.select([stdin, self.fd], [], [], self._timeout(1.0))
            self._drain()
            if stdin not in r:
                continue
            chunk = os.read(stdin, 65536)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, _, buf = buf.partition(b"\n")
                if line.strip():
                    out.write(json.dumps(self.handle(json.loads(line))) + "\n")
                    out.flush()
        if self.stack is not None:
            self.stack.stop()
        else:
            self.link.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dev", default="dut0")
    parser.add_argument("--no-offload", action="store_true")
    args = parser.parse_args()
    Agent(args.dev, not args.no_offload).run()


if __name__ == "__main__":
    main()
