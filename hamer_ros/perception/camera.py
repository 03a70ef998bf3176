"""Camera geometry after the network: from the crop's weak-perspective camera to metres in the
real camera, and a least-squares refinement of the translation against 2D keypoints.

Pure functions on arrays. Every public function takes numpy or torch and returns the kind (and,
for torch, the dtype and device) of its first array argument; the arithmetic runs in float64
numpy on the CPU because these are a few hundred numbers per frame.

Conventions: camera optical frame (x right, y down, z forward), metres; pixel coordinates as in
OpenCV (pixel centres at integers); K = [[fx, skew, cx], [0, fy, cy], [0, 0, 1]].
"""
from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
import torch

from .so3 import so3_exp, so3_log

CROP_FOCAL = 5000.0   # px, the crop camera of the network (reference §1.4, §2.3)
CROP_SIZE = 256       # px, side of the crop that focal refers to

_MIRROR_SIGNS = np.array([[1.0, -1.0, -1.0], [-1.0, 1.0, 1.0], [-1.0, 1.0, 1.0]])


# ----------------------------------------------------------------------------- array plumbing
def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy().astype(np.float64)
    return np.asarray(x, dtype=np.float64)


def _like(result: np.ndarray, template: Any) -> Any:
    """Return `result` as the same kind as `template` (torch: same dtype and device)."""
    if isinstance(template, torch.Tensor):
        dtype = template.dtype if template.is_floating_point() else torch.float32
        return torch.from_numpy(np.ascontiguousarray(result)).to(device=template.device, dtype=dtype)
    if isinstance(template, np.ndarray) and np.issubdtype(template.dtype, np.floating):
        return result.astype(template.dtype, copy=False)
    return result


def _bool_vector(is_right: Any, n: int) -> np.ndarray:
    if isinstance(is_right, torch.Tensor):
        is_right = is_right.detach().cpu().numpy()
    return np.broadcast_to(np.asarray(is_right).astype(bool).reshape(-1), (n,))


def _intrinsics(K: Any, n: int) -> tuple[np.ndarray, ...]:
    """fx, fy, cx, cy, skew as [n] arrays from a 3x3 or [n,3,3] K."""
    k = _np(K)
    if k.shape == (3, 3):
        k = np.broadcast_to(k, (n, 3, 3))
    if k.shape != (n, 3, 3):
        raise ValueError(f"K must be 3x3 or [N,3,3], got {k.shape}")
    return k[:, 0, 0], k[:, 1, 1], k[:, 0, 2], k[:, 1, 2], k[:, 0, 1]


# ----------------------------------------------------------------------------- small helpers
def reference_camera(width: float, height: float) -> np.ndarray:
    """The intrinsics the reference demo invents for every image (reference §5.2): focal
    5000/256 * max(W, H), principal point at (W/2, H/2)."""
    f = CROP_FOCAL / CROP_SIZE * max(width, height)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def fov_camera(width: float, height: float, hfov_deg: float) -> np.ndarray:
    """A square-pixel pinhole guess from the horizontal field of view, principal point at the
    image centre (W/2, H/2, the reference's convention), for cameras without CameraInfo."""
    if not 0.0 < hfov_deg < 180.0:
        raise ValueError(f"hfov_deg must be in (0, 180), got {hfov_deg}")
    f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def project_points(points_cam: Any, K: Any, dist: Any = None) -> Any:
    """Pinhole projection [..., 3] -> [..., 2] px (u = K (x/z, y/z, 1)); with `dist` given and
    non-zero, OpenCV's model (cv2.projectPoints, which ignores any skew of K). Points behind the
    camera give non-finite or mirrored values."""
    p = _np(points_cam)
    k = _np(K)
    d = _dist_or_none(dist)
    if d is None:
        with np.errstate(divide="ignore", invalid="ignore"):
            x = p[..., 0] / p[..., 2]
            y = p[..., 1] / p[..., 2]
        uv = np.stack([k[0, 0] * x + k[0, 1] * y + k[0, 2], k[1, 1] * y + k[1, 2]], axis=-1)
    else:
        flat = p.reshape(-1, 3)
        if flat.shape[0] == 0:
            uv = np.zeros(p.shape[:-1] + (2,))
        else:
            uv, _ = cv2.projectPoints(flat.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), k, d)
            uv = uv.reshape(p.shape[:-1] + (2,))
    return _like(uv, points_cam)


def mirror_points(points: Any) -> Any:
    """Mirror through the camera's y-z plane (x <- -x): right-hand model output <-> left hand."""
    if isinstance(points, torch.Tensor):
        out = points.clone()
    else:
        out = np.array(points, dtype=np.result_type(np.asarray(points).dtype, np.float32), copy=True)
    out[..., 0] = -out[..., 0]
    return out


def mirror_rotations(R: Any) -> Any:
    """R <- M R M with M = diag(-1, 1, 1) for any [..., 3, 3]: the rotation of a mirrored hand
    (reference §5.2 step 4; equals negating the y and z components of each axis-angle)."""
    if isinstance(R, torch.Tensor):
        return R * torch.as_tensor(_MIRROR_SIGNS, dtype=R.dtype, device=R.device)
    r = np.asarray(R)
    return r * _MIRROR_SIGNS.astype(np.result_type(r.dtype, np.float32))


def crop_keypoints_to_image(kp_norm: Any, centers: Any, sizes: Any, is_right: Any) -> Any:
    """Network 2D keypoints (normalised crop units, crop px = (k + 0.5) * 256, in the mirrored
    crop for left hands) -> full-image px: u = c_x +- k_x * S, v = c_y + k_y * S."""
    k = _np(kp_norm)
    n = k.shape[0]
    c = _np(centers).reshape(n, 2)
    s = _np(sizes).reshape(n)
    sign = np.where(_bool_vector(is_right, n), 1.0, -1.0)
    u = c[:, None, 0] + sign[:, None] * k[..., 0] * s[:, None]
    v = c[:, None, 1] + k[..., 1] * s[:, None]
    return _like(np.stack([u, v], axis=-1), kp_norm)


# ----------------------------------------------------------------------------- rays
def _normalised_centres(centers: Any, K: Any, dist: Any, n: int) -> np.ndarray:
    """Pixel centres [N,2] -> undistorted normalised image coordinates [N,2] (K^-1 (u, v, 1))."""
    c = _np(centers).reshape(n, 2)
    k = _np(K)
    if k.shape == (3, 3):
        return _normalised_observations(c[:, None, :], k, _dist_or_none(dist))[:, 0]
    return np.stack([_normalised_observations(c[i:i + 1, None, :], k[i], _dist_or_none(dist))[0, 0]
                     for i in range(n)]) if n else np.zeros((0, 2))


def crop_ray_rotations(centers: Any, K: Any, dist: Any = None) -> Any:
    """[N,3,3] rotations, crop camera -> real camera: each takes the optical axis onto the viewing
    ray through a crop centre (pixels [N,2], undistorted with K and `dist`).

    A crop-based network sees the hand through a camera that looks at the crop, so its 3D output
    (joints, vertices, root rotation, metric landmarks) is relative to that ray; `R @ x` puts it
    in the real camera. Of all rotations onto the ray this is the smallest (about z x ray): near
    its centre, the real image of an off-axis object is then the crop camera's image stretched
    along the radial direction only, with no in-plane turn, which is what the crop shows the
    network. Left hands: un-mirror in the crop camera first (mirror_points), then rotate."""
    c = _np(centers).reshape(-1, 2)
    n = c.shape[0]
    xy = _normalised_centres(c, K, dist, n)
    d = np.concatenate([xy, np.ones((n, 1))], axis=1)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    # Rodrigues for z -> d: R = I + [v]x + [v]x^2 / (1 + cos), v = z x d = (-d_y, d_x, 0)
    vx, vy, cz = -d[:, 1], d[:, 0], d[:, 2]
    h = 1.0 / (1.0 + cz)
    R = np.empty((n, 3, 3))
    R[:, 0, 0] = 1.0 - h * vy * vy
    R[:, 0, 1] = h * vx * vy
    R[:, 0, 2] = vy
    R[:, 1, 0] = h * vx * vy
    R[:, 1, 1] = 1.0 - h * vx * vx
    R[:, 1, 2] = -vx
    R[:, 2, 0] = -vy
    R[:, 2, 1] = vx
    R[:, 2, 2] = cz
    return _like(R, centers)


# ----------------------------------------------------------------------------- weak perspective
def weak_perspective_to_translation(
    cam: Any,
    centers: Any,
    sizes: Any,
    K: Any,
    is_right: Any,
    focal_crop: float = CROP_FOCAL,
    crop_size: int = CROP_SIZE,
    dist: Any = None,
) -> Any:
    """Hand translation [N,3] (m) in the real camera from the network's crop camera, for the
    ray-corrected hand (its joints rotated by crop_ray_rotations).

    cam [N,3] = (s, tx, ty) as predicted in the crop (mirrored crop for left hands); centers
    [N,2] px and sizes [N] px from `crop_hands`; K 3x3 (or [N,3,3]); is_right [N]; dist: OpenCV
    distortion coefficients of the image the crop was cut from.

    The crop camera (focal `focal_crop` px for a `crop_size` px crop) sees the hand at depth
    t_z = 2 focal_crop / (crop_size s); one crop px is S / crop_size image px, so the crop's
    focal is worth focal_crop * S / crop_size image px and the real camera, with focal f, puts
    the hand at T_z = t_z * f * crop_size / (focal_crop * S) = 2 f / (S s). The crop constants
    cancel: what the network really fixes is the image scale s S / 2 px per metre (reference
    §5.2: F / T_z = S s / 2); `focal_crop` and `crop_size` are accepted to name the crop camera
    but cannot change the result. The crop centre c lies on the ray K^-1 (c, 1) (undistorted),
    so the hand origin is T_z K^-1 (c, 1) + R (tx, ty, 0), R the crop's ray rotation: (tx, ty)
    are offsets in the crop camera, across its axis. tx is negated for left hands (un-mirroring).

    f for fx != fy: the crop is square in pixels, so the network's single scale s measures the
    hand's size as an isotropic mix of both axes; the geometric mean sqrt(fx fy) keeps the
    projected area right (a hand's image area grows with fx fy / Z^2) and is symmetric in the
    two axes. For square pixels it is exactly the reference's F.

    With K = reference_camera(W, H) and a crop centred on the principal point this is the
    reference's cam_crop_to_full, 1e-9 guard included; off-centre the reference adds (tx, ty, 0)
    unrotated, which is the small-angle limit of the above.
    """
    c3 = _np(cam).reshape(-1, 3)
    n = c3.shape[0]
    size = _np(sizes).reshape(n)
    fx, fy, _, _, _ = _intrinsics(K, n)
    s, tx, ty = c3[:, 0], c3[:, 1], c3[:, 2]
    tx = np.where(_bool_vector(is_right, n), tx, -tx)
    # focal_crop and crop_size cancel (docstring); the reference's own guard sits on S*s
    t_z = 2.0 * np.sqrt(fx * fy) / (size * s + 1e-9)
    k = _np(K)
    xy = _normalised_centres(centers, k, dist, n)
    R = _np(crop_ray_rotations(centers, k, dist))
    offset = np.einsum("nij,nj->ni", R, np.stack([tx, ty, np.zeros(n)], -1))
    out = np.stack([xy[:, 0] * t_z, xy[:, 1] * t_z, t_z], -1) + offset
    return _like(out, cam)


# ----------------------------------------------------------------------------- refinement
_UNDISTORT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-12)
_CAUCHY_C = 2.3849     # 95% efficiency under Gaussian noise, in units of the per-axis sigma
_RAYLEIGH_MEDIAN = 1.1774  # median of |2D residual| / per-axis sigma for Gaussian noise
_MIN_SCALE_PX = 0.5    # noise-free data must not make every weight collapse onto a few joints
_MIN_JOINTS = 3
_TRIM = 9.0            # x median squared error: about 3 sigma (median e2 is 1.39 sigma^2)
_STEP_TOL = 1e-4       # m; IRLS then sits ~0.03 mm from its limit, far below what 2D keypoints resolve
_MAX_DEPTH_RATIO = 3.0
_MAX_DEPTH_M = 20.0


def _dist_or_none(dist: Any) -> np.ndarray | None:
    if dist is None:
        return None
    d = _np(dist).reshape(-1)
    if d.size == 0 or not np.any(d):
        return None
    return d


def _normalised_observations(kp: np.ndarray, k: np.ndarray, dist: np.ndarray | None) -> np.ndarray:
    """Pixel keypoints [N,J,2] -> normalised undistorted image coordinates [N,J,2]."""
    if dist is None:
        obs = (kp - k[:2, 2]) / k[[0, 1], [0, 1]]
        if k[0, 1] != 0.0:
            obs[..., 0] -= (k[0, 1] / k[0, 0]) * obs[..., 1]
        return obs
    # (the caller has replaced missing keypoints by finite placeholders)
    # the default undistortPoints stops after 5 fixed-point iterations, which leaves most of a
    # pixel near the corners of a wide lens; iterate to convergence instead
    flat = kp.reshape(-1, 1, 2)
    return cv2.undistortPointsIter(flat, k, dist, None, None, _UNDISTORT_CRITERIA).reshape(kp.shape)


def _solve_weighted(omega: np.ndarray, m: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Weighted linear least squares in t for every hand at once, with per joint and axis
    (x, y) the row (1, 0, -m_x) or (0, 1, -m_y), right-hand side r and weight omega
    (all [N,J,2]).

    The normal matrix is [[a, 0, -c], [0, b, -d], [-c, -d, e]]: t_x and t_y only couple through
    t_z, so eliminating them leaves one division per hand -- no LAPACK call, no Python loop.
    A hand without usable keypoints gives inf/NaN, which the caller turns into its fallback."""
    om = omega * m
    wr = omega * r
    ab, cd, g01 = omega.sum(1), om.sum(1), wr.sum(1)          # [N,2] each: (x, y) parts
    ratio = cd / ab
    tz = ((ratio * g01).sum(-1) - (wr * m).sum((1, 2))) / ((om * m).sum((1, 2)) - (ratio * cd).sum(-1))
    out = np.empty((omega.shape[0], 3))
    out[:, :2] = (g01 + cd * tz[:, None]) / ab
    out[:, 2] = tz
    return out


def _lower_median(values: np.ndarray, valid: np.ndarray | None, n_valid: np.ndarray) -> np.ndarray:
    """Per-row median of the valid entries (lower median for even counts; +inf for none).
    A partition/sort of 21 numbers beats nanmedian's overhead by an order of magnitude."""
    if valid is None:
        k = (values.shape[1] - 1) // 2
        return np.partition(values, k, axis=1)[:, k]
    srt = np.sort(np.where(valid, values, np.inf), axis=1)
    return srt[np.arange(srt.shape[0]), np.maximum(n_valid - 1, 0) // 2]


class _Problem:
    """Fixed data of one refinement: joints p [N,J,3], normalised undistorted observations
    obs [N,J,2], keypoint weights w [N,J], pixel metric f2 = (fx^2, fy^2).

    Per joint the two pixel residuals are f (q_xy / q_z - obs) with q = p + t. (A skew of K is
    left out of the metric: it never occurs in practice and does not move the optimum of
    noise-free data.)"""

    def __init__(self, p: np.ndarray, obs: np.ndarray, w: np.ndarray, valid: np.ndarray | None,
                 n_valid: np.ndarray, f2: np.ndarray) -> None:
        self.p, self.obs, self.w, self.valid, self.n_valid, self.f2 = p, obs, w, valid, n_valid, f2
        self.algebraic_rhs = obs * p[..., 2:3] - p[..., :2]

    def algebraic(self, w: np.ndarray) -> np.ndarray:
        """Closed form, linear in t: (X + tx) - x (Z + tz) = 0, (Y + ty) - y (Z + tz) = 0,
        rows scaled by fx, fy so both axes count in pixels (DLT-style algebraic error)."""
        return _solve_weighted(w[..., None] * self.f2, self.obs, self.algebraic_rhs)

    def errors(self, t: np.ndarray) -> tuple[np.ndarray, ...]:
        """Squared pixel error per joint [N,J], plus the projection terms a step reuses."""
        q = self.p + t[:, None, :]
        z = q[..., 2:3]
        m = q[..., :2] / z
        d = m - self.obs
        return (d * d * self.f2).sum(-1), m, z, d

    def median(self, e2: np.ndarray) -> np.ndarray:
        return _lower_median(e2, self.valid, self.n_valid)

    def gauss_newton(self, t: np.ndarray, robust: bool) -> np.ndarray:
        """One (reweighted) Gauss-Newton step on the pixel error; returns the new t.
        The Jacobian of f x/z by t is f/z (1, 0, -x/z): rows (1, 0, -x) weighted by f^2/z^2
        with right-hand side (x/z - obs) z."""
        e2, m, z, d = self.errors(t)
        w = self.w
        if robust:   # Cauchy weights, noise scale from the median: median |r| = 1.1774 sigma
            scale2 = np.maximum(self.median(e2) * (1.0 / _RAYLEIGH_MEDIAN**2), _MIN_SCALE_PX**2)
            w = w / (1.0 + e2 * (1.0 / (_CAUCHY_C**2 * scale2))[:, None])
        return t - _solve_weighted((w[..., None] / (z * z)) * self.f2, m, d * z)


def refine_translation(
    joints_cam: Any,
    keypoints_px: Any,
    K: Any,
    dist: Any = None,
    t0: Any = None,
    weights: Any = None,
    *,
    robust: bool = True,
    iterations: int = 10,
) -> Any:
    """Translation [N,3] (m) that puts the hand's joints where its 2D keypoints are.

    joints_cam [N,J,3]: joints in camera orientation (left hands un-mirrored), up to
    translation; keypoints_px [N,J,2]: observed pixels (NaN = missing); K 3x3; dist: OpenCV
    distortion coefficients (CameraInfo plumb_bob / rational_polynomial; None or zeros = none);
    t0 [N,3]: a prior guess (e.g. weak_perspective_to_translation), also the fallback;
    weights [N,J] >= 0: per-keypoint confidence.

    Closed-form algebraic least squares, then Gauss-Newton on the pixel reprojection error
    (in the undistorted image), iteratively reweighted with Cauchy weights on a median-based
    noise scale so that a few wrong keypoints do not drag the hand (`robust=False`: plain least
    squares). Stops early once a step moves no hand by more than 0.1 mm. A hand with
    fewer than 3 usable keypoints, a non-finite result or one that puts a joint behind the
    camera gets t0 back (NaN when t0 is None), and so does a depth more than 3x away from t0's
    or beyond 20 m: the joints cannot explain the keypoints.
    """
    with np.errstate(all="ignore"):   # degenerate hands give inf/NaN, handled at the end
        t = _refine(joints_cam, keypoints_px, K, dist, t0, weights, robust, iterations)
    return _like(t, joints_cam)


def _refine(joints_cam: Any, keypoints_px: Any, K: Any, dist: Any, t0: Any, weights: Any,
            robust: bool, iterations: int) -> np.ndarray:
    p = _np(joints_cam)
    if p.ndim == 2:
        p = p[None]
    n, j = p.shape[:2]
    if n == 0:
        return np.zeros((0, 3))
    kp = _np(keypoints_px).reshape(n, j, 2)
    k = _np(K).reshape(3, 3)
    prior = None if t0 is None else _np(t0).reshape(n, 3)

    if weights is None and np.isfinite(kp).all() and np.isfinite(p).all():
        # the common case: every keypoint used, no masking anywhere below
        valid, mask, w = np.ones((n, j), bool), None, np.ones((n, j))
        n_valid = np.full(n, j)
        min_z = p[..., 2].min(1)
    else:
        valid = np.isfinite(kp).all(-1) & np.isfinite(p).all(-1)
        if weights is None:
            w = valid.astype(np.float64)
        else:
            w = np.broadcast_to(_np(weights), (n, j))
            valid &= np.isfinite(w) & (w > 0)
            w = np.where(valid, w, 0.0)
        n_valid = valid.sum(1)
        mask = valid
        # unused joints sit on the centroid of the used ones: zero weight, but finite
        # projections (0 * inf would poison the sums)
        centroid = np.where(valid[..., None], p, 0.0).sum(1) / np.maximum(n_valid, 1)[:, None]
        p = np.where(valid[..., None], p, centroid[:, None, :])
        kp = np.where(valid[..., None], kp, 0.0)
        min_z = np.where(valid, p[..., 2], np.inf).min(1)
    prob = _Problem(p, _normalised_observations(kp, k, _dist_or_none(dist)), w, mask, n_valid,
                    np.array([k[0, 0] ** 2, k[1, 1] ** 2]))

    t = prob.algebraic(w)
    if robust:
        # Start IRLS near the inliers: take the algebraic solution or the prior, whichever
        # explains the majority of keypoints better (outliers can spoil the former, never the
        # latter), and re-solve without the keypoints it cannot explain (hard 3-sigma trim).
        e2 = prob.errors(t)[0]
        med = prob.median(e2)
        if prior is not None:
            prior_ok = np.isfinite(prior).all(-1) & (prior[:, 2] + min_z > 0)
            e2_prior = prob.errors(np.where(prior_ok[:, None], prior, t))[0]
            med_prior = prob.median(e2_prior)
            better = prior_ok & (med_prior < med)
            if better.any():
                e2 = np.where(better[:, None], e2_prior, e2)
                med = np.where(better, med_prior, med)
                t = np.where(better[:, None], prior, t)
        keep = e2 <= _TRIM * np.maximum(med, _MIN_SCALE_PX**2)[:, None]
        if not keep.all():            # nothing to trim is the usual case: skip the re-solve
            trimmed = prob.algebraic(np.where(keep, w, 0.0))
            enough = ((keep & valid).sum(1) >= _MIN_JOINTS) & np.isfinite(trimmed).all(-1)
            t = np.where(enough[:, None], trimmed, t)

    for _ in range(iterations):
        t_new = prob.gauss_newton(t, robust)
        if (t_new[:, 2] + min_z <= 1e-3).any():
            # far from the solution a step can cross the camera plane: shorten it
            for _ in range(8):
                behind = t_new[:, 2] + min_z <= 1e-3
                if not behind.any():
                    break
                t_new = np.where(behind[:, None], 0.5 * (t + t_new), t_new)
        moved = np.abs(t_new - t).max()
        t = t_new
        if moved < _STEP_TOL:              # NaN compares False: a broken hand never stops it early
            break

    bad = (n_valid < _MIN_JOINTS) | ~np.isfinite(t).all(-1) | ~(t[:, 2] + min_z > 0)
    # When the 3D hand cannot explain the keypoints (wrong detection, a hand seen edge-on), the
    # least-squares optimum runs off towards the orthographic limit: refuse depths far from the
    # prior, or beyond any hand-tracking range without one.
    if prior is not None:
        ratio = t[:, 2] / prior[:, 2]
        bad |= ~((ratio > 1 / _MAX_DEPTH_RATIO) & (ratio < _MAX_DEPTH_RATIO))
    bad |= ~(t[:, 2] < _MAX_DEPTH_M)
    if bad.any():
        t = np.where(bad[:, None], prior if prior is not None else np.nan, t)
    return t


_ROTATION_SIGMA_DEG = 10.0   # prior spread of the network's rotation error (benchmarks/camera.py)
_MAX_ROTATION_DEG = 30.0     # a fit that turns the hand further is not trusted
_MIN_POSE_JOINTS = 6         # rotation needs more support than translation


def fit_pose(
    joints_cam: Any,
    keypoints_px: Any,
    K: Any,
    dist: Any = None,
    t0: Any = None,
    weights: Any = None,
    *,
    rotation_sigma_deg: float = _ROTATION_SIGMA_DEG,
    max_rotation_deg: float = _MAX_ROTATION_DEG,
    iterations: int = 6,
) -> tuple[Any, Any]:
    """Rigid pose (R [N,3,3], t [N,3]) that puts the hand's joints, `joints_cam @ R^T + t`, where
    its 2D keypoints are, under the real K and distortion.

    Arguments as refine_translation, whose result starts the fit and is its fallback (R = I).
    joints_cam must already be in camera orientation (ray-corrected, left hands un-mirrored): the
    fit only corrects the network's rotation, about the joints' centroid. It minimises the
    Cauchy-robust pixel error plus a prior that keeps the rotation near the network's: the
    rotation error is taken as Gaussian with `rotation_sigma_deg` per axis against the keypoint
    noise estimated from the residuals, so a tight fit may move the rotation and a poor one
    hardly can (a MAP estimate). A hand with fewer than 6 keypoints, a non-finite result, a joint
    behind the camera or a turn beyond `max_rotation_deg` keeps the translation-only pose.
    """
    with np.errstate(all="ignore"):
        R, t = _fit_pose(joints_cam, keypoints_px, K, dist, t0, weights, rotation_sigma_deg,
                         max_rotation_deg, iterations)
    return _like(R, joints_cam), _like(t, joints_cam)


def _fit_pose(joints_cam: Any, keypoints_px: Any, K: Any, dist: Any, t0: Any, weights: Any,
              rotation_sigma_deg: float, max_rotation_deg: float, iterations: int) -> tuple[np.ndarray, np.ndarray]:
    p = p_in = _np(joints_cam)
    if p.ndim == 2:
        p = p_in = p[None]
    n, j = p.shape[:2]
    # a robust start (outliers trimmed) is enough: the joint iterations refine the translation too
    t_only = _refine(p, keypoints_px, K, dist, t0, weights, True, 0)
    R = np.broadcast_to(np.eye(3), (n, 3, 3)).copy()
    if n == 0:
        return R, t_only
    kp = _np(keypoints_px).reshape(n, j, 2)
    k = _np(K).reshape(3, 3)
    valid = np.isfinite(kp).all(-1) & np.isfinite(p).all(-1)
    w = valid.astype(np.float64)
    if weights is not None:
        w = np.where(valid, np.broadcast_to(_np(weights), (n, j)), 0.0)
        w = np.where(np.isfinite(w) & (w > 0), w, 0.0)
        valid &= w > 0
    n_valid = valid.sum(1)
    mask = None if valid.all() else valid      # the common case takes the median's fast path
    p = np.where(valid[..., None], p, 0.0)
    kp = np.where(valid[..., None], kp, 0.0)
    obs = _normalised_observations(kp, k, _dist_or_none(dist))
    f = np.array([k[0, 0], k[1, 1]])
    centroid = (p * w[..., None]).sum(1) / np.maximum(w.sum(1), 1e-12)[:, None]
    arm = np.where(valid[..., None], p - centroid[:, None], 0.0)     # joints about the centroid
    u = centroid + t_only                                            # where the centroid sits
    inv_sigma2 = 1.0 / np.radians(rotation_sigma_deg) ** 2
    usable = (n_valid >= _MIN_POSE_JOINTS) & np.isfinite(t_only).all(-1)
    u = np.where(usable[:, None], u, np.array([0.0, 0.0, 1.0]))

    eye3 = np.eye(3)
    phi = np.zeros((n, 3))       # the accumulated turn (sum of the small steps: enough for a prior)
    for _ in range(iterations):
        a = arm @ R.transpose(0, 2, 1)                               # [N,J,3] turned arms
        q = a + u[:, None]
        z = q[..., 2]
        m = q[..., :2] / z[..., None]
        r = (m - obs) * f                                            # pixel residuals [N,J,2]
        e2 = (r * r).sum(-1)
        scale2 = np.maximum(_lower_median(e2, mask, n_valid) / _RAYLEIGH_MEDIAN**2, _MIN_SCALE_PX**2)
        wr = w / (1.0 + e2 / (_CAUCHY_C**2 * scale2)[:, None])
        # d(pixel)/du = f/z (1, 0, -m_x) and f/z (0, 1, -m_y); a turn omega moves q by omega x a,
        # so d(pixel)/d(omega) = a x (d(pixel)/du), written out below
        fz = f / z[..., None]                                        # [N,J,2]
        c = -m * fz
        ax, ay, az = a[..., 0], a[..., 1], a[..., 2]
        jac = np.zeros((n, j, 2, 6))
        jac[..., 0, 0], jac[..., 0, 1], jac[..., 0, 2] = ay * c[..., 0], az * fz[..., 0] - ax * c[..., 0], -ay * fz[..., 0]
        jac[..., 1, 0], jac[..., 1, 1], jac[..., 1, 2] = ay * c[..., 1] - az * fz[..., 1], -ax * c[..., 1], ax * fz[..., 1]
        jac[..., 0, 3], jac[..., 1, 4], jac[..., :, 5] = fz[..., 0], fz[..., 1], c
        jac = jac.reshape(n, 2 * j, 6)
        jw = (jac * np.repeat(wr, 2, axis=1)[..., None]).transpose(0, 2, 1)
        H = jw @ jac
        g = (jw @ r.reshape(n, 2 * j, 1))[..., 0]
        # prior: the accumulated turn phi ~ N(0, sigma^2 I), in the data's units (px^2)
        prior = (scale2 * inv_sigma2)[:, None]
        H[:, :3, :3] += prior[..., None] * eye3
        g[:, :3] += prior * phi
        if not (usable.all() and np.isfinite(H).all() and np.isfinite(g).all()):
            usable &= np.isfinite(H).all((1, 2)) & np.isfinite(g).all(-1)   # a broken hand falls back
            H = np.where(usable[:, None, None], H, np.eye(6))
            g = np.where(usable[:, None], g, 0.0)
        try:
            step = -np.linalg.solve(H, g[..., None])[..., 0]
        except np.linalg.LinAlgError:      # a rank-deficient hand (collinear joints): least norm
            step = -(np.linalg.pinv(H) @ g[..., None])[..., 0]
        R = so3_exp(step[:, :3]) @ R
        phi += step[:, :3]
        u = u + step[:, 3:]
        # Gauss-Newton converges quadratically: after a step of 0.2 deg and 0.3 mm what is left is
        # far below what 2D keypoints resolve (about 1 deg at 2 px noise)
        if np.abs(step[:, :3]).max() < 3e-3 and np.abs(step[:, 3:]).max() < 3e-4:
            break

    t = u - np.einsum("nij,nj->ni", R, centroid)
    angle = np.degrees(np.linalg.norm(so3_log(R), axis=-1))
    min_z = np.where(valid, (arm @ R.transpose(0, 2, 1) + u[:, None])[..., 2], np.inf).min(1)
    depth_ratio = u[:, 2] / (centroid[:, 2] + t_only[:, 2])
    ok = (usable & np.isfinite(R).all((1, 2)) & np.isfinite(t).all(-1) & (angle <= max_rotation_deg)
          & (min_z > 0) & (depth_ratio > 1 / _MAX_DEPTH_RATIO) & (depth_ratio < _MAX_DEPTH_RATIO))
    R = np.where(ok[:, None, None], R, np.eye(3))
    if not ok.all():   # the fallback: translation only, converged
        t = np.where(ok[:, None], t, _refine(p_in, keypoints_px, K, dist, t0, weights, True, 10))
    return R, t


def reprojection_error(
    joints_cam: Any,
    t: Any,
    keypoints_px: Any,
    K: Any,
    dist: Any = None,
    weights: Any = None,
) -> Any:
    """RMS pixel distance [N] between the projected joints_cam + t and keypoints_px, in the
    real (distorted, when `dist` is given) image, over keypoints that are finite and have a
    positive weight. NaN for a hand with none."""
    p = _np(joints_cam)
    if p.ndim == 2:
        p = p[None]
    n, j = p.shape[:2]
    kp = _np(keypoints_px).reshape(n, j, 2)
    q = p + _np(t).reshape(n, 1, 3)
    uv = _np(project_points(q, K, dist))
    valid = np.isfinite(kp).all(-1) & np.isfinite(uv).all(-1) & (q[..., 2] > 0)
    if weights is not None:
        valid &= np.broadcast_to(_np(weights), (n, j)) > 0
    e2 = np.where(valid, ((uv - np.where(valid[..., None], kp, 0.0)) ** 2).sum(-1), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rms = np.sqrt(e2.sum(1) / valid.sum(1))
    return _like(rms, joints_cam)
