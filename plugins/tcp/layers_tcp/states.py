"""Sequence-number arithmetic and the TCP states, with every state transition in one table.

Sequence numbers are *unwrapped*: ``iss``/``irs`` are 32-bit, everything derived from them
(``snd_una``, ``rcv_nxt``...) grows as a plain Python int, and wire values are unwrapped
against the nearest reference on arrival (:func:`unwrap`). All comparisons are then ordinary
``<``; only timestamps, which stay 32-bit, are compared modulo 2**32 (``(a - b) & MASK``
against :data:`HALF`).

:data:`TRANSITIONS` is RFC 9293's state diagram (figure 5, with the simultaneous open and
close of 3.5 and 3.6) as ``(state, event) -> state``; the connection changes state only
through :func:`next_state`, so a transition missing from the table is a bug that raises
instead of leaving a connection in a state nobody reviewed. Leaving for CLOSED is not in
the table: a reset, an abort, a timeout or the end of TIME-WAIT may end any state.
"""

from __future__ import annotations

import enum

#: 32-bit sequence space
MASK = 0xFFFFFFFF
HALF = 0x80000000


def unwrap(wire: int, ref: int) -> int:
    """The unwrapped sequence number nearest ``ref`` whose low 32 bits are ``wire``."""
    return ref + ((wire - ref + HALF) & MASK) - HALF


class State(enum.IntEnum):
    CLOSED = 0
    LISTEN = 1
    SYN_SENT = 2
    SYN_RECEIVED = 3
    ESTABLISHED = 4
    FIN_WAIT_1 = 5
    FIN_WAIT_2 = 6
    CLOSE_WAIT = 7
    CLOSING = 8
    LAST_ACK = 9
    TIME_WAIT = 10


CLOSED = State.CLOSED
LISTEN = State.LISTEN
SYN_SENT = State.SYN_SENT
SYN_RECEIVED = State.SYN_RECEIVED
ESTABLISHED = State.ESTABLISHED
FIN_WAIT_1 = State.FIN_WAIT_1
FIN_WAIT_2 = State.FIN_WAIT_2
CLOSE_WAIT = State.CLOSE_WAIT
CLOSING = State.CLOSING
LAST_ACK = State.LAST_ACK
TIME_WAIT = State.TIME_WAIT

#: states in which we may send data (and in which the FIN may still be pending)
SENDING = frozenset({ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, CLOSING, LAST_ACK})
#: states in which received data is accepted
RECEIVING = frozenset({ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2})
#: states after the handshake
SYNCHRONIZED = frozenset(
    {ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT, CLOSING, LAST_ACK, TIME_WAIT}
)
#: states Linux counts in CurrEstab
CURR_ESTAB = frozenset({ESTABLISHED, CLOSE_WAIT})


class Event(enum.Enum):
    """What moves a connection from one state to the next (RFC 9293 figure 5's labels)."""

    # members are singletons: hashed by identity in C, not by Enum's hash(self._name_) in
    # Python, as every transition looks one up in TRANSITIONS
    __hash__ = object.__hash__

    #: OPEN call, active: our SYN goes out
    ACTIVE_OPEN = "active open"
    #: a SYN reached a listener (or a valid SYN cookie came back): our SYN-ACK goes out
    PASSIVE_OPEN = "passive open"
    #: SYN-SENT: the peer's SYN without an ACK of ours (simultaneous open)
    RCV_SYN = "rcv SYN"
    #: our SYN acknowledged (a SYN-ACK in SYN-SENT, an ACK in SYN-RECEIVED)
    RCV_ACK_OF_SYN = "rcv ACK of SYN"
    #: CLOSE call or write_eof(): our FIN is queued
    CLOSE = "close"
    #: the peer's FIN, in sequence
    RCV_FIN = "rcv FIN"
    #: our FIN acknowledged
    RCV_ACK_OF_FIN = "rcv ACK of FIN"


E = Event
#: every transition except those to CLOSED (which any state may take)
TRANSITIONS: dict[tuple[State, Event], State] = {
    (CLOSED, E.ACTIVE_OPEN): SYN_SENT,
    (LISTEN, E.PASSIVE_OPEN): SYN_RECEIVED,
    (CLOSED, E.PASSIVE_OPEN): SYN_RECEIVED,  # our connections are born from the listener
    (SYN_SENT, E.RCV_SYN): SYN_RECEIVED,
    (SYN_SENT, E.RCV_ACK_OF_SYN): ESTABLISHED,
    (SYN_RECEIVED, E.RCV_ACK_OF_SYN): ESTABLISHED,
    (SYN_RECEIVED, E.RCV_FIN): CLOSE_WAIT,
    (ESTABLISHED, E.CLOSE): FIN_WAIT_1,
    (ESTABLISHED, E.RCV_FIN): CLOSE_WAIT,
    (FIN_WAIT_1, E.RCV_ACK_OF_FIN): FIN_WAIT_2,
    (FIN_WAIT_1, E.RCV_FIN): CLOSING,  # simultaneous close
    (FIN_WAIT_2, E.RCV_FIN): TIME_WAIT,
    (CLOSE_WAIT, E.CLOSE): LAST_ACK,
    (CLOSING, E.RCV_ACK_OF_FIN): TIME_WAIT,
    (LAST_ACK, E.RCV_ACK_OF_FIN): CLOSED,
}
del E


def next_state(state: State, event: Event) -> State:
    """The state ``event`` leads to from ``state``; ValueError if the table has no such
    transition."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise ValueError(f"no TCP transition from {state.name} on {event.value!r}") from None
