import numpy as np
import pytest

from hamer_ros.perception.filter import FilterConfig
from hamer_ros.perception.track import HandTracker, iou_matrix, remove_duplicates
from hamer_ros.perception.types import Detection
from hamer_ros_testing import hand_skeletons


def det(x: float, y: float, is_right: bool, size: float = 100.0, keypoints=None, score=0.9) -> Detection:
    return Detection(box=np.array([x, y, x + size, y + size], dtype=np.float32), is_right=is_right, score=score,
                     keypoints=keypoints)


def kp_hand(x, y, seed=0, size=100.0):
    """21 keypoints of a hand-like layout filling a box at (x, y)."""
    j = hand_skeletons(np.random.default_rng(seed), 1)[0][:, :2]
    j = (j - j.min(0)) / (j.max(0) - j.min(0)).max() * size
    return (j + [x, y]).astype(np.float32)


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
        assert tracker.missed_ids == [first.track_id]
    back = det(102, 101, True)
    tracker.update([back])
    assert back.track_id == first.track_id and tracker.missed_ids == []

    for _ in range(4):                      # gone for max_missed + 1 frames: track dropped
        tracker.update([])
    assert tracker.track_ids == [] and tracker.missed_ids == []
    again = det(102, 101, True)
    tracker.update([again])
    assert again.track_id not in (-1, first.track_id)


def test_crossing_hands_keep_ids_and_sides():
    """Left and right cross until each sits where the other started (at the middle their boxes are
    identical: the keypoints tell them apart, the labels break the tie)."""
    tracker = HandTracker(iou_threshold=0.0)
    left, right = det(0, 0, False, keypoints=kp_hand(0, 0, 1)), det(300, 0, True, keypoints=kp_hand(300, 0, 2))
    tracker.update([left, right])
    lid, rid = left.track_id, right.track_id
    for lx in range(25, 301, 25):
        l, r = det(lx, 0, False, keypoints=kp_hand(lx, 0, 1)), det(300 - lx, 0, True, keypoints=kp_hand(300 - lx, 0, 2))
        out = tracker.update([r, l])
        assert len(out) == 2 and (l.track_id, r.track_id) == (lid, rid) and (l.is_right, r.is_right) == (False, True)


def test_a_flickering_side_label_never_flips_the_track():
    """A stub detector whose label is wrong one frame in three: the track keeps its side, and the
    detection is relabelled before it is cropped."""
    tracker = HandTracker(side_switch_frames=3)
    first = det(100, 100, True)
    tracker.update([first])
    for f in range(1, 60):
        d = det(100 + f, 100, is_right=(f % 3 != 0))
        tracker.update([d])
        assert d.is_right and d.track_id == first.track_id


def test_a_lasting_side_change_switches_after_the_configured_count():
    tracker = HandTracker(side_switch_frames=4)
    tracker.update([det(0, 0, True)])
    seen = []
    for f in range(1, 8):
        d = det(f, 0, False)
        tracker.update([d])
        seen.append(d.is_right)
    assert seen == [True, True, True, False, False, False, False]


def test_one_hand_is_never_reported_twice():
    kp = kp_hand(200, 100)
    a = det(200, 100, True, keypoints=kp, score=0.7)
    b = det(203, 98, False, keypoints=kp + 2.0, score=0.9)       # the same hand, other label
    c = det(500, 100, True, keypoints=kp_hand(500, 100))
    kept = remove_duplicates([a, b, c])
    assert kept == [b, c]
    # box-only detections: by overlap
    (only,) = remove_duplicates([det(0, 0, True), det(5, 5, False, score=0.95)])
    assert only.score == 0.95 and not only.is_right
    # two real hands that overlap (clasped) are kept: their joints do not coincide
    assert len(remove_duplicates([det(0, 0, True, keypoints=kp_hand(0, 0, 1)),
                                  det(10, 0, False, keypoints=kp_hand(10, 0, 2)[::-1].copy())])) == 2


def test_no_duplicates_after_a_scene_cut():
    tracker = HandTracker()
    for f in range(5):
        tracker.update([det(100 + f, 100, True, keypoints=kp_hand(100 + f, 100)), det(400, 300, False)])
    # the scene cuts: one hand elsewhere, reported twice with both labels
    kp = kp_hand(700, 50)
    out = tracker.update([det(700, 50, True, keypoints=kp, score=0.8), det(701, 51, False, keypoints=kp + 1, score=0.6)])
    assert len(out) == 1 and len({d.track_id for d in out}) == 1


def test_boxes_are_one_euro_smoothed_on_the_stamps():
    rng = np.random.default_rng(0)
    truth = np.array([200.0, 150.0, 320.0, 290.0])
    raw_tracker, smooth_tracker = HandTracker(), HandTracker(filter_config=FilterConfig())
    raw, smooth = [], []
    for f in range(200):
        noisy = (truth + rng.normal(0, 4.0, 4)).astype(np.float32)
        raw.append(raw_tracker.update([Detection(box=noisy.copy(), is_right=True, score=1.0)], f / 30)[0].box)
        d = Detection(box=noisy.copy(), is_right=True, score=1.0)
        smooth.append(smooth_tracker.update([d], f / 30)[0].box)
        assert d.box.dtype == np.float32
    raw, smooth = np.array(raw), np.array(smooth)

    def jitter(boxes):                      # RMS deviation from the truth, after the warm-up
        return np.sqrt(((boxes[20:] - truth) ** 2).mean())

    assert jitter(smooth) < 0.4 * jitter(raw)
    assert np.abs(smooth[20:].mean(0) - truth).max() < 2.0       # no bias for a still hand
    # without stamps (independent images) nothing is smoothed
    d = Detection(box=np.array([1, 2, 3, 4], np.float32), is_right=True, score=1.0)
    smooth_tracker.update([d])
    np.testing.assert_array_equal(d.box, [1, 2, 3, 4])


@pytest.mark.parametrize("kwargs", [dict(side_switch_frames=0), dict(max_missed=-1), dict(iou_threshold=2)])
def test_invalid_parameters(kwargs):
    with pytest.raises(ValueError):
        HandTracker(**kwargs)
