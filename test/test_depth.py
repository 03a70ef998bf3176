"""Hands anchored on aligned depth (perception/depth.py), on synthetic RGB-D scenes with known
truth: thick-skeleton hands rendered exactly (hamer_ros.testing), alone or through the stereo
sensor model, an RGB placement that is off along the ray, and the 2D keypoints of the truth."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hamer_ros.perception.camera import project_points
from hamer_ros.perception.depth import anchor_on_depth, depth_to_metres, front_faces, joint_surface_points
from hamer_ros.testing import (SensorModel, add_occluder, hand_in_view, render_mesh_depth, render_skeleton_depth,
                               simulate_sensor, tube_mesh)

K = np.array([[910.0, 0.0, 640.0], [0.0, 910.0, 360.0], [0.0, 0.0, 1.0]])
SIZE = (1280, 720)
QUIET = SensorModel(sigma_at_1m=0.0, quantum=0.0, p_edge_hole=0.0, p_flying=0.0, p_dark_hole=0.0,
                    misregistration=(0, 0))
REAL = SensorModel()      # noise ∝ z², 1 mm steps, edge holes, flying pixels, (2, 1) px misregistration


def placed_off(truth: np.ndarray, error: float) -> np.ndarray:
    """The hand as RGB places it when its distance is off by `error` (a share): moved along the ray
    through its centroid, so it still covers about the same pixels."""
    return truth + error * truth.mean(0)


def anchor(placed: np.ndarray, keypoints: np.ndarray, depth: np.ndarray):
    """(anchored joints [21,3], DepthAnchor) of one hand placed from RGB, joints-only mode."""
    a = anchor_on_depth([joint_surface_points(placed[None])[0]], placed[None], keypoints[None], depth, K)
    return placed + a.shift[0], a


def pixels(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer (u, v) of the points that project inside the image."""
    u, v = np.rint(project_points(points, K)).astype(int).T
    inside = (u >= 0) & (u < SIZE[0]) & (v >= 0) & (v < SIZE[1])
    return u[inside], v[inside]


def scene(seed: int, distance: float,
          model: SensorModel = QUIET) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(truth [21,3], sensor depth, true depth, labels) of one hand `distance` away before a wall."""
    rng = np.random.default_rng(seed)
    truth = hand_in_view(rng, distance, K, SIZE)
    depth_true, labels = render_skeleton_depth(truth[None], K, SIZE)
    return truth, simulate_sensor(depth_true, rng, model, labels=labels), depth_true, labels


# --- the skin the camera sees ------------------------------------------------------------------

def test_skin_points_lie_on_the_rendered_skin():
    # the exact depth of the capsule hand where each skin point projects: equal for the points
    # nothing else covers (a finger's axis is FINGER_RADIUS / sin(ray, bone) behind its skin)
    offsets = []
    for seed in range(20):
        truth, _, depth_true, _ = scene(seed, 0.6)
        skin = joint_surface_points(truth[None])[0]
        u, v = np.rint(project_points(skin, K)).astype(int).T      # the whole hand is in view
        offsets.append(depth_true[v, u] - skin[:, 2])
    offsets = np.concatenate(offsets)
    on_skin = np.abs(offsets) < 0.003        # the rest: another finger in front, the palm's rim
    assert on_skin.mean() > 0.6
    assert abs(np.median(offsets)) < 0.0005
    assert abs(np.mean(offsets[on_skin])) < 0.0005


def test_skin_points_are_in_front_of_the_joints():
    truth, *_ = scene(0, 0.8)
    skin = joint_surface_points(truth[None])[0]
    assert skin.shape == (87, 3)
    # each moved toward the camera along its own ray, by a finger's radius to twice that
    along = np.linalg.norm(skin, axis=1)
    ray = skin / along[:, None]
    assert np.all(np.linalg.norm(np.cross(ray, skin), axis=1) < 1e-12)
    bone_mid = (truth[[1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 14, 15, 17, 18, 19]] +
                truth[[2, 3, 4, 6, 7, 8, 10, 11, 12, 14, 15, 16, 18, 19, 20]]) / 2
    gap = np.linalg.norm(bone_mid, axis=1) - along[2:75:5]
    assert np.all((gap > 0.009 - 1e-9) & (gap < 0.018 + 1e-9))


def test_front_faces_of_a_closed_mesh_either_winding():
    # a cube 1 m away, its face normals pointing out: the faces seen are the ones facing the camera
    corners = np.array([[x, y, z] for x in (-0.05, 0.05) for y in (-0.05, 0.05) for z in (0.95, 1.05)])
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))])
    seen = front_faces(corners, faces)
    assert len(seen) == 2 and np.allclose(seen[:, 2], 0.95)      # the near side, nothing else
    np.testing.assert_allclose(front_faces(corners, faces[:, ::-1]), seen)


# --- accuracy ----------------------------------------------------------------------------------

@pytest.mark.parametrize("distance, model, median_mm, worst_mm", [
    (0.4, QUIET, 1.5, 4.0), (1.0, QUIET, 1.5, 5.0), (0.4, REAL, 2.5, 5.0), (1.0, REAL, 2.5, 5.0)])
def test_a_hand_placed_off_along_its_ray_lands_on_its_true_distance(distance, model, median_mm, worst_mm):
    wrist_mm, rgb_mm = [], []
    for seed in range(12):
        truth, depth, *_ = scene(seed, distance, model)
        placed = placed_off(truth, (-0.1, 0.1)[seed % 2])
        joints, a = anchor(placed, project_points(truth, K), depth)
        assert a.used[0] and a.samples[0] >= 8
        wrist_mm.append(1000 * np.linalg.norm(joints[0] - truth[0]))
        rgb_mm.append(1000 * np.linalg.norm(placed[0] - truth[0]))
    assert np.median(wrist_mm) < median_mm and max(wrist_mm) < worst_mm, wrist_mm
    assert min(rgb_mm) > 30       # so it is the depth that put them there


def test_the_direction_still_comes_from_the_keypoints():
    truth, depth, *_ = scene(3, 0.8, QUIET)
    keypoints = project_points(truth, K)
    joints, a = anchor(placed_off(truth, 0.15), keypoints, depth)
    assert a.used[0]
    assert np.sqrt(np.mean(np.sum((project_points(joints, K) - keypoints) ** 2, -1))) < 0.5     # px


@pytest.mark.parametrize("seed", [1, 2, 4])
def test_residual_says_how_well_depth_agreed(seed):
    # the spread of depth about the anchored surface: small on exact depth, the sensor's σ on noisy
    truth, clean, depth_true, _ = scene(seed, 1.2, QUIET)
    sigma = 0.0036 * 1.2 ** 2
    noisy = simulate_sensor(depth_true, np.random.default_rng(0), dataclasses.replace(QUIET, sigma_at_1m=0.0036))
    placed, keypoints = placed_off(truth, 0.1), project_points(truth, K)
    r_clean, r_noisy = anchor(placed, keypoints, clean)[1].residual[0], anchor(placed, keypoints, noisy)[1].residual[0]
    assert r_clean < 0.6 * sigma
    assert r_clean < r_noisy and 0.5 * sigma < r_noisy < 1.5 * np.hypot(sigma, r_clean)


def test_a_mesh_hand_is_anchored_on_its_front_faces():
    rng = np.random.default_rng(5)
    truth = hand_in_view(rng, 0.7, K, SIZE)
    verts, faces = tube_mesh(truth)
    depth = simulate_sensor(render_mesh_depth(verts[None], faces, K, SIZE)[0], rng, REAL)
    shift = 0.08 * truth.mean(0)
    a = anchor_on_depth([front_faces(verts + shift, faces)], (truth + shift)[None], project_points(truth, K)[None],
                        depth, K)
    assert a.used[0]
    assert np.linalg.norm(truth[0] + shift + a.shift[0] - truth[0]) < 0.004


def test_16uc1_millimetres_and_32fc1_metres_anchor_alike():
    truth, depth, *_ = scene(6, 0.9, REAL)
    mm = np.where(np.isfinite(depth), np.rint(depth * 1000), 0).astype(np.uint16)
    metres = np.where(np.isfinite(depth), depth, 0.0).astype(np.float32)
    placed, keypoints = placed_off(truth, 0.1), project_points(truth, K)
    a_mm = anchor(placed, keypoints, depth_to_metres(mm, 0.001))[0]
    a_m = anchor(placed, keypoints, depth_to_metres(metres))[0]
    np.testing.assert_allclose(a_mm, a_m, atol=0.001)


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
    rng = np.random.default_rng(100 + seed)
    truth = hand_in_view(rng, rng.uniform(0.4, 1.2), K, SIZE)
    depth_true, labels = render_skeleton_depth(truth[None], K, SIZE)
    v, u = np.nonzero(labels == 0)
    box = (u.min() - 5, v.min() - 5, np.median(u), v.max() + 5)      # the hand's left half, 5 cm in front
    depth_true, labels = add_occluder(depth_true, labels, box, truth[:, 2].min() - 0.05)
    assert (labels == 0).sum() < 0.6 * len(u)                          # it hides a good part of the hand
    depth = simulate_sensor(depth_true, rng, REAL, labels=labels)
    joints, a = anchor(placed_off(truth, 0.1), project_points(truth, K), depth)
    assert a.used[0]
    assert abs(joints[0, 2] - truth[0, 2]) < 0.008            # the hand's distance, not the object's


def test_the_other_hand_in_front_is_not_this_hand():
    rng = np.random.default_rng(7)
    far = hand_in_view(rng, 0.9, K, SIZE, margin=200)
    near = far - far.mean(0) + far.mean(0) * (0.75 / 0.9) + np.array([0.02, 0.0, 0.0])   # 15 cm in front, overlapping
    hands = np.stack([far, near])
    depth = simulate_sensor(*render_skeleton_depth(hands, K, SIZE)[:1], rng, REAL,
                            labels=render_skeleton_depth(hands, K, SIZE)[1])
    placed = np.stack([placed_off(far, 0.1), placed_off(near, -0.1)])
    keypoints = project_points(hands, K)
    a = anchor_on_depth(list(joint_surface_points(placed)), placed, keypoints, depth, K)
    assert a.used.all()
    np.testing.assert_allclose((placed + a.shift[:, None])[:, 0, 2], hands[:, 0, 2], atol=0.008)


def test_the_background_past_the_hands_edges_is_not_the_hand():
    # placed 15 mm off sideways (a poor 2D fit): some samples miss the fingers and see a wall 40 cm behind
    rng = np.random.default_rng(8)
    truth = hand_in_view(rng, 0.6, K, SIZE)
    depth_true, labels = render_skeleton_depth(truth[None], K, SIZE, background=truth[:, 2].max() + 0.4)
    depth = simulate_sensor(depth_true, rng, REAL, labels=labels)
    placed = placed_off(truth, 0.1) + np.array([0.015, 0.0, 0.0])
    joints, a = anchor(placed, project_points(truth, K), depth)
    u, v = pixels(joint_surface_points(placed[None])[0])
    assert (labels[v, u] == -1).sum() >= 8                     # the wall is seen, as a cluster of its own
    assert a.used[0] and abs(joints[0, 2] - truth[0, 2]) < 0.01


def test_a_flat_depth_far_from_the_rgb_distance_still_moves_the_hand():
    # depth is the measurement: a hand RGB put at 0.6 m that depth sees at 1.2 m goes to 1.2 m (its
    # visible skin's median does; the median of all its skin points lies within the hand's relief)
    truth, *_ = scene(9, 0.6)
    skin = joint_surface_points(truth[None])[0]
    depth = np.full(SIZE[::-1], 1.2, np.float32)
    joints, a = anchor(truth, project_points(truth, K), depth)
    assert a.used[0]
    assert np.median(skin[:, 2] + a.shift[0, 2]) == pytest.approx(1.2, abs=0.015)
    assert a.residual[0] > 0.003       # but a flat surface is not the hand's shape, and the residual says so


# --- too little depth: the RGB placement stays -------------------------------------------------

def test_no_depth_keeps_the_rgb_placement():
    truth, *_ = scene(10, 0.8)
    placed = placed_off(truth, 0.1)
    for depth in (np.full(SIZE[::-1], np.nan, np.float32),                 # all holes
                  np.where(np.random.default_rng(0).random(SIZE[::-1]) < 0.995, np.nan, 0.8).astype(np.float32)):
        joints, a = anchor(placed, project_points(truth, K), depth)
        assert not a.used[0] and a.samples[0] == 0 and np.isnan(a.residual[0])
        np.testing.assert_array_equal(joints, placed)


def test_a_hand_outside_the_depth_image_keeps_the_rgb_placement():
    truth, depth, *_ = scene(11, 0.8)
    off_image = truth + np.array([3.0, 0.0, 0.0])           # 3 m to the right: projects past the image
    joints, a = anchor(off_image, project_points(off_image, K), depth)
    assert not a.used[0]
    np.testing.assert_array_equal(joints, off_image)


def test_no_hands():
    a = anchor_on_depth([], np.zeros((0, 21, 3)), np.zeros((0, 21, 2)), np.ones((4, 4), np.float32), K)
    assert a.shift.shape == (0, 3) and a.used.shape == (0,)
