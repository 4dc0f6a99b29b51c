"""Against Linux, each test in namespaces of its own: ``layers up --peer`` configures Linux's
side, control sockets do not collide across namespaces, and ``layers tap create`` prepares a
device that an unprivileged user then runs ``layers up`` on."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import pwd
import re
import shutil
from collections.abc import Iterator

import pytest
from linux_tools import LAYERS, LayersUp, devname, layers, link_state, ping_ok

from layers.cli import main
from layers.netns import NetNamespace

pytestmark = pytest.mark.root

UNPRIVILEGED = "nobody"


@pytest.fixture
def second_netns(netns: NetNamespace) -> Iterator[NetNamespace]:
    ns = NetNamespace(prefix="layers-test")
    ns.create()
    try:
        yield ns
    finally:
        ns.delete()


def _cli(ns: NetNamespace, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``layers ARGS`` in this process, from inside ``ns``: (exit status, stdout + stderr)."""
    with ns.entered():
        code = main(list(args))
    out = capsys.readouterr()
    return code, out.out + out.err


def _addresses(ns: NetNamespace, dev: str) -> set[ipaddress.IPv4Interface]:
    with ns.netlink() as nl:
        index = nl.lookup(dev)
        return set(nl.addresses(index)) if index is not None else set()


def test_same_device_name_in_two_namespaces_with_peer_and_netstat_inside_each(
    netns: NetNamespace, second_netns: NetNamespace
) -> None:
    tap = devname("lp")  # the same name in both namespaces
    ups: list[LayersUp] = []
    try:
        for ns, net in ((netns, "10.84.1"), (second_netns, "10.84.2")):
            up = LayersUp(ns, ["--link", f"tap:{tap}", "--address", f"{net}.2/24",
                               "--peer", f"{net}.1/24"])
            ups.append(up)
            line = up.wait_ready()
            assert f"peer {net}.1/24" in line and f"control @layers/{tap};" in line, line
        for ns, net in ((netns, "10.84.1"), (second_netns, "10.84.2")):
            # --peer alone made Linux's side: address and up, nothing else typed
            assert ipaddress.IPv4Interface(f"{net}.1/24") in _addresses(ns, tap)
            ping_ok(ns, f"{net}.2", count=2)
            # netstat inside the namespace finds that namespace's stack, without --name/--control
            r = layers(ns, "netstat")
            assert r.returncode == 0, r.stderr
            assert f"Inet addr:{net}.2/255.255.255.0" in r.stdout, r.stdout
        for up in ups:
            rc, _out, err = up.stop()
            assert rc == 0, err
        # the devices were made by layers up: gone with their stacks (and their addresses)
        assert link_state(netns, tap) is None and link_state(second_netns, tap) is None
    finally:
        for up in ups:
            if up.proc.poll() is None:
                with contextlib.suppress(Exception):
                    up.stop()


def test_peer_on_an_existing_device_is_removed_on_exit(
    netns: NetNamespace, capsys: pytest.CaptureFixture[str]
) -> None:
    tap = devname("lq")
    code, out = _cli(netns, capsys, "tap", "create", tap, "--user", "root")
    assert code == 0, out
    assert f"created {tap} (TAP, persistent, owner root (uid 0), up, MTU 1500)" in out
    up = LayersUp(netns, ["--link", f"tap:{tap}", "--address", "10.85.0.2/24",
                          "--peer", "10.85.0.1/24"])
    try:
        up.wait_ready()
        assert _addresses(netns, tap) == {ipaddress.IPv4Interface("10.85.0.1/24")}
        ping_ok(netns, "10.85.0.2", count=2)
    finally:
        rc, _out, err = up.stop()
    assert rc == 0, err
    state = link_state(netns, tap)
    assert state is not None, "a persistent device outlives the stack"
    assert _addresses(netns, tap) == set(), "the address layers added is removed on exit"
    assert "UP" in state["flags"], "left up, as tap create made it"
    code, out = _cli(netns, capsys, "tap", "create", tap)
    assert code == 2 and "exists already (tap)" in out, out
    code, out = _cli(netns, capsys, "tap", "delete", tap)
    assert code == 0 and f"deleted {tap}" in out, out
    assert link_state(netns, tap) is None
    code, out = _cli(netns, capsys, "tap", "delete", "lo")
    assert code == 2 and "not a TUN/TAP device" in out, out


def _drop_root_prefix(user: pwd.struct_passwd) -> list[str]:
    """Run the command as ``user`` in a private mount namespace whose /dev/net is a fresh
    tmpfs holding a tun node only ``user`` may open: the machine's /dev/net/tun (0600 root)
    is untouched, and the mount disappears with the process."""
    script = (
        "mount -t tmpfs -o size=16k,mode=0755 layers-test-dev /dev/net && "
        "mknod -m 0600 /dev/net/tun c 10 200 && "
        f"chown {user.pw_uid}:{user.pw_gid} /dev/net/tun && "
        f"exec setpriv --reuid={user.pw_uid} --regid={user.pw_gid} --clear-groups "
        f"--inh-caps=-all --bounding-set=-all -- \"$@\""
    )
    return ["unshare", "--mount", "--propagation", "private", "--",
            "sh", "-c", script, "sh"]


def _needs_drop_tools() -> pwd.struct_passwd:
    for tool in ("unshare", "setpriv", "mount", "mknod"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} (Debian package util-linux/coreutils)")
    try:
        return pwd.getpwnam(UNPRIVILEGED)
    except KeyError:
        pytest.skip(f"needs the user {UNPRIVILEGED} to run layers up unprivileged")


def test_unprivileged_user_runs_layers_up_on_a_prepared_tap(
    netns: NetNamespace, capsys: pytest.CaptureFixture[str]
) -> None:
    user = _needs_drop_tools()
    tap = devname("lu")
    prefix = _drop_root_prefix(user)
    # the user cannot make devices
    r = netns.run([*prefix, *LAYERS, "tap", "create", tap], check=False)
    assert r.returncode == 2 and "needs root" in r.stderr, r.stderr
    # root prepares one for them, with Linux's side configured once
    code, out = _cli(netns, capsys, "tap", "create", tap, "--user", user.pw_name,
                     "--peer", "10.86.0.1/24")
    assert code == 0, out
    assert f"owner {user.pw_name} (uid {user.pw_uid})" in out
    assert f"layers up --link tap:{tap} --address 10.86.0.2/24" in out
    # what needs privileges is refused with the fix named, and the device is left as it was
    r = netns.run([*prefix, *LAYERS, "up", "--link", f"tap:{tap}", "--address", "10.86.0.2/24",
                   "--peer", "10.86.0.3/24"], check=False)
    assert r.returncode == 2 and "needs CAP_NET_ADMIN" in r.stderr, r.stderr
    assert f"layers tap create {tap} --user $USER --peer" in r.stderr, r.stderr
    up = LayersUp(netns, ["--link", f"tap:{tap}", "--address", "10.86.0.2/24"], prefix=prefix)
    try:
        line = up.wait_ready()
        assert re.search(rf"on {tap} \(TAP, MAC [0-9a-f:]{{17}}, MTU 1500\)", line), line
        with open(f"/proc/{up.proc.pid}/status") as f:
            status = dict(line.split(":", 1) for line in f if ":" in line)
        assert status["Uid"].split() == [str(user.pw_uid)] * 4, status["Uid"]
        assert int(status["CapEff"], 16) == 0, status["CapEff"]
        ping_ok(netns, "10.86.0.2", count=2)
        code, out = _cli(netns, capsys, "netstat", "--name", tap)  # root reads the user's stack
        assert code == 0 and "Inet addr:10.86.0.2" in out, out
    finally:
        rc, _out, err = up.stop()
    assert rc == 0, err
    assert link_state(netns, tap) is not None
    code, out = _cli(netns, capsys, "tap", "delete", tap)
    assert code == 0, out
    assert os.stat("/dev/net/tun").st_mode & 0o777 == 0o600, "the real node was not touched"
