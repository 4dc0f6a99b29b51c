"""TCP throughput against Linux over a TAP, next to a floor: a minimal Python TCP sink.

In one run and one throwaway namespace (no uplink; deleted at the end):

  (a) the floor: a minimal Python TCP sink written from RFC 9293 (answers the SYN, sends one
      cumulative ACK per received segment, answers the FIN) reading the TAP directly, with the
      virtio offloads (Linux hands it 64 KiB GSO segments) and without;
  (b) our stack receiving from Linux (a kernel socket in the namespace sends N MiB);
  (c) our stack sending to Linux (a kernel socket receives N MiB);
  (d) the round-trip time of a 20 MiB echo (Linux's client through our echo server);
  (e) how many connections from Linux our stack holds at once (all echoing), up to 1000.

Linux's side runs as a subprocess in the namespace (its own CPU); the floor and our stack run
in this process. Prints a table; never asserts. Compare figures only within one run.

    sudo .venv/bin/python tests/bench/tcp_bench.py [MiB] [--pytcp DIR]

``--pytcp DIR [--pytcp-python PY]`` adds PyTCP's figures: DIR is a checkout of PyTCP's 2.7.10
tag (kept outside the repository), PY a CPython 3.12 (default: see ``pytcp_python``); see
``PyTcp`` and tests/bench/pytcp_runner.py.
"""

from __future__ import annotations

import asyncio
import fcntl
import glob
import os
import random
import re
import secrets
import select
import shutil
import statistics
import struct
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from layers.links.tuntap import TapLink
from layers.netns import NetNamespace, have_root_and_tun
from layers.runtime import AsyncioRunner
from layers.stack import Stack
from layers.streams import open_connection, start_server

LINUX_IP, STACK_IP = "10.76.0.1", "10.76.0.2"
PLUGINS = ["arp", "ipv4", "icmp", "tcp"]
RUNS = 3

# --- the Linux side ---------------------------------------------------------------------------
#   send HOST PORT N   connect, send N bytes, shut down, wait for EOF; print seconds
#   sink PORT          accept one, read to EOF; print bytes and seconds (first byte to EOF)
#   echo HOST PORT N   send N bytes through an echo server and read them back; print seconds
#   hold HOST PORT MAX open up to MAX connections, keep them all, then one echo on each;
#                      print opened, echoed, seconds to open
LINUX = r"""
import resource, socket, sys, threading, time
resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
mode = sys.argv[1]
if mode == "sink":
    ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", int(sys.argv[2]))); ls.listen(1)
    print("listening", flush=True)
    s, _ = ls.accept(); n = 0; t0 = None
    while d := s.recv(1 << 20):
        t0 = t0 or time.perf_counter(); n += len(d)
    print(n, time.perf_counter() - t0, flush=True)
    s.close(); sys.exit(0)
host, port, n = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if mode == "hold":
    socks = []; t0 = time.perf_counter()
    try:
        for _ in range(n):
            s = socket.create_connection((host, port), timeout=3); socks.append(s)
    except OSError as exc:
        print("stopped:", exc, file=sys.stderr)
    dt = time.perf_counter() - t0; ok = 0
    for i, s in enumerate(socks):
        s.sendall(b"%06d" % i)
    for i, s in enumerate(socks):
        try:
            ok += s.recv(6) == b"%06d" % i
        except OSError:
            pass
    print(len(socks), ok, dt, flush=True); sys.exit(0)
data = bytes(range(256)) * (n // 256)
s = socket.create_connection((host, port), timeout=60)
t0 = time.perf_counter()
if mode == "send":
    s.sendall(data); s.shutdown(socket.SHUT_WR); s.recv(1)
else:
    got = [0]
    def reader():
        while d := s.recv(1 << 20):
            got[0] += len(d)
    t = threading.Thread(target=reader); t.start()
    s.sendall(data); s.shutdown(socket.SHUT_WR); t.join()
    assert got[0] == len(data), got
print(time.perf_counter() - t0, flush=True)
"""


def linux(ns: NetNamespace, *args: str) -> subprocess.Popen[str]:
    proc = ns.popen([sys.executable, "-c", LINUX, *args], stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True)
    if args[0] == "sink":
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "listening"
    return proc


def output(proc: subprocess.Popen[str], timeout: float = 120) -> list[str]:
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"Linux side failed: {err.strip()}")
    return out.split()


def make_tap(ns: NetNamespace, dev: str, mac: str) -> None:
    """Linux's end of the device: addressed, up, the peer's MAC known (no ARP needed)."""
    ns.run(["sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1"], check=False)
    ns.run(["ip", "addr", "add", f"{LINUX_IP}/24", "dev", dev])
    ns.run(["ip", "link", "set", dev, "up"])
    ns.run(["ip", "neigh", "replace", STACK_IP, "lladdr", mac, "dev", dev, "nud", "permanent"])


# --- (a) the floor: a minimal TCP sink on a raw TAP -------------------------------------------
TUNSETIFF, TUNSETOFFLOAD, TUNSETVNETHDRSZ = 0x400454CA, 0x400454D0, 0x400454D8
IFF_TAP, IFF_NO_PI, IFF_VNET_HDR, TUN_F_CSUM, TUN_F_TSO4 = 0x2, 0x1000, 0x4000, 0x1, 0x2
ETH, IP4 = struct.Struct("!6s6sH"), struct.Struct("!BBHHHBBH4s4s")
TCP4 = struct.Struct("!HHIIBBHHH")
SINK_MAC = bytes.fromhex("020000000002")


def _csum(data: bytes) -> int:
    if len(data) & 1:
        data += b"\0"
    s = int.from_bytes(data, "big") % 0xFFFF  # ones'-complement sum (2^16 = 1 mod 0xFFFF)
    return (~s & 0xFFFF) or 0xFFFF if s else 0xFFFF


def raw_sink(ns: NetNamespace, offload: bool, port: int, size: int) -> float:
    """Open a TAP, accept one connection from Linux's sender, ACK every segment; the sender's
    seconds (connect to EOF)."""
    dev = f"fl{secrets.token_hex(3)}"
    with ns.entered():
        fd = os.open("/dev/net/tun", os.O_RDWR)
    flags = IFF_TAP | IFF_NO_PI | (IFF_VNET_HDR if offload else 0)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", dev.encode(), flags))
    hlen = 10 if offload else 0
    if offload:
        fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", 10))
        fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4)
    make_tap(ns, dev, SINK_MAC.hex(":"))
    sender = linux(ns, "send", STACK_IP, str(port), str(size))
    vnet = bytes(hlen)
    rcv_nxt = snd_nxt = 0
    peer_mac = b""
    try:
        while True:
            frame = memoryview(os.read(fd, 65536 + 14 + hlen))[hlen:]
            _dst, src, etype = ETH.unpack_from(frame)
            if etype != 0x0800 or frame[23] != 6:
                continue
            ihl = (frame[14] & 15) * 4
            tot = int.from_bytes(frame[16:18], "big")
            ip_src, ip_dst = bytes(frame[26:30]), bytes(frame[30:34])
            t = 14 + ihl
            sport, dport, seq, _ack, off, fl, _w, _c, _u = TCP4.unpack_from(frame, t)
            dlen = tot - ihl - (off >> 4) * 4
            reply = 0x10  # ACK
            opts = b""
            if fl & 0x02:  # SYN: answer with MSS 1460 and window scale 7
                peer_mac, rcv_nxt = bytes(src), (seq + 1) & 0xFFFFFFFF
                snd_nxt = random.getrandbits(32)
                reply, opts = 0x12, b"\x02\x04\x05\xb4\x01\x03\x03\x07"
            elif seq == rcv_nxt:
                rcv_nxt = (rcv_nxt + dlen + (1 if fl & 0x01 else 0)) & 0xFFFFFFFF
                if fl & 0x01:
                    reply = 0x11  # FIN-ACK
            tcp = TCP4.pack(dport, sport, snd_nxt, rcv_nxt, (20 + len(opts)) // 4 << 4, reply,
                            0xFFFF, 0, 0) + opts
            pseudo = ip_dst + ip_src + struct.pack("!HH", 6, len(tcp))
            tcp = tcp[:16] + _csum(pseudo + tcp).to_bytes(2, "big") + tcp[18:]
            ip = IP4.pack(0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, ip_dst, ip_src)
            ip = ip[:10] + _csum(ip).to_bytes(2, "big") + ip[12:]
            os.write(fd, vnet + ETH.pack(peer_mac, SINK_MAC, 0x0800) + ip + tcp)
            if reply & 0x02:
                snd_nxt = (snd_nxt + 1) & 0xFFFFFFFF
            if reply & 0x01:
                break
        return float(output(sender)[0])
    finally:
        if sender.poll() is None:
            sender.kill()
        os.close(fd)


# --- (b)-(e) our stack ----------------------------------------------------------------------


async def _run_stack(ns: NetNamespace, offload: bool, body: Any) -> Any:
    dev = f"st{secrets.token_hex(3)}"
    with ns.entered():
        tap = TapLink.open(dev, offload=offload)
    assert tap.mac is not None
    make_tap(ns, dev, tap.mac.hex(":"))
    loop = asyncio.get_running_loop()
    stack = Stack(PLUGINS, clock=loop.time, name="bench")
    stack.add_interface(tap, address=f"{STACK_IP}/24")
    runner = AsyncioRunner(stack, loop)
    runner.start()
    try:
        return await body(stack)
    finally:
        runner.stop()


async def _sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await reader.read(1 << 20):
        pass
    writer.close()


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 20):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _wait(proc: subprocess.Popen[str], timeout: float = 300) -> list[str]:
    return await asyncio.get_running_loop().run_in_executor(None, output, proc, timeout)


def stack_receive(ns: NetNamespace, offload: bool, port: int, size: int) -> float:
    async def body(stack: Stack) -> float:
        server = await start_server(stack, _sink, "0.0.0.0", port)
        seconds = float((await _wait(linux(ns, "send", STACK_IP, str(port), str(size))))[0])
        server.close()
        return seconds

    return asyncio.run(_run_stack(ns, offload, body))


def stack_send(ns: NetNamespace, offload: bool, port: int, size: int) -> float:
    data = bytes(range(256)) * (size // 256)

    async def body(stack: Stack) -> float:
        proc = linux(ns, "sink", str(port))
        _, writer = await open_connection(stack, LINUX_IP, port)
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        n, seconds = await _wait(proc)
        writer.close()
        assert int(n) == len(data), n
        return float(seconds)

    return asyncio.run(_run_stack(ns, offload, body))


def stack_echo(ns: NetNamespace, offload: bool, port: int, size: int) -> float:
    async def body(stack: Stack) -> float:
        server = await start_server(stack, _echo, "0.0.0.0", port)
        seconds = float((await _wait(linux(ns, "echo", STACK_IP, str(port), str(size))))[0])
        server.close()
        return seconds

    return asyncio.run(_run_stack(ns, offload, body))


def stack_hold(ns: NetNamespace, port: int, most: int) -> tuple[int, int, float]:
    async def body(stack: Stack) -> tuple[int, int, float]:
        server = await start_server(stack, _echo, "0.0.0.0", port, backlog=1024)
        opened, echoed, seconds = await _wait(linux(ns, "hold", STACK_IP, str(port), str(most)))
        server.close()
        return int(opened), int(echoed), float(seconds)

    return asyncio.run(_run_stack(ns, True, body))


# --- PyTCP, side by side (optional) -----------------------------------------------------------
#   Its 2.7.10 wheel on PyPI holds only pytcp/__init__.py and config.py (``import pytcp``
#   fails: no pytcp.lib), so it runs from a checkout of its 2.7.10 tag (kept outside the
#   repository), under CPython 3.12; its pyproject lists no dependencies, so the bare
#   interpreter runs it (no venv). Its state is module-global: one stack per process.
PYTCP_VERSION = "2.7.10"
PYTCP_RUNNER = Path(__file__).with_name("pytcp_runner.py")
PYTCP_MAC = "02:00:00:00:00:07"
PYTCP_HOW = ("git clone https://github.com/ccie18643/PyTCP DIR && git -C DIR checkout "
             f"{PYTCP_VERSION}, then PYTCP_SRC=DIR")


def pytcp_checkout(path: str) -> str:
    """``path`` made absolute when it is a checkout of PyTCP 2.7.10, else a ValueError naming
    the fix."""
    root = Path(path).expanduser().resolve()
    if not (root / "pytcp" / "lib" / "socket.py").is_file():
        raise ValueError(f"{root} is not a checkout of PyTCP (no pytcp/lib/socket.py); "
                         f"{PYTCP_HOW}")
    try:
        meta = tomllib.loads((root / "pyproject.toml").read_text())
        version = meta["project"]["version"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{root}/pyproject.toml names no version ({exc}); {PYTCP_HOW}") from exc
    if version != PYTCP_VERSION:
        raise ValueError(f"{root} is PyTCP {version}, the bench compares with "
                         f"{PYTCP_VERSION}: {PYTCP_HOW}")
    return str(root)


def pytcp_python() -> str | None:
    """A CPython 3.12 for PyTCP: ``PYTCP_PYTHON``, else the newest 3.12 under ``pyenv root``
    (or ~/.pyenv), else ``python3.12`` on the PATH; None when there is none."""
    explicit = os.environ.get("PYTCP_PYTHON")
    if explicit:
        return explicit
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        root = os.path.expanduser("~/.pyenv")
    found = sorted(glob.glob(os.path.join(root, "versions", "3.12*", "bin", "python3.12")),
                   key=lambda p: [int(n) for n in re.findall(r"\d+", p.split("versions")[-1])])
    return found[-1] if found else shutil.which("python3.12")


class PyTcp:
    """PyTCP 2.7.10 on a TAP of its own in ``ns`` (tests/bench/pytcp_runner.py under CPython
    3.12), measured as our stack is: :meth:`receive` is timed by Linux's sender (connect to
    the peer's close), :meth:`send` by Linux's sink (first byte to EOF). A context manager:
    the process is stopped (by PID) and the TAP deleted at the end."""

    def __init__(self, ns: NetNamespace, checkout: str, python: str) -> None:
        self.ns = ns
        self.checkout = pytcp_checkout(checkout)
        self.python = python
        self.dev = f"py{secrets.token_hex(3)}"
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> PyTcp:
        self.ns.run(["ip", "tuntap", "add", "dev", self.dev, "mode", "tap"])
        try:
            make_tap(self.ns, self.dev, PYTCP_MAC)
            self.proc = self.ns.popen(
                [self.python, "-I", "-O", str(PYTCP_RUNNER), self.checkout, self.dev, PYTCP_MAC,
                 f"{STACK_IP}/24"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self._expect("ready", 60)  # PyTCP's start() returns after its ARP probes (3-6 s)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                proc.communicate("", timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.ns.run(["ip", "link", "del", self.dev], check=False)

    def _command(self, line: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def _expect(self, word: str, timeout: float) -> list[str]:
        """The next line of the runner's that starts with ``word``, split (lines that PyTCP
        prints itself are passed over)."""
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
                raise RuntimeError(f"PyTCP said no {word!r} within {timeout:g} s")
            line = proc.stdout.readline()
            if not line:
                proc.wait(timeout=10)
                err = proc.stderr.read() if proc.stderr else ""
                raise RuntimeError(f"PyTCP exited ({proc.returncode}) before {word!r}: "
                                   f"{err.strip()[-500:]}")
            words = line.split()
            if words and words[0] == word:
                return words

    def receive(self, port: int, size: int) -> float:
        """Linux sends ``size`` bytes to PyTCP's sink; the sender's seconds."""
        self._command(f"sink {port}")
        self._expect("listening", 10)
        seconds = float(output(linux(self.ns, "send", STACK_IP, str(port), str(size)), 600)[0])
        got = int(self._expect("done", 30)[1])
        if got != size:
            raise RuntimeError(f"PyTCP received {got} of {size} bytes")
        return seconds

    def send(self, port: int, size: int) -> float:
        """PyTCP sends ``size`` bytes to Linux's sink; the sink's seconds."""
        sink = linux(self.ns, "sink", str(port))
        try:
            self._command(f"send {LINUX_IP} {port} {size}")
            n, seconds = output(sink, 600)
        finally:
            if sink.poll() is None:
                sink.kill()
                sink.wait(timeout=10)
        self._expect("done", 30)
        if int(n) != size:
            raise RuntimeError(f"Linux received {n} of {size} bytes from PyTCP")
        return float(seconds)


# --- the report -------------------------------------------------------------------------------


def mbit(size: int, seconds: float) -> float:
    return size * 8 / seconds / 1e6


def main(argv: list[str]) -> int:
    ok, why = have_root_and_tun()
    if not ok:
        print(f"tcp_bench: skipped: {why}")
        return 0
    mib = int(argv[0]) if argv and argv[0].isdigit() else 20
    pytcp = argv[argv.index("--pytcp") + 1] if "--pytcp" in argv else None
    pytcp_py = (argv[argv.index("--pytcp-python") + 1] if "--pytcp-python" in argv
                else pytcp_python())
    size = mib << 20
    port = iter(range(9000, 10000))
    rows: list[tuple[str, str, float]] = []
    with NetNamespace(prefix="layers-bench") as ns:
        print(f"tcp_bench: {mib} MiB per transfer, best and median of {RUNS} runs, "
              f"namespace {ns.name}", flush=True)
        for offload in (True, False):
            label = "offload" if offload else "plain"
            for name, fn in (("(a) floor: raw sink, Linux -> it", raw_sink),
                             ("(b) layers receives from Linux", stack_receive),
                             ("(c) layers sends to Linux", stack_send)):
                rates = [mbit(size, fn(ns, offload, next(port), size)) for _ in range(RUNS)]
                rows.append((name, label, max(rates)))
                print(f"  {name:36} {label:8} best {max(rates):8.0f} Mbit/s  median "
                      f"{statistics.median(rates):8.0f}", flush=True)
        echo = {off: min(stack_echo(ns, off, next(port), 20 << 20) for _ in range(RUNS))
                for off in (True, False)}
        opened, echoed, seconds = stack_hold(ns, next(port), 1000)
        if pytcp is not None:
            pytcp_mib = 2
            try:
                if pytcp_py is None:
                    raise RuntimeError("no CPython 3.12 (give --pytcp-python)")
                with PyTcp(ns, pytcp, pytcp_py) as peer:
                    receive = mbit(pytcp_mib << 20, peer.receive(next(port), pytcp_mib << 20))
                    send = mbit(pytcp_mib << 20, peer.send(next(port), pytcp_mib << 20))
                rows.append((f"PyTCP 2.7.10 receives ({pytcp_mib} MiB)", "plain", receive))
                rows.append((f"PyTCP 2.7.10 sends ({pytcp_mib} MiB)", "plain", send))
            except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as exc:
                print(f"  PyTCP: not measured: {exc}")
    floor = {label: rate for name, label, rate in rows if name.startswith("(a)")}
    print()
    print(f"{'measurement':38} {'link':8} {'Mbit/s':>9} {'x floor':>8}")
    for name, label, rate in rows:
        print(f"{name:38} {label:8} {rate:9.1f} {rate / floor[label]:8.3f}")
    for off, seconds_echo in echo.items():
        label = "offload" if off else "plain"
        print(f"{'(d) 20 MiB echo round trip':38} {label:8} {seconds_echo:8.3f}s "
              f"({mbit(2 * (20 << 20), seconds_echo):.0f} Mbit/s both ways)")
    print(f"{'(e) connections held at once':38} {'offload':8} {opened} opened, {echoed} echoed "
          f"(asked for 1000; opened in {seconds:.2f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
