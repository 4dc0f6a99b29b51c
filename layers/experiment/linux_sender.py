"""A bulk TCP sender using the Linux kernel's TCP, for ``medium = "tap"`` experiments.

Run by the experiment inside its namespace, as a script (standard library only)::

    python linux_sender.py HOST PORT CC DURATION SIZE INTERVAL

It waits for a line on stdin (the experiment's "go"), connects with congestion control CC
(``TCP_CONGESTION``), sends zeros for DURATION seconds or SIZE bytes (0: no limit), and every
INTERVAL seconds prints one JSON line read from ``TCP_INFO``: the kernel's own cwnd, ssthresh,
smoothed RTT, min RTT, retransmissions, pacing and delivery rates, bytes acknowledged. It
ends with a line ``{"done": ...}``.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import time

TCP_CONGESTION = getattr(socket, "TCP_CONGESTION", 13)
TCP_INFO = getattr(socket, "TCP_INFO", 11)
#: struct tcp_info (include/uapi/linux/tcp.h) up to tcpi_snd_wnd
INFO_LEN = 232


def tcp_info(sock: socket.socket) -> dict[str, float | int | None]:
    raw = sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, INFO_LEN)
    raw = raw + bytes(INFO_LEN - len(raw))
    state, ca_state = raw[0], raw[1]
    rto, _ato, snd_mss = struct.unpack_from("<III", raw, 8)
    unacked, _sacked, lost, retrans = struct.unpack_from("<IIII", raw, 24)
    rtt, rttvar, ssthresh, cwnd = struct.unpack_from("<IIII", raw, 68)
    (total_retrans,) = struct.unpack_from("<I", raw, 100)
    (pacing_rate,) = struct.unpack_from("<Q", raw, 104)
    (bytes_acked,) = struct.unpack_from("<Q", raw, 120)
    (min_rtt,) = struct.unpack_from("<I", raw, 148)
    (delivery_rate,) = struct.unpack_from("<Q", raw, 160)
    (snd_wnd,) = struct.unpack_from("<I", raw, 228)
    return {
        "state": state, "ca_state": ca_state, "mss": snd_mss,
        "cwnd": cwnd * snd_mss, "ssthresh": ssthresh * snd_mss if ssthresh < 0x7FFFFFFF else None,
        "in_flight": max(0, unacked - lost) * snd_mss,
        "srtt": rtt / 1e6 if rtt else None, "rttvar": rttvar / 1e6 if rtt else None,
        "min_rtt": min_rtt / 1e6 if min_rtt and min_rtt != 0xFFFFFFFF else None,
        "rto": rto / 1e6, "retransmits": total_retrans, "lost": lost,
        "retrans_out": retrans,
        "pacing_rate": pacing_rate if pacing_rate != 2**64 - 1 else None,
        "delivery_rate": delivery_rate, "delivered": bytes_acked, "snd_wnd": snd_wnd,
    }


def main(argv: list[str]) -> int:
    host, port, cc = argv[0], int(argv[1]), argv[2]
    duration, size, interval = float(argv[3]), int(argv[4]), float(argv[5])
    sys.stdin.readline()  # the experiment says go
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, TCP_CONGESTION, cc.encode())
    sock.settimeout(10)
    t0 = time.monotonic()
    sock.connect((host, port))
    sock.settimeout(None)
    used = sock.getsockopt(socket.IPPROTO_TCP, TCP_CONGESTION, 16).split(b"\0")[0].decode()
    print(json.dumps({"cc": used}), flush=True)
    stop = threading.Event()
    sent = [0]

    def sampler() -> None:
        k = 1
        while not stop.is_set():
            delay = t0 + k * interval - time.monotonic()
            if delay > 0 and stop.wait(delay):
                break
            info = tcp_info(sock)
            info["time"] = round(time.monotonic() - t0, 6)
            info["sent"] = sent[0]
            print(json.dumps(info), flush=True)
            k += 1

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    chunk = bytes(64 * 1024)
    deadline = t0 + duration
    try:
        while time.monotonic() < deadline and (size == 0 or sent[0] < size):
            n = len(chunk) if size == 0 else min(len(chunk), size - sent[0])
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                sent[0] += sock.send(chunk[:n])
            except TimeoutError:
                break
        if size:
            sock.shutdown(socket.SHUT_WR)
    except OSError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
    finally:
        stop.set()
        thread.join()
        info = tcp_info(sock)
        print(json.dumps({"done": round(time.monotonic() - t0, 6), "sent": sent[0],
                          "retransmits": info["retransmits"]}), flush=True)
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
