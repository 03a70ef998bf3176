"""StampPairer (hamer_ros/ros/pairing.py): an image and its result meet by exact stamp and frame,
whichever comes first; what waits is bounded; what can no longer pair is counted."""
from __future__ import annotations

from hamer_ros.ros.pairing import StampPairer

MS = 1_000_000


def test_pairs_by_exact_stamp_and_frame_in_either_order():
    p = StampPairer(window_ns=1000 * MS)
    assert p.add_image(100 * MS, "cam", "img100") is None
    assert p.add_image(133 * MS, "cam", "img133") is None
    assert p.add_result(100 * MS, "other_cam", "res100-other") is None       # same stamp, other frame
    assert p.add_result(100 * MS, "cam", "res100") == ("img100", "res100")
    # a result that overtakes its image waits for it
    assert p.add_result(166 * MS, "cam", "res166") is None
    assert p.add_image(166 * MS, "cam", "img166") == ("img166", "res166")
    assert p.paired == 2
    # a paired image is let go: the same stamp again pairs with nothing left over
    assert p.add_result(100 * MS, "cam", "again") is None


def test_images_wait_no_longer_than_the_window_nor_beyond_the_count():
    p = StampPairer(window_ns=100 * MS, max_images=3)
    for k in range(5):
        p.add_image(k * 10 * MS, "cam", k)
    assert len(p) == 3                                  # the count bound: the 3 newest wait
    assert p.add_result(0, "cam", "late") is None and p.image_gone == 1
    assert p.add_result(40 * MS, "cam", "r4") == (4, "r4")
    p.add_image(200 * MS, "cam", "new")                 # 20 and 30 ms are now over 100 ms behind
    assert len(p) == 1 and p.add_result(30 * MS, "cam", "r3") is None and p.image_gone == 2


def test_waiting_results_are_bounded_and_counted():
    p = StampPairer(window_ns=1000 * MS, max_results=2)
    p.add_image(0, "cam", "first")
    for k in range(1, 5):
        assert p.add_result(k * MS, "cam", k) is None
    assert p.image_gone == 2                             # the two oldest results gave up waiting
    assert p.add_image(4 * MS, "cam", "img4") == ("img4", 4)


def test_stamps_jumping_back_start_afresh():
    p = StampPairer(window_ns=100 * MS)
    p.add_image(10_000 * MS, "cam", "before")
    p.add_result(10_050 * MS, "cam", "early")
    assert p.add_image(5 * MS, "cam", "after") is None     # a looping bag: a new time line
    assert p.restarts == 1 and len(p) == 1
    assert p.add_result(5 * MS, "cam", "r") == ("after", "r")
    assert p.add_result(10_000 * MS, "cam", "old") is None  # the old time line's image is gone
