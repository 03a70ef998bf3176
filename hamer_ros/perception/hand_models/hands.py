"""MediaPipe Hands' static-image graph (HandLandmarkTrackingCpu with use_prev_landmarks off) built
from the two torch models: palm detection, the best `max_hands` palms, their regions
de-duplicated, landmarks for all of them in one batch, hands below `min_presence` dropped."""
from __future__ import annotations

import numpy as np

from .landmarks import HandLandmarker, HandLandmarks
from .palm import PalmDetector
from .roi import NormRect, rect_iou


def associate(rects: list[NormRect], min_similarity: float = 0.5) -> list[NormRect]:
    """AssociationNormRectCalculator on one list: each rect, in order, removes the earlier ones it
    overlaps by axis-aligned IoU > min_similarity, then joins the end of the list. So of two
    overlapping palms the later (lower-scored) one's region is kept, as in MediaPipe."""
    kept: list[NormRect] = []
    for rect in rects:
        kept = [k for k in kept if rect_iou(rect, k) <= min_similarity]
        kept.append(rect)
    return kept


def detect_hands(image_rgb: np.ndarray, palm_detector: PalmDetector, landmarker: HandLandmarker,
                 max_hands: int = 2, min_presence: float = 0.5) -> list[HandLandmarks]:
    """What mediapipe.solutions.hands.Hands(static_image_mode=True, max_num_hands=max_hands,
    model_complexity=1) returns for one image, in its order."""
    palms = palm_detector(image_rgb)[:max_hands]
    rects = associate([p.rect for p in palms])
    return [hand for hand in landmarker(image_rgb, rects) if hand.presence >= min_presence]
