"""Rotations as rotation vectors: the exponential and logarithm maps of SO(3), batched. The pose
fit steps along them and the rotation filter interpolates along them (never element-wise)."""
from __future__ import annotations

import numpy as np


def skew(v: np.ndarray) -> np.ndarray:
    """[..., 3] -> [..., 3, 3] cross-product matrices: skew(a) @ b == a x b."""
    W = np.zeros(v.shape[:-1] + (3, 3))
    W[..., 0, 1], W[..., 0, 2], W[..., 1, 2] = -v[..., 2], v[..., 1], -v[..., 0]
    W[..., 1, 0], W[..., 2, 0], W[..., 2, 1] = v[..., 2], -v[..., 1], v[..., 0]
    return W


def so3_exp(w: np.ndarray) -> np.ndarray:
    """Rotation vectors [N,3] -> rotation matrices [N,3,3] (Rodrigues: I + a W + b W^2)."""
    theta2 = (w * w).sum(-1)
    theta = np.sqrt(theta2)
    small = theta < 1e-8
    t = np.where(small, 1.0, theta)
    a = np.where(small, 1.0, np.sin(t) / t)[:, None, None]
    b = np.where(small, 0.5, (1.0 - np.cos(t)) / (t * t))[:, None, None]
    W = skew(w)
    return np.eye(3) + a * W + b * (W @ W)


def so3_log(R: np.ndarray) -> np.ndarray:
    """Rotation matrices [N,3,3] -> rotation vectors [N,3] (angles below ~179 deg)."""
    cos = np.clip((np.trace(R, axis1=-2, axis2=-1) - 1.0) / 2.0, -1.0, 1.0)
    theta = np.arccos(cos)
    v = np.stack([R[:, 2, 1] - R[:, 1, 2], R[:, 0, 2] - R[:, 2, 0], R[:, 1, 0] - R[:, 0, 1]], -1)
    sin = np.sin(theta)
    scale = np.where(sin > 1e-8, theta / (2.0 * np.where(sin > 1e-8, sin, 1.0)), 0.5)
    return v * scale[:, None]
