import numpy as np
import pytest

from hamer_ros.perception.track import HandTracker, iou_matrix
from hamer_ros.perception.types import Detection


def det(x: float, y: float, is_right: bool, size: float = 100.0) -> Detection:
    return Detection(box=np.array([x, y, x + size, y + size], dtype=np.float32), is_right=is_right, score=0.9)


def test_iou_matrix():
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 10]], dtype=np.float32)       # second box: zero width
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], dtype=np.float32)
    iou = iou_matrix(a, b)
    np.testing.assert_allclose(iou[0], [1.0, 50 / 150, 0.0])
    np.testing.assert_allclose(iou[1], [0.0, 0.0, 0.0])
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 3)


def test_ids_stable_for_a_moving_pair():
    tracker = HandTracker(max_missed=2)
    ids = []
    for f in range(40):
        # the two hands drift towards each other by 6 px per frame, with a little jitter
        left, right = det(100 + 6 * f, 200 + (f % 3), False), det(600 - 6 * f, 210 - (f % 2), True)
        out = tracker.update([right, left] if f % 2 else [left, right])   # order must not matter
        assert out[0].track_id >= 0 and out[1].track_id >= 0
        ids.append((left.track_id, right.track_id))
    assert len(set(ids)) == 1
    assert ids[0][0] != ids[0][1]


def test_two_hands_of_the_same_side_keep_their_ids():
    tracker = HandTracker()
    a0, b0 = det(0, 0, True), det(300, 0, True)
    tracker.update([a0, b0])
    for f in range(1, 10):
        a, b = det(10 * f, 0, True), det(300 - 10 * f, 0, True)
        tracker.update([b, a])
        assert (a.track_id, b.track_id) == (a0.track_id, b0.track_id)


def test_new_id_after_more_than_max_missed_frames():
    tracker = HandTracker(max_missed=3)
    first = det(100, 100, True)
    tracker.update([first])
    for _ in range(3):                      # gone for exactly max_missed frames: id kept
        assert tracker.update([]) == []
    back = det(102, 101, True)
    tracker.update([back])
    assert back.track_id == first.track_id

    for _ in range(4):                      # gone for max_missed + 1 frames: track dropped
        tracker.update([])
    assert tracker.track_ids == []
    again = det(102, 101, True)
    tracker.update([again])
    assert again.track_id not in (-1, first.track_id)


def test_left_and_right_never_swap_ids():
    tracker = HandTracker(iou_threshold=0.0)
    left, right = det(0, 0, False), det(300, 0, True)
    tracker.update([left, right])
    lid, rid = left.track_id, right.track_id
    # the hands cross until each one sits where the other one started
    for lx in range(25, 301, 25):            # at lx=150 both boxes are identical
        l, r = det(lx, 0, False), det(300 - lx, 0, True)
        tracker.update([r, l])
        assert (l.track_id, r.track_id) == (lid, rid)


def test_a_side_flip_gets_a_new_id():
    tracker = HandTracker()
    a = det(0, 0, True)
    tracker.update([a])
    b = det(0, 0, False)                    # same place, other side: not the same hand
    tracker.update([b])
    assert b.track_id != a.track_id


def test_no_smoothing_by_default_and_smoothing_reduces_jitter():
    rng = np.random.default_rng(0)
    truth = np.array([200.0, 150.0, 320.0, 290.0])
    noisy = [truth + rng.normal(0, 4.0, 4) for _ in range(200)]

    raw_tracker, smooth_tracker = HandTracker(), HandTracker(alpha=0.3)
    raw_out, smooth_out = [], []
    for box in noisy:
        d1 = Detection(box=box.astype(np.float32), is_right=True, score=1.0)
        d2 = Detection(box=box.astype(np.float32), is_right=True, score=1.0)
        raw_out.append(raw_tracker.update([d1])[0].box)
        smooth_out.append(smooth_tracker.update([d2])[0].box)
        assert d2.box.dtype == np.float32
    raw_out, smooth_out = np.array(raw_out), np.array(smooth_out)
    np.testing.assert_array_equal(raw_out, np.array(noisy, dtype=np.float32))   # alpha=1: untouched

    def jitter(boxes):                      # mean frame-to-frame change, after the warm-up
        return np.abs(np.diff(boxes[20:], axis=0)).mean()

    assert jitter(smooth_out) < 0.5 * jitter(raw_out)
    assert np.abs(smooth_out[20:].mean(0) - truth).max() < 2.0      # no bias for a still hand


def test_smoothing_does_not_touch_the_callers_array():
    tracker = HandTracker(alpha=0.5)
    tracker.update([det(0, 0, True)])
    box = np.array([10, 0, 110, 100], dtype=np.float32)
    d = Detection(box=box, is_right=True, score=1.0)
    tracker.update([d])
    np.testing.assert_allclose(d.box, [5, 0, 105, 100])
    np.testing.assert_array_equal(box, [10, 0, 110, 100])


@pytest.mark.parametrize("kwargs", [dict(alpha=0.0), dict(alpha=1.5), dict(max_missed=-1), dict(iou_threshold=2)])
def test_invalid_parameters(kwargs):
    with pytest.raises(ValueError):
        HandTracker(**kwargs)
