"""The socket agent of the Linux DUT: real sockets inside the DUT's network namespace.

Run as a script (standard library only, so it starts in milliseconds) inside the namespace; it
reads one JSON request per line on stdin and answers one JSON line on stdout:

    {"op": "socket", "kind": "udp"}          ->  {"ok": 1}
    {"op": "recv", "s": 1, "timeout": 0.5}   ->  {"ok": null}          (nothing in time)
    {"op": "connect", ...}                   ->  {"errno": 111, "error": "Connection refused"}

Bytes travel as base64. Every operation is bounded by its ``timeout``: the agent never blocks
for longer, so the testbench (which owns the wire) always gets its turn.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import select
import socket
import struct
import sys
import traceback
from typing import Any

TCP_STATES = {
    1: "ESTABLISHED", 2: "SYN-SENT", 3: "SYN-RECEIVED", 4: "FIN-WAIT-1", 5: "FIN-WAIT-2",
    6: "TIME-WAIT", 7: "CLOSED", 8: "CLOSE-WAIT", 9: "LAST-ACK", 10: "LISTEN", 11: "CLOSING",
}
OPTIONS = {
    "nodelay": (socket.IPPROTO_TCP, socket.TCP_NODELAY),
    "mss": (socket.IPPROTO_TCP, socket.TCP_MAXSEG),
    "rcvbuf": (socket.SOL_SOCKET, socket.SO_RCVBUF),
    "sndbuf": (socket.SOL_SOCKET, socket.SO_SNDBUF),
    "broadcast": (socket.SOL_SOCKET, socket.SO_BROADCAST),
    "reuseaddr": (socket.SOL_SOCKET, socket.SO_REUSEADDR),
    "keepalive": (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
}
SHUT = {"rd": socket.SHUT_RD, "wr": socket.SHUT_WR, "rdwr": socket.SHUT_RDWR}

socks: dict[int, socket.socket] = {}
#: the 4-tuple of each connected TCP socket, to find it in /proc/net/tcp once the kernel has
#: moved it to a TIME-WAIT mini-socket (the descriptor then reports CLOSED)
tuples: dict[int, tuple[str, int, str, int]] = {}
next_id = 1


def _new(sock: socket.socket) -> int:
    global next_id
    sid = next_id
    next_id += 1
    socks[sid] = sock
    return sid


def _readable(sock: socket.socket, timeout: float) -> bool:
    r, _, _ = select.select([sock], [], [], max(timeout, 0.0))
    return bool(r)


def op_sysctl(name: str, value: str) -> None:
    with open("/proc/sys/" + name.replace(".", "/"), "w") as f:
        f.write(str(value))


KINDS = {
    "udp": (socket.AF_INET, socket.SOCK_DGRAM),
    "tcp": (socket.AF_INET, socket.SOCK_STREAM),
    "udp6": (socket.AF_INET6, socket.SOCK_DGRAM),
    "tcp6": (socket.AF_INET6, socket.SOCK_STREAM),
}


def op_socket(kind: str) -> int:
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}")
    sock = socket.socket(*KINDS[kind])
    sock.setblocking(False)
    return _new(sock)


def op_bind(s: int, addr: str, port: int) -> None:
    socks[s].bind((addr, port))


def op_getsockname(s: int) -> list[Any]:
    return list(socks[s].getsockname())[:2]  # an IPv6 address has flow info and scope too


def op_getpeername(s: int) -> list[Any]:
    return list(socks[s].getpeername())[:2]


def op_connect(s: int, addr: str, port: int) -> None:
    sock = socks[s]
    code = sock.connect_ex((addr, port))
    if code not in (0, errno.EINPROGRESS):
        raise OSError(code, os.strerror(code))


def op_wait_connected(s: int, timeout: float) -> bool:
    sock = socks[s]
    _, w, _ = select.select([], [sock], [], max(timeout, 0.0))
    if not w:
        return False
    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code:
        raise OSError(code, os.strerror(code))
    tuples[s] = (*sock.getsockname()[:2], *sock.getpeername()[:2])
    return True


def op_listen(s: int, backlog: int) -> None:
    socks[s].listen(backlog)


def op_accept(s: int, timeout: float) -> list[Any] | None:
    sock = socks[s]
    if not _readable(sock, timeout):
        return None
    conn, peer = sock.accept()
    conn.setblocking(False)
    sid = _new(conn)
    tuples[sid] = (*conn.getsockname()[:2], *peer[:2])
    return [sid, list(peer)[:2]]


def op_send(s: int, data: str, timeout: float) -> int:
    sock = socks[s]
    _, w, _ = select.select([], [sock], [], max(timeout, 0.0))
    if not w:
        return 0
    try:
        return sock.send(base64.b64decode(data))
    except BlockingIOError:
        return 0


def op_sendto(s: int, data: str, addr: str, port: int) -> int:
    return socks[s].sendto(base64.b64decode(data), (addr, port))


def op_recv(s: int, n: int, timeout: float) -> str | None:
    sock = socks[s]
    if not _readable(sock, timeout):
        return None
    try:
        return base64.b64encode(sock.recv(n)).decode()
    except BlockingIOError:
        return None


def op_recvfrom(s: int, n: int, timeout: float) -> list[Any] | None:
    sock = socks[s]
    if not _readable(sock, timeout):
        return None
    try:
        data, peer = sock.recvfrom(n)
    except BlockingIOError:
        return None
    return [base64.b64encode(data).decode(), list(peer)[:2]]


def op_shutdown(s: int, how: str) -> None:
    socks[s].shutdown(SHUT[how])


def op_close(s: int) -> None:
    tuples.pop(s, None)
    socks.pop(s).close()


def op_abort(s: int) -> None:
    tuples.pop(s, None)
    sock = socks.pop(s)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def op_setsockopt(s: int, name: str, value: int) -> None:
    level, opt = OPTIONS[name]
    socks[s].setsockopt(level, opt, int(value))


def op_getsockopt(s: int, name: str) -> int:
    level, opt = OPTIONS[name]
    return int(socks[s].getsockopt(level, opt))


def _hex_endpoint(addr: str, port: int) -> str:
    if ":" in addr:  # /proc/net/tcp6: four host-order 32-bit words
        raw = socket.inet_pton(socket.AF_INET6, addr)
        words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
        return words.hex().upper() + f":{port:04X}"
    return socket.inet_aton(addr)[::-1].hex().upper() + f":{port:04X}"


def _proc_state(four: tuple[str, int, str, int]) -> int | None:
    local, remote = _hex_endpoint(four[0], four[1]), _hex_endpoint(four[2], four[3])
    with open("/proc/net/tcp6" if ":" in four[0] else "/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[1] == local and fields[2] == remote:
                return int(fields[3], 16)
    return None


def op_state(s: int) -> str:
    info = socks[s].getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    state = info[0]
    if state == 7 and s in tuples:  # CLOSED on the descriptor: maybe TIME-WAIT elsewhere
        state = _proc_state(tuples[s]) or state
    return TCP_STATES.get(state, f"UNKNOWN({state})")


def op_pending_error(s: int) -> int:
    return int(socks[s].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))


def op_ping() -> str:
    return "pong"


def main() -> None:
    out = sys.stdout
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            fn = globals()["op_" + req.pop("op")]
            reply: dict[str, Any] = {"ok": fn(**req)}
        except OSError as exc:
            reply = {"errno": exc.errno or 0, "error": str(exc)}
        except Exception:
            reply = {"fail": traceback.format_exc()}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    for sock in socks.values():
        sock.close()


if __name__ == "__main__":
    main()
