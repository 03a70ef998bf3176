"""Hand box -> the 256x256 network input, exactly as the reference demo crops (reference §4.1).

The reference (`ViTDetDataset`) loads BGR, optionally blurs the whole frame, mirrors the whole
frame for a left hand, warps, flips to RGB and normalises -- per hand. Here the same pixels come
out of cheaper steps:

* RGB in: warping is per channel, so warping RGB equals warping BGR and flipping afterwards.
* Left hands: the mirror is folded into the warp matrix instead of copying the mirrored frame.
  OpenCV's bilinear warp snaps source coordinates to 1/32 px through a rounded 1/1024 fixed
  point; the folded offset is chosen so that this rounding lands on the exact mirror of the
  reference's, which makes the folded crop bit-identical to warping the mirrored image.
* Anti-alias blur (crop side S > 563.2 px): only the source rectangle the warp reads (plus the
  kernel radius) is blurred, in float32 with replicated borders (= skimage/scipy 'nearest'),
  instead of the whole frame in float64.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

CROP_SIZE = 256                      # IMAGE_SIZE of the shipped config
BBOX_SHAPE = (192, 256)              # width, height of the window the ViT sees
IMAGE_MEAN = (0.485, 0.456, 0.406)   # RGB
IMAGE_STD = (0.229, 0.224, 0.225)
_MEAN32 = (255.0 * np.asarray(IMAGE_MEAN)).astype(np.float32)
_STD32 = (255.0 * np.asarray(IMAGE_STD)).astype(np.float32)

# OpenCV INTER_LINEAR warp internals (imgwarp.cpp): coordinates in 1/1024 px (AB_BITS = 10),
# rounded, plus 16, floored to the interpolation table's 1/32 px (INTER_BITS = 5).
_AB_SCALE = 1024


@dataclass
class HandCrops:
    """A batch of network inputs, one per hand, in the order of the boxes given."""

    images: torch.Tensor   # [N,3,256,256] float32, normalised, RGB, left hands mirrored
    centers: Any           # [N,2] px, box centre c in the original (un-mirrored) image
    sizes: Any             # [N] px, square crop side S
    affines: np.ndarray    # [N,2,3] float64: original-image px -> crop px (mirror included)
    is_right: np.ndarray   # [N] bool

    def __len__(self) -> int:
        return int(self.images.shape[0])


def crop_boxes(boxes_xyxy: np.ndarray, rescale: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Box centres [N,2] (float32) and square crop sides [N] (float64) as the reference computes
    them (reference §4.1 steps 1-4: S = rescale * max(4/3 * w, h)). The dtype chain copies the
    reference's numpy arithmetic so that the warp matrices agree to the last bit."""
    b = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
    centers = (b[:, 2:4] + b[:, 0:2]) / np.float32(2.0)
    wh = (np.float32(rescale) * (b[:, 2:4] - b[:, 0:2]) / np.float32(200.0)) * np.float32(200.0)
    w32, h32 = wh[:, 0], wh[:, 1]
    w, h = w32.astype(np.float64), h32.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        widen = (h32 / w32).astype(np.float64) < BBOX_SHAPE[1] / BBOX_SHAPE[0]
    # reference: if h/w < 256/192 the height grows to w*256/192, else the height already wins
    sizes = np.where(widen, np.maximum(w * BBOX_SHAPE[1] / BBOX_SHAPE[0], h), np.maximum(h, w))
    return centers, sizes


def _reference_affine(cx: float, cy: float, size: float) -> np.ndarray:
    """The reference's forward warp matrix from three float32 point pairs (getAffineTransform)."""
    half = np.float32(size * 0.5)
    src = np.empty((3, 2), np.float32)
    src[0] = (cx, cy)
    src[1] = (cx, np.float64(cy) + np.float64(half))
    src[2] = (np.float64(cx) + np.float64(half), cy)
    c = CROP_SIZE * 0.5
    dst = np.array([[c, c], [c, CROP_SIZE], [CROP_SIZE, c]], np.float32)
    return cv2.getAffineTransform(src, dst)


def _invert_like_opencv(a: np.ndarray) -> np.ndarray:
    """warpAffine's own inversion of a forward matrix, same double operations in the same order,
    so that passing the result with WARP_INVERSE_MAP reproduces the plain call bit for bit."""
    m = [float(v) for v in a.ravel()]
    det = m[0] * m[4] - m[1] * m[3]
    det = 1.0 / det if det != 0 else 0.0
    a11, a22 = m[4] * det, m[0] * det
    m[0], m[1], m[3], m[4] = a11, m[1] * -det, m[3] * -det, a22
    b1 = -m[0] * m[2] - m[1] * m[5]
    b2 = -m[3] * m[2] - m[4] * m[5]
    m[2], m[5] = b1, b2
    return np.array(m, np.float64).reshape(2, 3)


def _mirrored_inverse(inv: np.ndarray, width: int) -> np.ndarray:
    """Inverse map that samples the original image where `inv` samples the mirrored image
    (x_orig = W - 1 - x_mirrored).

    OpenCV rounds the row offset o(y) = (m[0,1]*y + m[0,2]) to 1/1024 px (half to even), adds 16
    and the rounded per-column term, then floors to 1/32 px. Negating everything turns "floor"
    into "ceil", and half-to-even ties (frequent: the matrix comes from float32 points) may
    round the other way, so W-1-m[0,2] can be 1/32 px off. A row offset that rounds to exactly
    the integer 1024(W-1) - round(o(y)) - 1 makes the floored coordinate the exact mirror.
    round(o(y)) is constant over the rows except when the ~1e-17 m[0,1] nudges a tie, which
    switches it by one at a single row; a tiny slope reproduces that switch."""
    ys = np.arange(CROP_SIZE, dtype=np.float64)
    targets = _AB_SCALE * (width - 1) - np.rint((inv[0, 1] * ys + inv[0, 2]) * _AB_SCALE) - 1.0
    out = inv.copy()
    out[0, 0] = -inv[0, 0]
    steps = np.flatnonzero(np.diff(targets))
    if steps.size == 0:
        out[0, 1] = 0.0
        out[0, 2] = targets[0] / _AB_SCALE
    elif steps.size == 1 and abs(targets[-1] - targets[0]) == 1.0:
        # rows below y_star round to targets[0], the rest to targets[0] + delta: a line that
        # crosses the rounding boundary between the two rows, at most 1/1024 px from either
        y_star, delta = steps[0] + 1, targets[-1] - targets[0]
        out[0, 1] = delta / (512.0 * _AB_SCALE)
        out[0, 2] = (targets[0] + delta * (0.5 + (0.5 - y_star) / 512.0)) / _AB_SCALE
    else:  # a rotated matrix (never built by this module): the plain mirror, within a grey level
        out[0, 1] = -inv[0, 1]
        out[0, 2] = (width - 1) - inv[0, 2]
    return out


def _source_window(inv: np.ndarray) -> tuple[float, float, float, float]:
    """Bounding box (x0, y0, x1, y1) in source px of every point the warp samples."""
    corners = np.array([[0, 0, 1], [CROP_SIZE - 1, 0, 1], [0, CROP_SIZE - 1, 1],
                        [CROP_SIZE - 1, CROP_SIZE - 1, 1]], np.float64)
    pts = corners @ inv.T
    return pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()


def _blurred_patch(image: np.ndarray, inv: np.ndarray, sigma: float) -> np.ndarray:
    """Crop of the Gaussian-blurred image, blurring only the rectangle the warp reads.

    Equals (to float32 rounding) blurring the whole frame with scipy/skimage
    gaussian(sigma, truncate=4, mode='nearest') and warping: each blurred pixel the warp reads
    depends only on source pixels within `radius`, real image borders are replicated like
    'nearest', and the ROI's inner edges lie `radius` + 2 px beyond what is read."""
    height, width = image.shape[:2]
    radius = int(4.0 * sigma + 0.5)   # scipy's truncation of the kernel
    x0, y0, x1, y1 = _source_window(inv)
    margin = radius + 2               # +1 for the bilinear neighbour, +1 for the 1/32 px snap
    ix0 = max(int(np.floor(x0)) - margin, 0)
    iy0 = max(int(np.floor(y0)) - margin, 0)
    ix1 = min(int(np.ceil(x1)) + margin + 1, width)
    iy1 = min(int(np.ceil(y1)) + margin + 1, height)
    if ix0 >= ix1 or iy0 >= iy1:      # the crop lies wholly outside the frame
        return np.zeros((CROP_SIZE, CROP_SIZE, image.shape[2]), np.float32)
    roi = image[iy0:iy1, ix0:ix1].astype(np.float32)
    k = 2 * radius + 1
    roi = cv2.GaussianBlur(roi, (k, k), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE)
    shifted = inv.copy()
    shifted[0, 2] -= ix0
    shifted[1, 2] -= iy0
    # BORDER_CONSTANT matters only where the crop leaves the frame; inner ROI edges are never hit
    return cv2.warpAffine(roi, shifted, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _as_numpy(x: Any, dtype: Any = None) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def crop_hands(
    image_rgb: Any,
    boxes_xyxy: Any,
    is_right: Any,
    rescale: float = 2.0,
    *,
    antialias: bool = True,
    device: torch.device | str | None = None,
) -> HandCrops:
    """Crop every hand of one frame into one normalised batch, as the reference demo does.

    image_rgb: HxWx3 RGB (uint8 as from the camera; float images are warped in float32).
    boxes_xyxy: [N,4] px (numpy or torch; centres/sizes come back as the same kind).
    is_right: [N] bool (or one bool for all); left hands are mirrored like the reference.
    antialias: the reference's Gaussian blur for crops with S > 563.2 px (always on there).
    device: where `images` goes (non-blocking copy); default CPU.
    """
    boxes_are_torch = isinstance(boxes_xyxy, torch.Tensor)
    image = np.ascontiguousarray(_as_numpy(image_rgb))  # no copy for a normal camera frame
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image_rgb must be HxWx3, got shape {image.shape}")
    if image.dtype != np.uint8:
        image = image.astype(np.float32)
    boxes = _as_numpy(boxes_xyxy, np.float64).reshape(-1, 4)
    if not np.all(np.isfinite(boxes)):
        raise ValueError("boxes_xyxy contains non-finite values")
    n = boxes.shape[0]
    right = np.broadcast_to(_as_numpy(is_right).astype(bool).reshape(-1), (n,)).copy()
    height, width = image.shape[:2]

    centers, sizes = crop_boxes(boxes, rescale)
    sizes = np.maximum(sizes, 1.0)  # a degenerate box still gives a (useless) finite crop

    patches = np.empty((n, CROP_SIZE, CROP_SIZE, 3), np.float32)
    affines = np.empty((n, 2, 3), np.float64)
    for i in range(n):
        cx, cy = centers[i]
        if right[i]:
            forward = _reference_affine(cx, cy, sizes[i])
            inv = _invert_like_opencv(forward)
        else:
            # reference: c_x <- W - c_x - 1 on the mirrored frame (float64 arithmetic there)
            cxm = np.float64(width) - np.float64(cx) - 1.0
            inv = _mirrored_inverse(_invert_like_opencv(_reference_affine(cxm, cy, sizes[i])), width)
            forward = cv2.invertAffineTransform(inv)
        affines[i] = forward
        factor = sizes[i] / CROP_SIZE / 2.0
        if antialias and factor > 1.1:
            patches[i] = _blurred_patch(image, inv, (factor - 1.0) / 2.0)
        else:
            patches[i] = cv2.warpAffine(image, inv, (CROP_SIZE, CROP_SIZE),
                                        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                        borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    # (v - 255 mean) / (255 std) in float32, the reference's arithmetic (numpy 1.x scalar rules)
    chw = patches.transpose(0, 3, 1, 2)
    normalised = np.empty((n, 3, CROP_SIZE, CROP_SIZE), np.float32)
    np.subtract(chw, _MEAN32[:, None, None], out=normalised)
    np.divide(normalised, _STD32[:, None, None], out=normalised)
    images = torch.from_numpy(normalised)
    if device is not None:
        images = images.to(device, non_blocking=True)

    sizes32 = sizes.astype(np.float32)
    if boxes_are_torch:
        dev = boxes_xyxy.device
        return HandCrops(images, torch.from_numpy(centers).to(dev), torch.from_numpy(sizes32).to(dev), affines, right)
    return HandCrops(images, centers, sizes32, affines, right)
