"""The palm detector's SSD anchors, its box / keypoint decoding and weighted NMS, as MediaPipe's
palm_detection_cpu graph configures them (SsdAnchorsCalculator, TensorsToDetectionsCalculator,
NonMaxSuppressionCalculator, mediapipe 0.10.21). All coordinates are normalised to the 192x192
network input (0 and 1 at its outer edges), as MediaPipe keeps them until the letterbox is removed.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AnchorOptions:
    """palm_detection_cpu.pbtxt's SsdAnchorsCalculatorOptions (unset fields at their proto defaults)."""

    input_width: int = 192
    input_height: int = 192
    min_scale: float = 0.1484375
    max_scale: float = 0.75
    anchor_offset_x: float = 0.5
    anchor_offset_y: float = 0.5
    strides: tuple[int, ...] = (8, 16, 16, 16)
    aspect_ratios: tuple[float, ...] = (1.0,)
    interpolated_scale_aspect_ratio: float = 1.0
    fixed_anchor_size: bool = True


def _scale(options: AnchorOptions, index: int) -> float:
    n = len(options.strides)
    if n == 1:
        return (options.min_scale + options.max_scale) * 0.5
    return options.min_scale + (options.max_scale - options.min_scale) * index / (n - 1.0)


def ssd_anchors(options: AnchorOptions = AnchorOptions()) -> np.ndarray:
    """(N, 4) float32 anchors: x_center, y_center, width, height (normalised), in the order of the
    network's outputs: consecutive layers with the same stride share one grid, cells row-major,
    the anchors of one cell together."""
    anchors = []
    layer = 0
    strides = options.strides
    while layer < len(strides):
        sizes = []                      # (w, h) of each anchor of one cell
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            scale = _scale(options, last)
            for ratio in options.aspect_ratios:
                sizes.append((scale * np.sqrt(ratio), scale / np.sqrt(ratio)))
            if options.interpolated_scale_aspect_ratio > 0:
                nxt = 1.0 if last == len(strides) - 1 else _scale(options, last + 1)
                s = np.sqrt(scale * nxt)
                r = options.interpolated_scale_aspect_ratio
                sizes.append((s * np.sqrt(r), s / np.sqrt(r)))
            last += 1
        rows = int(np.ceil(options.input_height / strides[layer]))
        cols = int(np.ceil(options.input_width / strides[layer]))
        for y in range(rows):
            for x in range(cols):
                for w, h in sizes:
                    if options.fixed_anchor_size:
                        w = h = 1.0
                    anchors.append(((x + options.anchor_offset_x) / cols, (y + options.anchor_offset_y) / rows, w, h))
        layer = last
    return np.asarray(anchors, dtype=np.float32)


def decode_boxes(raw: np.ndarray, anchors: np.ndarray, scale: Sequence[float] = (192.0, 192.0),
                 num_keypoints: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """raw (N, 4 + 2K): the network's x, y, w, h then K (x, y) keypoints, all relative to the
    anchor and in input pixels (MediaPipe's reverse_output_order = XYWH, box_coord_offset 0,
    keypoint_coord_offset 4). Returns boxes (N, 4) xmin, ymin, xmax, ymax and keypoints (N, K, 2),
    normalised to the network input."""
    raw = np.asarray(raw, dtype=np.float32)
    sx, sy = np.float32(scale[0]), np.float32(scale[1])
    ax, ay, aw, ah = (anchors[:, i] for i in range(4))
    xc = raw[:, 0] / sx * aw + ax
    yc = raw[:, 1] / sy * ah + ay
    w = raw[:, 2] / sx * aw             # not exponential: apply_exponential_on_box_size is false
    h = raw[:, 3] / sy * ah
    boxes = np.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], axis=1)
    kp = raw[:, 4:4 + 2 * num_keypoints].reshape(-1, num_keypoints, 2)
    keypoints = np.stack([kp[..., 0] / sx * aw[:, None] + ax[:, None],
                          kp[..., 1] / sy * ah[:, None] + ay[:, None]], axis=-1)
    return boxes, keypoints


def sigmoid_scores(logits: np.ndarray, clip: float = 100.0) -> np.ndarray:
    """MediaPipe clips the logits to +-score_clipping_thresh before the sigmoid."""
    x = np.clip(np.asarray(logits, dtype=np.float32), -clip, clip)
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box with many (0 where they do not overlap)."""
    iw = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])
    ih = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
                 threshold: float = 0.3) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's WEIGHTED non-max suppression: the best remaining box and every box overlapping it
    by IoU > threshold (itself included) are averaged, weighted by score, into one detection with
    the best box's score. Returns (box, keypoints, score) best first."""
    order = np.argsort(-scores, kind="stable")
    out = []
    while order.size:
        best = order[0]
        overlap = iou(boxes[best], boxes[order]) > threshold
        members = order[overlap]
        weights = scores[members].astype(np.float64)
        total = weights.sum()
        box = (boxes[members] * weights[:, None]).sum(0) / total
        kps = (keypoints[members] * weights[:, None, None]).sum(0) / total
        out.append((box.astype(np.float32), kps.astype(np.float32), float(scores[best])))
        order = order[~overlap]
    return out
