import logging

import numpy as np
import pytest
import torch

from hamer_ros.perception import (Detection, FixedRoiDetector, HandPipeline, PipelineConfig,
                                  project_points)
from hamer_ros.perception.camera import crop_ray_rotations

W, H = 640, 480
K = np.array([[600.0, 0, 310.0], [0, 605.0, 250.0], [0, 0, 1]])


def frame(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    return np.ascontiguousarray(np.clip(img.astype(int) // 3 + 80, 0, 255).astype(np.uint8))


def pipeline_with(model, rois, **kw) -> HandPipeline:
    cfg = PipelineConfig(**{"detector": "fixed", "rois": rois, "device": "cpu", "tracking": False, **kw})
    return HandPipeline(cfg, model=model, detector=FixedRoiDetector(rois))


ROIS = [{"box": [100, 120, 220, 260], "side": "right"}, {"box": [380, 150, 470, 300], "side": "left"}]


def test_two_hands_in_one_forward(tiny_model, monkeypatch):
    pipe = pipeline_with(tiny_model, ROIS)
    calls = []
    original = tiny_model.decode
    monkeypatch.setattr(tiny_model, "decode", lambda x: calls.append(x.shape[0]) or original(x))
    hands = pipe(frame(), K)
    assert calls == [2]
    assert [h.side for h in hands] == ["right", "left"]
    for h in hands:
        assert h.vertices.shape == (778, 3) and h.joints.shape == (21, 3) and h.faces.shape == (1538, 3)
        assert np.isfinite(h.joints).all() and (h.joints[:, 2] > 0).all()
        np.testing.assert_allclose(h.wrist_position, h.joints[0])
        r = h.wrist_orientation
        np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-9)
        assert np.linalg.det(r) == pytest.approx(1.0)
        assert h.global_orient.shape == (3, 3) and h.hand_pose.shape == (15, 3, 3) and h.betas.shape == (10,)
    # left faces are the right faces with reversed winding
    np.testing.assert_array_equal(hands[1].faces, hands[0].faces[:, [0, 2, 1]])
    assert pipe.backend == "eager" and pipe.engine.precision == "fp32"
    t = pipe.last_times
    assert t.forward > 0 and t.crop > 0 and t.total >= t.forward


def test_left_hand_is_the_mirror_of_a_right_hand(tiny_model):
    """A frame and its mirror, with swapped sides and a mirrored K, give mirrored hands."""
    img = frame(1)
    box = np.array([150.0, 100, 260, 240])
    mirrored_box = [W - 1 - box[2], box[1], W - 1 - box[0], box[3]]
    Km = K.copy()
    Km[0, 2] = W - 1 - K[0, 2]
    right = pipeline_with(tiny_model, [{"box": box.tolist(), "side": "right"}])(img, K)[0]
    left = pipeline_with(tiny_model, [{"box": mirrored_box, "side": "left"}])(np.ascontiguousarray(img[:, ::-1]), Km)[0]
    M = np.diag([-1.0, 1, 1])
    np.testing.assert_allclose(left.joints, right.joints @ M, atol=1e-6)
    np.testing.assert_allclose(left.vertices, right.vertices @ M, atol=1e-6)
    np.testing.assert_allclose(left.global_orient, M @ right.global_orient @ M, atol=1e-6)
    np.testing.assert_allclose(left.hand_pose, M @ right.hand_pose @ M, atol=1e-6)
    np.testing.assert_allclose(left.keypoints_2d[:, 0], W - 1 - right.keypoints_2d[:, 0], atol=1e-3)
    np.testing.assert_allclose(left.wrist_orientation, M @ right.wrist_orientation @ np.diag([1.0, -1, 1]), atol=1e-6)
    # a real left hand: its mesh is a mirror image, so signed volume flips... and winding keeps normals outward
    def signed_volume(v, f):
        v = v.astype(np.float64) - v.mean(0)      # about its centre: no float32 cancellation a metre away
        return np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum()
    assert signed_volume(left.vertices, left.faces) == pytest.approx(signed_volume(right.vertices, right.faces), rel=1e-6)


class WorldDetector:
    """Stands in for MediaPipe: metric joints up to translation, as seen along the ray through the
    box centre (crop_ray_rotations), + their 2D projections."""

    def __init__(self, joints_cam: np.ndarray, is_right: bool = True):
        self.joints_cam = joints_cam
        self.is_right = is_right

    def __call__(self, image):
        kp = project_points(self.joints_cam, K)
        box = np.r_[kp.min(0), kp.max(0)]
        ray = crop_ray_rotations((box[None, :2] + box[None, 2:]) / 2, K)[0]
        centred = (self.joints_cam - self.joints_cam.mean(0)) @ ray
        return [Detection(box=box, is_right=self.is_right, score=0.9, keypoints=kp, world_joints=centred)]

    def close(self):
        pass


def test_joints_only_mode_places_detector_landmarks(caplog):
    rng = np.random.default_rng(3)
    joints = rng.normal(0, 0.04, (21, 3)) + np.array([0.1, -0.05, 0.6])
    with caplog.at_level(logging.WARNING):
        pipe = HandPipeline(PipelineConfig(device="cpu", tracking=False), detector=WorldDetector(joints))
    assert not pipe.has_mesh and "mano.is.tue.mpg.de" in caplog.text
    assert pipe.backend == "none (joints-only)"
    (hand,) = pipe(frame(), K)
    np.testing.assert_allclose(hand.joints, joints, atol=1e-6)
    assert hand.vertices is None and hand.global_orient is None
    assert hand.reprojection_error < 1e-3


def test_refines_against_detector_keypoints(tiny_model):
    """With detector keypoints, the translation makes the model's joints reproject onto them."""
    pipe = pipeline_with(tiny_model, ROIS[:1])
    (plain,) = pipe(frame(), K)
    target = plain.joints + np.array([0.02, -0.01, 0.1])     # the same hand, elsewhere
    kp = project_points(target, K)

    class KeypointDetector(WorldDetector):
        def __call__(self, image):
            return [Detection(box=np.array(ROIS[0]["box"], float), is_right=True, score=1.0, keypoints=kp)]

    pipe.detector = KeypointDetector(target)
    (hand,) = pipe(frame(), K)
    np.testing.assert_allclose(hand.joints, target, atol=1e-4)
    assert hand.reprojection_error < 0.01


def test_missing_checkpoint_falls_back_to_joints_only(tmp_path, caplog, mano_path):
    with caplog.at_level(logging.ERROR):
        pipe = HandPipeline(PipelineConfig(checkpoint=str(tmp_path / "hamer.ckpt"), mano=str(tmp_path),
                                           detector="fixed", rois=ROIS, device="cpu"))
    assert not pipe.has_mesh
    assert f"HaMeR checkpoint not found: looked for {tmp_path / 'hamer.ckpt'}" in pipe.model_error
    assert "hamer_demo_data" in pipe.model_error and "joints-only" in caplog.text
    assert pipe(frame(), K) == []    # fixed boxes carry no landmarks: nothing to place without the model


def test_missing_mano_is_reported(tiny_checkpoint, tmp_path):
    pipe = HandPipeline(PipelineConfig(checkpoint=str(tiny_checkpoint), mano=str(tmp_path), detector="fixed",
                                       rois=ROIS, device="cpu"))
    assert not pipe.has_mesh and str(tmp_path / "MANO_RIGHT.pkl") in pipe.model_error


def test_no_hands_is_an_empty_list(tiny_model):
    assert pipeline_with(tiny_model, [])(frame(), K) == []


def test_mediapipe_and_tiny_model_on_a_real_image(tiny_model, examples):
    import cv2

    img = cv2.cvtColor(cv2.imread(str(examples / "test1.jpg")), cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    k = np.array([[700.0, 0, w / 2], [0, 700.0, h / 2], [0, 0, 1]])
    pipe = HandPipeline(PipelineConfig(device="cpu", static_images=True, tracking=False, max_hands=4), model=tiny_model)
    hands = pipe(img, k)
    assert len(hands) >= 2 and all(h.is_right for h in hands[:2])
    for h in hands:
        assert h.vertices.shape == (778, 3) and (h.joints[:, 2] > 0).all()
        # refined against MediaPipe's keypoints: these are the detector's, in the image
        assert (h.keypoints_2d >= 0).all() and (h.keypoints_2d[:, 0] < w).all()
    pipe.close()


def test_reconfigure_between_frames(tiny_model):
    pipe = pipeline_with(tiny_model, ROIS)
    assert len(pipe(frame(), K)) == 2
    pipe.reconfigure(rois=ROIS[1:], tracking=True, filter_min_cutoff=0.2, side_switch_frames=3)
    hands = pipe(frame(), K)
    assert [h.side for h in hands] == ["left"] and hands[0].track_id >= 0
    assert pipe.tracker.side_switch_frames == 3 and pipe.smoother.config.min_cutoff == 0.2
    pipe.reconfigure(max_hands=1, rois=ROIS)
    assert len(pipe(frame(), K)) == 1
    with pytest.raises(ValueError, match="start-up"):
        pipe.reconfigure(device="cuda")
    with pytest.raises(ValueError, match="unknown"):
        pipe.reconfigure(nonsense=1)
    pipe.reset_tracking()


def test_cuda_without_cuda_is_a_clear_error():
    import torch
    from hamer_ros.perception.pipeline import resolve_device

    if torch.cuda.is_available():
        pytest.skip("CUDA present: nothing to refuse")
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda:0")


# ------------------------------------------------------------------------- time: tracks and filters
class SequenceDetector:
    """Replays a scripted list of detections per frame, and counts resets."""

    def __init__(self, frames):
        self.frames, self.k, self.resets = frames, 0, 0

    def __call__(self, image):
        dets = self.frames[self.k % len(self.frames)]
        self.k += 1
        return [Detection(box=d.box.copy(), is_right=d.is_right, score=d.score, side_score=d.side_score,
                          keypoints=d.keypoints, world_joints=d.world_joints) for d in dets]

    def reset(self):
        self.resets += 1

    def close(self):
        pass


def landmark_detection(joints_cam, right=True):
    kp = project_points(joints_cam, K)
    box = np.r_[kp.min(0), kp.max(0)]
    ray = crop_ray_rotations((box[None, :2] + box[None, 2:]) / 2, K)[0]
    return Detection(box=box, is_right=right, score=0.9, keypoints=kp, world_joints=(joints_cam - joints_cam.mean(0)) @ ray)


def test_stamps_filter_hold_and_reset():
    from hamer_ros_testing import hand_skeletons
    rng = np.random.default_rng(5)
    truth = hand_skeletons(rng, 1)[0] + [0.05, 0.02, 0.6]
    noisy = [[landmark_detection(truth + rng.normal(0, [0.001, 0.001, 0.003]))] for _ in range(40)]
    frames = noisy + [[]] * 10                                   # then the detector loses the hand
    det = SequenceDetector(frames)
    pipe = HandPipeline(PipelineConfig(device="cpu", hold_time=0.1), detector=det)
    out = [pipe(frame(), K, stamp=k / 30) for k in range(50)]
    ids = {h.track_id for hands in out[:40] for h in hands}
    assert len(ids) == 1 and all(len(hands) == 1 for hands in out[:40])
    jitter = lambda hs: np.std([h.wrist_position for h in hs[10:]], axis=0).sum()   # noqa: E731
    raw = HandPipeline(PipelineConfig(device="cpu", filter=False), detector=SequenceDetector(noisy))
    raw_out = [raw(frame(), K, stamp=k / 30)[0] for k in range(40)]
    assert jitter([hs[0] for hs in out[:40]]) < jitter(raw_out) / 2
    # missed: held for hold_time (3 frames at 30 Hz), flagged, the same hand; then nothing
    held = [hands for hands in out[40:]]
    assert [len(h) for h in held] == [1, 1, 1] + [0] * 7
    assert all(h[0].held and np.array_equal(h[0].joints, out[39][0].joints) for h in held[:3])
    assert not any(h.held for hands in out[:40] for h in hands)
    # time goes back (a looping bag): tracks, filters and the detector's own tracking start afresh
    before = det.resets
    (again,) = pipe(frame(), K, stamp=0.0)
    assert det.resets == before + 1 and again.track_id not in ids
    # no stamp (independent images): nothing filtered, nothing held
    still = HandPipeline(PipelineConfig(device="cpu"), detector=SequenceDetector(noisy))
    first = still(frame(), K)[0]
    second = still(frame(), K)[0]
    np.testing.assert_allclose(second.joints, raw_out[1].joints, atol=1e-9)
    assert first.track_id == second.track_id


def test_mesh_shape_is_averaged_per_track(tiny_model, monkeypatch):
    pipe = pipeline_with(tiny_model, ROIS[:1], tracking=True)
    betas = iter([torch.full((1, 10), 1.0), torch.full((1, 10), 3.0), torch.full((1, 10), 2.0)])
    original = pipe.engine.decode

    def decode(images):
        pose, _, cam = original(images)
        return pose, next(betas), cam
    monkeypatch.setattr(pipe.engine, "decode", decode)
    got = [pipe(frame(), K, stamp=k / 30)[0].betas for k in range(3)]
    np.testing.assert_allclose([b[0] for b in got], [1.0, 2.0, 2.0], atol=1e-6)     # running means


def test_a_tracks_size_from_depth_places_it_through_frames_without_depth():
    """Depth scales the hand along its rays (placement rgbd, its scale published) once it placed
    the track on three frames in a row, the step spread over three frames; frames without usable
    depth use the track's size from earlier frames (rgbd-held) instead of jumping back to the RGB
    distance; a fresh start forgets it. The depth is an independent hand surface's."""
    from hamer_ros_testing import hand_in_view, hand_surface_mesh, render_mesh_depth
    rng = np.random.default_rng(2)
    truth = hand_in_view(rng, 0.6, K, (W, H), margin=40)
    det = landmark_detection(truth)
    det.world_joints = det.world_joints / 1.2         # the network's hand is 1.2x too small: placed too near
    verts, faces = hand_surface_mesh(truth)
    depth = render_mesh_depth(verts[None], faces, K, (W, H))[0]
    no_hand = np.full((H, W), 2.5, np.float32)        # depth that shows a wall, not the hand

    (rgb,) = HandPipeline(PipelineConfig(device="cpu", filter=False), detector=SequenceDetector([[det]]))(
        frame(), K, stamp=0.0)
    assert rgb.placement == "rgb" and rgb.scale == 1.0 and np.isnan(rgb.depth_residual)
    assert np.linalg.norm(rgb.joints[0] - truth[0]) > 0.05

    pipe = HandPipeline(PipelineConfig(device="cpu", filter=False), detector=SequenceDetector([[det]]))
    depths = [depth] * 6 + [None, no_hand, None]
    out = [pipe(frame(), K, stamp=k / 30, depth=d)[0] for k, d in enumerate(depths)]
    # two frames on RGB (hysteresis), then depth, the step spread over three frames; then held
    assert [h.placement for h in out] == ["rgb"] * 2 + ["rgbd"] * 4 + ["rgbd-held"] * 3
    assert out[0].scale == 1.0 and out[2].scale < out[3].scale < out[4].scale
    on, held = out[4:6], out[6:]
    assert on[0].scale == pytest.approx(1.2, rel=0.02) and np.isfinite(on[0].depth_residual)
    for h in on + held:
        assert np.linalg.norm(h.joints[0] - truth[0]) < 0.006
    for h in held:
        assert h.scale == pytest.approx(pipe._scales.get(h.track_id)) and np.isnan(h.depth_residual)
    for h in out:      # the rays stay: scaled about the camera, every joint projects where RGB put it
        np.testing.assert_allclose(project_points(h.joints, K), project_points(rgb.joints, K), atol=1e-6)
        assert h.reprojection_error == pytest.approx(rgb.reprojection_error)
    # independent images (no stamp): each placed on its own depth at once, nothing carried over
    still = HandPipeline(PipelineConfig(device="cpu"), detector=SequenceDetector([[det]]))
    assert [still(frame(), K, depth=d)[0].placement for d in (depth, None)] == ["rgbd", "rgb"]
    pipe.reset_tracking()
    (fresh,) = pipe(frame(), K, stamp=0.0)
    assert fresh.placement == "rgb" and fresh.scale == 1.0


def _scene(rng, *places):
    """Detections of hands (right?, offset) 0.6 m away, landmark-style."""
    from hamer_ros_testing import hand_skeletons
    out = []
    for right, offset in places:
        joints = hand_skeletons(rng, 1)[0] * 0.8 + np.array([*offset, 0.6])
        out.append(landmark_detection(joints, right=right))
    return out


def test_a_pause_or_a_jump_starts_new_tracks_never_a_blend():
    """Stamp-driven: after a 2 s pause the first frame holds exactly the new scene's hands (count,
    boxes, sides from the detector), on fresh tracks, and the detector's own tracking restarted;
    a hand that jumps across the image between two frames starts a new track too."""
    rng = np.random.default_rng(11)
    before = _scene(rng, (True, (-0.12, 0.0)), (False, (0.12, 0.0)))
    after = _scene(rng, (False, (-0.13, 0.08)))          # one left hand, where the right one was
    det = SequenceDetector([before] * 10 + [after] * 3)
    pipe = HandPipeline(PipelineConfig(device="cpu"), detector=det)
    out = [pipe(frame(), K, stamp=k / 30) for k in range(10)]
    assert all(len(hs) == 2 for hs in out)
    old_ids = {h.track_id for hs in out for h in hs}
    resets = det.resets
    first = pipe(frame(), K, stamp=9 / 30 + 2.0)
    assert det.resets == resets + 1                     # MediaPipe would look where the old hands were
    assert len(first) == 1 and not first[0].held
    assert first[0].is_right is False and first[0].track_id not in old_ids
    np.testing.assert_allclose(first[0].box, after[0].box, atol=1e-4)
    # a jump with no pause: the right hand is seen at the far side 33 ms later
    pipe2 = HandPipeline(PipelineConfig(device="cpu", hold_time=0.0),
                         detector=SequenceDetector([before[:1]] * 5 + [_scene(rng, (True, (0.2, 0.1)))]))
    ids = [h.track_id for k in range(6) for h in pipe2(frame(), K, stamp=k / 30)]
    assert len(set(ids[:5])) == 1 and ids[5] != ids[0]


def test_a_slow_stream_keeps_its_tracks():
    # frames 0.5 s apart (a CPU that processes two a second): the gap follows the frame rate
    rng = np.random.default_rng(12)
    det = SequenceDetector([_scene(rng, (True, (0.0, 0.0)))])
    pipe = HandPipeline(PipelineConfig(device="cpu"), detector=det)
    ids = [pipe(frame(), K, stamp=0.5 * k)[0].track_id for k in range(8)]
    assert len(set(ids[2:])) == 1            # the first interval teaches the rate


def test_a_hand_with_nan_never_reaches_an_output_and_its_track_recovers(monkeypatch):
    rng = np.random.default_rng(13)
    det = SequenceDetector([_scene(rng, (True, (0.0, 0.0)))])
    pipe = HandPipeline(PipelineConfig(device="cpu"), detector=det)
    good = [pipe(frame(), K, stamp=k / 30)[0] for k in range(3)]
    from hamer_ros_testing import with_nan_joint
    original = pipe._joint_hands
    monkeypatch.setattr(pipe, "_joint_hands", with_nan_joint(original, 7))
    assert pipe(frame(), K, stamp=3 / 30) == [] and pipe.nonfinite_dropped == 1
    monkeypatch.setattr(pipe, "_joint_hands", original)
    (after,) = pipe(frame(), K, stamp=4 / 30)
    assert after.track_id == good[0].track_id and after.is_finite() and not after.held
    assert np.linalg.norm(after.wrist_position - good[-1].wrist_position) < 0.01    # the filter was not poisoned


def test_min_score_thresholds_the_detection_not_the_side():
    """A confidently detected hand whose side is uncertain is kept (its side_score says so); a
    weak detection is dropped whatever its side's confidence."""
    rng = np.random.default_rng(14)
    sure, unsure_side, weak = _scene(rng, (True, (-0.12, 0.0)), (False, (0.12, 0.0)), (True, (0.0, 0.1)))
    sure.score, sure.side_score = 0.9, 0.95
    unsure_side.score, unsure_side.side_score = 0.9, 0.3
    weak.score, weak.side_score = 0.2, 0.99
    pipe = HandPipeline(PipelineConfig(device="cpu", min_score=0.5, max_hands=3),
                        detector=SequenceDetector([[sure, unsure_side, weak]]))
    hands = pipe(frame(), K)
    assert sorted((h.score, h.side_score) for h in hands) == [(0.9, 0.3), (0.9, 0.95)]


def test_a_tracking_detector_is_told_where_hamer_saw_the_hands(tiny_model):
    """The pipeline passes HaMeR's own 2D keypoints (in image pixels, the ones it places a hand
    on when the detector has none) to a detector that has follow(): the next regions come from them."""
    class Following(FixedRoiDetector):
        def __init__(self, rois):
            super().__init__(rois)
            self.followed = []

        def follow(self, keypoints):
            self.followed.append([np.array(k) for k in keypoints])

    det = Following(ROIS)
    pipe = HandPipeline(PipelineConfig(detector="fixed", rois=ROIS, device="cpu", tracking=False),
                        model=tiny_model, detector=det)
    hands = pipe(frame(), K)
    assert len(det.followed) == 1 and len(det.followed[0]) == len(hands) == 2
    for given, hand in zip(det.followed[0], hands):
        np.testing.assert_array_equal(given, hand.keypoints_2d)
    pipeline_with(tiny_model, ROIS)(frame(), K)    # a detector without follow() is fine too


def test_a_batch_of_frames_gives_what_one_call_each_gives(tiny_model):
    """HandPipeline.batch: the crops of several frames through HaMeR at once, each frame still
    detected, tracked, held and filtered in order: the same hands (ids, held flags, joints) as a
    call per frame, also across a lost hand and a stamp going back inside a batch."""
    from hamer_ros.perception.pipeline import Frame
    from hamer_ros_testing import hand_skeletons
    rng = np.random.default_rng(8)
    truth = hand_skeletons(rng, 1)[0] + [0.05, 0.02, 0.6]
    seen = [[landmark_detection(truth + rng.normal(0, [0.001, 0.001, 0.003]))] for _ in range(8)]
    script = seen + [[]] * 2 + seen[:4]
    stamps = [k / 30 for k in range(10)] + [k / 30 for k in range(4)]      # back to 0 at frame 10
    images = [frame(k) for k in range(len(script))]

    def run(batch):
        det = SequenceDetector(script)
        pipe = HandPipeline(PipelineConfig(device="cpu", hold_time=0.05), model=tiny_model, detector=det)
        frames = [Frame(im, K, stamp=t) for im, t in zip(images, stamps)]
        out = [hands for i in range(0, len(frames), batch) for hands in pipe.batch(frames[i:i + batch])]
        return out, det.resets

    one, resets_one = run(1)
    for size in (3, 5):
        many, resets = run(size)
        assert resets == resets_one
        assert [[(h.track_id, h.held, h.is_right) for h in hs] for hs in many] == \
            [[(h.track_id, h.held, h.is_right) for h in hs] for hs in one]
        for a, b in zip(many, one):
            for ha, hb in zip(a, b):
                np.testing.assert_allclose(ha.joints, hb.joints, atol=1e-5)
                np.testing.assert_allclose(ha.vertices, hb.vertices, atol=1e-5)
    assert any(h.held for hs in one for h in hs) and sum(len(hs) for hs in one) >= 12


def test_a_slow_stream_keeps_its_tracks_from_the_first_frame_on():
    """Frames 101 ms apart (a 10 Hz camera's jitter, just over hold_time): the second frame
    continues the first frame's tracks: its interval is taken as the frame period, which is not
    known before it (later frames use the median of the last intervals)."""
    from hamer_ros_testing import hand_skeletons
    truth = hand_skeletons(np.random.default_rng(3), 1)[0] + [0.05, 0.02, 0.6]
    det = SequenceDetector([[landmark_detection(truth)]])
    pipe = HandPipeline(PipelineConfig(device="cpu", hold_time=0.1), detector=det)
    ids = [h.track_id for k in range(5) for h in pipe(frame(), K, stamp=10.0 + k * 0.101)]
    assert ids == [ids[0]] * 5 and det.resets == 0
