"""Hands anchored on an aligned depth image (RGB-D cameras): the image fixes the rays, depth fixes
the distance along them.

One image cannot tell a small near hand from a large far one: both project alike, so the main
error of a hand placed from RGB is its size, and its distance is wrong by the same factor. Depth
measures that factor. Per hand, the surface points of its RGB placement (mesh mode: the mesh's
front faces; out-of-the-box mode: the joints moved onto the skin, and the palm) are projected
into the depth image. A sample is trusted when the depth there is valid and locally smooth
(silhouettes, flying pixels and a colour/depth misregistration show as a depth step in the
neighbourhood), and when it belongs to the hand's cluster of measured-to-predicted depth ratios:
an object in the hand or the other hand in front of it form clusters of their own, nearer to the
camera, so the farthest well-supported cluster is the hand (unless it is far behind the largest
one: the background). Its median ratio scales the whole hand about the camera origin, which
keeps every projection, and so the 2D fit, exactly where it was. Too few trusted samples, or a
scale no hand has (SCALE_RANGE): the RGB placement stays (the pipeline may then use the track's
scale).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from .camera import _dist_or_none, project_points

FINGER_RADIUS = 0.009     # m, of a finger about its bones' axis
PALM_HALF_THICKNESS = 0.012   # m, from the palm's middle plane to its skin (adult hands: 24-30 mm thick there)
MIN_SAMPLES = 8           # trusted samples needed to anchor a hand
MIN_FRACTION = 0.15       # ... and this share of the samples that saw valid depth
OCCLUDER_GAP = 0.2        # m, the farthest in front of a hand an object held in it or the other hand is taken to be
MAX_SAMPLES = 200         # more add nothing to a median and cost O(n²) in the coverage test and the clustering
NEIGHBOURHOOD = 2         # px: a sample's depth must be smooth over (2·2+1)² pixels
STEP = 0.015              # m, a larger depth step in that neighbourhood is an edge, not the hand
CLUSTER = 0.012           # m, half-width of the offset cluster at 0 noise
NOISE_AT_1M = 0.004       # m, depth noise scale of a stereo camera (σ ≈ this · z²), widens the gates
_MAD_TO_SIGMA = 1.4826    # a median absolute deviation as the σ of Gaussian noise
SCALE_WINDOW = 30         # a track's size is the median of its last this many measured scales
SWITCH_FRAMES = 3         # consecutive frames on depth before a track goes over from its RGB placement
RAMP_FRAMES = 3           # frames over which that step is spread
# A hand placed from RGB is off in size by less than this (people's hands differ by about ±25 %
# from the networks' average hand): depth that asks for more shows something else, e.g. a wall
# where the hand is not, or a depth image that is not aligned.
SCALE_RANGE = (0.6, 1.6)
_FINGER_BONES = np.array([(k, k + 1) for k in range(1, 21) if k % 4 != 0])
_ALONG_BONE = np.linspace(0.05, 0.95, 10)    # dense enough that half the image lost to holes leaves plenty
# palm points as barycentric weights of each palm triangle: its middle, and around it
_PALM_WEIGHTS = np.array([(1, 1, 1), (4, 1, 1), (1, 4, 1), (1, 1, 4), (2, 2, 1), (2, 1, 2), (1, 2, 2)], float)
_PALM_WEIGHTS /= _PALM_WEIGHTS.sum(1, keepdims=True)
PALM_TRIANGLES = np.array([(0, 5, 9), (0, 9, 13), (0, 13, 17)])   # the palm between the wrist and the knuckles


@dataclass
class DepthAnchor:
    """Per hand: the scale about the camera origin that anchors it on the depth image, and how
    well depth agreed."""

    scale: np.ndarray        # [N], multiply every point of the hand by it (1 where not used)
    used: np.ndarray         # [N] bool: the hand was placed on depth
    residual: np.ndarray     # [N] m, robust spread of depth - scaled surface over the trusted samples (NaN: not used)
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
    """[N,171,3] points on the skin the camera sees, from joints [N,21,3]: along each finger bone
    (a cylinder of FINGER_RADIUS about it) and across the palm (a slab PALM_HALF_THICKNESS either
    side of its middle plane), each moved toward the camera to where its ray enters the skin:
    r / sin(ray, bone) in front of a bone's axis, r / cos(ray, palm normal) in front of the palm's
    middle plane. A constant offset would put tilted fingers, whose skin lies farther in front, a
    few mm too far."""
    j = np.asarray(joints, np.float64)
    a, b = j[:, _FINGER_BONES[:, 0]], j[:, _FINGER_BONES[:, 1]]
    bone_pts = (a[:, :, None] + _ALONG_BONE[:, None] * (b - a)[:, :, None]).reshape(len(j), -1, 3)
    bone_axis = np.repeat(_unit(b - a), len(_ALONG_BONE), axis=1)
    bone_sin = np.sqrt(np.maximum(1.0 - np.sum(bone_axis * _unit(bone_pts), axis=-1) ** 2, 0.0))
    tri = j[:, PALM_TRIANGLES]                                       # [N,3,3,3]
    palm_pts = np.einsum("pc,nkcd->nkpd", _PALM_WEIGHTS, tri)
    normal = _unit(np.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0]))[:, :, None]
    palm_cos = np.abs(np.sum(normal * _unit(palm_pts), axis=-1)).reshape(len(j), -1)
    pts = np.concatenate([bone_pts, palm_pts.reshape(len(j), -1, 3)], axis=1)
    # a ray grazing a finger (or the palm) at under 30 deg meets its end or another part first
    radius = np.concatenate([np.full(bone_sin.shape, FINGER_RADIUS), np.full(palm_cos.shape, PALM_HALF_THICKNESS)], 1)
    offset = radius / np.maximum(np.concatenate([bone_sin, palm_cos], axis=1), 0.5)
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
    z = points[:, 2].astype(np.float32)
    radius_px = (FINGER_RADIUS * focal / z) ** 2
    u, v = uv[:, 0].astype(np.float32), uv[:, 1].astype(np.float32)   # float32 halves the O(n²) work
    du, dv = np.subtract.outer(u, u), np.subtract.outer(v, v)
    covers = (du * du + dv * dv < radius_px[None]) & (z[None] < (z - np.float32(tol))[:, None])
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


def _hand_cluster(values: np.ndarray, half_width: float, min_support: float, gap: float) -> np.ndarray | None:
    """Mask of the values (depth ratios or values) that measure the hand, or None. They group into clusters (each: the
    sample with most neighbours within ±half_width, then everything near its neighbours'
    median): the hand, what covers part of it nearer to the camera (an object held in it, the
    other hand), and what shows past its edges farther away (the background). A camera sees
    nothing behind the hand where the hand is, so of the clusters with min_support samples the
    hand is the farthest one — up to `gap` behind the largest, beyond is background —
    however much of it is covered."""
    free = np.ones(len(values), bool)
    clusters: list[tuple[float, np.ndarray]] = []
    while free.sum() >= min_support:
        rest = values[free]
        support = (np.abs(rest[:, None] - rest[None, :]) <= half_width).sum(1)
        seed = rest[np.argmax(support)]
        centre = float(np.median(rest[np.abs(rest - seed) <= half_width]))
        members = free & (np.abs(values - centre) <= half_width)
        if members.sum() < min_support:
            break
        clusters.append((centre, members))
        free &= ~members
    if not clusters:
        return None
    largest = clusters[0][0]      # found first: its seed had the most support
    return max((c for c in clusters if c[0] <= largest + gap), key=lambda c: c[0])[1]


def anchor_on_depth(surfaces: list[np.ndarray], depth: np.ndarray, K: np.ndarray,
                    dist: np.ndarray | None = None) -> DepthAnchor:
    """Anchor N placed hands on an aligned depth image (float metres, NaN = no measurement, the
    colour image's size and intrinsics).

    surfaces: per hand [P,3] points on the skin the camera sees, as placed from RGB (mesh: the
    front face centres, `front_faces`; joints only: `joint_surface_points`)."""
    k = np.asarray(K, np.float64)
    d = _dist_or_none(dist)
    focal = float(np.sqrt(k[0, 0] * k[1, 1]))
    n = len(surfaces)
    out = DepthAnchor(np.ones(n), np.zeros(n, bool), np.full(n, np.nan), np.zeros(n, np.int64))
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
        predicted = pts[valid, 2]
        ratios = measured[valid] / predicted
        # the gates in metres, as ratios at the hand's distance
        z = float(np.median(predicted))
        half_width = (CLUSTER + 3.0 * float(np.median(noise[valid]))) / z
        inliers = _hand_cluster(ratios, half_width, max(MIN_SAMPLES, MIN_FRACTION * valid.sum()), OCCLUDER_GAP / z)
        if inliers is None:
            continue
        scale = float(np.median(ratios[inliers]))
        if not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
            continue
        out.scale[i] = scale
        out.used[i] = True
        misfit = measured[valid][inliers] - scale * predicted[inliers]
        out.residual[i] = _MAD_TO_SIGMA * float(np.median(np.abs(misfit - np.median(misfit))))
        out.samples[i] = int(inliers.sum())
    return out


@dataclass
class _TrackDepth:
    scales: deque            # its last SCALE_WINDOW measured scales
    streak: int = 0          # consecutive frames depth placed it
    on_depth: bool = False   # switched to depth placement
    ramp: int = 0            # frames since the switch


class TrackScales:
    """Each stream track's placement along its rays from depth.

    Size: a person's hands do not change size, so a track's is the median of its last
    SCALE_WINDOW measured scales (the odd bad frame does not move it); a frame without usable depth
    places the track's hand with it ("rgbd-held") instead of jumping back to the RGB distance.
    Hysteresis: a track goes over to depth only after SWITCH_FRAMES consecutive frames that depth
    placed ("rgb" until then, so a flicker of depth never flips it), and the step from its RGB
    distance is spread over RAMP_FRAMES frames (a scale growing geometrically to the measured one)."""

    def __init__(self) -> None:
        self._tracks: dict[int, _TrackDepth] = {}

    def place(self, track_id: int, measured: float | None) -> tuple[float, str]:
        """(scale, placement) for this frame's hand of the track; `measured`: this frame's scale
        from depth, None when depth could not place it."""
        t = self._tracks.get(track_id)
        if t is None:
            if measured is None:
                return 1.0, "rgb"
            t = self._tracks[track_id] = _TrackDepth(deque(maxlen=SCALE_WINDOW))
        if measured is not None:
            t.scales.append(float(measured))
            t.streak += 1
        else:
            t.streak = 0
        if not t.on_depth:
            if t.streak < SWITCH_FRAMES:
                return 1.0, "rgb"
            t.on_depth = True
        t.ramp = min(t.ramp + 1, RAMP_FRAMES)
        target = float(measured) if measured is not None else float(np.median(t.scales))
        return target ** (t.ramp / RAMP_FRAMES), ("rgbd" if measured is not None else "rgbd-held")

    def get(self, track_id: int) -> float | None:
        """The track's size: the median of its measured scales (None before any)."""
        t = self._tracks.get(track_id)
        return float(np.median(t.scales)) if t is not None and t.scales else None

    def __len__(self) -> int:
        return len(self._tracks)

    def keep_only(self, track_ids: set[int]) -> None:
        for tid in [t for t in self._tracks if t not in track_ids]:
            del self._tracks[tid]

    def clear(self) -> None:
        self._tracks.clear()
