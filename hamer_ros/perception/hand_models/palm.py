"""MediaPipe's palm detector (palm_detection_full, mediapipe 0.10.21) run by PyTorch, with
MediaPipe's pre- and post-processing: the whole frame letterboxed onto 192x192 (zero border),
SSD decoding on 2016 fixed anchors, sigmoid scores >= 0.5, weighted NMS (IoU 0.3), letterbox
removed, and each palm grown into the rotated, square hand region the landmark model crops.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .anchors import decode_boxes, sigmoid_scores, ssd_anchors, weighted_nms
from .graph import freeze, load_graph
from .roi import HandRegion, NormRect, crop, palm_rect, unletterbox
from .runtime import check_rgb, image_tensor, model_path

# Of the 7 palm keypoints MediaPipe's graphs name two, the ones its hand region is built on: the
# wrist's centre and the middle finger's knuckle (MCP). The other five are palm / thumb points
# whose order is not documented, so they are left unnamed here.
PALM_WRIST = 0
PALM_MIDDLE_MCP = 2


@dataclass
class Palm:
    """One palm, in pixels of the image it was found in (pixel centres at integers, u = x W - 0.5)."""

    box: np.ndarray            # (4,) x1, y1, x2, y2: the palm's box (not the whole hand)
    keypoints: np.ndarray      # (7, 2), the network's order (PALM_WRIST, PALM_MIDDLE_MCP named)
    score: float               # sigmoid of the detector's logit
    region: HandRegion         # the rotated square hand region MediaPipe gives the landmark model
    rect: NormRect             # the same region in MediaPipe's normalised form


class PalmDetector:
    """image_rgb (uint8 HxWx3) -> palms, best first. Not thread-safe (one network per instance)."""

    input_size = 192

    def __init__(self, device: str | torch.device = "cpu", model: str | Path | None = None,
                 min_score: float = 0.5, nms_threshold: float = 0.3, jit: bool = True) -> None:
        """jit: run the TorchScript-frozen graph (graph.freeze: ~2x faster on CPU), else eager."""
        self.device = torch.device(device)
        self.net = load_graph(model_path("palm_detection_full", model), self.device)
        self._forward = freeze(self.net) if jit else self.net
        self.anchors = ssd_anchors()
        self.min_score = float(min_score)
        self.nms_threshold = float(nms_threshold)

    def run_network(self, image_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
        """The raw network outputs for one frame: (2016, 18) regressors, (2016,) logits, and the
        letterbox padding (horizontal, vertical fraction of the 192 input on each side)."""
        img = check_rgb(image_rgb)
        # The whole frame as MediaPipe's ImageToTensorCalculator sees it (no rect: the image).
        tensor_in, pads = crop(img, NormRect(0.5, 0.5, 1.0, 1.0, 0.0), self.input_size, self.input_size, "zero")
        with torch.inference_mode():
            raw, logits = self._forward(image_tensor(tensor_in[None], self.device))
        return raw[0].float().cpu().numpy(), logits[0, :, 0].float().cpu().numpy(), pads

    def __call__(self, image_rgb: np.ndarray) -> list[Palm]:
        img = check_rgb(image_rgb)
        h, w = img.shape[:2]
        raw, logits, pads = self.run_network(img)
        return self.decode(raw, logits, pads, w, h)

    def decode(self, raw: np.ndarray, logits: np.ndarray, pads: tuple[float, float], width: int,
               height: int) -> list[Palm]:
        """Network outputs -> palms (split from __call__ so that the decoding is testable alone)."""
        scores = sigmoid_scores(logits)
        keep = scores >= self.min_score
        if not keep.any():
            return []
        boxes, keypoints = decode_boxes(raw[keep], self.anchors[keep], (self.input_size, self.input_size))
        valid = (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])   # MediaPipe drops negative sizes
        palms = []
        for box, kps, score in weighted_nms(boxes[valid], keypoints[valid], scores[keep][valid], self.nms_threshold):
            corners = unletterbox(box.reshape(2, 2), pads).reshape(4)
            kps = unletterbox(kps, pads)
            rect = palm_rect(corners, kps, width, height)
            size = np.array([width, height], dtype=np.float32)
            palms.append(Palm(
                box=(corners.reshape(2, 2) * size - 0.5).reshape(4).astype(np.float32),
                keypoints=(kps * size - 0.5).astype(np.float32),
                score=score,
                region=HandRegion.from_norm(rect, width, height),
                rect=rect,
            ))
        return palms
