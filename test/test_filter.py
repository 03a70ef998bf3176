"""One-Euro filters on the image stamps: properties with exact answers."""
import numpy as np
import pytest

from hamer_ros.perception import Hand, hand_frame
from hamer_ros.perception.filter import FilterConfig, HandSmoother, OneEuro, RotationOneEuro
from hamer_ros_testing import hand_skeletons, random_rotations, rotations_by


def test_a_constant_passes_unchanged():
    f = OneEuro(FilterConfig())
    x = np.array([[0.1, -0.2, 0.7], [0.0, 0.0, 1.0]])
    for k in range(50):
        np.testing.assert_allclose(f(x, k / 30), x, atol=1e-15)
    r = RotationOneEuro(FilterConfig())
    R = random_rotations(np.random.default_rng(0), 1)[0]
    for k in range(50):
        np.testing.assert_allclose(r(R, k / 30), R, atol=1e-12)


def test_a_step_settles_and_the_speed_shortens_the_lag():
    slow, fast = OneEuro(FilterConfig(min_cutoff=1.0, beta=0.0)), OneEuro(FilterConfig(min_cutoff=1.0, beta=20.0))
    for f in (slow, fast):
        f(np.zeros(3), 0.0)
    out_slow = [slow(np.array([0.1, 0, 0]), k / 30)[0] for k in range(1, 61)]
    out_fast = [fast(np.array([0.1, 0, 0]), k / 30)[0] for k in range(1, 61)]
    assert out_slow[-1] == pytest.approx(0.1, abs=1e-4) and out_fast[-1] == pytest.approx(0.1, abs=1e-4)
    assert np.all(np.diff(out_slow) >= 0)                               # no overshoot, monotone
    assert out_fast[2] > out_slow[2] + 0.01                             # a fast move adapts


def test_stamps_not_samples_set_the_smoothing():
    """The same motion sampled at 15 and 60 Hz ends at the same place: dt comes from the stamps."""
    def run(rate):
        f = OneEuro(FilterConfig(beta=0.0))
        for k in range(int(rate) + 1):
            out = f(np.array([0.2 * k / rate]), k / rate)
        return out[0]
    assert run(15) == pytest.approx(run(60), abs=0.01)
    f = OneEuro(FilterConfig())
    f(np.array([1.0]), 5.0)
    assert f(np.array([9.0]), 5.0)[0] == 1.0 and f(np.array([9.0]), 4.0)[0] == 1.0   # no step back in time


def test_rotations_stay_rotations_and_follow_a_turn():
    rng = np.random.default_rng(1)
    r = RotationOneEuro(FilterConfig())
    R0 = random_rotations(rng, 1)[0]
    r(R0, 0.0)
    target = rotations_by(rng, 1, 60.0)[0] @ R0
    for k in range(1, 120):
        noisy = rotations_by(rng, 1, 2.0)[0] @ target
        out = r(noisy, k / 30)
        np.testing.assert_allclose(out @ out.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(out) == pytest.approx(1.0)
    angle = np.degrees(np.arccos(np.clip((np.trace(out.T @ target) - 1) / 2, -1, 1)))
    assert angle < 1.5                                                  # settled on the target, below the noise


def hand(joints, track_id=0, right=True):
    return Hand(is_right=right, score=0.9, box=np.zeros(4), joints=joints, keypoints_2d=np.zeros((21, 2)),
                wrist_position=joints[0], wrist_orientation=hand_frame(joints, right), reprojection_error=0.0,
                track_id=track_id)


def test_smoother_reduces_jitter_keeps_a_consistent_hand_and_holds_briefly():
    rng = np.random.default_rng(2)
    truth = hand_skeletons(rng, 1)[0] + [0.1, 0.0, 0.6]
    smoother = HandSmoother(FilterConfig(min_cutoff=0.5, beta=15.0, d_cutoff=1.0), hold_time=0.1)
    raw, out = [], []
    for k in range(90):
        # as a detector jitters: the whole hand by ~2.6 mm (mostly in depth), each joint by ~1 mm more
        noisy = truth + rng.normal(0, [0.001, 0.001, 0.002]) + rng.normal(0, 0.0006, truth.shape)
        (h,) = smoother([hand(noisy)], k / 30)
        raw.append(noisy)
        out.append(h.joints)
        np.testing.assert_allclose(h.wrist_orientation, hand_frame(h.joints, True), atol=1e-12)
        np.testing.assert_allclose(h.wrist_position, h.joints[0])
    err = lambda a: np.sqrt(((np.array(a)[30:] - truth) ** 2).sum(-1).mean())   # noqa: E731
    assert err(out) < err(raw) / 3
    # missed: held (flagged) for at most hold_time, then gone
    (held,) = smoother.held([0], 90 / 30)
    assert held.held and np.array_equal(held.joints, out[-1])
    assert smoother.held([0], 89 / 30 + 0.11) == []
    assert smoother.held([7], 90 / 30) == []                            # an unknown track: nothing
    smoother.keep_only(set())
    assert smoother.held([0], 90 / 30) == []
