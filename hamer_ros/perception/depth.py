"""Hands anchored on an aligned depth image (RGB-D cameras): depth sets each hand's distance, its
2D keypoints set the direction.

From one RGB image a hand's distance is only as good as its predicted size; an aligned depth image
measures it. Per hand, the surface points of its RGB placement (mesh mode: the mesh's front faces;
out-of-the-box mode: the joints moved onto the skin, and the palm) are projected into the depth
image. A sample is trusted when the depth there is valid and locally smooth (silhouettes, flying
pixels and a colour/depth misregistration show as a depth step in the neighbourhood), and when it
belongs to the largest cluster of depth-minus-surface offsets (an object in the hand, the other
hand or the background each form clusters of their own). The median offset of that cluster moves
the hand to its measured distance, and the translation across the ray is fitted again to the
keypoints at that distance. Too few trusted samples: the RGB placement stays.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .camera import _dist_or_none, _normalised_observations, project_points

SKIN_DEPTH = 0.008        # m, a joint centre lies about a finger's radius behind the skin a camera sees
MIN_SAMPLES = 8           # trusted samples needed to anchor a hand
MIN_FRACTION = 0.25       # ... and this share of the samples that saw valid depth
MAX_SAMPLES = 200         # more add nothing to a median and cost O(n²) in the clustering
NEIGHBOURHOOD = 2         # px: a sample's depth must be smooth over (2·2+1)² pixels
STEP = 0.015              # m, a larger depth step in that neighbourhood is an edge, not the hand
CLUSTER = 0.012           # m, half-width of the offset cluster at 0 noise
NOISE_AT_1M = 0.004       # m, depth noise scale of a stereo camera (σ ≈ this · z²), widens the gates
HUBER_PX = 3.0            # px, keypoints farther off than this weigh less in the lateral fit
_PALM_PAIRS = np.array([(0, 5), (0, 9), (0, 13), (0, 17), (5, 9), (9, 13), (13, 17), (1, 5)])
_FINGER_BONES = np.array([(k, k + 1) for k in range(1, 21) if k % 4 != 0])


@dataclass
class DepthAnchor:
    """Per hand: the shift that anchors it on the depth image, and how well depth agreed."""

    shift: np.ndarray        # [N,3] m, add to every point of the hand (zeros where not used)
    used: np.ndarray         # [N] bool: the hand was placed on depth
    residual: np.ndarray     # [N] m, RMS of depth - surface over the trusted samples (NaN: not used)
    samples: np.ndarray      # [N] int, trusted samples


def depth_to_metres(depth: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """A depth image as float32 metres (raw value × scale: 0.001 for millimetre 16-bit images);
    zeros, negatives, NaNs and infinities (no measurement) become NaN."""
    d = np.asarray(depth)
    if d.ndim == 3 and d.shape[2] == 1:
        d = d[..., 0]
    if d.ndim != 2:
        raise ValueError(f"a depth image has one channel, got shape {d.shape}")
    out = d.astype(np.float32) * np.float32(scale)
    out[~(np.isfinite(out) & (out > 0))] = np.nan
    return out


def joint_surface_points(joints: np.ndarray) -> np.ndarray:
    """[N,P,3] points on the skin the camera sees, from joints [N,21,3]: the joints, the middles
    of the finger bones and points across the palm, each moved toward the camera by SKIN_DEPTH."""
    j = np.asarray(joints, np.float64)
    pts = np.concatenate([j, j[:, _FINGER_BONES].mean(2), j[:, _PALM_PAIRS].mean(2)], axis=1)
    return pts - SKIN_DEPTH * pts / np.linalg.norm(pts, axis=-1, keepdims=True)


def front_faces(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """[M,3] centres of the triangles of one mesh [V,3] that face the camera. Works for either
    winding: the outward side is the one the normals point to on average, away from the mesh's
    centre."""
    tri = vertices[faces]
    centres = tri.mean(1)
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    if np.sum(normals * (centres - vertices.mean(0))) < 0:
        normals = -normals
    return centres[np.sum(normals * centres, axis=1) < 0]


def _front_most(points: np.ndarray, uv: np.ndarray, cell_px: float, tol: float) -> np.ndarray:
    """Mask of the points within `tol` of the nearest point projecting into the same cell: a
    front-facing finger seen through another is not what the depth camera measures there."""
    cells = np.floor(uv / cell_px).astype(np.int64)
    key = cells[:, 0] * 1_000_003 + cells[:, 1]
    _, inverse = np.unique(key, return_inverse=True)
    nearest = np.full(inverse.max() + 1, np.inf)
    np.minimum.at(nearest, inverse, points[:, 2])
    return points[:, 2] <= nearest[inverse] + tol


def _sample(depth: np.ndarray, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depth at the nearest pixels of uv [P,2] and the depth step (max - min of the valid values)
    around each; NaN outside the image."""
    h, w = depth.shape
    r = NEIGHBOURHOOD
    px = np.rint(uv).astype(np.int64)
    inside = (px[:, 0] >= r) & (px[:, 0] < w - r) & (px[:, 1] >= r) & (px[:, 1] < h - r)
    value = np.full(len(uv), np.nan)
    step = np.full(len(uv), np.inf)
    if inside.any():
        offsets = np.arange(-r, r + 1)
        u = px[inside, 0, None, None] + offsets[None, None, :]
        v = px[inside, 1, None, None] + offsets[None, :, None]
        patch = depth[v, u].reshape(int(inside.sum()), -1).astype(np.float64)
        value[inside] = patch[:, patch.shape[1] // 2]
        # fmax/fmin skip NaNs (holes) without nanmax's warning on an all-hole patch
        step[inside] = np.fmax.reduce(patch, axis=1) - np.fmin.reduce(patch, axis=1)
    return value, step


def _largest_cluster(offsets: np.ndarray, half_width: float) -> np.ndarray:
    """Mask of the largest group of offsets within ±half_width of one another's centre: the
    sample with most neighbours, then everything near its neighbours' median."""
    support = (np.abs(offsets[:, None] - offsets[None, :]) <= half_width).sum(1)
    seed = offsets[np.argmax(support)]
    centre = np.median(offsets[np.abs(offsets - seed) <= half_width])
    return np.abs(offsets - centre) <= half_width


def _lateral_shift(joints: np.ndarray, obs: np.ndarray, dz: float, focal: float) -> np.ndarray:
    """(s_x, s_y) that, with the hand moved by dz along z, put its joints [J,3] back on their
    normalised observations [J,2]: a weighted least-squares fit in pixels, Huber-reweighted."""
    qz = joints[:, 2] + dz
    per_joint = obs * qz[:, None] - joints[:, :2]       # each joint's own estimate of the shift
    ok = np.isfinite(per_joint).all(1) & (qz > 0)
    per_joint = np.where(ok[:, None], per_joint, 0.0)
    weight = ok / np.maximum(qz, 1e-6) ** 2             # a metre off at depth q is f/q pixels
    s = (weight[:, None] * per_joint).sum(0) / weight.sum()
    for _ in range(2):
        err_px = focal * np.linalg.norm(per_joint - s, axis=1) / np.maximum(qz, 1e-6)
        robust = weight * np.minimum(1.0, HUBER_PX / np.maximum(err_px, 1e-9))
        s = (robust[:, None] * per_joint).sum(0) / robust.sum()
    return s


def anchor_on_depth(surfaces: list[np.ndarray], joints: np.ndarray, keypoints_px: np.ndarray,
                    depth: np.ndarray, K: np.ndarray, dist: np.ndarray | None = None) -> DepthAnchor:
    """Anchor N placed hands on an aligned depth image (float metres, NaN = no measurement, the
    colour image's size and intrinsics).

    surfaces: per hand [P,3] points on the skin the camera sees, as placed from RGB (mesh: the
    front face centres, `front_faces`; joints only: `joint_surface_points`); joints [N,21,3] and
    keypoints_px [N,21,2]: the hand's placed joints and the 2D keypoints they were fitted to."""
    k = np.asarray(K, np.float64)
    d = _dist_or_none(dist)
    focal = float(np.sqrt(k[0, 0] * k[1, 1]))
    n = len(surfaces)
    out = DepthAnchor(np.zeros((n, 3)), np.zeros(n, bool), np.full(n, np.nan), np.zeros(n, np.int64))
    if n == 0:
        return out
    obs = _normalised_observations(np.asarray(keypoints_px, np.float64), k, d)
    for i, pts in enumerate(surfaces):
        pts = np.asarray(pts, np.float64)
        pts = pts[pts[:, 2] > 0.05]
        if len(pts) < MIN_SAMPLES:
            continue
        uv = np.asarray(project_points(pts, k, d))
        z = float(np.median(pts[:, 2]))
        cell = max(2.0, 0.6 * CLUSTER * focal / z)     # about a finger's width in px
        keep = np.flatnonzero(_front_most(pts, uv, cell, CLUSTER))
        keep = keep[::max(1, -(-len(keep) // MAX_SAMPLES))]     # evenly thinned to at most MAX_SAMPLES
        pts, uv = pts[keep], uv[keep]
        measured, step = _sample(depth, uv)
        noise = NOISE_AT_1M * pts[:, 2] ** 2
        valid = np.isfinite(measured) & (step <= STEP + 3.0 * noise)
        if valid.sum() < MIN_SAMPLES:
            continue
        offsets = measured[valid] - pts[valid, 2]
        half_width = CLUSTER + 3.0 * float(np.median(noise[valid]))
        inliers = _largest_cluster(offsets, half_width)
        if inliers.sum() < max(MIN_SAMPLES, MIN_FRACTION * valid.sum()):
            continue
        dz = float(np.median(offsets[inliers]))
        shift = np.array([*_lateral_shift(np.asarray(joints[i], np.float64), obs[i], dz, focal), dz])
        if not np.isfinite(shift).all():
            continue
        out.shift[i] = shift
        out.used[i] = True
        out.residual[i] = float(np.sqrt(np.mean((offsets[inliers] - dz) ** 2)))
        out.samples[i] = int(inliers.sum())
    return out
