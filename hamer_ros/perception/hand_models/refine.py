"""Landmarks for any hand box: the landmark model on a region made from a detector's box, so that
boxes without keypoints (fixed ROIs, a whole-body or user detector) get 2D keypoints, metric
landmarks and relative depths like MediaPipe's own hands, for placement and the joints-only mode.

A box says nothing of the hand's rotation, and the landmark model wants the hand upright (wrist
down) in its crop: the box's square region is tried at four rotations, the one where the model
is surest of a hand is kept, and the model runs once more on the region its own landmarks give
(MediaPipe's next-frame rule), which is upright and sized by the hand itself.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from ..track import iou_matrix
from ..types import Detection
from .landmarks import HandLandmarker
from .roi import HandRegion

ROTATIONS = (0.0, math.pi / 2, math.pi, -math.pi / 2)
# The hand found must be the box's: its keypoints' box overlaps the detector's at least this much
# (else the model latched onto a neighbouring hand in the region's margin; test1.jpg has one).
MIN_BOX_IOU = 0.3
# The region's side over the box's long side: the landmark model's crops show a hand with about
# this much margin (MediaPipe's regions are 2x the palm-and-knuckles box, ~1.5x the whole hand).
REGION_SCALE = 1.5


def box_region(box: np.ndarray, rotation: float = 0.0, scale: float = REGION_SCALE) -> HandRegion:
    """The square region around a box (x1, y1, x2, y2 px), `scale` times its long side, turned by
    `rotation` (radians, as HandRegion's)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = scale * max(x2 - x1, y2 - y1)
    return HandRegion(((x1 + x2) / 2, (y1 + y2) / 2), (side, side), rotation)


class LandmarkRefiner:
    """(image, detections) -> the same detections, those without keypoints given the landmark
    model's when it finds a hand in their box (presence >= min_presence). Side, score and track
    stay the detector's; the box becomes the keypoints' own, as MediaPipe's hands have it (the
    world landmarks are relative to the ray through its centre). A tracked box (track_id >= 0)
    is looked at first where its hand's landmarks were in the last frame: one pass instead of five.
    Not thread-safe."""

    def __init__(self, landmarker: HandLandmarker | None = None, min_presence: float = 0.5,
                 device: str = "cpu") -> None:
        self._landmarks = landmarker or HandLandmarker(device)
        self.min_presence = float(min_presence)
        self._last: dict[int, HandRegion] = {}     # track id -> its hand's region for the next frame

    def __call__(self, image_rgb: np.ndarray, detections: list[Detection]) -> list[Detection]:
        todo = [i for i, d in enumerate(detections) if d.keypoints is None]
        tracked = [i for i in todo if detections[i].track_id in self._last]
        search = [i for i in todo if i not in tracked]
        found = dict(zip(tracked, self._landmarks(image_rgb, [self._last[detections[i].track_id] for i in tracked])))
        if search:
            tries = self._landmarks(image_rgb, [box_region(detections[i].box, r) for i in search for r in ROTATIONS])
            best = [max(tries[k * len(ROTATIONS):(k + 1) * len(ROTATIONS)], key=lambda h: h.presence)
                    for k in range(len(search))]
            found.update(zip(search, self._landmarks(image_rgb, [b.next_region for b in best])))
        out = list(detections)
        self._last = {}
        for i, hand in found.items():
            d = detections[i]
            if hand.presence < self.min_presence or iou_matrix(hand.box(), d.box)[0, 0] < MIN_BOX_IOU:
                continue
            out[i] = replace(d, box=hand.box(), keypoints=hand.keypoints.copy(), world_joints=hand.world.copy(),
                             keypoint_depth=hand.depth.copy())
            if d.track_id >= 0:
                self._last[d.track_id] = hand.next_region
        return out

    def reset(self) -> None:
        self._last = {}
