"""Camera geometry: the reference's crop->full-image camera, its generalisation to a real K,
and the least-squares translation refinement (hamer-reference.md §5.1, §5.2, §5.4)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from hamer_ros.perception.camera import (
    crop_keypoints_to_image, crop_ray_rotations, fov_camera, mirror_points, mirror_rotations, project_points,
    reference_camera, refine_translation, reprojection_error, weak_perspective_to_translation)
from hamer_ros.perception.crop import crop_hands
from hamer_ros_testing import hand_skeletons, random_rotations


# ----------------------------------------------------------------------------- synthetic hands
def random_cameras(rng, n, width=1280, height=720):
    fx = rng.uniform(500, 1500, n)
    k = np.zeros((n, 3, 3))
    k[:, 0, 0] = fx
    k[:, 1, 1] = fx * rng.uniform(0.9, 1.1, n)          # non-square pixels
    k[:, 0, 2] = width / 2 + rng.uniform(-80, 80, n)     # off-centre principal point
    k[:, 1, 2] = height / 2 + rng.uniform(-60, 60, n)
    k[:, 2, 2] = 1
    return k


def random_scene(rng, n, depth=(0.2, 2.0)):
    """Hands in front of random cameras, the wrist inside the image."""
    ks = random_cameras(rng, n)
    joints = hand_skeletons(rng, n)
    z = rng.uniform(*depth, n)
    u = rng.uniform(100, 1180, n)
    v = rng.uniform(80, 640, n)
    t = np.stack([(u - ks[:, 0, 2]) * z / ks[:, 0, 0], (v - ks[:, 1, 2]) * z / ks[:, 1, 1], z], -1)
    t[:, 2] += 0.12 - joints[..., 2].min(1).clip(max=0.12)   # keep every joint well in front
    return ks, joints, t


def project_each(joints, t, ks):
    return np.stack([project_points(joints[i] + t[i], ks[i]) for i in range(len(ks))])


# ----------------------------------------------------------------------------- weak perspective
def reference_cam_crop_to_full(cam, centers, sizes, width, height, is_right):
    """cam_crop_to_full of the demo (§5.2): F = 5000/256 max(W, H), principal point (W/2, H/2)."""
    s, tx, ty = cam[:, 0], cam[:, 1] * (2 * is_right - 1), cam[:, 2]
    f = 5000 / 256 * max(width, height)
    d = sizes * s + 1e-9
    return np.stack([2 * (centers[:, 0] - width / 2) / d + tx, 2 * (centers[:, 1] - height / 2) / d + ty, 2 * f / d], -1)


def test_worked_example():
    """The reference's numbers; they add (tx, ty, 0) unturned, the small-angle limit of turning it
    onto the crop's ray (here 0.003 rad off the axis, so they agree to 2e-6)."""
    k = reference_camera(1280, 720)
    assert k[0, 0] == 25000 and k[0, 2] == 640 and k[1, 2] == 360
    cam = np.array([[5.0, 0.02, -0.01]] * 2)
    t = weak_perspective_to_translation(cam, np.array([[700.0, 400.0]] * 2), np.array([300.0] * 2), k, [True, False])
    np.testing.assert_allclose(t[0], [0.10, 0.043333333, 33.333333], rtol=2e-6)
    np.testing.assert_allclose(t[1], [0.06, 0.043333333, 33.333333], rtol=2e-6)


@pytest.mark.parametrize("size", [(1280, 720), (1182, 1600), (640, 480)])
def test_reference_formula_for_reference_camera(size):
    rng = np.random.default_rng(1)
    n = 500
    cam = np.stack([rng.uniform(0.5, 20, n), rng.uniform(-0.2, 0.2, n), rng.uniform(-0.2, 0.2, n)], -1)
    centers = rng.uniform(-100, 1700, (n, 2))
    sizes = rng.uniform(30, 2000, n)
    right = rng.random(n) < 0.5
    k = reference_camera(*size)
    got = weak_perspective_to_translation(cam, centers, sizes, k, right)
    want = reference_cam_crop_to_full(cam, centers, sizes, *size, right)
    # the one difference: (tx, ty, 0) is turned onto the crop's ray
    offset = np.stack([np.where(right, cam[:, 1], -cam[:, 1]), cam[:, 2], np.zeros(n)], -1)
    turned = np.einsum("nij,nj->ni", crop_ray_rotations(centers, k) - np.eye(3), offset)
    np.testing.assert_allclose(got, want + turned, rtol=1e-12, atol=1e-15)
    # a crop on the principal point: exactly the reference
    centred = np.broadcast_to(k[:2, 2], (n, 2))
    np.testing.assert_allclose(weak_perspective_to_translation(cam, centred, sizes, k, right),
                               reference_cam_crop_to_full(cam, centred, sizes, *size, right), rtol=1e-12, atol=1e-15)


def test_left_hand_negates_tx_only():
    k = np.array([[800.0, 0, 650], [0, 820, 340], [0, 0, 1]])
    cam = np.array([[4.0, 0.03, 0.02]])
    r = weak_perspective_to_translation(cam, [[500.0, 300.0]], [200.0], k, [True])
    left = weak_perspective_to_translation(cam, [[500.0, 300.0]], [200.0], k, [False])
    np.testing.assert_allclose(r[0] - left[0], crop_ray_rotations([[500.0, 300.0]], k)[0] @ [0.06, 0, 0], atol=1e-15)


def test_real_camera_puts_crop_centre_on_its_ray():
    """With any K (fx != fy, off-centre principal point) the crop centre's ray passes through
    T - R (tx, ty, 0), R the crop's ray rotation, and the depth is 2 sqrt(fx fy) / (S s)."""
    rng = np.random.default_rng(2)
    ks = random_cameras(rng, 100)
    cam = np.stack([rng.uniform(1, 10, 100), rng.uniform(-0.1, 0.1, 100), rng.uniform(-0.1, 0.1, 100)], -1)
    centers = rng.uniform(0, 1280, (100, 2))
    sizes = rng.uniform(50, 900, 100)
    right = rng.random(100) < 0.5
    t = weak_perspective_to_translation(cam, centers, sizes, ks, right)
    tx = np.where(right, cam[:, 1], -cam[:, 1])
    anchor = t - np.einsum("nij,nj->ni", crop_ray_rotations(centers, ks), np.stack([tx, cam[:, 2], np.zeros(100)], -1))
    np.testing.assert_allclose(project_each(anchor[:, None], np.zeros((100, 3)), ks)[:, 0], centers, atol=1e-9)
    np.testing.assert_allclose(anchor[:, 2], 2 * np.sqrt(ks[:, 0, 0] * ks[:, 1, 1]) / (sizes * cam[:, 0]), rtol=1e-9)


def test_kind_in_kind_out():
    k = reference_camera(640, 480)
    cam_np = np.array([[5.0, 0.01, 0.02]], np.float32)
    out_np = weak_perspective_to_translation(cam_np, np.array([[300.0, 200.0]]), np.array([150.0]), k, np.array([True]))
    assert isinstance(out_np, np.ndarray) and out_np.shape == (1, 3) and out_np.dtype == np.float32
    cam_t = torch.from_numpy(cam_np)
    out_t = weak_perspective_to_translation(cam_t, torch.tensor([[300.0, 200.0]]), torch.tensor([150.0]),
                                            torch.from_numpy(k), torch.tensor([True]))
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
    np.testing.assert_allclose(out_t.numpy(), out_np, rtol=1e-6)


# ----------------------------------------------------------------------------- helpers
def test_reference_and_fov_cameras():
    np.testing.assert_allclose(reference_camera(1182, 1600), [[31250, 0, 591], [0, 31250, 800], [0, 0, 1]])
    k = fov_camera(1280, 720, 90.0)
    np.testing.assert_allclose(k, [[640, 0, 640], [0, 640, 360], [0, 0, 1]])


def test_project_points_matches_opencv():
    rng = np.random.default_rng(4)
    pts = rng.uniform(-0.5, 0.5, (2, 21, 3)) + [0, 0, 1.5]
    k = np.array([[900.0, 0, 630], [0, 880, 350], [0, 0, 1]])
    dist = np.array([-0.2, 0.05, 0.001, -0.002, 0.0])
    for d in (None, dist):
        ref, _ = cv2.projectPoints(pts.reshape(-1, 3), np.zeros(3), np.zeros(3), k, np.zeros(5) if d is None else d)
        np.testing.assert_allclose(project_points(pts, k, d), ref.reshape(2, 21, 2), atol=1e-9)
    k[0, 1] = 0.5   # a skewed K (which OpenCV's own model ignores) as the plain matrix product
    hom = pts @ k.T
    np.testing.assert_allclose(project_points(pts, k), hom[..., :2] / hom[..., 2:], atol=1e-9)
    assert isinstance(project_points(torch.from_numpy(pts), k), torch.Tensor)


def test_mirror_helpers():
    rng = np.random.default_rng(5)
    r = random_rotations(rng, 16)
    m = np.diag([-1.0, 1, 1])
    np.testing.assert_allclose(mirror_rotations(r), m @ r @ m, atol=1e-15)
    np.testing.assert_allclose(mirror_rotations(mirror_rotations(r)), r)
    assert np.allclose(np.linalg.det(mirror_rotations(r)), 1.0)
    # equals negating the y and z components of the axis-angle (the reference's fliplr_params)
    for ri in r[:4]:
        aa = cv2.Rodrigues(ri)[0].ravel() * [1, -1, -1]
        np.testing.assert_allclose(cv2.Rodrigues(aa)[0], mirror_rotations(ri), atol=1e-9)
    rt = torch.from_numpy(r).float()
    assert torch.allclose(mirror_rotations(rt), torch.from_numpy(m @ r @ m).float(), atol=1e-6)
    p = rng.normal(size=(2, 21, 3))
    np.testing.assert_array_equal(mirror_points(p), p * [-1, 1, 1])
    assert torch.equal(mirror_points(torch.from_numpy(p)), torch.from_numpy(p * [-1, 1, 1]))


@pytest.mark.parametrize("right", [True, False])
def test_crop_keypoints_round_trip_through_crop_affine(right):
    """A full-image pixel taken into the crop with crop_hands' own affine (normalised crop
    units k = crop_px / 256 - 0.5, reference §2.3) comes back with crop_keypoints_to_image."""
    rng = np.random.default_rng(6)
    crops = crop_hands(np.zeros((480, 640, 3), np.uint8), np.array([[200.0, 150, 300, 260]]), [right])
    pts = rng.uniform([150, 100], [350, 300], (21, 2))
    crop_px = pts @ crops.affines[0][:, :2].T + crops.affines[0][:, 2]
    back = crop_keypoints_to_image((crop_px / 256 - 0.5)[None], crops.centers, crops.sizes, [right])
    np.testing.assert_allclose(back[0], pts, atol=2e-3)
    # the reference's own statement of the left-hand rule: W - 1 - (c'_x + k_x S), c'_x = W - c_x - 1
    k = (crop_px / 256 - 0.5)[None]
    if not right:
        cxm = 640 - crops.centers[0, 0] - 1
        np.testing.assert_allclose(back[0, :, 0], 640 - 1 - (cxm + k[0, :, 0] * crops.sizes[0]), atol=1e-3)


# ----------------------------------------------------------------------------- refinement
def test_refine_recovers_translation_noise_free():
    rng = np.random.default_rng(7)
    n = 300
    ks, joints, t_true = random_scene(rng, n)
    kp = project_each(joints, t_true, ks)
    guess = t_true * rng.uniform(0.7, 1.3, (n, 3)) + rng.normal(0, 0.05, (n, 3))
    for i in range(n):   # one camera per hand here; the batched call is tested below
        for t0 in (None, guess[i:i + 1]):
            t = refine_translation(joints[i:i + 1], kp[i:i + 1], ks[i], t0=t0)
            assert np.linalg.norm(t[0] - t_true[i]) < 1e-3


def test_refine_batched_matches_single():
    rng = np.random.default_rng(8)
    ks, joints, t_true = random_scene(rng, 64)
    k = ks[0]
    kp = project_each(joints, t_true, np.broadcast_to(k, ks.shape)) + rng.normal(0, 1.5, (64, 21, 2))
    for robust, atol in ((False, 1e-6), (True, 5e-4)):
        # IRLS converges linearly and stops on the batch's largest step (0.1 mm), so a robust
        # batch may take a step or two more than some of its hands alone would
        batched = refine_translation(joints, kp, k, robust=robust)
        single = np.concatenate([refine_translation(joints[i:i + 1], kp[i:i + 1], k, robust=robust) for i in range(64)])
        np.testing.assert_allclose(batched, single, atol=atol)


def crlb_trace(joints, t, k, sigma):
    """Cramer-Rao bound on E|t_hat - t|^2 for isotropic Gaussian pixel noise sigma."""
    q = joints + t
    z = q[:, 2]
    jac = np.zeros((len(q), 2, 3))
    jac[:, 0, 0] = k[0, 0] / z
    jac[:, 0, 2] = -k[0, 0] * q[:, 0] / z**2
    jac[:, 1, 1] = k[1, 1] / z
    jac[:, 1, 2] = -k[1, 1] * q[:, 1] / z**2
    info = np.einsum("jai,jak->ik", jac, jac) / sigma**2
    return np.trace(np.linalg.inv(info))


@pytest.fixture(scope="module")
def noisy_half_metre():
    """Hands at 0.5 m, 2 px Gaussian keypoint noise."""
    rng = np.random.default_rng(9)
    n = 400
    ks, joints, t_true = random_scene(rng, n, depth=(0.5, 0.5))
    kp = project_each(joints, t_true, ks) + rng.normal(0, 2.0, (n, 21, 2))
    return rng, ks, joints, t_true, kp


def test_refine_with_pixel_noise_is_near_the_cramer_rao_bound(noisy_half_metre):
    """Expected size: a hand of ~8 cm at 0.5 m spans ~150 px at f = 1000, so 2 px noise over
    21 keypoints moves it laterally by ~0.2 mm and in depth by ~0.5 m * 2 px / 150 px / sqrt(21)
    * (a geometry factor of a few) ~ 1-3 mm. Checked against the Cramer-Rao bound per hand."""
    _, ks, joints, t_true, kp = noisy_half_metre
    err2, bound = [], []
    for i in range(len(ks)):
        t = refine_translation(joints[i:i + 1], kp[i:i + 1], ks[i])
        err2.append(np.sum((t[0] - t_true[i]) ** 2))
        bound.append(crlb_trace(joints[i], t_true[i], ks[i], 2.0))
    err = np.sqrt(err2)
    assert np.median(err) < 0.01                     # the brief's bar: < 1 cm at 0.5 m
    assert np.median(err) < 2.0 * np.median(np.sqrt(bound))
    assert np.mean(err2) < 1.5 * np.mean(bound)      # near-efficient (Cauchy: ~95 %)


def test_refine_is_robust_to_three_outliers(noisy_half_metre):
    rng, ks, joints, t_true, kp = noisy_half_metre
    kp = kp.copy()
    for i in range(len(ks)):
        bad = rng.choice(21, 3, replace=False)
        kp[i, bad] += rng.uniform(30, 150, (3, 1)) * _unit(rng, 3)   # 30-150 px off, any direction
    err_robust, err_plain, err_clean = [], [], []
    clean = noisy_half_metre[4]
    for i in range(len(ks)):
        guess = t_true[i:i + 1] * 1.1
        err_robust.append(np.linalg.norm(refine_translation(joints[i:i + 1], kp[i:i + 1], ks[i], t0=guess)[0] - t_true[i]))
        err_plain.append(np.linalg.norm(refine_translation(joints[i:i + 1], kp[i:i + 1], ks[i], robust=False)[0] - t_true[i]))
        err_clean.append(np.linalg.norm(refine_translation(joints[i:i + 1], clean[i:i + 1], ks[i])[0] - t_true[i]))
    med_r, med_p, med_c = np.median(err_robust), np.median(err_plain), np.median(err_clean)
    assert med_r < 0.25 * med_p
    assert med_r < 1.5 * med_c                       # nearly as good as without the outliers
    assert np.percentile(err_robust, 90) < 0.25 * np.percentile(err_plain, 90)


def _unit(rng, n):
    a = rng.uniform(0, 2 * np.pi, n)
    return np.stack([np.cos(a), np.sin(a)], -1)


def test_refine_undistorts_keypoints():
    rng = np.random.default_rng(10)
    n = 100
    ks, joints, t_true = random_scene(rng, n)
    dist = np.array([-0.28, 0.09, 0.0012, -0.0008, -0.012])   # a wide-ish lens, plumb_bob
    kp = np.stack([cv2.projectPoints(joints[i] + t_true[i], np.zeros(3), np.zeros(3), ks[i], dist)[0].reshape(21, 2)
                   for i in range(n)])
    with_d = np.array([np.linalg.norm(refine_translation(joints[i:i + 1], kp[i:i + 1], ks[i], dist=dist)[0] - t_true[i])
                       for i in range(n)])
    without = np.array([np.linalg.norm(refine_translation(joints[i:i + 1], kp[i:i + 1], ks[i])[0] - t_true[i])
                        for i in range(n)])
    assert with_d.max() < 1e-3
    assert np.median(without) > 10 * np.median(with_d)
    # rational_polynomial (8 coefficients) and an all-zero vector are accepted too
    d8 = np.array([0.1, -0.05, 0.001, 0.0005, 0.01, 0.2, -0.04, 0.02])
    kp8 = cv2.projectPoints(joints[0] + t_true[0], np.zeros(3), np.zeros(3), ks[0], d8)[0].reshape(1, 21, 2)
    assert np.linalg.norm(refine_translation(joints[:1], kp8, ks[0], dist=d8)[0] - t_true[0]) < 1e-3
    kp0 = project_each(joints[:1], t_true[:1], ks[:1])
    np.testing.assert_allclose(refine_translation(joints[:1], kp0, ks[0], dist=np.zeros(5)), t_true[:1], atol=1e-6)
    np.testing.assert_allclose(reprojection_error(joints[:1], t_true[:1], kp[:1], ks[0], dist), [0.0], atol=1e-6)


def test_refine_weights_missing_keypoints_and_fallbacks():
    rng = np.random.default_rng(11)
    ks, joints, t_true = random_scene(rng, 3)
    k = ks[0]
    kp = project_each(joints, t_true, np.broadcast_to(k, ks.shape))
    t0 = t_true + 0.05
    # a zero weight removes a wild keypoint even from plain least squares
    wild = kp.copy()
    wild[:, 4] += 500
    weights = np.ones((3, 21))
    weights[:, 4] = 0
    np.testing.assert_allclose(refine_translation(joints, wild, k, weights=weights, robust=False), t_true, atol=1e-6)
    # NaN keypoints are missing keypoints
    nan_kp = kp.copy()
    nan_kp[0, :10] = np.nan
    np.testing.assert_allclose(refine_translation(joints, nan_kp, k)[0], t_true[0], atol=1e-6)
    # fewer than three usable keypoints: the prior comes back (NaN without one)
    few = kp.copy()
    few[1, 2:] = np.nan
    out = refine_translation(joints, few, k, t0=t0)
    np.testing.assert_allclose(out[1], t0[1])
    np.testing.assert_allclose(out[[0, 2]], t_true[[0, 2]], atol=1e-6)
    assert np.isnan(refine_translation(joints, few, k)[1]).all()
    # keypoints of the point-reflected hand: exactly explained by joints + (-t), i.e. a hand
    # behind the camera (pi(q) = pi(-q)); the guard returns the prior
    behind = project_each(-joints, t_true, np.broadcast_to(k, ks.shape))
    for robust in (False, True):
        out = refine_translation(joints, behind, k, t0=t0, robust=robust)
        np.testing.assert_allclose(out, t0)
    assert refine_translation(np.zeros((0, 21, 3)), np.zeros((0, 21, 2)), k).shape == (0, 3)


def test_refine_kinds_and_reprojection_error():
    rng = np.random.default_rng(12)
    ks, joints, t_true = random_scene(rng, 2)
    k = ks[0]
    kp = project_each(joints, t_true, np.broadcast_to(k, ks.shape))
    t = refine_translation(torch.from_numpy(joints).float(), torch.from_numpy(kp).float(), torch.from_numpy(k),
                           t0=torch.from_numpy(t_true))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.shape == (2, 3)
    np.testing.assert_allclose(t.numpy(), t_true, atol=1e-4)
    rms = reprojection_error(joints, t_true, kp + [3.0, 4.0], k)
    np.testing.assert_allclose(rms, [5.0, 5.0], atol=1e-9)
    assert isinstance(reprojection_error(torch.from_numpy(joints), torch.from_numpy(t_true), kp, k), torch.Tensor)


def test_refine_refuses_a_runaway_depth():
    """Joints that cannot explain the keypoints (a near-flat 3D set against a spread 2D set)
    must not send the hand to the orthographic limit: the prior comes back."""
    from hamer_ros.perception.camera import refine_translation

    k = np.array([[700.0, 0, 320], [0, 700.0, 240], [0, 0, 1]])
    rng = np.random.default_rng(0)
    joints = rng.normal(0, 1e-4, (1, 21, 3))                  # a 0.1 mm "hand"
    keypoints = rng.uniform(100, 500, (1, 21, 2))              # spread over 400 px
    t0 = np.array([[0.0, 0.0, 0.5]])
    np.testing.assert_array_equal(refine_translation(joints, keypoints, k, t0=t0), t0)
    assert np.isnan(refine_translation(joints, keypoints, k)).all()
