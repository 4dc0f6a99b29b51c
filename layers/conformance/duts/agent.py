"""A DUT whose socket operations run in an agent process (JSON lines over stdin/stdout)."""

from __future__ import annotations

import base64
import errno
import json
import os
import select
import subprocess
from collections.abc import Mapping
from typing import Any

from layers.conformance.capabilities import CapabilityValue
from layers.conformance.duts.base import DUT
from layers.conformance.media import Medium

#: seconds an agent may take beyond an operation's own timeout before it counts as hung
GUARD = 10.0


class AgentError(RuntimeError):
    """The agent failed (a bug in it, or it died): not a socket error of the DUT."""


class AgentProcess:
    def __init__(self, proc: subprocess.Popen[bytes], what: str) -> None:
        self.proc = proc
        self.what = what
        self._buf = b""

    def _readline(self, timeout: float) -> bytes:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            r, _, _ = select.select([fd], [], [], timeout)
            if not r:
                raise AgentError(f"{self.what} did not answer within {timeout:.1f} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                code = self.proc.poll()
                raise AgentError(f"{self.what} exited (status {code})")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def request(self, op: str, args: Mapping[str, Any]) -> Any:
        assert self.proc.stdin is not None
        body = {"op": op}
        for key, value in args.items():
            body[key] = base64.b64encode(value).decode() if isinstance(value, bytes) else value
        try:
            self.proc.stdin.write(json.dumps(body).encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise AgentError(f"{self.what} is gone (status {self.proc.poll()})") from None
        timeout = float(args.get("timeout", 0.0) or 0.0) + GUARD
        reply = json.loads(self._readline(timeout))
        if "fail" in reply:
            raise AgentError(f"{self.what} failed on {op}:\n{reply['fail']}")
        if "errno" in reply:
            code = int(reply["errno"])
            raise OSError(code, reply.get("error") or os.strerror(code))
        result = reply.get("ok")
        if op == "recv" and isinstance(result, str):
            return base64.b64decode(result)
        if op == "recvfrom" and isinstance(result, list):
            return [base64.b64decode(result[0]), result[1]]
        return result

    def close(self) -> None:
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=3)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class AgentDUT(DUT):
    def __init__(
        self,
        medium: Medium,
        mac: bytes,
        capabilities: Mapping[str, CapabilityValue],
        agent: AgentProcess,
    ) -> None:
        super().__init__(medium, mac, capabilities)
        self.agent = agent

    def call(self, op: str, **args: Any) -> Any:
        return self.agent.request(op, args)


def errno_of(exc: BaseException) -> int | None:
    return exc.errno if isinstance(exc, OSError) else None


__all__ = ["GUARD", "AgentDUT", "AgentError", "AgentProcess", "errno", "errno_of"]
