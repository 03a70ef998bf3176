"""Hands anchored on aligned depth (perception/depth.py) by one scale about the camera origin, on
synthetic RGB-D scenes whose truth is not the estimator's: hamer_ros_testing's own hand surface
(tapered finger tubes, joint balls, a 26 mm palm plate; none of perception/'s constants), alone
or through the stereo sensor model; the RGB hand off in size (the truth is it scaled about the
camera origin), off in distance (moved along its wrist's ray), or both with shape noise."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hamer_ros.perception.camera import fit_pose, project_points
from hamer_ros.perception.depth import (FINGER_RADIUS, PALM_HALF_THICKNESS, TrackScales, anchor_on_depth,
                                        depth_to_metres, front_faces, joint_surface_points)
from hamer_ros_testing import (SensorModel, add_occluder, hand_in_view, hand_surface_mesh, render_mesh_depth,
                               rotations_by, simulate_sensor, tube_mesh)

K = np.array([[910.0, 0.0, 640.0], [0.0, 910.0, 360.0], [0.0, 0.0, 1.0]])
SIZE = (1280, 720)
TIPS = [4, 8, 12, 16, 20]
QUIET = SensorModel(sigma_at_1m=0.0, quantum=0.0, p_edge_hole=0.0, p_flying=0.0, p_dark_hole=0.0,
                    misregistration=(0, 0))
REAL = SensorModel()      # noise ∝ z², 1 mm steps, edge holes, flying pixels, (2, 1) px misregistration


def render(hands: np.ndarray, background: float | None = 2.5) -> tuple[np.ndarray, np.ndarray]:
    """True depth and labels of hands [N,21,3] with the simulator's own surface."""
    meshes = [hand_surface_mesh(h) for h in hands]
    return render_mesh_depth([v for v, _ in meshes], [f for _, f in meshes], K, SIZE, background=background)


def scene(seed: int, distance: float, model: SensorModel = QUIET, background: float | None = 2.5):
    """(truth [21,3], sensor depth, true depth, labels, rng) of one hand `distance` away."""
    rng = np.random.default_rng(seed)
    truth = hand_in_view(rng, distance, K, SIZE)
    depth_true, labels = render(truth[None], background)
    return truth, simulate_sensor(depth_true, rng, model, labels=labels), depth_true, labels, rng


def anchor(placed: np.ndarray, depth: np.ndarray):
    """(anchored joints [21,3], DepthAnchor) of one hand placed from RGB, joints-only mode."""
    a = anchor_on_depth([joint_surface_points(placed[None])[0]], depth, K)
    return placed * a.scale[0], a


def smaller(truth: np.ndarray, size: float) -> np.ndarray:
    """The network's hand when the truth is it scaled by `size` about the camera origin."""
    return truth / size


def errors_mm(joints: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(wrist, mean fingertip) error in mm."""
    return (1000 * float(np.linalg.norm(joints[0] - truth[0])),
            1000 * float(np.linalg.norm(joints[TIPS] - truth[TIPS], axis=1).mean()))


# --- the geometry of the anchor ----------------------------------------------------------------

@pytest.mark.parametrize("dist", [None, np.array([0.12, -0.25, 0.001, -0.002, 0.08])])
def test_scaling_about_the_camera_keeps_every_projection(dist):
    rng = np.random.default_rng(0)
    for _ in range(20):
        hand = hand_in_view(rng, rng.uniform(0.3, 1.5), K, SIZE)
        for s in (0.75, 0.9, 1.13, 1.3):
            np.testing.assert_allclose(project_points(hand * s, K, dist), project_points(hand, K, dist),
                                       rtol=0, atol=1e-9)


def test_skin_points_are_a_finger_radius_from_the_bones_and_the_palm_plane():
    rng = np.random.default_rng(1)
    truth = hand_in_view(rng, 0.8, K, SIZE)
    skin = joint_surface_points(truth[None])[0]
    assert skin.shape == (171, 3)
    # each moved toward the camera along its own ray (so it projects where the point it came from does)
    assert np.all(np.linalg.norm(skin, axis=1) < np.linalg.norm(truth, axis=1).max())
    bones = [(k, k + 1) for k in range(1, 20) if k % 4 != 0]
    ray = skin / np.linalg.norm(skin, axis=1, keepdims=True)
    for i, (a, b) in enumerate(bones):       # 10 points per bone, in this order
        axis = (truth[b] - truth[a]) / np.linalg.norm(truth[b] - truth[a])
        rel = skin[10 * i:10 * i + 10] - truth[a]
        off_axis = np.linalg.norm(rel - (rel @ axis)[:, None] * axis, axis=1)
        # r / sin(ray, bone) along the ray is exactly r off the axis; a ray grazing the bone
        # (sin < 0.5) is moved 2r, so less
        sin = np.linalg.norm(np.cross(ray[10 * i:10 * i + 10], axis), axis=1)
        np.testing.assert_allclose(off_axis, FINGER_RADIUS * sin / np.maximum(sin, 0.5), rtol=0, atol=1e-9)
    for t, tri in enumerate([(0, 5, 9), (0, 9, 13), (0, 13, 17)]):
        p = truth[list(tri)]
        n = np.cross(p[1] - p[0], p[2] - p[0])
        n /= np.linalg.norm(n)
        pts = skin[150 + 7 * t:157 + 7 * t]
        cos = np.abs(ray[150 + 7 * t:157 + 7 * t] @ n)
        np.testing.assert_allclose(np.abs((pts - p[0]) @ n), PALM_HALF_THICKNESS * cos / np.maximum(cos, 0.5),
                                   rtol=0, atol=1e-9)


def test_skin_points_lie_near_an_independent_hands_skin():
    # the estimator's skin model against the simulator's hand (tapered fingers, a 26 mm palm): where
    # nothing covers the point, the rendered skin is a few mm away at most, and not biased
    offsets = []
    for seed in range(15):
        truth, _, depth_true, labels, _ = scene(seed, 0.6)
        skin = joint_surface_points(truth[None])[0]
        u, v = np.rint(project_points(skin, K)).astype(int).T
        offsets.append((depth_true[v, u] - skin[:, 2])[labels[v, u] == 0])
    offsets = np.concatenate(offsets)
    near = np.abs(offsets) < 0.006
    assert near.mean() > 0.6
    assert abs(np.median(offsets)) < 0.002


def test_front_faces_of_a_closed_mesh_either_winding():
    # a cube 1 m away, its face normals pointing out: the faces seen are the ones facing the camera
    corners = np.array([[x, y, z] for x in (-0.05, 0.05) for y in (-0.05, 0.05) for z in (0.95, 1.05)])
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))])
    seen = front_faces(corners, faces)
    assert len(seen) == 2 and np.allclose(seen[:, 2], 0.95)      # the near side, nothing else
    np.testing.assert_allclose(front_faces(corners, faces[:, ::-1]), seen)


# --- accuracy, per error model -----------------------------------------------------------------

def rgb_hand(rng: np.random.Generator, truth: np.ndarray, model: str) -> np.ndarray:
    """The RGB hand under an error model, posed by fit_pose on the truth's keypoints (2 px noise)
    as the pipeline places it: 'size' (the truth is the network's hand x 0.75-1.3 about the camera
    origin), 'distance' (the right size, then moved by a 5 % (sigma) distance error along its
    wrist's ray: the hand's position is off in distance), 'mix' (both, with
    8 deg of rotation and 4 mm per-joint shape noise about the wrist)."""
    size = rng.uniform(0.75, 1.3) if model in ("size", "mix") else 1.0
    turn = rotations_by(rng, 1, 8.0)[0] if model == "mix" else np.eye(3)
    noise = rng.normal(0, 0.004, truth.shape) * (np.arange(21) > 0)[:, None] if model == "mix" else 0.0
    net = (truth - truth[0]) @ turn.T / size + noise
    keypoints = project_points(truth, K) + rng.normal(0, 2.0, (21, 2))
    R, t = fit_pose(net[None], keypoints[None], K, t0=(truth[0] / size)[None])
    placed = net @ R[0].T + t[0]
    if model in ("distance", "mix"):
        placed = placed + rng.normal(0, 0.05) * placed[0]
    return placed


@pytest.mark.parametrize("model", ["size", "distance", "mix"])
def test_each_error_model_lands_within_the_targets(model):
    """Targets: median wrist <= 5 mm, p90 <= 10 mm, median fingertips <= 8 mm. Under 'mix' the
    RGB hand's own shape noise is an error no scale along the rays can remove: there the
    fingertips are held to what the best scale for the whole hand (least squares against the
    truth's joints) achieves, plus 2 mm."""
    wrist, tips, rgb, floor_tips = [], [], [], []
    for seed in range(30):
        truth, depth, _, _, rng = scene(seed, 0.3 + 1.2 * seed / 29, REAL)
        placed = rgb_hand(rng, truth, model)
        joints, a = anchor(placed, depth)
        assert a.used[0] and a.samples[0] >= 8
        w, t = errors_mm(joints, truth)
        wrist.append(w)
        tips.append(t)
        rgb.append(errors_mm(placed, truth)[0])
        floor_tips.append(errors_mm(placed * np.sum(placed * truth) / np.sum(placed * placed), truth)[1])
    assert np.median(wrist) <= 5.0 and np.percentile(wrist, 90) <= 10.0, wrist
    # 'mix': 4 mm of shape noise per joint leaves ~7 mm at the fingertips even at the best scale;
    # depth may add at most 2 mm to that (measured: 1.5 mm)
    assert np.median(tips) <= (8.0 if model != "mix" else np.median(floor_tips) + 2.0), (tips, floor_tips)
    assert np.median(rgb) > 15.0          # so it is the depth that put them there


def test_a_hand_too_small_by_a_quarter_lands_exactly_on_exact_depth():
    truth, depth, *_ = scene(3, 0.8, QUIET)
    joints, a = anchor(smaller(truth, 1.25), depth)
    assert a.scale[0] == pytest.approx(1.25, rel=0.01)
    assert errors_mm(joints, truth)[0] < 5.0
    np.testing.assert_allclose(project_points(joints, K), project_points(truth, K), atol=1e-9)   # rays kept


@pytest.mark.parametrize("seed", [1, 2, 4])
def test_residual_says_how_well_depth_agreed(seed):
    # the spread of depth about the anchored surface grows with the sensor's noise
    truth, clean, depth_true, _, _ = scene(seed, 1.2, QUIET)
    sigma = 0.0036 * 1.2 ** 2
    noisy = simulate_sensor(depth_true, np.random.default_rng(0), dataclasses.replace(QUIET, sigma_at_1m=0.0036))
    placed = smaller(truth, 1.1)
    r_clean, r_noisy = anchor(placed, clean)[1].residual[0], anchor(placed, noisy)[1].residual[0]
    assert r_clean < r_noisy and 0.5 * sigma < r_noisy < 1.5 * np.hypot(sigma, r_clean)


def test_a_mesh_hand_is_anchored_on_its_front_faces():
    # the network's mesh: constant-radius tubes about its joints, a surface unlike the scene's
    truth, depth, _, _, rng = scene(5, 0.7, REAL)
    placed = smaller(truth, 0.85)
    verts, faces = tube_mesh(placed)
    a = anchor_on_depth([front_faces(verts, faces)], depth, K)
    assert a.used[0] and a.scale[0] == pytest.approx(0.85, rel=0.012)


def test_16uc1_millimetres_and_32fc1_metres_anchor_alike():
    truth, depth, *_ = scene(6, 0.9, REAL)
    mm = np.where(np.isfinite(depth), np.rint(depth * 1000), 0).astype(np.uint16)
    metres = np.where(np.isfinite(depth), depth, 0.0).astype(np.float32)
    placed = smaller(truth, 1.1)
    np.testing.assert_allclose(anchor(placed, depth_to_metres(mm, 0.001))[0], anchor(placed, depth_to_metres(metres))[0],
                               atol=0.001)


def test_depth_to_metres_marks_what_is_no_measurement():
    raw = np.array([[0, 1500], [65535, 2]], np.uint16)
    np.testing.assert_allclose(depth_to_metres(raw, 0.001), [[np.nan, 1.5], [65.535, 0.002]], rtol=1e-6)
    f = np.array([[np.nan, np.inf], [-1.0, 0.75]], np.float32)[..., None]       # one channel, [H,W,1]
    np.testing.assert_array_equal(depth_to_metres(f), np.array([[np.nan, np.nan], [np.nan, 0.75]], np.float32))
    with pytest.raises(ValueError, match="one channel"):
        depth_to_metres(np.zeros((4, 4, 3), np.uint16))


# --- what is not the hand ----------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_an_object_held_in_front_of_the_hand_is_not_the_hand(seed):
    truth, _, depth_true, labels, rng = scene(100 + seed, 0.4 + 0.15 * seed)
    v, u = np.nonzero(labels == 0)
    left = np.percentile(u, 2)
    box = (left - 5, v.min() - 5, left + rng.uniform(0.30, 0.45) * (u.max() - left), v.max() + 5)
    depth_true, labels = add_occluder(depth_true, labels, box, truth[:, 2].min() - rng.uniform(0.04, 0.08))
    assert (labels == 0).sum() < 0.8 * len(u)                          # it hides a good part of the hand
    depth = simulate_sensor(depth_true, rng, REAL, labels=labels)
    joints, a = anchor(smaller(truth, 1.15), depth)
    assert a.used[0]
    assert errors_mm(joints, truth)[0] < 8.0                           # the hand's distance, not the object's


def test_the_other_hand_in_front_is_not_this_hand():
    rng = np.random.default_rng(7)
    far = hand_in_view(rng, 0.9, K, SIZE, margin=200)
    near = far - far.mean(0) + far.mean(0) * (0.75 / 0.9) + np.array([0.02, 0.0, 0.0])   # 15 cm in front, overlapping
    hands = np.stack([far, near])
    depth_true, labels = render(hands)
    depth = simulate_sensor(depth_true, rng, REAL, labels=labels)
    placed = np.stack([smaller(far, 1.2), smaller(near, 0.8)])
    a = anchor_on_depth(list(joint_surface_points(placed)), depth, K)
    assert a.used.all()
    np.testing.assert_allclose((placed * a.scale[:, None, None])[:, 0], hands[:, 0], atol=0.008)


def test_the_background_past_the_hands_edges_is_not_the_hand():
    # placed 15 mm off sideways (a poor 2D fit): some samples miss the fingers and see a wall 40 cm behind
    rng = np.random.default_rng(8)
    truth = hand_in_view(rng, 0.6, K, SIZE)
    depth_true, labels = render(truth[None], background=truth[:, 2].max() + 0.4)
    depth = simulate_sensor(depth_true, rng, REAL, labels=labels)
    placed = smaller(truth, 1.1) + np.array([0.015, 0.0, 0.0])
    joints, a = anchor(placed, depth)
    u, v = np.rint(project_points(joint_surface_points(placed[None])[0], K)).astype(int).T
    assert (labels[v, u] == -1).sum() >= 8                     # the wall is seen, as a cluster of its own
    # on the wall the hand would be ~1.7x farther; on itself it is within the 2D misfit's reach
    assert a.used[0] and abs(np.linalg.norm(joints[0]) - np.linalg.norm(truth[0])) < 0.02


def test_a_flat_depth_at_another_distance_still_moves_the_hand():
    # depth is the measurement: a hand RGB put at 0.6 m that depth sees at 0.7 m goes there
    truth, *_ = scene(9, 0.6)
    skin = joint_surface_points(truth[None])[0]
    joints, a = anchor(truth, np.full(SIZE[::-1], 0.7, np.float32))
    assert a.used[0]
    moved = skin[:, 2] * a.scale[0]
    assert moved.min() < 0.7 < moved.max()         # the hand's relief about 0.7 m
    assert a.residual[0] > 0.003       # but a flat surface is not the hand's shape, and the residual says so


@pytest.mark.parametrize("wall", [0.25, 2.5])
def test_depth_that_no_hand_fits_is_not_taken(wall):
    # a hand 0.6 m away from RGB cannot be 2.4x smaller or 4x larger: depth shows something else
    truth, *_ = scene(9, 0.6)
    joints, a = anchor(truth, np.full(SIZE[::-1], wall, np.float32))
    assert not a.used[0] and a.scale[0] == 1.0
    np.testing.assert_array_equal(joints, truth)


# --- too little depth: the RGB placement stays -------------------------------------------------

def test_no_depth_keeps_the_rgb_placement():
    truth, *_ = scene(10, 0.8)
    placed = smaller(truth, 1.1)
    for depth in (np.full(SIZE[::-1], np.nan, np.float32),                 # all holes
                  np.where(np.random.default_rng(0).random(SIZE[::-1]) < 0.995, np.nan, 0.8).astype(np.float32)):
        joints, a = anchor(placed, depth)
        assert not a.used[0] and a.samples[0] == 0 and np.isnan(a.residual[0]) and a.scale[0] == 1.0
        np.testing.assert_array_equal(joints, placed)


def test_a_hand_outside_the_depth_image_keeps_the_rgb_placement():
    truth, depth, *_ = scene(11, 0.8)
    off_image = truth + np.array([3.0, 0.0, 0.0])           # 3 m to the right: projects past the image
    joints, a = anchor(off_image, depth)
    assert not a.used[0]
    np.testing.assert_array_equal(joints, off_image)


def test_no_hands():
    a = anchor_on_depth([], np.ones((4, 4), np.float32), K)
    assert a.scale.shape == (0,) and a.used.shape == (0,)


# --- a track's size ----------------------------------------------------------------------------

def test_a_tracks_placement_switches_after_steady_depth_ramps_and_holds():
    scales = TrackScales()
    assert scales.place(1, None) == (1.0, "rgb") and len(scales) == 0
    # depth that flickers on and off never moves the track off its RGB placement
    assert [scales.place(1, m)[1] for m in (1.2, None, 1.2, 1.2)] == ["rgb"] * 4
    # the third consecutive frame on depth switches; the step is spread over three frames
    ramp = [scales.place(1, 1.2) for _ in range(4)]
    assert [p for _, p in ramp] == ["rgbd"] * 4
    np.testing.assert_allclose([s for s, _ in ramp], [1.2 ** (1 / 3), 1.2 ** (2 / 3), 1.2, 1.2])
    # no usable depth: the track's size, the median of its measured scales
    assert scales.place(1, None) == (pytest.approx(1.2), "rgbd-held")
    for s in [1.2] * 10 + [0.5, 3.0]:          # two bad frames do not move it
        scales.place(1, s)
    assert scales.get(1) == pytest.approx(1.2)
    for _ in range(40):                        # a slow estimate that still follows a lasting change
        scales.place(1, 1.0)
    assert scales.get(1) == pytest.approx(1.0)
    scales.place(2, 0.9)
    scales.keep_only({2})
    assert scales.get(1) is None and scales.get(2) == pytest.approx(0.9)
    assert scales.place(1, None) == (1.0, "rgb")     # a track that ended starts again from RGB
    scales.clear()
    assert len(scales) == 0
