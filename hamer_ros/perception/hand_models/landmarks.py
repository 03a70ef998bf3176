"""MediaPipe's hand landmark model (hand_landmark_full, mediapipe 0.10.21) run by PyTorch, with
MediaPipe's pre- and post-processing (HandLandmarkCpu): each rotated region cropped to 224x224
(bilinear, replicated border), 21 landmarks projected back into the image, metric world landmarks
rotated by the region's rotation, presence and handedness scores, and the next frame's region.
Several regions run as one batch.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..types import Detection
from .graph import freeze, load_graph
from .roi import HandRegion, NormRect, crop, landmarks_rect, project_landmarks, unletterbox
from .runtime import check_rgb, image_tensor, model_path

WARM_BATCH = 2    # regions per forward pass: freeze() warms the graph for batches of 1 and 2

# TensorsToLandmarksCalculator's normalize_z for this model: "accounts for the Z coordinate
# distribution in the training data".
_Z_SCALE = 0.4


@dataclass
class HandLandmarks:
    """One region's result, in pixels of the image (pixel centres at integers, u = x W - 0.5)."""

    keypoints: np.ndarray      # (21, 2) px, MediaPipe / OpenPose hand order
    depth: np.ndarray          # (21,) px, depth relative to the wrist, as MediaPipe's z * image width
    world: np.ndarray          # (21, 3) m, metric landmarks, origin near the hand's centre, image axes
    presence: float            # 0..1, that the region holds a hand (MediaPipe keeps it at >= 0.5)
    is_right: bool             # real anatomical side in a normal (non-mirrored) camera image
    side_score: float          # confidence in is_right, 0.5..1
    region: HandRegion         # the region these came from
    next_region: HandRegion    # the region MediaPipe would track the hand with in the next frame
    next_rect: NormRect        # the same, normalised
    left_score: float = 0.0    # the network's raw handedness output: MediaPipe's "Left" score

    def box(self) -> np.ndarray:
        """(4,) px: the keypoints' tight box x1, y1, x2, y2."""
        return np.concatenate([self.keypoints.min(0), self.keypoints.max(0)]).astype(np.float32)

    def to_detection(self, score: float | None = None) -> Detection:
        return Detection(box=self.box(), is_right=self.is_right,
                         score=self.presence if score is None else float(score), side_score=self.side_score,
                         keypoints=self.keypoints.copy(), world_joints=self.world.copy(),
                         keypoint_depth=self.depth.copy())


def _as_rects(regions: Sequence[HandRegion | NormRect], width: int, height: int) -> list[NormRect]:
    return [r.to_norm(width, height) if isinstance(r, HandRegion) else r for r in regions]


class HandLandmarker:
    """(image_rgb, regions) -> one HandLandmarks per region, in order, all in one forward pass.
    Regions are HandRegion (pixels) or NormRect (MediaPipe's normalised form). Not thread-safe."""

    input_size = 224

    def __init__(self, device: str | torch.device = "cpu", model: str | Path | None = None, jit: bool = True) -> None:
        """jit: run the TorchScript-frozen graph (graph.freeze: ~1.6x faster on CPU), else eager."""
        self.device = torch.device(device)
        self.net = load_graph(model_path("hand_landmark_full", model), self.device)
        self._forward = freeze(self.net) if jit else self.net

    def crops(self, image_rgb: np.ndarray, regions: Sequence[HandRegion | NormRect]
              ) -> tuple[np.ndarray, list[tuple[float, float]]]:
        """(B, 224, 224, 3) uint8 crops and their letterbox paddings (zero for square regions)."""
        img = check_rgb(image_rgb)
        rects = _as_rects(regions, img.shape[1], img.shape[0])
        out = np.empty((len(rects), self.input_size, self.input_size, 3), dtype=np.uint8)
        pads = []
        for i, rect in enumerate(rects):
            out[i], p = crop(img, rect, self.input_size, self.input_size, "replicate")
            pads.append(p)
        return out, pads

    def run_network(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """uint8 crops (B, 224, 224, 3) -> landmarks (B, 21, 3) in crop pixels, presence (B,),
        MediaPipe's "Left" score (B,), world landmarks (B, 21, 3) in the crop's axes."""
        parts = []
        with torch.inference_mode():
            # In batches of the sizes the frozen graph was warmed up for (graph.freeze): TorchScript
            # re-specialises on every new batch size, hundreds of ms each time on a CPU.
            for start in range(0, len(crops), WARM_BATCH):
                outs = self._forward(image_tensor(crops[start:start + WARM_BATCH], self.device))
                parts.append([o.float().cpu().numpy() for o in outs])
        lm, presence, left, world = (np.concatenate([p[k] for p in parts]) for k in range(4))
        return lm.reshape(-1, 21, 3), presence.reshape(-1), left.reshape(-1), world.reshape(-1, 21, 3)

    def __call__(self, image_rgb: np.ndarray, regions: Sequence[HandRegion | NormRect]) -> list[HandLandmarks]:
        img = check_rgb(image_rgb)
        if len(regions) == 0:
            return []
        h, w = img.shape[:2]
        rects = _as_rects(regions, w, h)
        crops, pads = self.crops(img, rects)
        lm, presence, left, world = self.run_network(crops)
        return [self.decode(lm[i], float(presence[i]), float(left[i]), world[i], rects[i], pads[i], w, h)
                for i in range(len(rects))]

    @staticmethod
    def decode(lm: np.ndarray, presence: float, left: float, world: np.ndarray, rect: NormRect,
               pads: tuple[float, float], width: int, height: int) -> HandLandmarks:
        """One region's network outputs -> image coordinates (MediaPipe's TensorsToLandmarks,
        LandmarkLetterboxRemoval, LandmarkProjection, WorldLandmarkProjection)."""
        size = HandLandmarker.input_size
        norm = np.asarray(lm, dtype=np.float32) / np.float32(size)
        norm[:, 2] /= np.float32(_Z_SCALE)
        norm = project_landmarks(unletterbox(norm, pads), rect)       # image-normalised x, y, z
        c, s = np.cos(rect.rotation), np.sin(rect.rotation)
        wl = np.asarray(world, dtype=np.float32)
        world_img = np.stack([c * wl[:, 0] - s * wl[:, 1], s * wl[:, 0] + c * wl[:, 1], wl[:, 2]], axis=1)
        nxt = landmarks_rect(norm, width, height)
        # The handedness head was trained on mirrored (selfie) images: its "Left" is a real right
        # hand in a normal camera image (checked against mediapipe on the example photos).
        is_right = left > 0.5
        return HandLandmarks(
            keypoints=(norm[:, :2] * np.array([width, height], dtype=np.float32) - 0.5).astype(np.float32),
            depth=(norm[:, 2] * np.float32(width)).astype(np.float32),
            world=world_img.astype(np.float32),
            presence=presence,
            is_right=bool(is_right),
            side_score=float(max(left, 1.0 - left)),
            region=HandRegion.from_norm(rect, width, height),
            next_region=HandRegion.from_norm(nxt, width, height),
            next_rect=nxt,
            left_score=left,
        )
