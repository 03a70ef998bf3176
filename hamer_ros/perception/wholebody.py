"""Hands from whole-body keypoints, for hands in the wild that a palm detector misses (holding
things, gloved, small): a person detector and a whole-body pose model (RTMW-class: COCO-WholeBody's
133 keypoints, SimCC heads), both ONNX, run by onnxruntime. The HaMeR demo's recipe: a hand is
its 21 keypoints of the person's left (91-111) or right (112-132) block; it counts with more than 3
of them above 0.5, and its box is their tight box; its side is the block it came from.

Model conventions (read from the RTMPose/RTMW and YOLOX sources and configs, as exported to ONNX
by mmdeploy with the detector's NMS in the graph):
- person detector: NCHW input, the frame resized keeping its aspect ratio into the top-left
  corner of a 114-grey canvas, BGR, 0..255 unnormalised; output 0 is [1, N, 5]: x1, y1, x2, y2 on
  that canvas, score.
- pose model: NCHW input [1, 3, h, w], the person's box centred, padded by 1.25 and widened to the
  input's aspect ratio, warped (bilinear, black border); RGB as it was trained (`bgr_to_rgb=True`),
  ImageNet mean/std on 0..255; outputs simcc_x [1, 133, w*r], simcc_y [1, 133, h*r]; a keypoint is
  the arg-max along each, divided by r, its score the smaller of the two maxima.
The user gives the two .onnx files (e.g. YOLOX-m HumanArt and RTMW from the RTMPose project; see
the README for where, and for their terms): nothing is downloaded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .hand_models.runtime import check_rgb
from .types import Detection

LEFT_HAND = slice(91, 112)       # COCO-WholeBody: the person's own left hand, wrist first
RIGHT_HAND = slice(112, 133)
PAD_VALUE = 114
BOX_PADDING = 1.25
MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)
MIN_KEYPOINT_SCORE = 0.5          # the HaMeR demo's
MIN_KEYPOINTS = 4                 # "more than 3" valid keypoints make a hand


class WholeBodyError(RuntimeError):
    """Model files that are missing or not the expected kind; the message says which and why."""


def _session(path: str | Path, device: str) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise WholeBodyError(f"detector wholebody needs onnxruntime ({e}): pip install \"hamer_ros[onnx]\"") from None
    path = Path(path).expanduser()
    if not path.is_file():
        raise WholeBodyError(f"whole-body model {path} not found (see the README, 'Finding the hands')")
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(path), providers=providers)
    except Exception as e:  # noqa: BLE001 -- onnxruntime raises its own types for a bad file
        raise WholeBodyError(f"whole-body model {path} cannot be loaded: {e}") from None


def _input_hw(session: Any, name: str) -> tuple[int, int]:
    shape = session.get_inputs()[0].shape
    if len(shape) != 4 or not all(isinstance(d, int) for d in shape[2:]):
        raise WholeBodyError(f"{name}: expected a fixed NCHW input, got {shape}")
    return int(shape[2]), int(shape[3])


class PersonDetector:
    """image_rgb -> person boxes [N, 4] (x1, y1, x2, y2 px) and scores [N], best first."""

    def __init__(self, model: str | Path, device: str = "cpu", min_score: float = 0.5) -> None:
        self.session = _session(model, device)
        self.height, self.width = _input_hw(self.session, "person detector")
        self.min_score = float(min_score)

    def __call__(self, image_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = image_rgb.shape[:2]
        ratio = min(self.height / h, self.width / w)
        canvas = np.full((self.height, self.width, 3), PAD_VALUE, np.uint8)
        resized = cv2.resize(image_rgb, (int(w * ratio), int(h * ratio)), interpolation=cv2.INTER_LINEAR)
        canvas[:resized.shape[0], :resized.shape[1]] = resized[..., ::-1]          # BGR, top-left
        tensor = canvas.transpose(2, 0, 1)[None].astype(np.float32)
        dets = np.asarray(self.session.run(None, {self.session.get_inputs()[0].name: tensor})[0])
        if dets.ndim != 3 or dets.shape[-1] != 5:
            raise WholeBodyError(f"person detector: expected output [1, N, 5] (boxes with NMS in the graph), "
                                 f"got {list(dets.shape)}")
        dets = dets[0]
        keep = dets[:, 4] >= self.min_score
        boxes, scores = dets[keep, :4] / ratio, dets[keep, 4]
        order = np.argsort(-scores)
        return boxes[order].astype(np.float64), scores[order].astype(np.float64)


def _warp(box: np.ndarray, out_w: int, out_h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The affine that maps the padded, aspect-fixed box onto the input, its centre and size (w, h)."""
    center = (box[:2] + box[2:]) / 2
    size = (box[2:] - box[:2]) * BOX_PADDING
    aspect = out_w / out_h
    size = np.where(size[0] > size[1] * aspect, [size[0], size[0] / aspect], [size[1] * aspect, size[1]])
    sx, sy = out_w / size[0], out_h / size[1]
    matrix = np.array([[sx, 0.0, out_w / 2 - sx * center[0]], [0.0, sy, out_h / 2 - sy * center[1]]])
    return matrix, center, size


class WholeBodyPose:
    """(image_rgb, person box) -> keypoints [133, 2] (px) and scores [133]."""

    def __init__(self, model: str | Path, device: str = "cpu") -> None:
        self.session = _session(model, device)
        self.height, self.width = _input_hw(self.session, "whole-body pose model")

    def __call__(self, image_rgb: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        matrix, center, size = _warp(np.asarray(box, np.float64), self.width, self.height)
        crop = cv2.warpAffine(image_rgb, matrix, (self.width, self.height), flags=cv2.INTER_LINEAR)
        tensor = ((crop.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1)[None]
        simcc_x, simcc_y = (np.asarray(o)[0] for o in self.session.run(None, {self.session.get_inputs()[0].name: tensor})[:2])
        ratio_x, ratio_y = simcc_x.shape[-1] / self.width, simcc_y.shape[-1] / self.height
        x = simcc_x.argmax(-1) / ratio_x
        y = simcc_y.argmax(-1) / ratio_y
        scores = np.minimum(simcc_x.max(-1), simcc_y.max(-1))
        # input pixels -> image pixels (the warp is a scale about the box centre)
        keypoints = np.stack([x, y], -1) / [self.width, self.height] * size + center - size / 2
        return keypoints, scores


class WholeBodyHandDetector:
    """A HandDetector (see detect.py): hands of every person found. score: the mean score of the
    hand's valid keypoints; side: its block's (the person's own side), side_score 1. Boxes only
    (keypoints=None): the landmark refiner or HaMeR's own keypoints place them."""

    def __init__(self, person_model: str | Path, pose_model: str | Path, max_hands: int = 2,
                 min_detection_confidence: float = 0.5, device: str = "cpu", max_people: int = 10) -> None:
        self._people = PersonDetector(person_model, device, min_score=min_detection_confidence)
        self._pose = WholeBodyPose(pose_model, device)
        self.max_hands = int(max_hands)
        self.max_people = int(max_people)

    def __call__(self, image_rgb: np.ndarray) -> list[Detection]:
        img = check_rgb(image_rgb)
        boxes, _ = self._people(img)
        hands = []
        for box in boxes[: self.max_people]:
            keypoints, scores = self._pose(img, box)
            hands += hands_from_keypoints(keypoints, scores)
        return sorted(hands, key=lambda d: -d.score)[: self.max_hands]

    def reset(self) -> None:
        pass

    def close(self) -> None:
        pass


def hands_from_keypoints(keypoints: np.ndarray, scores: np.ndarray) -> list[Detection]:
    """One person's whole-body keypoints [133, 2] and scores [133] -> its hands (0, 1 or 2)."""
    out = []
    for block, is_right in ((LEFT_HAND, False), (RIGHT_HAND, True)):
        kp, sc = keypoints[block], scores[block]
        valid = sc > MIN_KEYPOINT_SCORE
        if valid.sum() < MIN_KEYPOINTS:
            continue
        pts = kp[valid]
        out.append(Detection(box=np.concatenate([pts.min(0), pts.max(0)]).astype(np.float32), is_right=is_right,
                             score=float(sc[valid].mean())))
    return out


def parse_models(text: str) -> tuple[Path, Path]:
    """The `wholebody_models` setting: "PERSON.onnx,POSE.onnx"; ValueError saying the form."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if len(parts) != 2:
        raise ValueError(f"wholebody_models must be 'PERSON_DETECTOR.onnx,WHOLEBODY_POSE.onnx', got '{text}'")
    return Path(parts[0]).expanduser(), Path(parts[1]).expanduser()
