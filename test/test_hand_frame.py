"""The published hand frame is the retargeting convention (dex-retargeting's operator frame in MANO
axes), for right and left hands; joints relative to it are what a retargeter takes."""
import numpy as np
import pytest

from hamer_ros.perception import hand_frame, local_joints
from hamer_ros_testing import hand_skeletons, random_rotations

M = np.diag([-1.0, 1.0, 1.0])
# the operator-to-MANO axes of that convention, per side
OPERATOR_TO_MANO = {True: np.array([[0, 0, -1], [-1, 0, 0], [0, 1, 0]], float),
                    False: np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0]], float)}


def operator_frame(joints):
    """Written independently from the convention's description: a plane fitted (SVD) to the wrist,
    index and middle knuckles; x along knuckle -> wrist in that plane; the normal's sign such that
    x cross normal points from the middle to the index knuckle; columns (x, normal, x cross normal)."""
    p = joints[[0, 5, 9]]
    normal = np.linalg.svd(p - p.mean(0))[2][2]
    x = p[0] - p[2]
    x = x - (x @ normal) * normal
    x /= np.linalg.norm(x)
    z = np.cross(x, normal)
    if z @ (p[1] - p[2]) < 0:
        normal, z = -normal, -z
    return np.stack([x, normal, z], 1)


@pytest.mark.parametrize("right", [True, False])
def test_hand_frame_is_the_retargeting_convention(right):
    rng = np.random.default_rng(0)
    joints = hand_skeletons(rng, 50) + rng.uniform(-0.3, 0.3, (50, 1, 3)) + [0, 0, 0.8]
    if not right:
        joints = joints @ M
    F = hand_frame(joints, np.full(50, right))
    np.testing.assert_allclose(F @ np.swapaxes(F, 1, 2), np.broadcast_to(np.eye(3), F.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(F), 1.0, atol=1e-12)
    for j, f in zip(joints, F):
        np.testing.assert_allclose(f, operator_frame(j) @ OPERATOR_TO_MANO[right], atol=1e-9)
        # what the retargeter is fed: (joints - wrist) @ operator frame @ operator-to-MANO
        np.testing.assert_allclose(local_joints(j, f), (j - j[0]) @ operator_frame(j) @ OPERATOR_TO_MANO[right],
                                   atol=1e-12)


def test_axes_mean_the_same_anatomy_and_mirror():
    rng = np.random.default_rng(1)
    joints = hand_skeletons(rng, 20) + [0, 0, 0.7]
    F = hand_frame(joints, True)
    # z: from the wrist toward the middle knuckle, in the palm plane
    to_middle = joints[:, 9] - joints[:, 0]
    assert np.all(np.einsum("ni,ni->n", F[:, :, 2], to_middle) > 0)
    # y: toward the index side (index knuckle beyond the middle one along y)
    assert np.all(np.einsum("ni,ni->n", F[:, :, 1], joints[:, 5] - joints[:, 9]) > 0)
    # a mirrored (left) hand: mirrored frame, its y axis flipped to stay right-handed
    Fl = hand_frame(joints @ M, False)
    np.testing.assert_allclose(Fl, M @ F @ np.diag([1.0, -1, 1]), atol=1e-12)
    # local joints of a mirrored hand: mirrored in y, equal otherwise (a robot left hand mirrors a right one)
    np.testing.assert_allclose(local_joints(joints @ M, Fl), local_joints(joints, F) * [1, -1, 1], atol=1e-12)


def test_local_joints_ignore_where_the_hand_is():
    rng = np.random.default_rng(2)
    joints = hand_skeletons(rng, 10) + [0, 0, 0.7]
    R = random_rotations(rng, 10)
    moved = joints @ np.swapaxes(R, 1, 2) + rng.normal(0, 0.3, (10, 1, 3))
    np.testing.assert_allclose(local_joints(moved, hand_frame(moved, True)), local_joints(joints, hand_frame(joints, True)),
                               atol=1e-12)
    np.testing.assert_allclose(local_joints(joints, hand_frame(joints, True))[:, 0], 0.0)
