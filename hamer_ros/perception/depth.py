"""Hands anchored on an aligned depth image (RGB-D cameras): depth sets each hand's distance, its
2D keypoints set the direction.

From one RGB image a hand's distance is only as good as its predicted size; an aligned depth image
measures it. Per hand, the surface points of its RGB placement (mesh mode: the mesh's front faces;
out-of-the-box mode: the joints moved onto the skin, and the palm) are projected into the depth
image. A sample is trusted when the depth there is valid and locally smooth (silhouettes, flying
pixels and a colour/depth misregistration show as a depth step in the neighbourhood), and when it
belongs to the hand's cluster of depth-minus-surface offsets: an object in the hand or the other
hand in front of it form clusters of their own, nearer to the camera, so the farthest
well-supported cluster is the hand (unless it is far behind the largest one: the background).
Its median offset moves the hand to its measured distance, and the translation across the ray is
fitted again to the keypoints at that distance. Too few trusted samples: the RGB placement stays.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .camera import _dist_or_none, _normalised_observations, project_points

FINGER_RADIUS = 0.009     # m, of a finger about its bones' axis, and half the palm's thickness
MIN_SAMPLES = 8           # trusted samples needed to anchor a hand
MIN_FRACTION = 0.15       # ... and this share of the samples that saw valid depth
OCCLUDER_GAP = 0.2        # m, the farthest in front of a hand an object held in it or the other hand is taken to be
MAX_SAMPLES = 120         # more add nothing to a median and cost O(n²) in the coverage test and the clustering
NEIGHBOURHOOD = 2         # px: a sample's depth must be smooth over (2·2+1)² pixels
STEP = 0.015              # m, a larger depth step in that neighbourhood is an edge, not the hand
CLUSTER = 0.012           # m, half-width of the offset cluster at 0 noise
NOISE_AT_1M = 0.004       # m, depth noise scale of a stereo camera (σ ≈ this · z²), widens the gates
HUBER_PX = 3.0            # px, keypoints farther off than this weigh less in the lateral fit
_MAD_TO_SIGMA = 1.4826    # a median absolute deviation as the σ of Gaussian noise
_FINGER_BONES = np.array([(k, k + 1) for k in range(1, 21) if k % 4 != 0])
_ALONG_BONE = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
PALM_TRIANGLES = np.array([(0, 5, 9), (0, 9, 13), (0, 13, 17)])   # the palm between the wrist and the knuckles


@dataclass
class DepthAnchor:
    """Per hand: the shift that anchors it on the depth image, and how well depth agreed."""

    shift: np.ndarray        # [N,3] m, add to every point of the hand (zeros where not used)
    used: np.ndarray         # [N] bool: the hand was placed on depth
    residual: np.ndarray     # [N] m, robust spread of depth - surface over the trusted samples (NaN: not used)
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
    """[N,87,3] points on the skin the camera sees, from joints [N,21,3]: along each finger bone
    (a cylinder of FINGER_RADIUS about it) and across the palm (a slab of that half-thickness),
    each moved toward the camera to where its ray enters the skin: r / sin(ray, bone) in front
    of a bone's axis, r / cos(ray, palm normal) in front of the palm's middle plane. A constant
    offset would put tilted fingers, whose skin lies farther in front, a few mm too far."""
    j = np.asarray(joints, np.float64)
    a, b = j[:, _FINGER_BONES[:, 0]], j[:, _FINGER_BONES[:, 1]]
    bone_pts = (a[:, :, None] + _ALONG_BONE[:, None] * (b - a)[:, :, None]).reshape(len(j), -1, 3)
    bone_axis = np.repeat(_unit(b - a), len(_ALONG_BONE), axis=1)
    bone_sin = np.sqrt(np.maximum(1.0 - np.sum(bone_axis * _unit(bone_pts), axis=-1) ** 2, 0.0))
    tri = j[:, PALM_TRIANGLES]                                       # [N,3,3,3]
    centre = tri.mean(2, keepdims=True)
    palm_pts = np.concatenate([centre, (centre + tri) / 2], axis=2)    # the middle and halfway to each corner
    normal = _unit(np.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0]))[:, :, None]
    palm_cos = np.abs(np.sum(normal * _unit(palm_pts), axis=-1)).reshape(len(j), -1)
    pts = np.concatenate([bone_pts, palm_pts.reshape(len(j), -1, 3)], axis=1)
    # a ray grazing a finger (or the palm) at under 30 deg meets its end or another part first
    offset = FINGER_RADIUS / np.maximum(np.concatenate([bone_sin, palm_cos], axis=1), 0.5)
    return pts - offset[..., None] * _unit(pts)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def front_faces(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """[M,3] centres of the triangles of one mesh [V,3] that face the camera. Works for either
    winding: the outward side is the one the normals point to on average, away from the mesh's
    centre."""
    a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    centres = (a + b + c) / 3.0
    normals = np.cross(b - a, c - a)
    if np.einsum("ij,ij->", normals, centres - vertices.mean(0)) < 0:
        normals = -normals
    return centres[np.einsum("ij,ij->i", normals, centres) < 0]


def _uncovered(points: np.ndarray, uv: np.ndarray, focal: float, tol: float) -> np.ndarray:
    """Mask of the points no other part of the hand covers: none lies more than `tol` nearer
    within a finger's radius of it in the image (a finger in front of the palm or of another
    finger is what the depth camera measures there, not the point behind it)."""
    radius_px = FINGER_RADIUS * focal / points[:, 2]
    du, dv = uv[:, 0, None] - uv[None, :, 0], uv[:, 1, None] - uv[None, :, 1]
    covers = (du * du + dv * dv < radius_px[None] ** 2) & (points[None, :, 2] < points[:, None, 2] - tol)
    return ~covers.any(1)


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


def _hand_cluster(offsets: np.ndarray, half_width: float, min_support: float) -> np.ndarray | None:
    """Mask of the offsets that measure the hand, or None. Offsets group into clusters (each: the
    sample with most neighbours within ±half_width, then everything near its neighbours'
    median): the hand, what covers part of it nearer to the camera (an object held in it, the
    other hand), and what shows past its edges farther away (the background). A camera sees
    nothing behind the hand where the hand is, so of the clusters with min_support samples the
    hand is the farthest one — up to OCCLUDER_GAP behind the largest, beyond is background —
    however much of it is covered."""
    free = np.ones(len(offsets), bool)
    clusters: list[tuple[float, np.ndarray]] = []
    while free.sum() >= min_support:
        rest = offsets[free]
        support = (np.abs(rest[:, None] - rest[None, :]) <= half_width).sum(1)
        seed = rest[np.argmax(support)]
        centre = float(np.median(rest[np.abs(rest - seed) <= half_width]))
        members = free & (np.abs(offsets - centre) <= half_width)
        if members.sum() < min_support:
            break
        clusters.append((centre, members))
        free &= ~members
    if not clusters:
        return None
    largest = clusters[0][0]      # found first: its seed had the most support
    return max((c for c in clusters if c[0] <= largest + OCCLUDER_GAP), key=lambda c: c[0])[1]


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
        pts = pts[::max(1, -(-len(pts) // MAX_SAMPLES))]     # evenly thinned to at most MAX_SAMPLES
        uv = np.asarray(project_points(pts, k, d))
        seen = _uncovered(pts, uv, focal, CLUSTER)
        pts, uv = pts[seen], uv[seen]
        measured, step = _sample(depth, uv)
        noise = NOISE_AT_1M * pts[:, 2] ** 2
        valid = np.isfinite(measured) & (step <= STEP + 3.0 * noise)
        if valid.sum() < MIN_SAMPLES:
            continue
        offsets = measured[valid] - pts[valid, 2]
        half_width = CLUSTER + 3.0 * float(np.median(noise[valid]))
        inliers = _hand_cluster(offsets, half_width, max(MIN_SAMPLES, MIN_FRACTION * valid.sum()))
        if inliers is None:
            continue
        dz = float(np.median(offsets[inliers]))
        shift = np.array([*_lateral_shift(np.asarray(joints[i], np.float64), obs[i], dz, focal), dz])
        if not np.isfinite(shift).all():
            continue
        out.shift[i] = shift
        out.used[i] = True
        out.residual[i] = _MAD_TO_SIGMA * float(np.median(np.abs(offsets[inliers] - dz)))
        out.samples[i] = int(inliers.sum())
    return out
