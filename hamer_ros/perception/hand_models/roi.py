"""Rotated hand regions: how MediaPipe turns a palm or a set of landmarks into the square, rotated
crop the landmark model sees, and how it samples that crop (mediapipe 0.10.21:
DetectionsToRectsCalculator, RectTransformationCalculator, HandLandmarksToRectCalculator,
ImageToTensorCalculator with its OpenCV converter, LandmarkProjectionCalculator).

Two pixel conventions meet here. MediaPipe's rects are normalised (0 and 1 at the image's outer
edges), `NormRect`. Its crop, though, hands `x_center * width` straight to OpenCV, whose pixel
centres are integers: the crop is sampled half a pixel off from what the normalised numbers say.
That is MediaPipe's own behaviour and is kept (parity), so `crop_matrix` takes the normalised rect.
The public `HandRegion` uses this package's convention (u = x W - 0.5) and converts at the edge.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

_FLOAT_MIN = float(np.finfo(np.float32).tiny)    # C++ numeric_limits<float>::min()
_FLOAT_MAX = float(np.finfo(np.float32).max)


def normalize_radians(angle: float) -> float:
    """Into [-pi, pi), as MediaPipe's NormalizeRadians."""
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


@dataclass(frozen=True)
class NormRect:
    """MediaPipe's NormalizedRect: centre and size as fractions of the image width / height,
    rotation in radians (positive turns the rect's x axis towards the image's y, i.e. clockwise on
    screen)."""

    x_center: float
    y_center: float
    width: float
    height: float
    rotation: float = 0.0


@dataclass(frozen=True)
class HandRegion:
    """A rotated hand region in pixels of the image (this package's convention: pixel centres at
    integers, u = x W - 0.5). rotation as NormRect's. `size` is (width, height); MediaPipe's hand
    regions are square."""

    center: tuple[float, float]
    size: tuple[float, float]
    rotation: float

    def to_norm(self, width: int, height: int) -> NormRect:
        return NormRect((self.center[0] + 0.5) / width, (self.center[1] + 0.5) / height,
                        self.size[0] / width, self.size[1] / height, self.rotation)

    @staticmethod
    def from_norm(rect: NormRect, width: int, height: int) -> HandRegion:
        return HandRegion((rect.x_center * width - 0.5, rect.y_center * height - 0.5),
                          (rect.width * width, rect.height * height), rect.rotation)

    def corners(self) -> np.ndarray:
        """(4, 2) px: the crop's top-left, top-right, bottom-right, bottom-left (crop's own axes)."""
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        half = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64) * np.array(self.size) / 2
        return half @ np.array([[c, s], [-s, c]]) + np.array(self.center)


def rect_from_detection(box: np.ndarray, keypoints: np.ndarray, width: int, height: int,
                        start: int = 0, end: int = 2, target_angle: float = math.pi / 2) -> NormRect:
    """DetectionsToRectsCalculator: the normalised box (xmin, ymin, xmax, ymax), rotated so that
    keypoint start -> end (wrist -> middle finger knuckle) points up (target 90 degrees)."""
    x0, y0 = keypoints[start, 0] * width, keypoints[start, 1] * height
    x1, y1 = keypoints[end, 0] * width, keypoints[end, 1] * height
    rotation = normalize_radians(target_angle - math.atan2(-(y1 - y0), x1 - x0))
    w, h = float(box[2] - box[0]), float(box[3] - box[1])
    return NormRect(float(box[0]) + w / 2, float(box[1]) + h / 2, w, h, rotation)


def transform_rect(rect: NormRect, width: int, height: int, scale: float = 1.0, shift_x: float = 0.0,
                   shift_y: float = 0.0, square_long: bool = False) -> NormRect:
    """RectTransformationCalculator: shift along the rect's own (rotated) axes by fractions of its
    size, make it square on its long side in pixels, then scale."""
    w, h, r = rect.width, rect.height, rect.rotation
    if r == 0.0:
        xc, yc = rect.x_center + w * shift_x, rect.y_center + h * shift_y
    else:
        dx = (width * w * shift_x * math.cos(r) - height * h * shift_y * math.sin(r)) / width
        dy = (width * w * shift_x * math.sin(r) + height * h * shift_y * math.cos(r)) / height
        xc, yc = rect.x_center + dx, rect.y_center + dy
    if square_long:
        side = max(w * width, h * height)
        w, h = side / width, side / height
    return NormRect(xc, yc, w * scale, h * scale, r)


def palm_rect(box: np.ndarray, keypoints: np.ndarray, width: int, height: int) -> NormRect:
    """PalmDetectionDetectionToRoi: the palm's box grown into the whole hand's region."""
    raw = rect_from_detection(box, keypoints, width, height)
    return transform_rect(raw, width, height, scale=2.6, shift_y=-0.5, square_long=True)


# The landmarks MediaPipe measures a hand's region on: wrist, thumb CMC/MCP/IP and the knuckle and
# PIP joint of each finger; the finger tips move too much between frames to anchor a box.
STABLE_LANDMARKS = (0, 1, 2, 3, 5, 6, 9, 10, 13, 14, 17, 18)


def landmarks_rect(landmarks: np.ndarray, width: int, height: int) -> NormRect:
    """HandLandmarksToRectCalculator then HandLandmarkLandmarksToRoi's transform: the next frame's
    region from the 21 normalised landmarks (21, >=2). Rotation: wrist -> the mean of the middle
    knuckle (9) and of the index / ring knuckles' mean (5, 13); size: the extent of
    STABLE_LANDMARKS in that rotated frame, x2, shifted 0.1 towards the fingers."""
    lm = np.asarray(landmarks, dtype=np.float32)[list(STABLE_LANDMARKS), :2]
    # In the stable subset the knuckles 5, 9, 13 are entries 4, 6, 8 (MediaPipe's own indices).
    x0, y0 = lm[0, 0] * width, lm[0, 1] * height
    x1 = ((lm[4, 0] + lm[8, 0]) / 2 + lm[6, 0]) / 2 * width
    y1 = ((lm[4, 1] + lm[8, 1]) / 2 + lm[6, 1]) / 2 * height
    rotation = normalize_radians(math.pi / 2 - math.atan2(-(y1 - y0), x1 - x0))
    # The C++ starts its maxima at numeric_limits<float>::min() (the smallest positive float), a
    # quirk kept so that landmarks wholly left of / above the image give the same rect.
    cx = (max(_FLOAT_MIN, float(lm[:, 0].max())) + min(_FLOAT_MAX, float(lm[:, 0].min()))) / 2
    cy = (max(_FLOAT_MIN, float(lm[:, 1].max())) + min(_FLOAT_MAX, float(lm[:, 1].min()))) / 2
    rev = normalize_radians(-rotation)
    ox, oy = (lm[:, 0] - cx) * width, (lm[:, 1] - cy) * height
    px = ox * math.cos(rev) - oy * math.sin(rev)
    py = ox * math.sin(rev) + oy * math.cos(rev)
    max_x, min_x = max(_FLOAT_MIN, float(px.max())), min(_FLOAT_MAX, float(px.min()))
    max_y, min_y = max(_FLOAT_MIN, float(py.max())), min(_FLOAT_MAX, float(py.min()))
    pcx, pcy = (max_x + min_x) / 2, (max_y + min_y) / 2
    center_x = pcx * math.cos(rotation) - pcy * math.sin(rotation) + width * cx
    center_y = pcx * math.sin(rotation) + pcy * math.cos(rotation) + height * cy
    raw = NormRect(center_x / width, center_y / height, (max_x - min_x) / width, (max_y - min_y) / height, rotation)
    return transform_rect(raw, width, height, scale=2.0, shift_y=-0.1, square_long=True)


def letterbox(rect_w: float, rect_h: float, out_w: int, out_h: int) -> tuple[float, float, float, float]:
    """ImageToTensorCalculator's keep_aspect_ratio (PadRoi): the region grown to the tensor's aspect
    ratio -> (new width, new height, horizontal padding, vertical padding), the paddings as
    fractions of the tensor on each side. In float32, as MediaPipe computes it."""
    f = np.float32
    rect_w, rect_h = f(rect_w), f(rect_h)
    tensor_ratio = f(out_h) / f(out_w)
    roi_ratio = rect_h / rect_w
    if tensor_ratio > roi_ratio:
        return float(rect_w), float(rect_w * tensor_ratio), 0.0, float((f(1) - roi_ratio / tensor_ratio) / f(2))
    return float(rect_h / tensor_ratio), float(rect_h), float((f(1) - tensor_ratio / roi_ratio) / f(2)), 0.0


def crop_matrix(rect: NormRect, image_w: int, image_h: int, out_w: int, out_h: int
                ) -> tuple[np.ndarray, tuple[float, float]]:
    """(3x3 image -> tensor transform for cv2.warpPerspective, (horizontal, vertical) letterbox
    padding). Built as MediaPipe's OpenCV converter builds it, float32 arithmetic included: the
    rotated rect's corners (cv2.boxPoints) mapped onto the tensor's corners, so that the uint8
    crop is the same as MediaPipe's (a last-bit difference in a corner flips a few rounded pixels)."""
    f = np.float32
    w, h, pad_x, pad_y = letterbox(f(rect.width) * f(image_w), f(rect.height) * f(image_h), out_w, out_h)
    centre = (float(f(rect.x_center) * f(image_w)), float(f(rect.y_center) * f(image_h)))
    angle = float(f(f(rect.rotation) * f(180.0)) / math.pi)
    src = cv2.boxPoints((centre, (w, h), angle)).astype(np.float32)   # bottom-left, top-left, top-right, bottom-right
    dst = np.float32([[0, out_h], [0, 0], [out_w, 0], [out_w, out_h]])
    return cv2.getPerspectiveTransform(src, dst), (pad_x, pad_y)


def crop(image: np.ndarray, rect: NormRect, out_w: int, out_h: int, border: str
         ) -> tuple[np.ndarray, tuple[float, float]]:
    """The uint8 crop MediaPipe feeds its network (bilinear; border "zero" for the palm detector's
    letterbox, "replicate" for the landmark model, ImageToTensorCalculator's default), and the
    letterbox padding to undo afterwards."""
    matrix, pads = crop_matrix(rect, image.shape[1], image.shape[0], out_w, out_h)
    mode = {"zero": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE}[border]
    out = cv2.warpPerspective(image, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=mode, borderValue=0)
    return out, pads


def tensor_to_image_affine(rect: NormRect, image_w: int, image_h: int, out_w: int, out_h: int) -> np.ndarray:
    """2x3: tensor coordinates -> the OpenCV image coordinates they are sampled from (the analytic
    form of `crop_matrix`'s inverse)."""
    w, h, _, _ = letterbox(rect.width * image_w, rect.height * image_h, out_w, out_h)
    c, s = math.cos(rect.rotation), math.sin(rect.rotation)
    a = np.array([[c * w / out_w, -s * h / out_h], [s * w / out_w, c * h / out_h]])
    centre = np.array([rect.x_center * image_w, rect.y_center * image_h])
    return np.hstack([a, (centre - a @ np.array([out_w / 2, out_h / 2]))[:, None]])


def unletterbox(points: np.ndarray, pads: tuple[float, float]) -> np.ndarray:
    """LandmarkLetterboxRemoval / DetectionLetterboxRemoval: tensor-normalised x, y (and z, scaled as
    x) -> region-normalised."""
    p = np.array(points, dtype=np.float32, copy=True)
    px, py = pads
    p[..., 0] = (p[..., 0] - px) / (1.0 - 2 * px)
    p[..., 1] = (p[..., 1] - py) / (1.0 - 2 * py)
    if p.shape[-1] > 2:
        p[..., 2] = p[..., 2] / (1.0 - 2 * px)
    return p


def project_landmarks(points: np.ndarray, rect: NormRect) -> np.ndarray:
    """LandmarkProjectionCalculator (the NORM_RECT form MediaPipe's hand graph uses): region-
    normalised landmarks -> image-normalised, rotating in normalised units (exact for the square
    regions of the hand graph), z scaled by the region's normalised width."""
    p = np.asarray(points, dtype=np.float32)
    x, y = p[..., 0] - 0.5, p[..., 1] - 0.5
    c, s = math.cos(rect.rotation), math.sin(rect.rotation)
    out = np.empty_like(p)
    out[..., 0] = (c * x - s * y) * rect.width + rect.x_center
    out[..., 1] = (s * x + c * y) * rect.height + rect.y_center
    if p.shape[-1] > 2:
        out[..., 2] = p[..., 2] * rect.width
    return out


def rect_iou(a: NormRect, b: NormRect) -> float:
    """AssociationNormRectCalculator's overlap: axis-aligned (rotation ignored), normalised units."""
    ax0, ay0 = a.x_center - a.width / 2, a.y_center - a.height / 2
    bx0, by0 = b.x_center - b.width / 2, b.y_center - b.height / 2
    iw = min(ax0 + a.width, bx0 + b.width) - max(ax0, bx0)
    ih = min(ay0 + a.height, by0 + b.height) - max(ay0, by0)
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0
