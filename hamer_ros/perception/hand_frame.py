"""The hand frame we publish: the wrist frame that teleoperation retargeters use, computed from the
21 joints, so it means the same with and without the HaMeR mesh (the landmarks mode has no MANO
rotation).

The convention is dex-retargeting's operator frame in MANO axes (the de-facto standard for
feeding robot-hand retargeting from 21 keypoints). From the wrist W, index knuckle I and middle
knuckle M: n is the normal of the plane W, I, M; a = (W - M) made orthogonal to n; b = a x n,
with the sign of n chosen so that b points from M toward I. Then
  right hand: x = -n (out of the palm), y = b (toward the index/thumb side), z = -a (toward the
              fingers, wrist -> middle knuckle);
  left hand:  x = n (out of the palm), y = -b (toward the little finger), z = -a.
Both are right-handed (a mirror cannot keep all three axes' anatomical meaning). `local_joints`
expresses the joints in this frame relative to the wrist: what a retargeter takes as input.
"""
from __future__ import annotations

import numpy as np


_EPS = np.zeros((3, 3, 3))
_EPS[0, 1, 2] = _EPS[1, 2, 0] = _EPS[2, 0, 1] = 1.0
_EPS[0, 2, 1] = _EPS[2, 1, 0] = _EPS[1, 0, 2] = -1.0


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a x b over the last axis (the Levi-Civita contraction; np.cross is slow on small arrays)."""
    return np.einsum("ijk,...j,...k->...i", _EPS, a, b)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.sqrt((v * v).sum(-1, keepdims=True)), 1e-12)


def hand_frame(joints: np.ndarray, is_right: np.ndarray | bool) -> np.ndarray:
    """[..., 21, 3] joints (camera frame, OpenPose order) -> [..., 3, 3] rotation, hand -> camera
    (its columns are the hand's x, y, z axes in the camera)."""
    j = np.asarray(joints, dtype=np.float64)
    wrist, index, middle = j[..., 0, :], j[..., 5, :], j[..., 9, :]
    n = _unit(_cross(index - wrist, middle - wrist))
    a = wrist - middle
    a = _unit(a - (a * n).sum(-1, keepdims=True) * n)
    b = _cross(a, n)
    flip = np.where(((b * (index - middle)).sum(-1) < 0)[..., None], -1.0, 1.0)
    n, b = n * flip, b * flip
    right = np.asarray(is_right, dtype=bool)[..., None]
    x = np.where(right, -n, n)
    y = np.where(right, b, -b)
    return np.stack((x, y, -a), axis=-1)


def local_joints(joints: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """[..., 21, 3] camera-frame joints -> the same joints relative to the wrist, in the hand
    frame [..., 3, 3] (hand -> camera): frame^T (joint - wrist)."""
    j = np.asarray(joints, dtype=np.float64)
    return (j - j[..., :1, :]) @ frame
