"""Network devices and their addresses, through pyroute2 (rtnetlink).

::

    nl = Netlink()                          # the calling thread's network namespace
    nl = Netlink(netns="lab")               # a named one (/run/netns/lab)
    dev = nl.device("tap0")                 # DeviceState(index, name, up, mtu, mac, kind, ...)
    nl.set(dev.index, up=True, mtu=9000)
    nl.add_address(dev.index, "10.0.0.1/24")
    await nl.adevice("tap0")                # inside a coroutine: AsyncIPRoute

**Which namespace.** A :class:`Netlink` opens one rtnetlink socket when it is made, in the
calling thread's namespace (or, with ``netns=NAME``, inside that namespace through
``pyroute2.netns``), and every synchronous request goes through that socket. So a TAP opened
inside ``NetNamespace.entered()`` keeps being managed in its namespace whatever thread closes
it.

**Sync and async.** pyroute2 0.9's synchronous ``IPRoute`` drives a private event loop and
raises "This event loop is already running" when the calling thread already runs one. Coroutines
therefore use the ``a*`` methods (``AsyncIPRoute`` on the running loop, with a socket of its
own made in the calling thread's namespace or in ``netns``). The synchronous
methods use ``IPRoute``; when they are called from a thread that runs a loop (a link opened by
``layers up`` or ``running_stack``: ``Link.open`` is synchronous), the request runs in a
short-lived worker thread instead, which blocks the caller for the millisecond a request takes,
as the ioctls it replaces did.

pyroute2 is imported on first use: a stack on memory links never pays for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import attrs

from layers.errors import ConfigurationError

T = TypeVar("T")

IFF_UP = 0x1
NETLINK_ROUTE = 0


@attrs.frozen
class DeviceState:
    """What rtnetlink says about one device."""

    index: int
    name: str
    #: administratively up (IFF_UP; the carrier is another matter)
    up: bool
    mtu: int
    #: the device's own hardware address (None for devices without one, such as a TUN)
    mac: bytes | None
    #: the link kind ("tun" for both TUN and TAP devices; None for plain devices)
    kind: str | None = None
    #: for a TUN/TAP: "tun" or "tap"
    tun_type: str | None = None
    #: for a TUN/TAP: the owning uid, or None when only CAP_NET_ADMIN may attach
    owner: int | None = None
    group: int | None = None
    persistent: bool = False


def netlink_errno(exc: BaseException) -> int | None:
    """The errno of a pyroute2 NetlinkError or an OSError, else None."""
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    if isinstance(exc, OSError):
        return exc.errno
    return None


def is_netlink_error(exc: BaseException) -> bool:
    from pyroute2.netlink.exceptions import NetlinkError

    return isinstance(exc, (NetlinkError, OSError))


def _mac_bytes(value: str | None) -> bytes | None:
    if not value:
        return None
    raw = bytes.fromhex(value.replace(":", ""))
    return raw if len(raw) == 6 else None


def _state(msg: Any) -> DeviceState:
    kind = msg.get(("linkinfo", "kind"))
    tun_type = owner = group = None
    persistent = False
    if kind == "tun":
        data = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
        if data is not None:
            t = data.get_attr("IFLA_TUN_TYPE")
            tun_type = {1: "tun", 2: "tap"}.get(t) if t is not None else None
            owner = data.get_attr("IFLA_TUN_OWNER")
            group = data.get_attr("IFLA_TUN_GROUP")
            persistent = bool(data.get_attr("IFLA_TUN_PERSIST"))
    return DeviceState(
        index=int(msg["index"]),
        name=str(msg.get("ifname")),
        up=bool(int(msg["flags"]) & IFF_UP),
        mtu=int(msg.get("mtu") or 0),
        mac=_mac_bytes(msg.get("address")),
        kind=kind,
        tun_type=tun_type,
        owner=None if owner in (None, 0xFFFFFFFF) else int(owner),
        group=None if group in (None, 0xFFFFFFFF) else int(group),
        persistent=persistent,
    )


def _set_args(up: bool | None, mtu: int | None, mac: bytes | None) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if up is not None:
        args["state"] = "up" if up else "down"
    if mtu is not None:
        args["mtu"] = mtu
    if mac is not None:
        args["address"] = ":".join(f"{b:02x}" for b in mac)
    return args


def parse_interface_address(text: str, what: str = "address") -> ipaddress.IPv4Interface:
    """``A/N`` as an IPv4 interface address, or a ConfigurationError naming the fix."""
    try:
        if "/" not in text:
            raise ValueError("no prefix length")
        return ipaddress.IPv4Interface(text)
    except ValueError:
        raise ConfigurationError(
            f"{what} {text!r} should be an IPv4 address with its prefix length, e.g. 10.0.0.1/24"
        ) from None


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _in_worker(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a new thread (which runs no event loop) and return what it returns."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=run, name="layers-netlink", daemon=True)
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


class Netlink:
    """rtnetlink requests in one network namespace (see the module docstring)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        if netns is None:
            self._sock = socket.socket(
                socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_ROUTE
            )
            self._nsfd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        else:
            from pyroute2 import netns as pr_netns

            # flags=0: never create the namespace as a side effect (pyroute2's default would)
            self._sock = pr_netns.create_socket(
                netns, socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE, flags=0
            )
            self._nsfd = -1
        self._lock = threading.Lock()

    def close(self) -> None:
        self._sock.close()
        if self._nsfd >= 0:
            os.close(self._nsfd)
            self._nsfd = -1

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _session_socket(self) -> socket.socket:
        if self._sock.fileno() < 0:
            raise OSError(errno.EBADF, "this Netlink handle is closed")
        return self._sock.dup()

    # --- the two transports -----------------------------------------------------------------
    @contextlib.contextmanager
    def _ipr(self) -> Iterator[Any]:
        from pyroute2 import IPRoute

        with self._lock, IPRoute(use_socket=self._session_socket(), groups=0) as ipr:
            yield ipr

    def _call(self, fn: Callable[[Any], T]) -> T:
        def run() -> T:
            with self._ipr() as ipr:
                return fn(ipr)

        return _in_worker(run) if _loop_running() else run()

    @contextlib.asynccontextmanager
    async def _aipr(self) -> AsyncIterator[Any]:
        from pyroute2 import AsyncIPRoute

        # a socket of its own (pyroute2 makes it in the calling thread's namespace, or in the
        # named one), so coroutines never share a socket with a synchronous request
        async with AsyncIPRoute(netns=self.netns, flags=0, groups=0) as ipr:
            yield ipr

    # --- synchronous (IPRoute) ----------------------------------------------------------------
    def lookup(self, name: str) -> int | None:
        """The interface index of ``name``, or None when there is no such device."""
        found = self._call(lambda ipr: ipr.link_lookup(ifname=name))
        return int(found[0]) if found else None

    def device(self, name_or_index: str | int) -> DeviceState | None:
        """The state of a device, or None when it does not exist."""

        def get(ipr: Any) -> DeviceState | None:
            if isinstance(name_or_index, str):
                found = ipr.link_lookup(ifname=name_or_index)
                if not found:
                    return None
                index = found[0]
            else:
                index = name_or_index
            try:
                (msg,) = ipr.link("get", index=index)
            except Exception as exc:
                if netlink_errno(exc) == errno.ENODEV:
                    return None
                raise
            return _state(msg)

        return self._call(get)

    def set(self, index: int, *, up: bool | None = None, mtu: int | None = None,
            mac: bytes | None = None) -> None:
        """Change a device's up/down state, MTU and/or MAC in one request."""
        args = _set_args(up, mtu, mac)
        if args:
            self._call(lambda ipr: ipr.link("set", index=index, **args))

    def addresses(self, index: int) -> list[ipaddress.IPv4Interface]:
        """The IPv4 addresses on a device."""

        def get(ipr: Any) -> list[ipaddress.IPv4Interface]:
            return [ipaddress.IPv4Interface(f"{m.get('address')}/{m['prefixlen']}")
                    for m in ipr.addr("dump", index=index, family=socket.AF_INET)]

        return self._call(get)

    def add_address(self, index: int, address: str | ipaddress.IPv4Interface) -> None:
        ifa = (address if isinstance(address, ipaddress.IPv4Interface)
               else parse_interface_address(address))
        self._call(lambda ipr: ipr.addr("add", index=index, address=str(ifa.ip),
                                        prefixlen=ifa.network.prefixlen))

    def del_address(self, index: int, address: str | ipaddress.IPv4Interface) -> None:
        ifa = (address if isinstance(address, ipaddress.IPv4Interface)
               else parse_interface_address(address))
        self._call(lambda ipr: ipr.addr("del", index=index, address=str(ifa.ip),
                                        prefixlen=ifa.network.prefixlen))

    def create_tuntap(self, name: str, mode: str, *, uid: int | None = None,
                      gid: int | None = None) -> None:
        """A persistent TUN or TAP device (no packet-information header), owned by ``uid``.

        pyroute2 makes it with the ``/dev/net/tun`` ioctls (TUNSETIFF, TUNSETOWNER,
        TUNSETGROUP, TUNSETPERSIST): for a named namespace in a child process that enters it,
        otherwise in the calling thread, which must then be in this handle's namespace."""
        spec: dict[str, Any] = {
            "ifname": name, "kind": "tuntap", "mode": mode,
            "ifr": {"no_pi": 1, "one_queue": 0, "vnet_hdr": 0, "tun_excl": 0,
                    "multi_queue": 0, "persist": 1, "nofilter": 0},
        }
        if uid is not None:
            spec["uid"] = uid
        if gid is not None:
            spec["gid"] = gid
        if self.netns is not None:
            from pyroute2 import IPRoute

            with self._lock, IPRoute(netns=self.netns, flags=0, groups=0) as ipr:
                ipr.link("add", **spec)
            return
        if os.stat("/proc/thread-self/ns/net").st_ino != os.fstat(self._nsfd).st_ino:
            raise ConfigurationError(
                f"cannot create {name}: this thread left the namespace the Netlink handle was "
                f"made in; create devices from that namespace (or pass netns=NAME)"
            )
        self._call(lambda ipr: ipr.link("add", **spec))

    def delete(self, index: int) -> None:
        self._call(lambda ipr: ipr.link("del", index=index))

    # --- asynchronous (AsyncIPRoute, on the running loop) ---------------------------------------
    async def adevice(self, name: str) -> DeviceState | None:
        async with self._aipr() as ipr:
            found = await ipr.link_lookup(ifname=name)
            if not found:
                return None
            (msg,) = await ipr.link("get", index=found[0])
            return _state(msg)

    async def aset(self, index: int, *, up: bool | None = None, mtu: int | None = None,
                   mac: bytes | None = None) -> None:
        args = _set_args(up, mtu, mac)
        if args:
            async with self._aipr() as ipr:
                await ipr.link("set", index=index, **args)

    async def aaddresses(self, index: int) -> list[ipaddress.IPv4Interface]:
        async with self._aipr() as ipr:
            return [ipaddress.IPv4Interface(f"{m.get('address')}/{m['prefixlen']}")
                    async for m in await ipr.addr("dump", index=index, family=socket.AF_INET)]

    async def aadd_address(self, index: int, address: ipaddress.IPv4Interface) -> None:
        async with self._aipr() as ipr:
            await ipr.addr("add", index=index, address=str(address.ip),
                           prefixlen=address.network.prefixlen)

    async def adel_address(self, index: int, address: ipaddress.IPv4Interface) -> None:
        async with self._aipr() as ipr:
            await ipr.addr("del", index=index, address=str(address.ip),
                           prefixlen=address.network.prefixlen)

    async def aneighbours(self, index: int) -> list[tuple[str, bytes | None]]:
        async with self._aipr() as ipr:
            return [(str(m.get("NDA_DST")), _mac_bytes(m.get("NDA_LLADDR")))
                    async for m in await ipr.neigh("dump", ifindex=index,
                                                   family=socket.AF_INET)]


def current_netns_id() -> str:
    """An identifier of the calling thread's network namespace (``net:[INODE]``)."""
    return os.readlink("/proc/thread-self/ns/net")


class HostSide:
    """Linux's end of a TAP or TUN the stack runs on: its address and up state, as
    ``layers up --peer A/N`` sets them. :meth:`restore` removes the address again when this
    object added it (a device ``layers`` created disappears on close anyway)."""

    def __init__(self, nl: Netlink, name: str, index: int,
                 address: ipaddress.IPv4Interface, added: bool) -> None:
        self.nl = nl
        self.name = name
        self.index = index
        self.address = address
        #: True when the address was not there before (and so is removed on exit)
        self.added = added

    @staticmethod
    def check(peer: str, stack_address: str) -> ipaddress.IPv4Interface:
        """Validate ``--peer`` against the stack's own ``--address`` before touching anything."""
        host = parse_interface_address(peer, "--peer")
        ours = parse_interface_address(stack_address, "--address")
        if host.ip == ours.ip:
            raise ConfigurationError(
                f"--peer {peer} is the stack's own address; Linux's side needs another one in "
                f"{ours.network}, e.g. {next(h for h in ours.network.hosts() if h != ours.ip)}"
                f"/{ours.network.prefixlen}"
            )
        if ours.ip not in host.network:
            raise ConfigurationError(
                f"--peer {peer}: Linux would have no route to the stack's {ours.ip}; give Linux "
                f"an address in {ours.network} (same prefix as --address)"
            )
        return host

    @classmethod
    async def configure(cls, nl: Netlink, name: str,
                        address: ipaddress.IPv4Interface) -> HostSide:
        dev = await nl.adevice(name)
        if dev is None:
            raise ConfigurationError(f"--peer: device {name} is gone")
        present = any(a.ip == address.ip for a in await nl.aaddresses(dev.index))
        try:
            if not present:
                await nl.aadd_address(dev.index, address)
            if not dev.up:
                await nl.aset(dev.index, up=True)
        except Exception as exc:
            code = netlink_errno(exc)
            if code is None:
                raise
            if code in (errno.EPERM, errno.EACCES):
                raise ConfigurationError(
                    f"--peer {address}: configuring {name} needs CAP_NET_ADMIN; run as root, or "
                    f"have root give Linux's side its address once (layers tap create {name} "
                    f"--user $USER --peer {address}) and leave out --peer"
                ) from None
            raise ConfigurationError(
                f"--peer {address}: cannot configure {name}: {os.strerror(code)}"
            ) from None
        return cls(nl, name, dev.index, address, added=not present)

    async def restore(self) -> None:
        """Remove the address if it was added here and the device still has it."""
        if not self.added:
            return
        try:
            if any(a.ip == self.address.ip for a in await self.nl.aaddresses(self.index)):
                await self.nl.adel_address(self.index, self.address)
        except Exception as exc:
            if netlink_errno(exc) is None:
                raise
            # the device went away meanwhile: so did its address
