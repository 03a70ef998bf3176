"""The one renderer: it draws the 3D result projected with K and distortion, not the 2D keypoints."""
import numpy as np

from hamer_ros.perception import Hand, project_points
from hamer_ros.perception.overlay import COLOURS, draw_hands
from hamer_ros_testing import hand_skeletons

K = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])
D = np.array([-0.3, 0.1, 0.0, 0.0, 0.0])


def hand(joints, keypoints, box=(0, 0, 1, 1)):
    return Hand(is_right=True, score=0.9, box=np.asarray(box, float), joints=joints,
                keypoints_2d=keypoints, wrist_position=joints[0], wrist_orientation=np.eye(3),
                reprojection_error=0.0)


def coloured(image, colour):
    return np.all(np.abs(image.astype(int) - colour) < 40, axis=-1)


def test_skeleton_is_the_projected_3d_joints_through_the_lens():
    joints = hand_skeletons(np.random.default_rng(0), 1)[0] * 2.0 + [0.25, 0.12, 0.7]   # near a corner
    truth_px = project_points(joints, K, D)
    elsewhere = truth_px + [-150.0, -100.0]                       # keypoints of a bad placement
    canvas = np.zeros((480, 640, 3), np.uint8)
    box = np.r_[truth_px.min(0), truth_px.max(0)]
    out = draw_hands(canvas, [hand(joints, elsewhere, box)], K, D)
    drawn = coloured(out, COLOURS[True])
    ys, xs = np.nonzero(drawn)
    pts = np.stack([xs, ys], -1).astype(float)
    # every projected (distorted) joint lies on the drawing, none of the 2D keypoints does
    near = lambda p: np.min(np.linalg.norm(pts - p, axis=1))   # noqa: E731
    assert max(near(p) for p in truth_px) < 2.5
    assert min(near(p) for p in elsewhere if 0 <= p[0] < 640 and 0 <= p[1] < 480) > 20
    # without the distortion the drawing moves: the lens is really applied
    plain = coloured(draw_hands(canvas, [hand(joints, elsewhere, box)], K), COLOURS[True])
    assert (plain ^ drawn).sum() > 100


def test_hands_behind_the_camera_or_nan_are_not_drawn():
    joints = hand_skeletons(np.random.default_rng(1), 1)[0] + [0.0, 0.0, -0.5]
    canvas = np.zeros((100, 100, 3), np.uint8)
    box_only = draw_hands(canvas, [hand(joints, np.full((21, 2), 50.0))], K)
    nan = draw_hands(canvas, [hand(np.full((21, 3), np.nan), np.full((21, 2), 50.0))], K)
    # only the (degenerate) box and label: no bones
    assert coloured(box_only, COLOURS[True]).sum() < 300 and coloured(nan, COLOURS[True]).sum() < 300
