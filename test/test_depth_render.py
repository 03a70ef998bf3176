"""Synthetic depth (hamer_ros_testing): exact renders of thick-skeleton and mesh hands, and the
stereo sensor model's noise, holes, flying pixels, misregistration and occluders."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from hamer_ros_testing import (SensorModel, add_occluder, hand_skeletons, render_mesh_depth, render_skeleton_depth,
                               simulate_sensor, tube_mesh)

K = np.array([[910.0, 0.0, 640.0], [0.0, 910.0, 360.0], [0.0, 0.0, 1.0]])
SIZE = (1280, 720)
R = 0.009
# Every effect off: what comes out is the true depth, so each effect can be tested alone.
QUIET = SensorModel(sigma_at_1m=0.0, quantum=0.0, p_edge_hole=0.0, p_flying=0.0, p_dark_hole=0.0,
                    misregistration=(0, 0))


def bone_hand(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A [1,21,3] 'hand' whose skeleton is the one capsule a-b: wrist at a, every other joint at b
    (the other bones have no length, the palm no area)."""
    joints = np.tile(np.asarray(b, dtype=float), (21, 1))
    joints[0] = a
    return joints[None]


def hands_at(rng: np.random.Generator, centres: list[tuple[float, float, float]]) -> np.ndarray:
    """Random hands [N,21,3] with their joints' centroid at each of `centres` (m)."""
    joints = hand_skeletons(rng, len(centres))
    return joints - joints.mean(1, keepdims=True) + np.asarray(centres)[:, None]


def ray_dirs(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u, dtype=float)], -1)


def depth_edges(depth: np.ndarray, step: float = 0.03) -> np.ndarray:
    """Pixels with a neighbour more than `step` away in depth (NaN: far)."""
    d = np.nan_to_num(depth, nan=1e6).astype(np.float32)
    kernel = np.ones((3, 3), np.uint8)
    return cv2.dilate(d, kernel) - cv2.erode(d, kernel) > step


# --- the thick-skeleton renderer ---------------------------------------------------------------

def test_bone_facing_the_camera_front_surface_at_centre_minus_radius():
    depth, labels = render_skeleton_depth(bone_hand([-0.03, 0.0, 0.5], [0.03, 0.0, 0.5]), K, SIZE)
    assert abs(depth[360, 640] - (0.5 - R)) < 1e-6          # exact (float32), not only within 0.5 mm
    assert labels[360, 640] == 0 and labels[0, 0] == -1 and depth[0, 0] == np.float32(2.5)
    # 7.8 cm long with its caps, 18 mm thick: about 142 x 33 px at 0.5 m
    rows, cols = np.nonzero(labels == 0)
    assert abs((cols.max() - cols.min()) - 0.078 * 910 / 0.5) < 4
    assert abs((rows.max() - rows.min()) - 2 * R * 910 / 0.5) < 3


def test_bone_pointing_at_the_camera_shows_its_end_cap():
    depth, _ = render_skeleton_depth(bone_hand([0.0, 0.0, 0.5], [0.0, 0.0, 0.56]), K, SIZE, background=None)
    assert abs(depth[360, 640] - (0.5 - R)) < 1e-6
    assert np.isnan(depth[0, 0])


def sphere_entries(d: np.ndarray, centres: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Per ray d [M,3] and sphere centres [M,S,3]: (entry depth, inf: a miss; squared distance
    of the centre from the ray)."""
    dd = (d * d).sum(-1)[:, None]
    dc = np.einsum("mj,msj->ms", d, centres)
    cc = (centres * centres).sum(-1)
    disc = dc * dc - dd * (cc - radius * radius)
    with np.errstate(invalid="ignore"):
        t = np.where(disc >= 0, (dc - np.sqrt(np.maximum(disc, 0))) / dd, np.inf)
    return t, cc - dc * dc / dd


def first_capsule_entry(u: np.ndarray, v: np.ndarray, a: np.ndarray, b: np.ndarray, radius: float,
                        n: int = 101) -> np.ndarray:
    """Depth where each pixel's ray first enters the capsule a-b (NaN: a miss), by brute force: a
    capsule is the union of spheres along its segment; the best of n of them (or the one nearest
    the ray), then n more around it, n² spheres in effect (< 0.01 µm from the capsule)."""
    out = np.full(len(u), np.nan)
    for s in range(0, len(u), 1000):
        d = ray_dirs(u[s:s + 1000], v[s:s + 1000])
        grid = np.broadcast_to(np.linspace(0, 1, n), (len(d), n))
        t, dist2 = sphere_entries(d, a + grid[..., None] * (b - a), radius)
        best = np.argmin(np.where(np.isfinite(t), t, 1e9 + dist2), axis=1) / (n - 1)
        fine = np.clip(best[:, None] + np.linspace(-1, 1, n) / (n - 1), 0, 1)
        t, _ = sphere_entries(d, a + fine[..., None] * (b - a), radius)
        t = t.min(1)
        out[s:s + 1000] = np.where(np.isfinite(t), t, np.nan)
    return out


@pytest.mark.parametrize("seed, z", [(0, 0.3), (1, 0.5), (2, 0.8), (3, 0.6), (4, 0.15)])
def test_capsule_depth_is_the_exact_ray_entry(seed, z):
    """Against brute force (first_capsule_entry), at every pixel drawn and around."""
    rng = np.random.default_rng(seed)
    a = np.array([rng.uniform(-0.3, 0.3) * z, rng.uniform(-0.2, 0.2) * z, z])
    b = a + rng.normal(size=3) / np.sqrt(3) * 0.05        # any direction, toward the camera too
    b[2] = max(b[2], 0.06)
    depth, _ = render_skeleton_depth(bone_hand(a, b), K, SIZE, background=None)
    # the pixels drawn and 8 px around them: a wrongly skipped 4x4 cell (the renderer's first
    # pass) would leave a gap inside or at the edge of what was drawn
    around = cv2.dilate(np.isfinite(depth).astype(np.uint8), np.ones((17, 17), np.uint8)).astype(bool)
    v, u = np.nonzero(around)
    truth = first_capsule_entry(u, v, a, b, R)
    got = depth[v, u].astype(float)
    both = np.isfinite(truth) & np.isfinite(got)
    assert both.sum() > 300
    err = np.abs(got[both] - truth[both])
    # float32 storage: ~0.06 µm per metre; rays meeting the surface at a slant magnify the rest
    assert np.median(err) < 1e-7 and err.max() < 2e-6
    # the same pixels are hit (a ray can graze within the spheres' ripple)
    assert (np.isfinite(truth) != np.isfinite(got)).sum() <= 1


def test_flat_hand_facing_the_camera_is_a_slab_radius_in_front():
    """A hand flattened onto the plane z = 0.5: its front surface is the plane z = 0.5 - radius,
    the palm's interior (away from every bone) included — the palm slab fills it."""
    joints = hand_skeletons(np.random.default_rng(3), 1)
    joints[..., 2] = 0.0
    joints = joints - joints.mean(1, keepdims=True) + [0.0, 0.0, 0.5]
    depth, labels = render_skeleton_depth(joints, K, SIZE)
    assert np.nanmin(depth) == pytest.approx(0.5 - R, abs=1e-6)
    palm = np.zeros(labels.shape, np.uint8)
    uv = joints[0, [0, 5, 9, 13, 17], :2] / 0.5 * 910 + [640, 360]
    cv2.fillPoly(palm, [np.round(uv * 16).astype(np.int32)], 1, shift=4)
    palm = cv2.erode(palm, np.ones((3, 3), np.uint8)).astype(bool)
    assert palm.sum() > 1000
    np.testing.assert_allclose(depth[palm], 0.5 - R, atol=1e-6)


def test_zbuffer_keeps_the_nearer_of_two_overlapping_hands():
    rng = np.random.default_rng(1)
    far, near = hands_at(rng, [(0.0, 0.0, 0.6), (0.02, 0.01, 0.55)])
    both, labels = render_skeleton_depth(np.stack([far, near]), K, SIZE, background=None)
    d_far, _ = render_skeleton_depth(far[None], K, SIZE, background=None)
    d_near, _ = render_skeleton_depth(near[None], K, SIZE, background=None)
    np.testing.assert_array_equal(both, np.fmin(d_far, d_near))
    overlap = np.isfinite(d_far) & np.isfinite(d_near)
    assert overlap.sum() > 500
    assert (labels[overlap & (d_near < d_far)] == 1).all() and (labels[overlap & (d_far < d_near)] == 0).all()
    assert (labels[np.isfinite(d_far) & np.isnan(d_near)] == 0).all()
    assert (labels[np.isnan(both)] == -1).all()


def test_a_wall_hides_what_is_behind_it():
    hand = hands_at(np.random.default_rng(2), [(0.0, 0.0, 1.0)])
    depth, labels = render_skeleton_depth(hand, K, SIZE, background=0.8)
    assert (labels == -1).all() and (depth == np.float32(0.8)).all()


# --- the mesh renderer ------------------------------------------------------------------------

def test_flat_triangle_has_the_exact_plane_depth():
    tri = np.array([[-0.05, -0.04, 0.6], [0.06, -0.03, 0.75], [0.0, 0.05, 0.5]])
    depth, labels = render_mesh_depth(tri[None], np.array([[0, 1, 2]]), K, SIZE)
    normal = np.cross(tri[1] - tri[0], tri[2] - tri[0])
    uv = tri[:, :2] / tri[:, 2:] * 910 + [640, 360]
    v, u = np.mgrid[0:720, 0:1280]
    # barycentric coordinates in the image; well inside the triangle: all above 2 %
    m = np.array([uv[1] - uv[0], uv[2] - uv[0]]).T
    w12 = np.linalg.solve(m, np.stack([u - uv[0, 0], v - uv[0, 1]]).reshape(2, -1)).reshape(2, 720, 1280)
    interior = (w12.min(0) > 0.02) & (w12.sum(0) < 0.98)
    outside = (w12.min(0) < -0.02) | (w12.sum(0) > 1.02)
    plane = (normal @ tri[0]) / (ray_dirs(u, v) @ normal)
    assert interior.sum() > 5000
    np.testing.assert_allclose(depth[interior], plane[interior], atol=2e-6)
    assert (labels[interior] == 0).all()
    assert (labels[outside] == -1).all() and (depth[outside] == np.float32(2.5)).all()


@pytest.mark.parametrize("faces", [[(0, 1, 2), (0, 2, 3)], [(2, 0, 1), (3, 2, 0)], [(1, 2, 0), (0, 3, 2)]])
def test_triangles_sharing_an_edge_leave_no_crack(faces):
    """A quad whose diagonal runs through pixel centres: each of them is drawn, whatever the
    faces' vertex order, and so is every pixel inside (a centre on a shared edge belongs to both)."""
    corners = np.array([[100.0, 100.0], [300.0, 100.0], [300.0, 300.0], [100.0, 300.0]])
    z = np.array([0.5, 0.62, 0.71, 0.55])
    quad = np.concatenate([(corners - [640, 360]) / 910 * z[:, None], z[:, None]], 1)
    depth, labels = render_mesh_depth(quad[None], np.array(faces), K, SIZE, background=None)
    # (the outline itself is left out: projecting back its corners rounds them by ~1e-14 px)
    assert (labels[101:300, 101:300] == 0).all() and np.isfinite(depth[101:300, 101:300]).all()
    assert (labels == 0).sum() <= 201 * 201


def test_mesh_lies_behind_the_thick_skeleton_it_is_inside():
    """A tube mesh drawn inside the capsules: where both are seen, never in front of them, and
    nowhere the skeleton is not; 2 hands of ~1500 faces each."""
    hands = hands_at(np.random.default_rng(4), [(-0.06, 0.0, 0.45), (0.07, 0.02, 0.5)])
    meshes = [tube_mesh(h) for h in hands]
    depth_mesh, labels_mesh = render_mesh_depth([m[0] for m in meshes], [m[1] for m in meshes], K, SIZE,
                                                background=None)
    depth_skel, labels_skel = render_skeleton_depth(hands, K, SIZE, background=None)
    seen = np.isfinite(depth_mesh)
    assert seen.sum() > 20000 and set(np.unique(labels_mesh)) == {-1, 0, 1}
    assert np.isfinite(depth_skel[seen]).all()
    assert (depth_mesh[seen] >= depth_skel[seen] - 1e-6).all()
    # a 12-sided tube's chords sit up to radius·(1 - cos 15°) = 0.3 mm inside the cylinder, more
    # at grazing angles, and the skeleton has end caps and a palm the tubes lack: close at the median
    assert np.median(depth_mesh[seen] - depth_skel[seen]) < 1e-3


def test_mesh_zbuffer_and_shared_faces():
    rng = np.random.default_rng(5)
    far, near = hands_at(rng, [(0.0, 0.0, 0.6), (0.02, 0.0, 0.55)])
    (vf, f), (vn, _) = tube_mesh(far), tube_mesh(near)
    both, labels = render_mesh_depth(np.stack([vf, vn]), f, K, SIZE, background=None)
    d_far, _ = render_mesh_depth(vf[None], f, K, SIZE, background=None)
    d_near, _ = render_mesh_depth(vn[None], f, K, SIZE, background=None)
    np.testing.assert_array_equal(both, np.fmin(d_far, d_near))
    assert (labels[np.isfinite(d_near) & ~(d_far < d_near)] == 1).all()


# --- the sensor model -------------------------------------------------------------------------

def test_noise_grows_with_the_square_of_the_distance():
    rng = np.random.default_rng(0)
    model = SensorModel()
    std = {}
    for z in (0.5, 1.5):
        out = simulate_sensor(np.full((720, 1280), z, np.float32), rng, model)
        std[z] = np.nanstd(out)
        assert np.nanmean(out) == pytest.approx(z, abs=2e-4)
    assert std[1.5] / std[0.5] == pytest.approx(9.0, rel=0.2)
    assert std[1.5] == pytest.approx(model.sigma_at_1m * 1.5 ** 2, rel=0.05)
    # 16UC1: whole millimetres
    out = simulate_sensor(np.full((100, 100), 0.7, np.float32), rng, model)
    mm = out[np.isfinite(out)] * 1000
    np.testing.assert_allclose(mm, np.round(mm), atol=1e-3)


def test_noise_is_a_little_spatially_correlated():
    out = simulate_sensor(np.full((720, 1280), 1.0, np.float32), np.random.default_rng(1),
                          dataclasses.replace(QUIET, sigma_at_1m=0.01))
    n = out - 1.0
    right = np.corrcoef(n[:, :-1].ravel(), n[:, 1:].ravel())[0, 1]
    far = np.corrcoef(n[:, :-8].ravel(), n[:, 8:].ravel())[0, 1]
    assert 0.15 < right < 0.5 and abs(far) < 0.02


@pytest.mark.parametrize("ratio", [0.2, 0.5, 0.9])
def test_hole_ratio_leaves_that_share_of_the_image_empty(ratio):
    out = simulate_sensor(np.full((720, 1280), 1.0, np.float32), np.random.default_rng(2),
                          SensorModel(hole_ratio=ratio))
    assert np.isnan(out).mean() == pytest.approx(ratio, abs=0.03)
    # in blobs, not salt and pepper: most holes have holes on both sides
    holes = np.isnan(out)
    assert (holes[:, 1:-1] & holes[:, :-2] & holes[:, 2:]).sum() > 0.8 * holes[:, 1:-1].sum()


def test_misregistration_shifts_the_map_by_exactly_dx_dy():
    depth, labels = render_skeleton_depth(hands_at(np.random.default_rng(6), [(0.0, 0.0, 0.5)]), K, SIZE)
    for dx, dy in [(2, 1), (3, -2), (-1, 0)]:
        out = simulate_sensor(depth, np.random.default_rng(0), dataclasses.replace(QUIET, misregistration=(dx, dy)),
                              labels=labels)
        h, w = depth.shape
        np.testing.assert_array_equal(out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)],
                                      depth[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)])
        uncovered = np.ones(depth.shape, bool)
        uncovered[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = False
        assert np.isnan(out[uncovered]).all()
    assert SensorModel().misregistration == (2, 1)


def test_edge_holes_and_flying_pixels_only_at_depth_edges():
    depth, labels = render_skeleton_depth(hands_at(np.random.default_rng(7), [(0.0, 0.0, 0.6)]), K, SIZE)
    model = dataclasses.replace(SensorModel(), sigma_at_1m=0.0, quantum=0.0, misregistration=(0, 0))
    out = simulate_sensor(depth, np.random.default_rng(0), model, labels=labels)
    band = depth_edges(depth)
    holes = np.isnan(out)
    changed = np.abs(out - depth) > 1e-6
    assert not (holes & ~band).any() and not (changed & ~band).any()
    assert holes[band].mean() == pytest.approx(model.p_edge_hole, abs=0.04)
    # flying pixels: only at silhouettes (a change of object), between the two surfaces there
    silhouette = cv2.dilate(labels, np.ones((3, 3), np.uint8)) != cv2.erode(labels, np.ones((3, 3), np.uint8))
    flying = changed & ~holes
    assert flying.sum() > 50 and not (flying & ~silhouette).any()
    near = cv2.erode(depth, np.ones((3, 3), np.uint8))
    far = cv2.dilate(depth, np.ones((3, 3), np.uint8))
    assert ((out[flying] > near[flying]) & (out[flying] < far[flying])).all()
    assert flying[band & silhouette].mean() == pytest.approx(model.p_flying, abs=0.06)


def test_dark_regions_lose_depth():
    image = np.full((720, 1280, 3), 180, np.uint8)
    image[100:300, 200:600] = 10
    model = dataclasses.replace(QUIET, p_dark_hole=0.6)
    out = simulate_sensor(np.full((720, 1280), 1.0, np.float32), np.random.default_rng(3), model, image_rgb=image)
    holes = np.isnan(out)
    assert holes[100:300, 200:600].mean() == pytest.approx(0.6, abs=0.02)
    holes[100:300, 200:600] = False
    assert not holes.any()


def test_out_of_range_is_a_hole_and_the_model_is_seeded():
    depth = np.full((50, 60), 0.05, np.float32)
    depth[:, 30:] = 7.0
    assert np.isnan(simulate_sensor(depth, np.random.default_rng(0), QUIET)).all()
    scene, labels = render_skeleton_depth(hands_at(np.random.default_rng(8), [(0.0, 0.0, 0.7)]), K, SIZE)
    one = simulate_sensor(scene, np.random.default_rng(9), SensorModel(hole_ratio=0.3), labels=labels)
    two = simulate_sensor(scene, np.random.default_rng(9), SensorModel(hole_ratio=0.3), labels=labels)
    np.testing.assert_array_equal(one, two)


# --- occluders --------------------------------------------------------------------------------

def test_occluder_covers_its_box_at_its_depth():
    depth, labels = render_skeleton_depth(hands_at(np.random.default_rng(10), [(0.0, 0.0, 0.5)]), K, SIZE)
    rows, cols = np.nonzero(labels == 0)
    box = (cols.min() + 10.5, rows.min() - 3.0, (cols.min() + cols.max()) / 2, rows.max() + 3.0)
    z = float(np.nanmin(depth)) - 0.05
    occluded, occ_labels = add_occluder(depth, labels, box, z)
    v, u = np.mgrid[0:720, 0:1280]
    inside = (u >= box[0]) & (u <= box[2]) & (v >= box[1]) & (v <= box[3])
    assert (occluded[inside] == np.float32(z)).all() and (occ_labels[inside] == -2).all()
    np.testing.assert_array_equal(occluded[~inside], depth[~inside])
    np.testing.assert_array_equal(occ_labels[~inside], labels[~inside])
    assert (labels == 0).sum() > (occ_labels == 0).sum() > 0
    assert occluded is not depth and (labels != -2).all()        # the inputs are left alone


def test_occluder_behind_part_of_the_hand_and_as_a_disc():
    depth, labels = render_skeleton_depth(hands_at(np.random.default_rng(11), [(0.0, 0.0, 0.5)]), K, SIZE)
    box = (500.0, 250.0, 780.0, 470.0)
    occluded, occ_labels = add_occluder(depth, labels, box, 0.5, disc=True)
    v, u = np.mgrid[0:720, 0:1280]
    disc = ((u - 640) / 140) ** 2 + ((v - 360) / 110) ** 2 <= 1
    hand_in_front = disc & (depth < 0.5)
    assert hand_in_front.any() and (occ_labels[hand_in_front] == 0).all()
    assert (occluded[disc & ~hand_in_front] == np.float32(0.5)).all()
    assert (occ_labels[disc & ~hand_in_front] == -2).all()
    np.testing.assert_array_equal(occluded[~disc], depth[~disc])
    # the sensor sees the object's edge like any other: flying pixels and holes there, labels -2
    out = simulate_sensor(occluded, np.random.default_rng(0), SensorModel(), labels=occ_labels)
    assert np.isfinite(out).mean() > 0.95
