"""The control socket: how ``layers netstat``/``routes``/``arp`` read a running ``layers up``.

``layers up`` serves a Unix stream socket in the *abstract* namespace, ``@layers/<interface>``
(``ss -xl`` shows it so). Abstract Unix sockets belong to the network namespace they were bound
in, which is exactly the scope wanted: two ``layers up`` on ``tap0`` in two namespaces do not
collide, ``layers netstat`` run inside a namespace finds the stack of that namespace (and only
it), and nothing is left on disk when a stack dies. Interface names are unique within a
namespace, so the name is too. Abstract sockets have no file permissions, so both ends check
the other's credentials (``SO_PEERCRED``): a stack answers its own user and root; a client that
is not root talks only to a stack of its own user or of root.

``--control PATH`` puts the socket at a filesystem path instead (its directory must exist);
``--control @NAME`` picks another abstract name. The protocol is one JSON request and one JSON
response per connection, each a single line::

    -> {"request": "report"}
    <- {"ok": true, "now": 1234.5, "report": {... Stack.report() ...}}

Requests: ``report`` (everything) and ``hello`` (name, pid, address; cheap liveness check).
The server runs on the stack's asyncio loop, so a report is a consistent snapshot between two
frames. The client side is synchronous: the commands that use it are one-shot.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import socket
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layers.errors import ConfigurationError

if TYPE_CHECKING:
    from layers.stack import Stack

SUFFIX = ".sock"
#: the abstract names of default control sockets start with this (after the "@")
PREFIX = "layers/"
#: the Unix sockets of the calling *thread's* network namespace (``/proc/net`` would give the
#: process leader's, wrong for a thread inside ``NetNamespace.entered()``)
PROC_NET_UNIX = "/proc/thread-self/net/unix"
#: largest request the server reads; requests are tiny
_MAX_REQUEST = 64 * 1024
_UCRED = struct.Struct("3i")  # pid, uid, gid
_SO_ACCEPTCON = 0x10000

#: a control socket's address: a filesystem path, or "@name" for an abstract socket
Address = Path | str


class NoStackRunning(ConfigurationError):
    """No control socket answers (none present, a stale one, or an ambiguous choice)."""


def parse_address(value: str) -> Address:
    """``--control`` as given: ``@NAME`` is abstract, anything else a filesystem path."""
    if value.startswith("@"):
        if len(value) < 2 or len(value.encode()) > 107:
            raise ConfigurationError(f"--control {value!r}: an abstract name needs 1..106 bytes")
        return value
    return Path(value)


def _sockaddr(address: Address) -> str:
    if isinstance(address, str):
        return "\0" + address[1:]
    return str(address)


def socket_path(interface: str, directory: Path | None = None) -> Address:
    """The default control socket of the stack serving ``interface``: ``@layers/<interface>``
    (scoped to the calling network namespace), or ``<directory>/<interface>.sock``."""
    if not interface or "/" in interface or interface.startswith("."):
        raise ConfigurationError(f"{interface!r} cannot name a control socket; use --control PATH")
    if directory is not None:
        return directory / f"{interface}{SUFFIX}"
    return f"@{PREFIX}{interface}"


def _interface_of(address: Address) -> str:
    if isinstance(address, str):
        return address[1 + len(PREFIX):] if address.startswith("@" + PREFIX) else address
    return address.name[: -len(SUFFIX)] if address.name.endswith(SUFFIX) else address.name


def _make_dir(path: Path) -> None:
    if not path.parent.is_dir():
        raise ConfigurationError(f"directory {path.parent} does not exist; create it or pick "
                                 f"another --control PATH")


def _answers(address: Address, timeout: float = 1.0) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(_sockaddr(address))
        except OSError:
            return False
        return True


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a connected Unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    return int(_UCRED.unpack(raw)[1])


class ControlServer:
    """Serves ``stack``'s reports on a Unix socket until :meth:`close`."""

    def __init__(self, stack: Stack, address: Address, info: dict[str, Any] | None = None
                 ) -> None:
        self.stack = stack
        self.address = address
        self.info = dict(info or {})
        self._server: asyncio.AbstractServer | None = None

    @property
    def path(self) -> Address:
        """The address as ``layers netstat --control`` takes it (a path, or ``@name``)."""
        return self.address

    @classmethod
    async def start(
        cls, stack: Stack, address: Address, info: dict[str, Any] | None = None
    ) -> ControlServer:
        if not isinstance(address, str):
            address = Path(address)
        self = cls(stack, address, info)
        busy = ConfigurationError(
            f"a stack is already running with control socket {address}; stop it, or pass "
            f"--control PATH to use another socket"
        )
        if isinstance(address, Path):
            _make_dir(address)
            if address.exists() or address.is_symlink():
                if _answers(address):
                    raise busy
                address.unlink()  # stale: its stack died without cleaning up
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.bind(_sockaddr(address))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise busy from None
            raise ConfigurationError(f"cannot serve the control socket {address}: "
                                     f"{exc.strerror or exc}") from None
        if isinstance(address, Path):
            os.chmod(address, 0o660)
        self._server = await asyncio.start_unix_server(self._serve, sock=sock)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                line = await asyncio.wait_for(reader.readline(), timeout=5.0)
                sock = writer.get_extra_info("socket")
                uid = peer_uid(sock) if sock is not None else os.geteuid()
                if uid not in (0, os.geteuid()):
                    raise PermissionError(f"uid {uid} may not read this stack (uid "
                                          f"{os.geteuid()}); ask as that user or root")
                request = json.loads(line[:_MAX_REQUEST] or b"{}")
                if not isinstance(request, dict):
                    raise ValueError("the request must be a JSON object")
                response = self.handle(request)
            except (ValueError, TimeoutError) as exc:
                response = {"ok": False, "error": f"bad request: {exc}"}
            except PermissionError as exc:
                response = {"ok": False, "error": str(exc)}
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
        if isinstance(self.address, Path):
            with contextlib.suppress(FileNotFoundError):
                self.address.unlink()


# --- the client side ------------------------------------------------------------------


def abstract_sockets(prefix: str = PREFIX) -> list[str]:
    """Listening abstract sockets named ``@<prefix>...`` in the caller's network namespace."""
    found: set[str] = set()
    try:
        with open(PROC_NET_UNIX) as f:
            next(f, None)
            for line in f:
                fields = line.split()
                # Num RefCount Protocol Flags Type St Inode Path
                if len(fields) < 8 or not fields[7].startswith("@" + prefix):
                    continue
                if int(fields[3], 16) & _SO_ACCEPTCON:
                    found.add(fields[7])
    except (OSError, ValueError):
        return []
    return sorted(found)


def running_sockets(directory: Path | None = None) -> list[Address]:
    """Control sockets present: listening ``@layers/*`` ones in this network namespace, or
    the ``*.sock`` files in ``directory``; sorted."""
    if directory is None:
        return list(abstract_sockets())
    try:
        return sorted(p for p in directory.iterdir() if p.name.endswith(SUFFIX)
                      and p.is_socket())
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []


def find_socket(
    *, control: str | None = None, name: str | None = None, directory: Path | None = None
) -> Address:
    """The socket to talk to: ``control`` if given, else the one for ``name``, else the only
    one present. Raises :class:`NoStackRunning` with what to do when none fits."""
    if control:
        return parse_address(control)
    where = f"in {directory}" if directory is not None else "in this network namespace"
    found = running_sockets(directory)
    if name:
        address = socket_path(name, directory)
        if address not in found:
            others = ", ".join(_interface_of(a) for a in found)
            raise NoStackRunning(
                f"no layers stack is running on {name} {where} (no {address}); "
                + (f"running: {others}" if others else
                   f"start one with: layers up --link tap:{name} --address A/N")
            )
        return address
    if not found:
        raise NoStackRunning(
            f"no layers stack is running {where} (no control socket); "
            f"start one with: layers up --link tap:NAME --address A/N"
        )
    if len(found) > 1:
        names = ", ".join(_interface_of(a) for a in found)
        raise NoStackRunning(f"several layers stacks are running ({names}); pick one with --name")
    return found[0]


def request(path: Address, what: str = "report", timeout: float = 5.0) -> dict[str, Any]:
    """Send one request to the control socket at ``path`` and return the response."""
    if not isinstance(path, str):
        path = Path(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(_sockaddr(path))
        except FileNotFoundError:
            raise NoStackRunning(f"no layers stack is running at {path} (no such socket)") from None
        except ConnectionRefusedError:
            if isinstance(path, str):
                raise NoStackRunning(
                    f"no layers stack is running at {path} in this network namespace"
                ) from None
            raise NoStackRunning(
                f"no layers stack answers at {path}: the socket is stale (its stack died); "
                f"remove it with: rm {path}"
            ) from None
        me = os.geteuid()
        owner = peer_uid(s)
        if me != 0 and owner not in (0, me):
            raise ConfigurationError(
                f"the control socket {path} is served by uid {owner}, neither you nor root; "
                f"not asking it (is someone squatting the name? pass --control)"
            )
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
