"""One bad stamp never erases the world; a real restart of time does.

Unit tests of `Timeline` (the one place that decides), then the same cases
through the Streamer with the exact oracle: the trajectory and the map survive
an outlier, and are reset only when the frames after a jump continue the new
timeline."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from da3_ros.stream import StreamConfig, Streamer
from da3_ros.stream.timeline import Timeline, Verdict
from da3_ros.synthetic import OracleModel


def test_in_order_stamps_are_taken():
    t = Timeline()
    for s in (1.0, 1.1, 1.2):
        d = t.decide(s, s)
        assert d.verdict == Verdict.TAKE and d.take == [s] and not d.restart and not d.dropped


def test_duplicate_is_dropped():
    t = Timeline()
    t.decide(1.0, "a")
    d = t.decide(1.0, "b")
    assert d.verdict == Verdict.DUPLICATE and d.take == [] and d.dropped == ["duplicate_stamp"]


@pytest.mark.parametrize("outlier", [0.5, 1e6])
def test_single_outlier_is_dropped_and_the_old_timeline_goes_on(outlier):
    t = Timeline(max_forward_jump_s=10.0)
    t.decide(100.0, "a")
    assert t.decide(outlier, "bad").verdict == Verdict.HELD
    d = t.decide(100.1, "b")
    assert d.take == ["b"] and not d.restart
    assert d.dropped == ["stamp_backwards_outlier" if outlier < 100 else "stamp_forward_outlier"]
    assert t.last == 100.1


def test_backwards_jump_confirmed_by_the_next_frame_restarts():
    t = Timeline()
    for s in (100.0, 100.1, 100.2):
        t.decide(s, s)
    assert t.decide(50.0, 50.0).verdict == Verdict.HELD
    d = t.decide(50.1, 50.1)
    assert d.restart and d.take == [50.0, 50.1] and not d.dropped and t.last == 50.1


def test_forward_jump_confirmed_keeps_the_timeline():
    t = Timeline(max_forward_jump_s=10.0)
    t.decide(100.0, "a")
    assert t.decide(200.0, "b").verdict == Verdict.HELD
    d = t.decide(200.1, "c")
    assert d.take == ["b", "c"] and not d.restart and not d.dropped


def test_a_stamp_a_few_intervals_ahead_is_held_not_taken():
    """30 Hz: a frame stamped 0.5 s ahead (15 intervals, well under max_forward_jump_s)
    is held; the normal frames after it show it was an outlier: no restart."""
    t = Timeline(max_forward_jump_s=10.0)
    for s in (1.0, 1.033, 1.067):
        t.decide(s, s)
    assert t.decide(1.567, "glitch").verdict == Verdict.HELD
    d = t.decide(1.1, 1.1)
    assert d.take == [1.1] and not d.restart and d.dropped == ["stamp_forward_outlier"]
    d = t.decide(1.133, 1.133)
    assert d.take == [1.133] and not d.restart


def test_a_late_frame_is_dropped_not_a_restart():
    """A message a frame or two late (out of order) is dropped at once; only a jump
    back by many frame intervals can be a restart."""
    t = Timeline()
    for s in (1.0, 1.033, 1.067, 1.1):
        t.decide(s, s)
    d = t.decide(1.05, "late")
    assert d.verdict == Verdict.LATE and d.take == [] and d.dropped == ["stamp_backwards_outlier"]
    assert t.decide(1.133, 1.133).take == [1.133]
    # a small forward glitch is taken; the frames it overtook are then late, never a restart
    assert t.decide(1.2, 1.2).take == [1.2]
    assert t.decide(1.167, 1.167).verdict == Verdict.LATE
    d = t.decide(1.233, 1.233)
    assert d.take == [1.233] and not d.restart


def test_two_outliers_in_a_row_are_each_judged():
    t = Timeline()
    t.decide(100.0, "a")
    t.decide(3.0, "x")
    d = t.decide(7e5, "y")  # neither continues 3.0's timeline nor the old one: x dropped, y held in turn
    assert d.verdict == Verdict.HELD and d.take == [] and d.dropped == ["stamp_backwards_outlier"]
    d = t.decide(100.3, "b")
    assert d.take == ["b"] and d.dropped == ["stamp_forward_outlier"] and t.last == 100.3
    t2 = Timeline()
    t2.decide(100.0, "a")
    t2.decide(3.0, "x")
    d = t2.decide(100.2, "b")
    assert d.take == ["b"] and d.dropped == ["stamp_backwards_outlier"]


def test_a_long_step_the_arrival_clock_made_too_is_taken():
    """A live node that skips frames while busy (newest wins) sees stamp steps of
    many camera intervals; they arrived that far apart, so time went on: taken,
    never held (holding answered two frames per call, each a model run)."""
    t = Timeline(max_forward_jump_s=10.0)
    for k in range(5):  # 30 Hz, every frame taken while the node keeps up
        assert t.decide(1.0 + k / 30, k, received=50.0 + k / 30).verdict == Verdict.TAKE
    for k in range(4, 40, 8):  # then only every 8th: 0.27 s, 8 camera intervals ... and a 1.2 s stall
        stamp = 2.0 + k / 30 + (1.2 if k > 20 else 0.0)
        d = t.decide(stamp, k, received=51.0 + (stamp - 2.0) + 0.004)
        assert d.verdict == Verdict.TAKE and d.take == [k] and not d.dropped


def test_time_going_back_is_a_jump_whatever_the_arrival_clock_did():
    """A bag recorded on simulated time from a looping source restarts its receive
    times with its stamps: the step back is still held, and the next frame confirms
    the restart (taken as 'late', every later frame of the new loop would be lost)."""
    t = Timeline()
    for k in range(5):
        t.decide(100.0 + k / 30, k, received=100.0 + k / 30)
    assert t.decide(50.0, "restart", received=50.0).verdict == Verdict.HELD
    d = t.decide(50.0 + 1 / 30, "next", received=50.0 + 1 / 30)
    assert d.restart and d.take == ["restart", "next"]


def test_a_stamp_jump_the_arrival_clock_did_not_make_is_held():
    """The same step with arrivals 1/30 s apart is a glitch: held, and dropped
    when the next frame continues the old timeline; a restart the same way."""
    t = Timeline(max_forward_jump_s=10.0)
    for k in range(5):
        t.decide(1.0 + k / 30, k, received=50.0 + k / 30)
    assert t.decide(1.7, "glitch", received=50.0 + 5 / 30).verdict == Verdict.HELD
    d = t.decide(1.0 + 6 / 30, 6, received=50.0 + 6 / 30)
    assert d.take == [6] and d.dropped == ["stamp_forward_outlier"]
    assert t.decide(0.5, "restart", received=50.0 + 7 / 30).verdict == Verdict.HELD
    d = t.decide(0.5 + 1 / 30, "next", received=50.0 + 8 / 30)
    assert d.restart and d.take == ["restart", "next"]


# ---------------------------------------------------------------- through the Streamer

def stream(seq_frames, cfg=None):
    st = Streamer(OracleModel(SEQ), cfg or StreamConfig(window_size=4))
    out = []
    for f in seq_frames:
        out += st.push(f)
    return st, out


SEQ = None


@pytest.fixture(autouse=True)
def _seq(sequence_cache):
    global SEQ
    SEQ = sequence_cache("forward", n_frames=30, width=64, height=48)
    yield
    SEQ = None


def frames():
    return list(SEQ.frames())


@pytest.mark.parametrize("bad_stamp", [-1e3, 0.0, 1e9])
def test_one_outlier_stamp_keeps_map_and_path(bad_stamp):
    """A frame stamped far in the past or the future between good frames: dropped,
    counted; the world, map and path go on as if it never came."""
    fr = frames()
    st, out = stream(fr[:15])
    map_size, n_traj = st.map_size, len(st.trajectory())
    bad = dataclasses.replace(fr[15], stamp=bad_stamp, index=999)
    assert st.push(bad) == []
    rest = [r for f in fr[16:] for r in st.push(f)]
    assert [r.index for r in rest] == list(range(16, 30))
    assert all(r.reset is None for r in rest) and st.n_resets == 0
    assert sum(v for k, v in st.counts.items() if k.endswith("_outlier")) == 1
    assert len(st.trajectory()) == n_traj + 14 and st.map_size >= map_size
    # the poses continue the same world: the exact oracle's trajectory still equals
    # ground truth relative to frame 0 (up to the first window's scale)
    rel = np.linalg.inv(SEQ.c2w[0]) @ SEQ.c2w
    np.testing.assert_allclose(rest[-1].c2w[:3, :3], rel[29][:3, :3], atol=1e-6)


def test_duplicate_stamp_is_dropped_and_counted():
    fr = frames()
    st, out = stream(fr[:10])
    assert st.push(dataclasses.replace(fr[9], index=500)) == []
    assert st.counts["duplicate_stamp"] == 1 and len(st.trajectory()) == 10


def test_looping_bag_resets_once_and_continues_the_new_timeline():
    fr = frames()
    st, _ = stream(fr[:20])
    again = [r for f in fr[:10] for r in st.push(dataclasses.replace(f, index=100 + f.index))]
    assert [r.index for r in again] == list(range(100, 110))  # the held first frame is answered too
    assert again[0].reset == "time_backwards" and all(r.reset is None for r in again[1:])
    assert st.n_resets == 1 and st.counts["reset_time_backwards"] == 1
    assert len(st.trajectory()) == 10
    np.testing.assert_allclose(again[0].c2w, np.eye(4), atol=1e-12)  # the new world starts at the new first frame


def test_the_session_tells_of_every_reset_requested_or_found():
    """`Session.on_reset` hears a requested reset and a restart of time the stream
    found itself (what a front end keeps of the old timeline goes with it), and
    nothing else: an outlier stamp is no reset."""
    from da3_ros.stream import Session

    told = []
    session = Session(OracleModel(SEQ), StreamConfig(window_size=4), on_reset=lambda: told.append(session.n_resets))
    fr = frames()
    for f in fr[:10]:
        session.push(f)
    session.push(dataclasses.replace(fr[10], stamp=1e9, index=900))  # one outlier: dropped, no reset
    session.push(fr[10])
    assert told == [] and session.streamer.counts["stamp_forward_outlier"] == 1
    for f in fr[:3]:  # the bag starts over: the second frame back confirms the restart
        session.push(dataclasses.replace(f, index=100 + f.index))
    assert told == [1]
    session.reset("reset_called")
    assert told == [1, 2] and session.n_resets == 2
