"""MediaPipe's palm detector and hand landmark model (Apache-2.0, from the mediapipe 0.10.21
wheel; see NOTICE.md) run by PyTorch, with MediaPipe's pre- and post-processing written here, so
that hand keypoints need neither the mediapipe package nor TensorFlow.

    palms = PalmDetector()(image_rgb)                       # boxes, 7 keypoints, hand regions
    hands = HandLandmarker()(image_rgb, [p.region for p in palms])
    hands[0].keypoints, hands[0].next_region                # 21 px keypoints; region to track with

`detect_hands` chains them as MediaPipe Hands does on a static image. The weights are the .npz
files beside this module (scripts/convert_mediapipe_models.py writes them from the .tflite files).

Pixels follow this package's convention (pixel centres at integers: u = x W - 0.5 of MediaPipe's
normalised x). Handedness: the landmark model's side output treats every image as a mirrored
selfie view, so its "Left" is a real right hand in a normal camera image; `is_right` is that real
side, as the whole package means it. Parity with mediapipe 0.10.21 is tested in
test/test_hand_models.py (keypoints within a few hundredths of a pixel on the example photos).
"""
from __future__ import annotations

from .hands import associate, detect_hands
from .landmarks import HandLandmarker, HandLandmarks
from .palm import PALM_MIDDLE_MCP, PALM_WRIST, Palm, PalmDetector
from .roi import HandRegion, NormRect

__all__ = ["PALM_MIDDLE_MCP", "PALM_WRIST", "HandLandmarker", "HandLandmarks", "HandRegion", "NormRect",
           "Palm", "PalmDetector", "associate", "detect_hands"]
