"""The connection is sans-IO: it runs without asyncio, and its application hears of a segment
only once the segment's effects are complete (issue 7).

The first test drives a :class:`layers_tcp.connection.Connection` with a plain recording
application (no asyncio protocol, no transport, no event loop): handshake, data both ways,
the peer's FIN, ours, TIME-WAIT and its end on the virtual clock. The others check the
re-entrancy rule: an application that answers from inside a callback, and whose peer answers
synchronously, gets that answer processed at once and in order, never a callback inside
another.
"""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from typing import Any

import pytest
from layers_tcp.connection import Connection
from layers_tcp.states import (
    CLOSE_WAIT,
    CLOSED,
    ESTABLISHED,
    FIN_WAIT_1,
    FIN_WAIT_2,
    SYN_SENT,
    TIME_WAIT,
    TRANSITIONS,
    Event,
    State,
    next_state,
)
from tcp_support import (
    FA,
    PA,
    PEER_I,
    PLAIN,
    SA,
    US_I,
    A,
    F,
    Recorder,
    S,
    Wire,
)

from layers.wire.tcp import TCPOptions

MSS = 1000
PACKAGE = Path(__file__).resolve().parents[2] / "plugins" / "tcp" / "layers_tcp"


class App:
    """A ConnectionApp that records what it is told, with the nesting depth of each call."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.depth = 0
        self.max_depth = 0
        self.on_data_hook: Any = None

    def _enter(self, kind: str, value: Any) -> None:
        self.depth += 1
        self.max_depth = max(self.max_depth, self.depth)
        self.events.append((kind, value))

    def on_established(self) -> None:
        self._enter("established", None)
        self.depth -= 1

    def on_data(self, data: bytes) -> None:
        self._enter("data", data)
        if self.on_data_hook is not None:
            self.on_data_hook(data)
        self.depth -= 1

    def on_eof(self) -> None:
        self._enter("eof", None)
        self.depth -= 1

    def on_closed(self, exc: Exception | None) -> None:
        self._enter("closed", exc)
        self.depth -= 1

    def on_writable(self) -> None:
        self._enter("writable", None)
        self.depth -= 1


def _open(w: Wire, app: App) -> Connection:
    tcp = w.tcp
    conn = Connection(tcp, US_I, 50000, PEER_I, 80, tcp.conn_options({}), active=True)
    tcp.conns[conn.key] = conn
    conn.app = app
    conn.open_active()
    return conn


def test_connection_runs_without_asyncio_or_a_loop() -> None:
    # the sans-IO modules import no asyncio at all
    for name in ("connection.py", "states.py", "sack.py", "recovery.py", "buffers.py",
                 "output.py", "receive.py", "ecn.py", "reporting.py", "rack.py", "dsack.py"):
        tree = ast.parse((PACKAGE / name).read_text())
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                    for a in n.names}
        imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree)
                     if isinstance(n, ast.ImportFrom)}
        assert "asyncio" not in imported, name
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()  # and none runs here: only the virtual clock

    w = Wire(PLAIN)
    app = App()
    conn = _open(w, app)
    syn = w.one()
    assert syn.flags == S and conn.state == SYN_SENT and app.events == []
    us = syn.seq + 1
    # handshake
    w.inject(SA, 7000, us, sport=80, dport=50000, opts=TCPOptions(mss=MSS))
    assert conn.state == ESTABLISHED and app.events == [("established", None)]
    ack = w.one()
    assert ack.flags == A and ack.ack == 7001
    # the peer's data reaches the application in order, and is acknowledged
    w.inject(PA, 7001, us, b"hello", sport=80, dport=50000)
    w.inject(PA, 7006, us, b" world", sport=80, dport=50000)
    assert [v for k, v in app.events if k == "data"] == [b"hello", b" world"]
    w.advance(0.2)
    assert w.sent()[-1].ack == 7012
    # ours reaches the wire
    conn.write(b"x" * 2 * MSS)
    out = w.sent()
    assert [len(s.payload) for s in out] == [MSS, MSS] and out[0].seq == us
    w.inject(A, 7012, us + 2 * MSS, sport=80, dport=50000)
    assert conn.snd_una == us + 2 * MSS
    # the peer closes: EOF after the data; we close: FIN-WAIT is skipped for LAST-ACK
    w.inject(FA, 7012, us + 2 * MSS, sport=80, dport=50000)
    assert conn.state == CLOSE_WAIT and app.events[-1] == ("eof", None)
    conn.close()
    fin = w.sent()[-1]
    assert fin.flags & F and fin.seq == us + 2 * MSS
    w.inject(A, 7013, us + 2 * MSS + 1, sport=80, dport=50000)
    w.settle()
    assert conn.state == CLOSED and app.events[-1] == ("closed", None)
    assert app.max_depth == 1
    assert [k for k, _ in app.events] == ["established", "data", "data", "eof", "closed"]
    assert conn.key not in w.tcp.conns


def test_active_close_through_time_wait_on_the_virtual_clock() -> None:
    w = Wire(PLAIN)
    app = App()
    conn = _open(w, app)
    us = w.one().seq + 1
    w.inject(SA, 7000, us, sport=80, dport=50000)
    w.sent()
    conn.close()
    assert conn.state == FIN_WAIT_1 and w.one().flags == FA
    w.inject(A, 7001, us + 1, sport=80, dport=50000)
    assert conn.state == FIN_WAIT_2
    w.inject(FA, 7001, us + 1, sport=80, dport=50000)
    assert conn.state == TIME_WAIT and w.one().ack == 7002
    assert app.events[-1] == ("closed", None)  # both directions done for the application
    w.advance(2 * w.tcp.settings.msl - 0.01)
    assert conn.key in w.tcp.conns
    w.advance(0.02)
    assert conn.key not in w.tcp.conns and conn.state == CLOSED


def test_a_segment_that_arrives_inside_on_data_is_taken_at_once() -> None:
    """The peer answers synchronously while the application is inside on_data: the old
    connection queued such a segment (a copy) for later; now it is processed on arrival
    and its data follows, never nested in the running callback."""
    w = Wire(PLAIN)
    app = App()
    conn = _open(w, app)
    us = w.one().seq + 1
    w.inject(SA, 7000, us, sport=80, dport=50000)
    w.sent()
    seen: list[int] = []

    def answer(data: bytes) -> None:
        if data == b"ping":
            conn.write(b"pong")
            w.inject(PA, 7005, us + 4, b"more", sport=80, dport=50000)
            seen.append(conn.rcv_nxt)  # taken in before the callback returned

    app.on_data_hook = answer
    w.inject(PA, 7001, us, b"ping", sport=80, dport=50000)
    assert seen == [7009]
    assert [v for k, v in app.events if k == "data"] == [b"ping", b"more"]
    assert app.max_depth == 1
    assert conn.snd_una == us + 4  # the nested segment acknowledged our pong


def test_transport_never_nests_protocol_callbacks() -> None:
    w = Wire(PLAIN)
    transport, proto, synack = w.accept(iss=1000)
    us = synack.seq + 1
    depth = [0, 0]

    class Nested(Recorder):
        def data_received(self, data: bytes) -> None:
            depth[0] += 1
            depth[1] = max(depth[1], depth[0])
            super().data_received(data)
            if data == b"a":
                # a synchronous peer: its next segment arrives while we are in here
                w.inject(PA, 1002, us, b"b")
                w.inject(FA, 1003, us)
            depth[0] -= 1

    nested = Nested()
    nested.transport = transport
    transport.set_protocol(nested)
    w.inject(PA, 1001, us, b"a")
    assert nested.kinds() == ["data", "data", "eof"]
    assert bytes(nested.data) == b"ab" and depth[1] == 1
    assert transport.get_extra_info("tcp").state == CLOSE_WAIT
    assert proto.kinds() == ["made"]


def test_every_transition_is_in_the_table() -> None:
    assert next_state(State.CLOSED, Event.ACTIVE_OPEN) == SYN_SENT
    assert next_state(FIN_WAIT_1, Event.RCV_FIN) == State.CLOSING
    with pytest.raises(ValueError, match="TIME_WAIT"):
        next_state(TIME_WAIT, Event.CLOSE)
    # no transition leads out of TIME-WAIT or into LISTEN: those are not the TCB's to take
    assert all(s != TIME_WAIT for s, _ in TRANSITIONS)
    assert State.LISTEN not in TRANSITIONS.values()


def test_a_new_connection_keeps_its_state_in_slots() -> None:
    """Everything ``__init__`` sets has a slot (an instance dict of a hundred attributes made
    accepting a connection markedly slower): a new attribute set there belongs in
    ``Connection.__slots__`` too."""
    tcp = Wire().tcp
    conn = Connection(tcp, US_I, 50000, PEER_I, 80, tcp.conn_options({}), active=True)
    assert getattr(conn, "__dict__", {}) == {}
