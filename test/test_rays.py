"""Think in rays: crop-based networks predict the hand relative to the ray through their crop, and
every 3D output must be what the real camera saw. Metamorphic tests whose answer is exact:
a camera turned about its centre sees the same hands turned by R^T at the same distance; an image
and K scaled together change nothing in 3D; a mirrored image gives mirrored hands of the other
side. Exact on synthetic networks that are ray-relative by construction; within the issue's
bounds on real photos with MediaPipe."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hamer_ros.perception import Detection, HandPipeline, PipelineConfig, project_points
from hamer_ros.perception.camera import crop_ray_rotations, fit_pose, refine_translation
from hamer_ros.perception.crop import crop_boxes
from hamer_ros.perception.hand_frame import hand_frame
from hamer_ros_testing import hand_skeletons, random_rotations, rotated_view, rotation_yaw_pitch, rotations_by

M = np.diag([-1.0, 1.0, 1.0])
W, H = 1280, 720
# a wide lens (87 deg horizontally, like a RealSense colour camera) with real distortion
K_WIDE = np.array([[610.0, 0.0, 641.3], [0.0, 612.0, 362.8], [0.0, 0.0, 1.0]])
D_WIDE = np.array([-0.055, 0.065, 0.0004, -0.0007, -0.021])


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(a.T @ b) - 1.0) / 2.0, -1.0, 1.0))))


# ------------------------------------------------------------------------- the ray rotation
def test_ray_rotation_takes_the_axis_onto_the_ray_with_no_roll():
    rng = np.random.default_rng(0)
    centres = rng.uniform([0, 0], [W, H], (200, 2))
    R = crop_ray_rotations(centres, K_WIDE)
    np.testing.assert_allclose(R @ np.swapaxes(R, 1, 2), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)
    np.testing.assert_allclose(project_points(R[:, :, 2], K_WIDE), centres, atol=1e-9)   # axis -> ray
    # the smallest rotation: its axis lies in the image plane, across the ray (no turn about z)
    axis = np.stack([R[:, 2, 1] - R[:, 1, 2], R[:, 0, 2] - R[:, 2, 0], R[:, 1, 0] - R[:, 0, 1]], -1)
    np.testing.assert_allclose(axis[:, 2], 0.0, atol=1e-12)
    np.testing.assert_allclose(crop_ray_rotations(K_WIDE[None, :2, 2], K_WIDE)[0], np.eye(3), atol=1e-15)
    # with distortion the ray goes through the undistorted centre
    Rd = crop_ray_rotations(centres, K_WIDE, D_WIDE)
    np.testing.assert_allclose(project_points(Rd[:, :, 2], K_WIDE, D_WIDE), centres, atol=1e-6)
    # torch in, torch out
    assert isinstance(crop_ray_rotations(torch.tensor(centres[:2]), torch.tensor(K_WIDE)), torch.Tensor)


# ------------------------------------------------------------------------- the pose fit
def hands_in_view(rng, n):
    joints = hand_skeletons(rng, n)
    t = np.stack([rng.uniform(-0.35, 0.35, n), rng.uniform(-0.2, 0.2, n), rng.uniform(0.4, 1.0, n)], -1)
    return joints, t


def test_fit_pose_recovers_a_turned_hand_exactly():
    rng = np.random.default_rng(1)
    joints, t = hands_in_view(rng, 60)
    truth = joints + t[:, None]
    kp = project_points(truth, K_WIDE, D_WIDE)
    centre = joints.mean(1, keepdims=True)
    wrong = (joints - centre) @ np.swapaxes(rotations_by(rng, 60, 12.0), 1, 2) + centre    # the network's 12 deg error
    R, t_fit = fit_pose(wrong, kp, K_WIDE, D_WIDE)
    np.testing.assert_allclose(wrong @ np.swapaxes(R, 1, 2) + t_fit[:, None], truth, atol=1e-4)   # 0.1 mm: its stopping rule
    # translation-only cannot: it leaves the turn and a placement error
    t_only = refine_translation(wrong, kp, K_WIDE, D_WIDE)
    assert np.linalg.norm(wrong + t_only[:, None] - truth, axis=-1).mean() > 5e-3


def test_fit_pose_is_robust_bounded_and_falls_back():
    rng = np.random.default_rng(2)
    joints, t = hands_in_view(rng, 4)
    truth = joints + t[:, None]
    kp = project_points(truth, K_WIDE)
    kp[:, [4, 8, 12]] += 90.0                                  # three wrong keypoints a hand
    R, t_fit = fit_pose(joints, kp, K_WIDE)
    np.testing.assert_allclose(joints @ np.swapaxes(R, 1, 2) + t_fit[:, None], truth, atol=5e-4)
    # a pose 90 deg away from the network's is not trusted: translation only
    centre = joints.mean(1, keepdims=True)
    far = (joints - centre) @ np.swapaxes(rotations_by(rng, 4, 90.0), 1, 2) + centre
    R, t_fit = fit_pose(far, project_points(truth, K_WIDE), K_WIDE, max_rotation_deg=30.0)
    np.testing.assert_allclose(R, np.broadcast_to(np.eye(3), R.shape))
    np.testing.assert_allclose(t_fit, refine_translation(far, project_points(truth, K_WIDE), K_WIDE))
    # too few keypoints for a rotation: translation only; none at all: NaN, never an exception
    sparse = np.full_like(kp, np.nan)
    sparse[:, :4] = project_points(truth, K_WIDE)[:, :4]
    R, _ = fit_pose(joints, sparse, K_WIDE)
    np.testing.assert_allclose(R, np.broadcast_to(np.eye(3), R.shape))
    R, t_none = fit_pose(joints, np.full_like(kp, np.nan), K_WIDE)
    assert np.isnan(t_none).all() and np.isfinite(R).all()
    R, t_empty = fit_pose(np.zeros((0, 21, 3)), np.zeros((0, 21, 2)), K_WIDE)
    assert R.shape == (0, 3, 3) and t_empty.shape == (0, 3)


# ------------------------------------------------------------- mesh mode: a ray-relative network
class RayNetwork:
    """A stand-in for HaMeR that is exactly right, relative to the ray through each crop: for a
    true hand (right-hand MANO orientation G, pose, betas, wrist position in the camera), it
    outputs go = Q^T G (Q the crop's ray rotation; for a left hand go = M Q^T M G, the mirrored
    crop). The pipeline must then recover the true hand exactly."""

    name, precision = "ray-network", "fp32"

    def __init__(self, model, K, dist, rescale=2.0):
        self.model, self.K, self.dist, self.rescale = model, K, dist, rescale
        self.params = None

    def scene(self, hands):
        """hands: [(G [3,3], pose [15,3,3], betas [10], wrist [3], is_right)] -> detections, truth."""
        dets, truth, params = [], [], []
        for G, pose, betas, wrist, right in hands:
            with torch.no_grad():
                v, j = self.model.mano(torch.tensor(G[None], dtype=torch.float32),
                                       torch.tensor(pose[None], dtype=torch.float32),
                                       torch.tensor(betas[None], dtype=torch.float32))
            v, j = v[0].double().numpy(), j[0].double().numpy()
            if not right:
                v, j = v @ M, j @ M
            shift = wrist - j[0]
            v, j = v + shift, j + shift
            kp = project_points(j, self.K, self.dist)
            box = np.r_[kp.min(0), kp.max(0)]
            centre, size = crop_boxes(box[None], self.rescale)
            Q = crop_ray_rotations(centre.astype(np.float64), self.K, self.dist)[0]
            go = Q.T @ G if right else M @ Q.T @ M @ G
            # a crop camera within a few percent of the truth's scale (the pipeline's start)
            s = 2.0 * self.K[0, 0] / (size[0] * np.linalg.norm(wrist))
            six = np.concatenate([np.concatenate([go[None], pose])[:, :, 0], np.concatenate([go[None], pose])[:, :, 1]], -1)
            params.append((six, betas, np.array([s, 0.0, 0.0])))
            dets.append(Detection(box=box, is_right=right, score=1.0, keypoints=kp))
            truth.append(dict(joints=j, vertices=v, global_orient=G if right else M @ G @ M))
        self.params = [torch.tensor(np.stack(p), dtype=torch.float32) for p in zip(*params)]
        return dets, truth

    def decode(self, images):
        assert images.shape[0] == self.params[0].shape[0]
        return tuple(self.params)


class ListDetector:
    def __init__(self):
        self.dets = []

    def __call__(self, image):
        return list(self.dets)

    def close(self):
        pass


def random_hand(rng, wrist, right):
    pose = random_rotations(rng, 15)
    pose = np.stack([np.eye(3) + 0.3 * (p - np.eye(3)) for p in pose])
    pose = np.stack([np.linalg.qr(p)[0] * np.sign(np.diag(np.linalg.qr(p)[1])) for p in pose])
    return random_rotations(rng, 1)[0], pose, rng.normal(0, 0.5, 10), np.asarray(wrist, float), right


def ray_pipeline(tiny_model, K, dist):
    det = ListDetector()
    pipe = HandPipeline(PipelineConfig(detector="fixed", device="cpu", tracking=False), model=tiny_model, detector=det)
    net = RayNetwork(tiny_model, K, dist)
    pipe.engine = net
    return pipe, net, det


def wrist_at(angle_deg_off_axis, azimuth_deg, distance):
    a, b = np.radians(angle_deg_off_axis), np.radians(azimuth_deg)
    return distance * np.array([np.sin(a) * np.cos(b), np.sin(a) * np.sin(b), np.cos(a)])


@pytest.mark.parametrize("dist", [None, D_WIDE], ids=["pinhole", "distorted"])
def test_ray_relative_network_is_recovered_exactly_out_to_40_degrees(tiny_model, dist):
    rng = np.random.default_rng(3)
    pipe, net, det = ray_pipeline(tiny_model, K_WIDE, dist)
    image = np.full((H, W, 3), 90, np.uint8)
    worst_mm, worst_deg = 0.0, 0.0
    for angle in (0.0, 10.0, 20.0, 30.0, 40.0):
        for azimuth in (0.0, 120.0, 240.0):
            hands = [random_hand(rng, wrist_at(angle, azimuth, rng.uniform(0.3, 1.2)), True),
                     random_hand(rng, wrist_at(angle * 0.7, azimuth + 60, rng.uniform(0.3, 1.2)), False)]
            det.dets, truth = net.scene(hands)
            out = pipe(image, K_WIDE, dist)
            assert [h.is_right for h in out] == [True, False]
            for h, t in zip(out, truth):
                worst_mm = max(worst_mm, 1e3 * np.abs(h.joints - t["joints"]).max(),
                               1e3 * np.abs(h.vertices - t["vertices"]).max())
                worst_deg = max(worst_deg, angle_deg(h.global_orient, t["global_orient"]),
                                angle_deg(h.wrist_orientation, hand_frame(t["joints"], h.is_right)))
    assert worst_mm <= 0.5 and worst_deg <= 0.1, (worst_mm, worst_deg)


def test_turned_camera_sees_the_hands_turned_by_RT(tiny_model):
    """The same two hands seen by the camera turned about its centre (yaw, pitch up to 35 deg):
    the outputs are the first view's turned by R^T, at the same distance."""
    rng = np.random.default_rng(4)
    pipe, net, det = ray_pipeline(tiny_model, K_WIDE, None)
    image = np.full((H, W, 3), 90, np.uint8)
    hands = [random_hand(rng, [0.12, 0.05, 0.55], True), random_hand(rng, [-0.15, 0.02, 0.6], False)]
    det.dets, _ = net.scene(hands)
    first = pipe(image, K_WIDE)
    for yaw, pitch in [(35, 0), (-35, 0), (0, 35), (0, -35), (20, -20), (-25, 30)]:
        R = rotation_yaw_pitch(yaw, pitch)
        turned = [(R.T @ G if r else M @ R.T @ M @ G, p, b, R.T @ w, r) for G, p, b, w, r in hands]
        det.dets, _ = net.scene(turned)
        for a, b in zip(first, pipe(image, K_WIDE)):
            np.testing.assert_allclose(b.joints, a.joints @ R, atol=5e-4)
            np.testing.assert_allclose(np.linalg.norm(b.wrist_position), np.linalg.norm(a.wrist_position), rtol=1e-6)
            assert angle_deg(b.wrist_orientation, R.T @ a.wrist_orientation) <= 0.1


# ------------------------------------------------ out-of-the-box mode: ray-relative landmarks
class LandmarkDetector:
    """MediaPipe's contract, exactly: 2D keypoints and metric landmarks relative to the ray through
    the hand's box centre."""

    def __init__(self, joints_cam, is_right, K, dist=None):
        self.joints_cam, self.is_right, self.K, self.dist = joints_cam, is_right, K, dist

    def __call__(self, image):
        out = []
        for j, right in zip(self.joints_cam, self.is_right):
            kp = project_points(j, self.K, self.dist)
            box = np.r_[kp.min(0), kp.max(0)]
            Q = crop_ray_rotations((box[None, :2] + box[None, 2:]) / 2, self.K, self.dist)[0]
            out.append(Detection(box=box, is_right=right, score=0.9, keypoints=kp, world_joints=(j - j.mean(0)) @ Q))
        return out

    def close(self):
        pass


def test_landmarks_mode_recovers_off_axis_hands_and_mirrors_exactly():
    rng = np.random.default_rng(5)
    joints = hand_skeletons(rng, 2)
    joints[1] = joints[1] @ M                                     # a real left hand
    wrists = np.stack([wrist_at(38, 20, 0.5), wrist_at(30, 200, 0.8)])
    truth = joints + wrists[:, None]
    sides = [True, False]
    pipe = HandPipeline(PipelineConfig(device="cpu", tracking=False),
                        detector=LandmarkDetector(truth, sides, K_WIDE, D_WIDE))
    image = np.zeros((H, W, 3), np.uint8)
    hands = pipe(image, K_WIDE, D_WIDE)
    for h, t in zip(hands, truth):
        np.testing.assert_allclose(h.joints, t, atol=1e-6)
    # the mirrored image: mirrored K, mirrored hands of the other side
    Km = K_WIDE.copy()
    Km[0, 2] = W - 1 - K_WIDE[0, 2]
    Dm = D_WIDE * np.array([1, 1, 1, -1, 1])                      # p2 changes sign under x -> -x
    mirror = HandPipeline(PipelineConfig(device="cpu", tracking=False),
                          detector=LandmarkDetector(truth @ M, [not s for s in sides], Km, Dm))
    for a, b in zip(hands, mirror(image, Km, Dm)):
        assert b.is_right != a.is_right
        np.testing.assert_allclose(b.joints, a.joints @ M, atol=1e-6)
        np.testing.assert_allclose(b.wrist_orientation, M @ a.wrist_orientation @ np.diag([1.0, -1, 1]), atol=1e-6)


# ------------------------------------------------------------ real photos, MediaPipe (out of the box)
@pytest.fixture(scope="module")
def photo_mode():
    pipe = HandPipeline(PipelineConfig(device="cpu", static_images=True, tracking=False, max_hands=2))
    yield pipe
    pipe.close()


def load_photo(examples, name):
    import cv2
    image = cv2.imread(str(examples / name))
    rgb = np.ascontiguousarray(image[:, :, ::-1])
    h, w = rgb.shape[:2]
    f = (w / 2) / np.tan(np.radians(35))                          # a 70 deg lens
    return rgb, np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]])


def nearest(hands, position):
    return min(hands, key=lambda h: np.linalg.norm(h.wrist_position - position))


def test_turned_camera_on_a_real_photo(examples, photo_mode):
    """test1.jpg seen by the camera turned about its centre, yaw or pitch -35..35 deg (the
    principal point moved so the hands stay where they were): MediaPipe's hands, placed, keep
    their distance along the ray and turn by R^T (issue: median 3 % and 6 deg)."""
    image, K = load_photo(examples, "test1.jpg")
    base = photo_mode(image, K)
    assert len(base) == 2
    keep = np.mean([h.keypoints_2d.mean(0) for h in base], 0)
    dist_change, turn_error = [], []
    for yaw, pitch in [(a, 0) for a in (-35, -25, -15, -5, 5, 15, 25, 35)] + [(0, a) for a in (-35, -25, -15, -5, 5, 15, 25, 35)]:
        R = rotation_yaw_pitch(yaw, pitch)
        view, K2 = rotated_view(image, K, R, keep)
        hands = photo_mode(view, K2)
        for b in base:
            h = nearest(hands, R.T @ b.wrist_position)
            assert h.is_right == b.is_right
            dist_change.append(abs(np.linalg.norm(h.wrist_position) / np.linalg.norm(b.wrist_position) - 1.0))
            turn_error.append(angle_deg(h.wrist_orientation, R.T @ b.wrist_orientation))
    assert len(dist_change) == 32
    assert np.median(dist_change) <= 0.03 and np.median(turn_error) <= 6.0, (np.median(dist_change), np.median(turn_error))
    # the worst views put a hand up to 48 deg off the axis, stretched 2.2x in the image; MediaPipe
    # itself is the limit there (see the issue note)
    assert max(dist_change) <= 0.20 and max(turn_error) <= 22.0, (max(dist_change), max(turn_error))


def test_scaled_image_and_K_change_nothing_in_3d(examples, photo_mode):
    import cv2
    image, K = load_photo(examples, "test1.jpg")
    base = photo_mode(image, K)
    h0, w0 = image.shape[:2]
    for s in (0.5, 2.0):
        scaled = cv2.resize(image, (round(w0 * s), round(h0 * s)), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        sx, sy = scaled.shape[1] / w0, scaled.shape[0] / h0
        # pixel centres at integers: u' = (u + 0.5) s - 0.5
        Ks = np.array([[K[0, 0] * sx, 0, (K[0, 2] + 0.5) * sx - 0.5], [0, K[1, 1] * sy, (K[1, 2] + 0.5) * sy - 0.5], [0, 0, 1]])
        hands = photo_mode(scaled, Ks)
        assert len(hands) == len(base)
        for b in base:
            h = nearest(hands, b.wrist_position)
            assert abs(np.linalg.norm(h.wrist_position) / np.linalg.norm(b.wrist_position) - 1.0) <= 0.03
            assert angle_deg(h.wrist_orientation, b.wrist_orientation) <= 4.0


def test_mirrored_photo_gives_mirrored_hands(examples, photo_mode):
    """The geometry mirrors exactly (test above); MediaPipe itself is not mirror-symmetric (its
    landmarks of a hand and of its mirror image differ by 16-26 mm, 10-14 deg on test1.jpg), so
    on a photo the mirrored hands agree only that well."""
    image, K = load_photo(examples, "test1.jpg")
    w = image.shape[1]
    base = photo_mode(image, K)
    Km = K.copy()
    Km[0, 2] = w - 1 - K[0, 2]
    hands = photo_mode(np.ascontiguousarray(image[:, ::-1]), Km)
    assert len(hands) == len(base) == 2
    for b in base:
        h = nearest(hands, M @ b.wrist_position)
        assert h.is_right != b.is_right
        assert abs(np.linalg.norm(h.wrist_position) / np.linalg.norm(b.wrist_position) - 1.0) <= 0.08
        cos = h.wrist_position @ (M @ b.wrist_position) / np.linalg.norm(h.wrist_position) / np.linalg.norm(b.wrist_position)
        assert np.degrees(np.arccos(min(cos, 1.0))) <= 1.0                  # the same ray, mirrored
        assert angle_deg(h.wrist_orientation, M @ b.wrist_orientation @ np.diag([1.0, -1, 1])) <= 15.0


def test_a_pinch_seen_in_the_image_is_a_pinch_in_3d(examples, photo_mode):
    """test1.jpg's OK sign: thumb and index tips touch in the image (10 px apart). MediaPipe's metric
    landmarks alone put them 63 mm apart in depth; the fingers lifted by their relative depths keep
    them together."""
    image, K = load_photo(examples, "test1.jpg")
    hands = photo_mode(image, K)
    ok = min(hands, key=lambda h: np.linalg.norm(h.keypoints_2d[4] - h.keypoints_2d[8]))
    assert np.linalg.norm(ok.keypoints_2d[4] - ok.keypoints_2d[8]) < 20
    assert np.linalg.norm(ok.joints[4] - ok.joints[8]) < 0.030
