"""Placing a landmark detector's hand (MediaPipe) in the real camera: the out-of-the-box mode.

MediaPipe gives, per hand, 2D keypoints, metric "world" landmarks and, per keypoint, a depth
relative to the wrist in image-pixel units. Both 3D outputs are relative to the ray through its
hand crop. Measured on real photos (test/test_rays.py, the issue 10 note): the metric landmarks
give the better palm (its orientation follows a turned camera to 5.4 deg median, against 8.1 deg
from the relative depths), but they bend the fingers in depth (an OK sign's touching thumb and
index tips 63 mm apart); the relative depths keep them (22 mm). So the palm comes from the
metric landmarks, ray-corrected and fitted to the keypoints (`fit_pose`), and the fingers from
the keypoints lifted by their relative depths, rigidly aligned onto that palm.
"""
from __future__ import annotations

import numpy as np

from .camera import _dist_or_none, _normalised_observations, crop_ray_rotations, fit_pose, refine_translation

PALM = np.array([0, 1, 5, 9, 13, 17])      # wrist, thumb CMC, the four knuckles
FINGERS = np.setdiff1d(np.arange(21), PALM)
# OpenPose hand bones (as perception/overlay.BONES), for the hand's metric size
_BONES = np.array([(0 if k % 4 == 0 else k, k + 1) for k in range(20)])


def lifted_keypoints(keypoints_px: np.ndarray, keypoint_depth: np.ndarray, centres_px: np.ndarray,
                     K: np.ndarray, dist: np.ndarray | None) -> np.ndarray:
    """Keypoints [N,21,2] lifted to 3D by their depths relative to the wrist [N,21] (image-pixel
    units, as MediaPipe's normalised z times the image width), up to scale: each point lies on
    its keypoint's ray, its depth along the crop's axis (the ray through `centres_px`) is
    1 + depth / f. Returns [N,21,3] in camera orientation, the wrist at crop-axis depth 1."""
    xy = _normalised_observations(np.asarray(keypoints_px, np.float64), K, _dist_or_none(dist))
    rays = np.concatenate([xy, np.ones(xy.shape[:-1] + (1,))], -1)
    Q = crop_ray_rotations(np.asarray(centres_px, np.float64), K, dist)
    in_crop = rays @ Q                                        # Q^T r: the rays in the crop camera
    in_crop /= in_crop[..., 2:3]
    rel = np.asarray(keypoint_depth, np.float64) / np.sqrt(K[0, 0] * K[1, 1])
    return (in_crop * (1.0 + rel - rel[:, :1])[..., None]) @ np.swapaxes(Q, 1, 2)


def _size(joints: np.ndarray) -> np.ndarray:
    return np.linalg.norm(joints[:, _BONES[:, 0]] - joints[:, _BONES[:, 1]], axis=-1).sum(-1)


def _align(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Rigid transform (Kabsch) of each source [N,P,3] onto target [N,P,3]; returns a function
    of points [N,Q,3]."""
    cs, ct = source.mean(1, keepdims=True), target.mean(1, keepdims=True)
    u, _, vt = np.linalg.svd(np.swapaxes(source - cs, 1, 2) @ (target - ct))
    d = np.sign(np.linalg.det(u @ vt))
    R = u @ (np.eye(3) * np.stack([np.ones_like(d), np.ones_like(d), d], -1)[:, None, :]) @ vt  # x -> x R
    return lambda pts: (pts - cs) @ R + ct


def place_landmarks(world: np.ndarray, keypoints_px: np.ndarray, keypoint_depth: np.ndarray | None,
                    centres_px: np.ndarray, K: np.ndarray, dist: np.ndarray | None = None,
                    fit_rotation: bool = True) -> np.ndarray:
    """Joints [N,21,3] in the camera (metres) from metric landmarks [N,21,3] (relative to the ray
    through `centres_px`, up to translation), keypoints [N,21,2] px and their relative depths
    [N,21] (None: metric landmarks alone)."""
    palm = world @ np.swapaxes(crop_ray_rotations(centres_px, K, dist), 1, 2)
    if fit_rotation:
        R, t = fit_pose(palm, keypoints_px, K, dist=dist)
        placed = palm @ np.swapaxes(R, 1, 2) + t[:, None]
    else:
        placed = palm + refine_translation(palm, keypoints_px, K, dist=dist)[:, None]
    if keypoint_depth is None:
        return placed
    lifted = lifted_keypoints(keypoints_px, keypoint_depth, centres_px, K, dist)
    lifted *= (_size(world) / _size(lifted))[:, None, None]     # the metric landmarks' hand size
    fingers = _align(lifted[:, PALM], placed[:, PALM])(lifted)
    out = placed.copy()
    out[:, FINGERS] = fingers[:, FINGERS]
    ok = np.isfinite(out).all((1, 2))
    return np.where(ok[:, None, None], out, placed)
