"""The node's hand-overs between its worker threads: bounded, newest wins, and
what a put() pushes out is given back (the node counts it and still maps it)."""

import threading

from da3_ros.ros.node import Handover


def test_latest_only_handover_keeps_the_newest_and_returns_the_replaced():
    h = Handover(1)
    assert h.put("a") == []
    assert h.put("b") == ["a"]  # not taken in time: replaced, and said so
    assert len(h) == 1
    assert h.take(timeout=0.0) == ["b"]
    assert h.take(timeout=0.0) == [] and len(h) == 0


def test_backlog_coalesces_up_to_its_cap_oldest_out_first():
    h = Handover(3)
    dropped = [x for i in range(5) for x in h.put(i)]
    assert dropped == [0, 1]
    assert h.take(timeout=0.0) == [2, 3, 4]  # everything waiting, in order, at once


def test_take_wakes_on_put():
    h = Handover(1)
    got = []
    t = threading.Thread(target=lambda: got.extend(h.take(timeout=30.0)))
    t.start()
    h.put("x")
    t.join(timeout=30.0)
    assert got == ["x"]
