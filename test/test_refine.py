"""Landmarks for any hand box (hamer_ros/perception/hand_models/refine.py): boxes from a detector
that gives none (fixed ROIs here) get the landmark model's keypoints, metric landmarks and depths."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from hamer_ros.perception.detect import make_detector
from hamer_ros.perception.hand_models.refine import REGION_SCALE, LandmarkRefiner, box_region
from hamer_ros.perception.types import Detection

ANNOTATIONS = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "example_hands.json"


def test_box_region_is_the_boxs_square_turned():
    r = box_region(np.array([10.0, 20.0, 110.0, 60.0]), rotation=math.pi / 2)
    assert r.center == (60.0, 40.0) and r.size == (REGION_SCALE * 100.0,) * 2 and r.rotation == math.pi / 2
    # a tall box: the long side decides
    assert box_region(np.array([0.0, 0.0, 30.0, 90.0])).size == (REGION_SCALE * 90.0,) * 2


@pytest.fixture(scope="module")
def refiner():
    return LandmarkRefiner()


def _photo(examples, name: str) -> np.ndarray:
    import cv2
    return np.ascontiguousarray(cv2.imread(str(examples / name))[:, :, ::-1])


def test_annotated_boxes_get_the_hands_landmarks(examples, refiner):
    """Every annotated hand box of the example photos: most get keypoints (7 of 10; the palm
    detector finds 3 of these hands); where MediaPipe's own graph finds the hand, the keypoints
    agree with its within a tenth of the hand's size; the side stays the box's, and a hand found
    is the box's own (keypoint box IoU >= 0.3: test1's half-hidden left hand, next to the
    thumbs-up, is refused rather than given the thumbs-up's keypoints)."""
    truth = json.loads(ANNOTATIONS.read_text())["images"]
    graph = make_detector("mediapipe", max_hands=4, video_mode=False)
    refined = compared = 0
    for name, photo in truth.items():
        image = _photo(examples, name)
        boxes = make_detector("fixed", rois=[{"box": h["box"], "side": h["side"]} for h in photo["hands"]])(image)
        out = refiner(image, boxes)
        assert [d.is_right for d in out] == [d.is_right for d in boxes]        # the detector's sides
        for d in out:
            if d.keypoints is None:
                continue
            refined += 1
            assert d.keypoints.shape == (21, 2) and d.world_joints.shape == (21, 3) and d.keypoint_depth.shape == (21,)
            # the box is the keypoints' own (the ray the landmarks are relative to)
            np.testing.assert_allclose(d.box, [*d.keypoints.min(0), *d.keypoints.max(0)], atol=1e-3)
            hand_len = np.linalg.norm(d.world_joints[9] - d.world_joints[0])
            assert 0.06 <= hand_len <= 0.12, (name, hand_len)
        for g in graph(image):
            centre = (g.box[:2] + g.box[2:]) / 2
            same = [d for d in out if d.keypoints is not None and d.box[0] <= centre[0] <= d.box[2]
                    and d.box[1] <= centre[1] <= d.box[3]]
            assert same, (name, g.box)
            size = float(np.ptp(g.keypoints, axis=0).max())
            err = float(np.linalg.norm(same[0].keypoints - g.keypoints, axis=1).mean())
            assert err < 0.1 * size, (name, err, size)
            compared += 1
    assert refined >= 7 and compared == 3, (refined, compared)


def test_keypoints_already_there_and_boxes_without_a_hand_are_left_alone(refiner):
    image = np.zeros((240, 320, 3), np.uint8)                          # nothing to find
    given = Detection(box=np.array([10, 10, 60, 60], np.float32), is_right=True, score=0.9,
                      keypoints=np.zeros((21, 2), np.float32))
    empty = Detection(box=np.array([100, 100, 200, 200], np.float32), is_right=False, score=1.0)
    out = refiner(image, [given, empty])
    assert out[0] is given and out[1] is empty and out[1].keypoints is None


def test_fixed_boxes_without_hamer_give_joints_and_track_their_hands(examples):
    """The joints-only pipeline with fixed ROIs (no checkpoint): each box's hand is found by the
    landmark model and placed, with the side its ROI gives; on the next frame of the stream each
    tracked box is looked at where its hand was (one pass), and the hands stay where they were."""
    from hamer_ros.perception import HandPipeline, PipelineConfig

    photo = json.loads(ANNOTATIONS.read_text())["images"]["test1.jpg"]
    rois = [{"box": h["box"], "side": h["side"]} for h in photo["hands"]]
    pipe = HandPipeline(PipelineConfig(device="cpu", detector="fixed", rois=rois, max_hands=4))
    image = _photo(examples, "test1.jpg")
    h, w = image.shape[:2]
    K = np.array([[600.0, 0, (w - 1) / 2], [0, 600.0, (h - 1) / 2], [0, 0, 1]])
    first = pipe(image, K, stamp=10.0)
    assert len(first) >= 2, len(first)        # the two right hands; the half-hidden left ones are refused
    sides = {tuple(r["box"]): r["side"] for r in rois}
    for hand in first:
        assert np.all(np.isfinite(hand.joints)) and np.all(hand.joints[:, 2] > 0)
        # the hand lies inside the ROI it was found in, with that ROI's side
        roi = next(b for b in sides if b[0] <= hand.keypoints_2d[9, 0] <= b[2] and b[1] <= hand.keypoints_2d[9, 1] <= b[3])
        assert hand.side == sides[roi]
    assert len(pipe._refiner._last) == len(first)          # their regions, for the next frame
    second = pipe(image, K, stamp=10.033)
    assert sorted(x.track_id for x in second) == sorted(x.track_id for x in first)
    for hand in second:
        before = next(x for x in first if x.track_id == hand.track_id)
        assert np.linalg.norm(hand.wrist_position - before.wrist_position) < 0.01
