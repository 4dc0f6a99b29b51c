"""The control socket: how ``layers netstat``/``routes``/``arp`` read a running ``layers up``.

``layers up`` serves a Unix stream socket at ``/run/layers/<interface>.sock`` (root) or
``/tmp/layers-<uid>/<interface>.sock`` (anyone else); ``--control PATH`` overrides both. The
protocol is one JSON request and one JSON response per connection, each a single line::

    -> {"request": "report"}
    <- {"ok": true, "now": 1234.5, "report": {... Stack.report() ...}}

Requests: ``report`` (everything) and ``hello`` (name, pid, address; cheap liveness check).
The server runs on the stack's asyncio loop, so a report is a consistent snapshot between two
frames. The client side is synchronous: the commands that use it are one-shot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layers.errors import ConfigurationError

if TYPE_CHECKING:
    from layers.stack import Stack

SUFFIX = ".sock"
#: largest request the server reads; requests are tiny
_MAX_REQUEST = 64 * 1024


class NoStackRunning(ConfigurationError):
    """No control socket answers (none present, a stale one, or an ambiguous choice)."""


def control_dir() -> Path:
    """Where control sockets live: ``/run/layers`` for root, ``/tmp/layers-<uid>`` otherwise."""
    uid = os.geteuid()
    return Path("/run/layers") if uid == 0 else Path(f"/tmp/layers-{uid}")


def socket_path(interface: str, directory: Path | None = None) -> Path:
    """The default control socket of the stack serving ``interface``."""
    if not interface or "/" in interface or interface.startswith("."):
        raise ConfigurationError(f"{interface!r} cannot name a control socket; use --control PATH")
    return (directory or control_dir()) / f"{interface}{SUFFIX}"


def _make_dir(path: Path) -> None:
    parent = path.parent
    if parent == control_dir():
        parent.mkdir(mode=0o755 if os.geteuid() == 0 else 0o700, exist_ok=True)
        st = parent.stat()
        if st.st_uid != os.geteuid():
            raise ConfigurationError(
                f"{parent} belongs to another user; pass --control PATH in a directory you own"
            )
    elif not parent.is_dir():
        raise ConfigurationError(f"directory {parent} does not exist; create it or pick another "
                                 f"--control PATH")


def _answers(path: Path, timeout: float = 1.0) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(path))
        except OSError:
            return False
        return True


class ControlServer:
    """Serves ``stack``'s reports on a Unix socket until :meth:`close`."""

    def __init__(self, stack: Stack, path: Path, info: dict[str, Any] | None = None) -> None:
        self.stack = stack
        self.path = path
        self.info = dict(info or {})
        self._server: asyncio.AbstractServer | None = None

    @classmethod
    async def start(
        cls, stack: Stack, path: Path | str, info: dict[str, Any] | None = None
    ) -> ControlServer:
        self = cls(stack, Path(path), info)
        _make_dir(self.path)
        if self.path.exists() or self.path.is_symlink():
            if _answers(self.path):
                raise ConfigurationError(
                    f"a stack is already running with control socket {self.path}; stop it, or "
                    f"pass --control PATH to use another socket"
                )
            self.path.unlink()  # stale: its stack died without cleaning up
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        os.chmod(self.path, 0o660)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                line = await asyncio.wait_for(reader.readline(), timeout=5.0)
                request = json.loads(line[:_MAX_REQUEST] or b"{}")
                if not isinstance(request, dict):
                    raise ValueError("the request must be a JSON object")
                response = self.handle(request)
            except (ValueError, TimeoutError) as exc:
                response = {"ok": False, "error": f"bad request: {exc}"}
            writer.write(json.dumps(response, default=str).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, OSError):
            pass  # the client went away; nothing to tell anyone
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        kind = request.get("request", "report")
        if kind == "hello":
            return {"ok": True, "name": self.stack.name, "pid": os.getpid(), **self.info}
        if kind == "report":
            try:
                report = self.stack.report()
            except Exception as exc:  # a plugin's report hook broke: say so, keep serving
                return {"ok": False, "error": f"report failed: {type(exc).__name__}: {exc}"}
            return {"ok": True, "now": self.stack.now, "pid": os.getpid(), **self.info,
                    "report": report}
        return {"ok": False, "error": f"unknown request {kind!r}; known: hello, report"}

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=1.0)
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


# --- the client side ------------------------------------------------------------------


def running_sockets(directory: Path | None = None) -> list[Path]:
    """Control sockets present in ``directory`` (default :func:`control_dir`), sorted."""
    d = directory or control_dir()
    try:
        return sorted(p for p in d.iterdir() if p.name.endswith(SUFFIX) and p.is_socket())
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []


def find_socket(
    *, control: str | None = None, name: str | None = None, directory: Path | None = None
) -> Path:
    """The socket to talk to: ``control`` if given, else the one for ``name``, else the only
    one present. Raises :class:`NoStackRunning` with what to do when none fits."""
    if control:
        return Path(control)
    if name:
        path = socket_path(name, directory)
        if not path.exists():
            others = ", ".join(p.name[: -len(SUFFIX)] for p in running_sockets(directory))
            raise NoStackRunning(
                f"no layers stack is running on {name} (no {path}); "
                + (f"running: {others}" if others else
                   f"start one with: layers up --link tap:{name} --address A/N")
            )
        return path
    found = running_sockets(directory)
    if not found:
        raise NoStackRunning(
            f"no layers stack is running (no control socket in {directory or control_dir()}); "
            f"start one with: layers up --link tap:NAME --address A/N"
        )
    if len(found) > 1:
        names = ", ".join(p.name[: -len(SUFFIX)] for p in found)
        raise NoStackRunning(f"several layers stacks are running ({names}); pick one with --name")
    return found[0]


def request(path: Path | str, what: str = "report", timeout: float = 5.0) -> dict[str, Any]:
    """Send one request to the control socket at ``path`` and return the response."""
    path = Path(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(path))
        except FileNotFoundError:
            raise NoStackRunning(f"no layers stack is running at {path} (no such socket)") from None
        except ConnectionRefusedError:
            raise NoStackRunning(
                f"no layers stack answers at {path}: the socket is stale (its stack died); "
                f"remove it with: rm {path}"
            ) from None
        s.sendall(json.dumps({"request": what}).encode() + b"\n")
        chunks = []
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    try:
        response = json.loads(b"".join(chunks))
    except ValueError:
        raise NoStackRunning(f"the stack at {path} sent a malformed answer") from None
    if not isinstance(response, dict) or not response.get("ok"):
        err = response.get("error") if isinstance(response, dict) else response
        raise ConfigurationError(f"the stack at {path} refused: {err}")
    return response
