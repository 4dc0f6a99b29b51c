"""The sans-IO pieces of D-SACK (layers_tcp.dsack): which SACK block is a D-SACK (RFC 2883
4.1), which block a receiver reports, and the undo ledger's count of retransmissions not yet
reported twice received (RFC 3708)."""

from __future__ import annotations

from layers_tcp.dsack import UndoLedger, dsack_for, find_dsack


def test_find_dsack_below_the_ack_or_inside_the_second_block() -> None:
    assert find_dsack([(100, 200)], 300) == (100, 200)  # below the cumulative ACK
    assert find_dsack([(500, 600), (400, 700)], 300) == (500, 600)  # inside the second
    assert find_dsack([(500, 600), (650, 700)], 300) is None  # an ordinary SACK
    assert find_dsack([(500, 600)], 300) is None
    assert find_dsack([], 300) is None


def test_dsack_for_old_and_held_data() -> None:
    assert dsack_for(100, 200, 150, []) == (100, 150)  # the part below RCV.NXT
    assert dsack_for(100, 200, 300, []) == (100, 200)
    assert dsack_for(400, 500, 300, [(350, 450), (600, 700)]) == (400, 450)
    assert dsack_for(500, 600, 300, [(350, 450), (600, 700)]) is None


def test_ledger_undoes_only_when_every_retransmission_is_reported() -> None:
    u = UndoLedger()
    u.add(0, 100, 1)  # no episode yet: ignored
    assert not u.dsack(0, 100)
    u.start(1000)
    u.add(1000, 1100, 1)
    u.add(1300, 1400, 1)
    assert not u.dsack(900, 1000)  # below the episode
    assert not u.dsack(1000, 1100)  # one of two
    assert not u.dsack(1100, 1300)  # never retransmitted
    assert u.dsack(1300, 1400)  # the last one: all spurious
    # a new episode keeps what is still outstanding of the last one
    u.start(2000)
    u.add(2000, 2100, 1)
    u.start(2050)
    assert u.pending == [(2050, 2100)]
    assert u.dsack(2000, 2100)
