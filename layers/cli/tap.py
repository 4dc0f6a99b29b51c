"""``layers tap create|delete``: persistent TAP/TUN devices that a user may attach without root.

::

    sudo layers tap create tap0 --user alice [--tun] [--mtu 9000] [--peer 10.0.0.1/24]
    layers up --link tap:tap0 --address 10.0.0.2/24        # as alice, no root
    sudo layers tap delete tap0

``create`` makes the device persistent and owned by the user (``TUNSETOWNER``; the kernel then
lets that user attach it without CAP_NET_ADMIN), brings it up, and optionally sets its MTU and
Linux's address on it: everything that would need privileges later, done once by root. It goes
through pyroute2 (``IPRoute.link("add", kind="tuntap", ...)``, which issues the
``/dev/net/tun`` ioctls for us, then rtnetlink). ``delete`` removes only TUN/TAP devices.
"""

from __future__ import annotations

import argparse
import errno
import grp
import ipaddress
import os
import pwd

from layers.cli.common import Commands
from layers.errors import ConfigurationError
from layers.links.tuntap import _check_name
from layers.netdev import Netlink, netlink_errno, parse_interface_address


def _uid(user: str) -> int:
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        if user.isdigit():
            return int(user)
        raise ConfigurationError(f"--user {user!r}: no such user; give a login name or a uid"
                                 ) from None


def _gid(group: str) -> int:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        if group.isdigit():
            return int(group)
        raise ConfigurationError(f"--group {group!r}: no such group; give a name or a gid"
                                 ) from None


def _privileges_error(what: str, exc: BaseException) -> ConfigurationError:
    code = netlink_errno(exc) or 0
    if code in (errno.EPERM, errno.EACCES):
        return ConfigurationError(
            f"{what} needs root (CAP_NET_ADMIN and access to /dev/net/tun): run it with sudo"
        )
    return ConfigurationError(f"{what}: {os.strerror(code) if code else exc}")


def cmd_tap_create(args: argparse.Namespace) -> int:
    name: str = args.name
    _check_name(name)
    mode = "tun" if args.tun else "tap"
    user = args.user if args.user is not None else os.environ.get("SUDO_USER") or None
    uid = _uid(user) if user else None
    gid = _gid(args.group) if args.group else None
    if args.mtu is not None and not 68 <= args.mtu <= 65535:
        raise ConfigurationError(f"--mtu {args.mtu} must be in 68..65535")
    peer = parse_interface_address(args.peer, "--peer") if args.peer else None
    with Netlink() as nl:
        existing = nl.device(name)
        if existing is not None:
            raise ConfigurationError(
                f"{name} exists already ({existing.tun_type or existing.kind or 'a device'}); "
                f"pick another name, or remove it first with: layers tap delete {name}"
            )
        try:
            nl.create_tuntap(name, mode, uid=uid, gid=gid)
        except Exception as exc:
            if netlink_errno(exc) is None:
                raise
            raise _privileges_error(f"layers tap create {name}", exc) from None
        try:
            dev = nl.device(name)
            if dev is None:
                raise ConfigurationError(f"{name} vanished right after it was created")
            nl.set(dev.index, up=True, mtu=args.mtu)
            if peer is not None:
                nl.add_address(dev.index, peer)
            dev = nl.device(dev.index) or dev
        except BaseException as exc:
            index = nl.lookup(name)
            if index is not None:
                nl.delete(index)  # leave nothing half-made behind
            if isinstance(exc, Exception) and netlink_errno(exc) is not None:
                raise _privileges_error(f"configuring {name}", exc) from None
            raise
    owner = (f"owner {user} (uid {uid})" if uid is not None else
             "no owner: only root may attach it (give --user)")
    extra = f", Linux's side {peer}" if peer is not None else ""
    print(f"layers tap: created {name} ({mode.upper()}, persistent, {owner}"
          f"{f', group {args.group}' if gid is not None else ''}, up, MTU {dev.mtu}{extra})")
    if uid is not None:
        hint = f" --address {_stack_hint(peer)}" if peer is not None else " --address A/N"
        print(f"  {user} can now run, without root: layers up --link {mode}:{name}{hint}")
    return 0


def _stack_hint(peer: ipaddress.IPv4Interface) -> str:
    hosts = (h for h in peer.network.hosts() if h != peer.ip)
    return f"{next(hosts, peer.ip)}/{peer.network.prefixlen}"


def cmd_tap_delete(args: argparse.Namespace) -> int:
    name: str = args.name
    _check_name(name)
    with Netlink() as nl:
        dev = nl.device(name)
        if dev is None:
            raise ConfigurationError(f"there is no device {name} in this network namespace")
        if dev.kind != "tun":
            raise ConfigurationError(
                f"{name} is not a TUN/TAP device (kind {dev.kind or 'none'}); layers tap delete "
                f"removes only those"
            )
        try:
            nl.delete(dev.index)
        except Exception as exc:
            if netlink_errno(exc) is None:
                raise
            raise _privileges_error(f"layers tap delete {name}", exc) from None
    print(f"layers tap: deleted {name}")
    return 0


def add_commands(commands: Commands) -> None:
    tap = commands.add(
        "tap", cmd_tap_create, help="create or delete a persistent TAP/TUN for a user (root)",
        description="Make a persistent TAP (or TUN) device owned by a user, who can then run "
                    "`layers up` on it without root; or delete one.")
    sub = tap.add_subparsers(dest="tap_command", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="make a persistent device owned by a user",
                            description="Make a persistent TAP (or TUN) device, owned by "
                                        "--user, brought up (with --mtu and Linux's --peer "
                                        "address if given).")
    create.add_argument("name", metavar="NAME")
    create.add_argument("--user", metavar="USER",
                        help="the owner, who may attach it without root (default: $SUDO_USER)")
    create.add_argument("--group", metavar="GROUP", help="a group whose members may attach it")
    create.add_argument("--tun", action="store_true", help="a TUN (IP) device instead of a TAP")
    create.add_argument("--mtu", type=int, metavar="N", help="the device's MTU")
    create.add_argument("--peer", metavar="A/N",
                        help="Linux's address on the device, e.g. 10.0.0.1/24 (the user's "
                             "stack takes another in that network)")
    create.set_defaults(func=cmd_tap_create)
    delete = sub.add_parser("delete", help="delete a TAP/TUN device",
                            description="Delete a TAP or TUN device (only those).")
    delete.add_argument("name", metavar="NAME")
    delete.set_defaults(func=cmd_tap_delete)

