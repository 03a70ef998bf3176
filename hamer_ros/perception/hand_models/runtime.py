"""Small helpers shared by the palm detector and the landmark model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

MODEL_DIR = Path(__file__).resolve().parent


class HandModelError(RuntimeError):
    """A hand model file that is missing or unreadable; the message says how to get it back."""


RESTORE_HINT = ("the files ship with hamer_ros in hamer_ros/perception/hand_models/ (in a clone: "
                "`git checkout -- hamer_ros/perception/hand_models/`), or regenerate them with "
                "`python scripts/convert_mediapipe_models.py` (needs mediapipe 0.10.x and `pip install tflite`)")


def model_path(name: str, override: str | Path | None = None) -> Path:
    """The converted .npz beside this module, or the caller's own file."""
    path = Path(override) if override is not None else MODEL_DIR / f"{name}.npz"
    if not path.is_file():
        raise HandModelError(f"hand model {path} not found; {RESTORE_HINT}")
    return path


def check_rgb(image_rgb: np.ndarray) -> np.ndarray:
    img = np.asarray(image_rgb)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image HxWx3, got {img.dtype} {img.shape}")
    # OpenCV's warp wants C-contiguous rows (a flipped view is not).
    return img if img.flags.c_contiguous else np.ascontiguousarray(img)


def image_tensor(crops: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 crops (B, H, W, 3) -> float NCHW in [0, 1], as MediaPipe's float range 0..1 (its
    tensor is built from the uint8 warp, so the crop is rounded to uint8 first, as here)."""
    t = torch.from_numpy(np.ascontiguousarray(crops)).to(device)
    return t.permute(0, 3, 1, 2).float().mul_(1.0 / 255.0)
