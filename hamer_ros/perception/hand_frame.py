"""The wrist frame published for each hand, computed from the 21 joints so it means the same with
and without the HaMeR mesh (joints-only mode has no MANO rotation)."""
from __future__ import annotations

import numpy as np


def palm_frame(joints: np.ndarray, is_right: np.ndarray | bool) -> np.ndarray:
    """[..., 21, 3] joints (camera frame, OpenPose order) → [..., 3, 3] rotation, hand → camera.

    Columns: x from the wrist toward the middle-finger knuckle; z the palm normal, pointing out of
    the palm (the way the hand grasps); y = z × x, which points toward the little finger on a right
    hand and toward the thumb on a left hand (a mirror cannot keep both the palm side and a
    right-handed frame).
    """
    j = np.asarray(joints, dtype=np.float64)
    wrist, index, middle, pinky = j[..., 0, :], j[..., 5, :], j[..., 9, :], j[..., 17, :]
    n = np.cross(index - wrist, pinky - wrist)
    right = np.asarray(is_right, dtype=bool)[..., None]
    n = np.where(right, n, -n)   # the mirror of a right hand flips the cross product
    x = middle - wrist
    z = n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
    x = x - (x * z).sum(-1, keepdims=True) * z
    x = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    y = np.cross(z, x)
    return np.stack((x, y, z), axis=-1)
