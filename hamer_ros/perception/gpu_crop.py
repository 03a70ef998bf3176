"""The reference crop (crop.py, reference §4.1) computed on the inference device.

The frame goes to the device once (pinned host memory, non-blocking copy); every hand's
256x256 crop is then one bilinear `grid_sample` of that frame -- no per-hand host work beyond a
2x3 matrix, no host round trip before the network.

Geometry: cv2.warpAffine with WARP_INVERSE_MAP samples the source at M·(x, y, 1) for every crop
pixel (x, y), with pixel centres at integer coordinates and BORDER_CONSTANT 0 outside. With
`align_corners=False`, grid_sample maps the normalised coordinate g to pixel (g + 1)·W/2 - 1/2,
i.e. pixel centres also sit at integers once g = (2p + 1)/W - 1, and `padding_mode="zeros"`
blends with zeros outside the frame like BORDER_CONSTANT 0. What remains is OpenCV's own
fixed-point arithmetic (source coordinates snapped to 1/32 px, 15-bit weights): below one grey
level on average, which is what test_gpu_crop checks against crop_hands.

Left hands: the reference mirrors the frame and crops around c_x' = W - 1 - c_x; sampling the
original frame at x = W - 1 - x' gives the same pixels, so the mirror is folded into the matrix.
Anti-aliasing (crop side S > 563.2 px): as crop.py, only the source window a crop reads (plus
the kernel radius) is blurred, with replicated borders (= scipy's 'nearest' at the frame edge).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .crop import CROP_SIZE, IMAGE_MEAN, IMAGE_STD, HandCrops, crop_boxes

_HALF = CROP_SIZE / 2.0


def upload_frame(image_rgb: np.ndarray | torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """HxWx3 frame -> the same tensor on `device`, without making the host wait.

    On CUDA the frame is staged in pinned memory (torch's caching host allocator: no fresh
    page-locking per frame, and a buffer is not reused before its copy has finished), so the
    copy is asynchronous. On the CPU the array is shared, not copied."""
    device = torch.device(device)
    frame = image_rgb if isinstance(image_rgb, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(image_rgb))
    if device.type != "cuda" or frame.device == device:
        return frame.to(device)
    if frame.device.type == "cpu":
        frame = frame.pin_memory()
    return frame.to(device, non_blocking=True)


def crop_hands_torch(image: torch.Tensor, boxes_xyxy: Any, is_right: Any, rescale: float = 2.0, *,
                     antialias: bool = True) -> HandCrops:
    """crop_hands on the device of `image`: same boxes -> centres, sizes, matrices and pixels.

    image: HxWx3 RGB tensor (uint8 from a camera, or float) on the inference device.
    boxes_xyxy, is_right: as crop_hands. Host (numpy) boxes keep the whole call free of device
    synchronisation; device boxes are read back once.
    Returns HandCrops with `images` [N,3,256,256] float32 normalised on image.device; centres and
    sizes are the same kind as the boxes given, `affines` and `is_right` numpy, as crop_hands.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be HxWx3, got shape {tuple(image.shape)}")
    boxes_are_torch = isinstance(boxes_xyxy, torch.Tensor)
    boxes = _np(boxes_xyxy, np.float64).reshape(-1, 4)
    if not np.all(np.isfinite(boxes)):
        raise ValueError("boxes_xyxy contains non-finite values")
    n = boxes.shape[0]
    right = np.broadcast_to(_np(is_right).astype(bool).reshape(-1), (n,)).copy()

    centers, sizes = crop_boxes(boxes, rescale)
    sizes = np.maximum(sizes, 1.0)   # as crop_hands: a degenerate box still gives a finite crop
    inverse = np.stack([_inverse_affine(c, s, r) for c, s, r in zip(centers, sizes, right)]) \
        if n else np.zeros((0, 2, 3))
    factors = sizes / CROP_SIZE / 2.0
    blur = (factors > 1.1) & antialias

    pixels = _warp(image, inverse, blur, factors)
    images = _normalise(pixels)
    forward = np.stack([_invert(a) for a in inverse]) if n else np.zeros((0, 2, 3))
    sizes32 = sizes.astype(np.float32)
    if boxes_are_torch:
        dev = boxes_xyxy.device
        return HandCrops(images, torch.from_numpy(centers).to(dev), torch.from_numpy(sizes32).to(dev), forward, right)
    return HandCrops(images, centers, sizes32, forward, right)


def _np(x: Any, dtype: Any = None) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _inverse_affine(center: np.ndarray, size: float, right: bool) -> np.ndarray:
    """Crop pixel -> source pixel, float64 (the reference's matrix: scale 256/S, c -> (128, 128))."""
    k = float(size) / CROP_SIZE
    cx, cy = float(center[0]), float(center[1])
    if right:
        return np.array([[k, 0.0, cx - _HALF * k], [0.0, k, cy - _HALF * k]])
    # mirrored frame, centre W-1-cx; then back to the original: x = W-1-x'
    return np.array([[-k, 0.0, cx + _HALF * k], [0.0, k, cy - _HALF * k]])


def _invert(a: np.ndarray) -> np.ndarray:
    m = np.vstack([a, [0.0, 0.0, 1.0]])
    return np.linalg.inv(m)[:2]


def _theta(inverse: np.ndarray, src_width: int, src_height: int) -> np.ndarray:
    """affine_grid's theta (crop normalised -> source normalised, align_corners=False) for a
    crop-pixel -> source-pixel matrix: normalise(src) ∘ A ∘ pixel(crop)."""
    to_px = np.array([[CROP_SIZE / 2.0, 0.0, (CROP_SIZE - 1) / 2.0],
                      [0.0, CROP_SIZE / 2.0, (CROP_SIZE - 1) / 2.0], [0.0, 0.0, 1.0]])
    to_norm = np.array([[2.0 / src_width, 0.0, 1.0 / src_width - 1.0],
                        [0.0, 2.0 / src_height, 1.0 / src_height - 1.0], [0.0, 0.0, 1.0]])
    a = np.vstack([inverse, [0.0, 0.0, 1.0]])
    return (to_norm @ a @ to_px)[:2]


def _to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A small host array on the device without a synchronising pageable copy."""
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if device.type != "cuda":
        return t
    return t.pin_memory().to(device, non_blocking=True)


def _sample(source: torch.Tensor, thetas: np.ndarray) -> torch.Tensor:
    """source [1,3,h,w] float -> crops [n,3,256,256] by bilinear sampling, zeros outside."""
    n = thetas.shape[0]
    theta = _to_device(thetas, source.device)
    grid = F.affine_grid(theta, [n, 3, CROP_SIZE, CROP_SIZE], align_corners=False)
    return F.grid_sample(source.expand(n, -1, -1, -1), grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)


def _warp(image: torch.Tensor, inverse: np.ndarray, blur: np.ndarray, factors: np.ndarray) -> torch.Tensor:
    """[n,3,256,256] float32 pixels (0..255 for uint8 frames), in the order of the boxes."""
    n = inverse.shape[0]
    if n == 0:
        return torch.empty(0, 3, CROP_SIZE, CROP_SIZE, device=image.device)
    frame = image.permute(2, 0, 1)[None]   # a view: only the windows read are converted to float
    sharp = np.flatnonzero(~blur)
    parts: dict[int, torch.Tensor] = {}
    if sharp.size:
        x0, y0, x1, y1 = _window(inverse[sharp], frame.shape[-1], frame.shape[-2], margin=2)
        if x0 >= x1 or y0 >= y1:   # every crop lies wholly outside the frame
            crops = frame.new_zeros(sharp.size, 3, CROP_SIZE, CROP_SIZE, dtype=torch.float32)
        else:
            crops = _sample(frame[:, :, y0:y1, x0:x1].float(),
                            np.stack([_theta(_shift(inverse[i], x0, y0), x1 - x0, y1 - y0) for i in sharp]))
        if image.dtype == torch.uint8:
            crops = crops.round_()   # warpAffine of a uint8 frame returns rounded uint8
        if sharp.size == n:
            return crops   # the usual frame: no hand close enough to need the blur
        parts.update(zip(sharp.tolist(), crops))
    for i in np.flatnonzero(blur).tolist():
        parts[i] = _blurred_crop(frame, inverse[i], (factors[i] - 1.0) / 2.0)[0]
    return torch.stack([parts[i] for i in range(n)])


def _window(inverses: np.ndarray, width: int, height: int, margin: int) -> tuple[int, int, int, int]:
    """Integer source rectangle [x0, x1) x [y0, y1), clipped to the frame, holding every pixel
    the given crops read plus `margin` px.

    Pixels outside the frame are zeros for grid_sample as for warpAffine, so clipping changes
    nothing; inside the frame a margin of 1 covers the bilinear neighbours."""
    corners = np.array([[0, 0, 1], [CROP_SIZE - 1, 0, 1], [0, CROP_SIZE - 1, 1], [CROP_SIZE - 1, CROP_SIZE - 1, 1]],
                       np.float64)
    pts = np.concatenate([corners @ a.T for a in inverses])
    x0 = max(int(np.floor(pts[:, 0].min())) - margin, 0)
    y0 = max(int(np.floor(pts[:, 1].min())) - margin, 0)
    x1 = min(int(np.ceil(pts[:, 0].max())) + margin + 1, width)
    y1 = min(int(np.ceil(pts[:, 1].max())) + margin + 1, height)
    return x0, y0, x1, y1


def _shift(inverse: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """The same map into a window whose top-left source pixel is (x0, y0)."""
    shifted = inverse.copy()
    shifted[0, 2] -= x0
    shifted[1, 2] -= y0
    return shifted


def _blurred_crop(frame: torch.Tensor, inverse: np.ndarray, sigma: float) -> torch.Tensor:
    """Gaussian blur (scipy's kernel: truncate 4, 'nearest' borders) of the window the crop
    reads, then the warp; the float result is not re-quantised, as in the reference."""
    radius = int(4.0 * sigma + 0.5)
    # +2 beyond the kernel radius: blurred values the warp reads equal the whole-frame blur's
    x0, y0, x1, y1 = _window(inverse[None], frame.shape[-1], frame.shape[-2], margin=radius + 2)
    if x0 >= x1 or y0 >= y1:   # wholly outside the frame
        return frame.new_zeros(1, 3, CROP_SIZE, CROP_SIZE, dtype=torch.float32)
    roi = _gaussian_blur(frame[:, :, y0:y1, x0:x1].float(), sigma, radius)
    return _sample(roi, _theta(_shift(inverse, x0, y0), x1 - x0, y1 - y0)[None])


def _gaussian_blur(x: torch.Tensor, sigma: float, radius: int) -> torch.Tensor:
    """Separable Gaussian on [1,3,h,w], replicated borders, computed in float32."""
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel = _to_device(taps / taps.sum(), x.device)
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)


def _normalise(pixels: torch.Tensor) -> torch.Tensor:
    """(v - 255·mean) / (255·std), the reference's normalisation (float32 constants), in place."""
    mean = _to_device(255.0 * np.asarray(IMAGE_MEAN), pixels.device).view(1, 3, 1, 1)
    std = _to_device(255.0 * np.asarray(IMAGE_STD), pixels.device).view(1, 3, 1, 1)
    return pixels.sub_(mean).div_(std)
