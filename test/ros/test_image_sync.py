"""Unit tests of the node's ROS-side helpers without DDS: image conversion (ros/image.py), CameraInfo
pairing, the newest-frame mailbox and throttling (ros/sync.py), and message building (ros/convert.py).

image.py and sync.py are duck-typed, so they are tested on plain namespaces; convert.py needs the
built message types (skipped without them)."""
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from hamer_ros import messages
from hamer_ros.ros.image import SUPPORTED_ENCODINGS, ImageConversionError, image_to_rgb
from hamer_ros.ros.sync import (CameraInfoSync, LatestMailbox, StampMonitor, Throttle,
                                check_intrinsics, intrinsics_from_camera_info, stamp_to_ns)

# ------------------------------------------------------------------------------------------------
# image.py


def _msg(pixels: np.ndarray, encoding: str, pad: int = 0, data_type=bytes):
    """An Image-like object holding `pixels` (H x W x C uint8) with `pad` bytes of row padding."""
    h, w = pixels.shape[:2]
    c = 1 if pixels.ndim == 2 else pixels.shape[2]
    rows = pixels.reshape(h, w * c)
    padded = np.concatenate([rows, np.full((h, pad), 77, np.uint8)], axis=1) if pad else rows
    data = padded.tobytes()
    if data_type is not bytes:
        import array
        data = array.array("B", data)
    return SimpleNamespace(encoding=encoding, width=w, height=h, step=w * c + pad, data=data, is_bigendian=1)


@pytest.fixture
def rgb():
    return np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize("pad", [0, 3])
def test_rgb8_is_a_view_of_the_buffer(rgb, pad):
    import array
    msg = _msg(rgb, "rgb8", pad=pad, data_type=array.array)
    out = image_to_rgb(msg)
    np.testing.assert_array_equal(out, rgb)
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    # no copy: the result shares the message's memory (row padding handled by strides)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))
    assert out.strides[0] == 7 * 3 + pad


@pytest.mark.parametrize("pad", [0, 5])
def test_bgr_rgba_bgra_mono(rgb, pad):
    np.testing.assert_array_equal(image_to_rgb(_msg(rgb[..., ::-1].copy(), "bgr8", pad)), rgb)
    alpha = np.full(rgb.shape[:2] + (1,), 9, np.uint8)
    np.testing.assert_array_equal(image_to_rgb(_msg(np.concatenate([rgb, alpha], 2), "rgba8", pad)), rgb)
    bgra = np.concatenate([rgb[..., ::-1], alpha], 2)
    np.testing.assert_array_equal(image_to_rgb(_msg(bgra, "bgra8", pad)), rgb)
    grey = rgb[..., 0].copy()
    out = image_to_rgb(_msg(grey, "mono8", pad))
    assert out.shape == (5, 7, 3) and out.flags.c_contiguous
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)


def test_encoding_names_are_case_insensitive(rgb):
    np.testing.assert_array_equal(image_to_rgb(_msg(rgb, "RGB8")), rgb)


@pytest.mark.parametrize("encoding,hint", [("16UC1", "depth"), ("bayer_rggb8", "debayer"),
                                           ("yuv422", "YUV"), ("rgb16", "8 bits"), ("weird", "image_proc")])
def test_unsupported_encoding_names_it_and_the_fix(encoding, hint):
    msg = SimpleNamespace(encoding=encoding, width=4, height=2, step=8, data=bytes(16))
    with pytest.raises(ImageConversionError) as e:
        image_to_rgb(msg)
    text = str(e.value)
    assert f"'{encoding}'" in text and hint in text
    assert all(enc in text for enc in SUPPORTED_ENCODINGS)
    assert e.value.key == f"encoding:{encoding}"


def test_size_errors_are_specific():
    with pytest.raises(ImageConversionError, match=r"empty image \(0x0 px") as e:
        image_to_rgb(SimpleNamespace(encoding="rgb8", width=0, height=0, step=0, data=b""))
    assert e.value.key == "empty"
    with pytest.raises(ImageConversionError, match=r"step 20 bytes is smaller than width x bytes per pixel = 8 x 3 = 24") as e:
        image_to_rgb(SimpleNamespace(encoding="rgb8", width=8, height=2, step=20, data=bytes(40)))
    assert e.value.key == "step"
    with pytest.raises(ImageConversionError, match=r"data holds 37 bytes but needs 38 \(6x2 rgb8, step 20") as e:
        image_to_rgb(SimpleNamespace(encoding="rgb8", width=6, height=2, step=20, data=bytes(37)))
    assert e.value.key == "data"
    # the last row's padding may be left out, as for depth images
    last_row_short = image_to_rgb(SimpleNamespace(encoding="rgb8", width=7, height=2, step=24, data=bytes(range(45))))
    np.testing.assert_array_equal(last_row_short[1, 0], [24, 25, 26])


def test_extra_trailing_bytes_are_ignored(rgb):
    msg = _msg(rgb, "rgb8")
    msg.data = msg.data + b"\x01\x02"
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)


# ------------------------------------------------------------------------------------------------
# sync.py

K_GOOD = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])


def _info(stamp_ns: int, frame="cam", K=K_GOOD, w=640, h=480, D=(), model="plumb_bob", P=None,
          binning=(0, 0), roi=(0, 0, 0, 0)):
    P = np.hstack([K, np.zeros((3, 1))]) if P is None else P
    return SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9),
                                                  frame_id=frame),
                           k=np.asarray(K, float).ravel(), d=list(D), p=np.asarray(P, float).ravel(),
                           distortion_model=model, width=w, height=h, binning_x=binning[0], binning_y=binning[1],
                           roi=SimpleNamespace(x_offset=roi[0], y_offset=roi[1], width=roi[2], height=roi[3]))


def test_stamp_to_ns_is_exact():
    assert stamp_to_ns(SimpleNamespace(sec=1_700_000_000, nanosec=999_999_999)) == 1_700_000_000_999_999_999


@pytest.mark.parametrize("K,text", [
    (np.zeros((3, 3)), "all zeros"),
    (np.array([[np.nan, 0, 1], [0, 1, 1], [0, 0, 1]]), "NaN"),
    (np.array([[-5.0, 0, 1], [0, 5, 1], [0, 0, 1]]), "focal lengths must be positive"),
    (np.array([[5.0, 0, 1], [0, 0, 1], [0, 0, 1]]), "focal lengths must be positive"),
])
def test_bad_intrinsics_are_named(K, text):
    assert text in check_intrinsics(K)


def test_good_intrinsics_and_distortion():
    i = intrinsics_from_camera_info(_info(5, D=[0.1, -0.05, 0, 0, 0.01]))
    assert i.problem is None and i.K[0, 0] == 500 and i.D is not None and i.D.shape == (5,)
    assert intrinsics_from_camera_info(_info(5, D=[0, 0, 0, 0, 0])).D is None
    fisheye = intrinsics_from_camera_info(_info(5, D=[0.1, 0, 0, 0], model="equidistant"))
    assert fisheye.D is None and "'equidistant'" in fisheye.lens_problem and "image_is_rectified" in fisheye.lens_problem
    # rectified: the lens model no longer applies, the frame is placed
    assert intrinsics_from_camera_info(_info(5, D=[0.1, 0, 0, 0], model="equidistant"), rectified=True).lens_problem is None
    P = np.array([[400.0, 0, 300, 0], [0, 410, 200, 0], [0, 0, 1, 0]])
    rect = intrinsics_from_camera_info(_info(5, D=[0.1, 0, 0, 0, 0], P=P), rectified=True)
    assert rect.K[0, 0] == 400 and rect.K[1, 1] == 410 and rect.D is None


def test_a_fisheye_camera_info_skips_its_frames_with_one_clear_error():
    s = CameraInfoSync("/cam/camera_info", "latest", stale_after=5.0)
    s.add(intrinsics_from_camera_info(_info(10**9, "fish", D=[0.1, -0.02, 0.003, 0.0], model="equidistant")))
    m = s.match(10**9, "fish", 640, 480)
    assert not m.usable and [p.key for p in m.problems] == ["distortion:fish"] and m.problems[0].skip
    assert "/cam/camera_info" in m.problems[0].text and "image_is_rectified:=true" in m.problems[0].text


def test_latest_pairs_newest_of_the_same_frame_and_never_blocks_on_old_infos():
    s = CameraInfoSync("/cam/camera_info", "latest", stale_after=5.0)
    m = s.match(10**9, "cam", 640, 480, topic_has_publishers=False)
    assert not m.usable and m.problems[0].key == "no_info"
    assert "/cam/camera_info" in m.problems[0].text and "remap camera_info:=" in m.problems[0].text.lower()
    assert "no publisher" in m.problems[0].text

    s.add(intrinsics_from_camera_info(_info(1 * 10**9, "other", K=K_GOOD * 2)))
    s.add(intrinsics_from_camera_info(_info(2 * 10**9, "cam")))
    m = s.match(3 * 10**9, "cam", 640, 480)
    assert m.usable and m.intrinsics.frame_id == "cam" and not m.problems
    # an old (latched) CameraInfo: used, with a warning only
    m = s.match(60 * 10**9, "cam", 640, 480)
    assert m.usable and [p.key for p in m.problems] == ["stale:cam"] and "latched" in m.problems[0].text
    s.stale_after = 0.0
    assert not s.match(60 * 10**9, "cam").problems
    # only another camera's CameraInfo: never used; the skip names both frames and the fix
    m = s.match(3 * 10**9, "cam2")
    assert not m.usable and m.intrinsics is None and [p.key for p in m.problems] == ["foreign_frame:cam2"]
    assert "'cam2'" in m.problems[0].text and "'cam', 'other'" in m.problems[0].text
    assert "camera_info_any_frame" in m.problems[0].text
    # ... unless the user opts in for a driver whose ids disagree: the newest one, warned
    s.any_frame = True
    m = s.match(3 * 10**9, "cam2")
    assert m.usable and m.intrinsics.frame_id == "cam" and [p.key for p in m.problems] == ["frame_id:cam2"]
    s.any_frame = False
    # a CameraInfo of another resolution: warned, keyed by cause and frame
    assert [p.key for p in s.match(3 * 10**9, "cam", 1280, 720).problems] == ["size:cam"]


def test_a_second_camera_never_leaks_into_the_first():
    s = CameraInfoSync("ci")
    s.add(intrinsics_from_camera_info(_info(1, "cam_a", K=K_GOOD)))
    s.add(intrinsics_from_camera_info(_info(2, "cam_b", K=K_GOOD * [[0.9], [0.9], [1]])))
    assert s.match(3, "cam_a").intrinsics.K[0, 0] == 500
    assert s.match(3, "cam_b").intrinsics.K[0, 0] == 450
    assert not s.match(3, "cam_c").usable
    ex = CameraInfoSync("ci", "exact")
    ex.add(intrinsics_from_camera_info(_info(7, "cam_b")))
    assert not ex.match(7, "cam_a").usable and ex.match(7, "cam_b").usable
    assert ex.has_exact(7, "cam_b") and not ex.has_exact(7, "cam_a")


def test_binning_and_roi_as_image_geometry():
    K = np.array([[600.0, 0, 640], [0, 610, 360], [0, 0, 1]])
    i = intrinsics_from_camera_info(_info(1, K=K, w=1280, h=720, binning=(2, 2), roi=(100, 40, 800, 600)))
    np.testing.assert_allclose(i.K, [[300, 0, 270], [0, 305, 160], [0, 0, 1]])
    assert (i.width, i.height) == (400, 300)
    # binning alone, one axis; 0 means 1 (REP-104)
    i = intrinsics_from_camera_info(_info(1, K=K, w=1280, h=720, binning=(4, 0)))
    np.testing.assert_allclose(i.K, [[150, 0, 160], [0, 610, 360], [0, 0, 1]])
    assert (i.width, i.height) == (320, 720)
    # the same point of the scene lands on the same pixel of the binned ROI image
    X = np.array([0.1, -0.05, 0.8])
    full = K @ X / X[2]
    i = intrinsics_from_camera_info(_info(1, K=K, w=1280, h=720, binning=(2, 2), roi=(100, 40, 800, 600)))
    np.testing.assert_allclose((i.K @ X / X[2])[:2], [(full[0] - 100) / 2, (full[1] - 40) / 2])
    # P for rectified images gets the same treatment
    P = np.array([[500.0, 0, 600, 0], [0, 500, 350, 0], [0, 0, 1, 0]])
    r = intrinsics_from_camera_info(_info(1, K=K, P=P, binning=(2, 2), roi=(100, 40, 800, 600)), rectified=True)
    np.testing.assert_allclose(r.K, [[250, 0, 250], [0, 250, 155], [0, 0, 1]])


def test_unusable_K_skips_the_frame():
    s = CameraInfoSync("ci")
    s.add(intrinsics_from_camera_info(_info(1, K=np.zeros((3, 3)))))
    m = s.match(2, "cam")
    assert not m.usable and m.problems[-1].key == "bad_K:zero:cam" and m.problems[-1].skip
    s.add(intrinsics_from_camera_info(_info(3)))   # recovers with the next good one
    assert s.match(4, "cam").usable


def test_exact_policy_pairs_by_stamp():
    s = CameraInfoSync("ci", "exact", buffer=3)
    for t in (10, 20, 30, 40):
        s.add(intrinsics_from_camera_info(_info(t, K=K_GOOD + np.diag([t, t, 0]))))
    m = s.match(30, "cam")
    assert m.usable and m.intrinsics.stamp_ns == 30 and m.intrinsics.K[0, 0] == 530
    m = s.match(10, "cam")        # fell out of the 3-entry buffer
    assert not m.usable and m.problems[0].key == "no_exact:cam" and "nearest of frame 'cam' is" in m.problems[0].text
    assert s.has_exact(40, "cam") and not s.has_exact(41, "cam")
    with pytest.raises(ValueError):
        s.policy = "approximate"


def test_stamp_monitor():
    mon = StampMonitor()
    assert mon.update(5) is None and mon.update(7) is None and mon.update(7) is None
    assert mon.update(3) == 7
    assert mon.update(4) is None


def test_throttle_per_key_counts_suppressed():
    now = [0.0]
    t = Throttle(5.0, clock=lambda: now[0])
    assert t.ready("a") == (True, 0)
    assert t.ready("a") == (False, 0) and t.ready("a") == (False, 0)
    assert t.ready("b") == (True, 0)          # another cause is not held back
    now[0] = 5.1
    assert t.ready("a") == (True, 2)
    assert t.ready("a", period=0.0) == (True, 0)


def test_mailbox_newest_wins_and_counts_drops():
    box: LatestMailbox[int] = LatestMailbox()
    assert box.put(1) is False
    assert box.put(2) is True and box.put(3) is True
    assert box.dropped == 2 and box.put_count == 3
    assert box.get(timeout=0) == 3
    assert box.get(timeout=0.01) is None
    got = []
    th = threading.Thread(target=lambda: got.append(box.get()))
    th.start()
    time.sleep(0.05)
    box.put(4)
    th.join(2)
    assert got == [4]
    # wait(): returns early on the predicate (woken by notify) or on a new item
    flag = []
    threading.Timer(0.05, lambda: (flag.append(1), box.notify())).start()
    t0 = time.monotonic()
    assert box.wait(lambda: bool(flag), timeout=2.0) is True
    assert time.monotonic() - t0 < 1.0
    box.close()
    assert box.get() is None and box.closed


# ------------------------------------------------------------------------------------------------
# convert.py (needs the built message types)

def _convert():
    try:
        from hamer_ros.ros import convert
    except ImportError as e:
        pytest.skip(f"message types not importable ({e}); run `bash scripts/build_ros.sh && source scripts/env.sh`")
    return convert


def _hand(is_right=True, score=0.9, with_mesh=True, seed=0):
    from hamer_ros.perception.types import Hand
    rng = np.random.default_rng(seed)
    joints = rng.normal(0, 0.03, (21, 3)) + [0.1, 0.0, 0.6]
    R = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    R *= np.linalg.det(R)
    kw = {}
    if with_mesh:
        faces = rng.integers(0, 778, (1538, 3))
        kw = dict(vertices=rng.normal(0, 0.03, (778, 3)).astype(np.float32) + np.float32([0.1, 0, 0.6]),
                  faces=faces, global_orient=R.astype(np.float32), hand_pose=np.tile(np.eye(3, dtype=np.float32), (15, 1, 1)),
                  betas=np.linspace(-1, 1, 10).astype(np.float32))
    return Hand(is_right=is_right, score=score, box=np.array([10, 20, 110, 140], np.float32), joints=joints,
                keypoints_2d=rng.uniform(0, 100, (21, 2)), wrist_position=joints[0], wrist_orientation=R,
                reprojection_error=1.25, track_id=3, **kw)


def test_quaternion_matches_scipy():
    from scipy.spatial.transform import Rotation
    R = Rotation.random(500, random_state=2)
    ref = R.as_quat()
    ref = np.where(ref[:, 3:] < 0, -ref, ref)
    np.testing.assert_allclose(messages.rotation_to_quaternion(R.as_matrix()), ref, atol=1e-12)
    for m, q in zip(R.as_matrix()[:100], ref[:100]):      # the one-matrix fast path
        np.testing.assert_allclose(messages.rotation_to_quaternion(m), q, atol=1e-12)
    for axis in np.eye(3):   # 180° turns: the trace pivot alone would divide by ~0
        q = messages.rotation_to_quaternion(Rotation.from_rotvec(np.pi * axis).as_matrix())
        np.testing.assert_allclose(np.abs(q), np.r_[axis, 0.0], atol=1e-12)


def test_hand_array_fields():
    convert = _convert()
    from std_msgs.msg import Header
    header = Header(frame_id="camera_color_optical_frame")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    hands = [_hand(False, 0.8, seed=1), _hand(True, 0.95, with_mesh=False, seed=2)]
    msg = convert.hands_to_msg(header, hands, publish_vertices=True)
    assert msg.header.stamp.sec == 12 and msg.header.stamp.nanosec == 345
    assert msg.header.frame_id == "camera_color_optical_frame"
    left, right = msg.hands
    assert (left.side, right.side) == (0, 1) and left.track_id == 3
    assert left.has_mesh and not right.has_mesh
    assert len(left.vertices) == 778 * 3 and len(right.vertices) == 0
    np.testing.assert_allclose(np.asarray(left.vertices).reshape(778, 3), hands[0].vertices)
    np.testing.assert_allclose([(p.x, p.y, p.z) for p in left.joints], hands[0].joints)
    np.testing.assert_allclose(np.asarray(left.global_orient).reshape(3, 3), hands[0].global_orient, atol=1e-7)
    np.testing.assert_allclose(np.asarray(left.keypoints_2d).reshape(21, 2), hands[0].keypoints_2d, rtol=1e-6)
    assert not np.any(right.global_orient) and not np.any(right.betas)
    q = left.wrist.orientation
    from scipy.spatial.transform import Rotation
    np.testing.assert_allclose(Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix(), hands[0].wrist_orientation,
                               atol=1e-9)
    assert len(convert.hands_to_msg(header, hands, publish_vertices=False).hands[0].vertices) == 0


def test_a_hand_array_reads_back_as_the_hands_drawn():
    """hand_viz_node draws from HandArray messages: each hand reads back as it was sent (float32
    where the message is), faces by side from MeshFaces, and the same picture comes out."""
    convert = _convert()
    from std_msgs.msg import Header

    from hamer_ros.perception.overlay import draw_hands
    hands = [_hand(False, 0.8, seed=1), _hand(True, 0.95, seed=2)]
    faces_right = hands[1].faces
    faces_left = np.ascontiguousarray(faces_right[:, [0, 2, 1]])
    hands[0].faces = faces_left
    faces = convert.faces_from_msg(convert.mesh_faces_msg(faces_right, faces_left, 778))
    np.testing.assert_array_equal(faces[True], faces_right)
    np.testing.assert_array_equal(faces[False], faces_left)
    msg = convert.hands_to_msg(Header(frame_id="cam"), hands, publish_vertices=True)
    back = [convert.hand_from_msg(m, faces) for m in msg.hands]
    for h, b in zip(hands, back):
        assert (b.is_right, b.track_id, b.held, b.placement) == (h.is_right, h.track_id, h.held, h.placement)
        np.testing.assert_allclose(b.joints, h.joints)
        np.testing.assert_allclose(b.vertices, h.vertices)
        np.testing.assert_array_equal(b.faces, h.faces)
        np.testing.assert_allclose(b.wrist_orientation, h.wrist_orientation, atol=1e-9)
        np.testing.assert_allclose(b.box, h.box)
    K = np.array([[500.0, 0, 160], [0, 500.0, 120], [0, 0, 1]])
    image = np.zeros((240, 320, 3), np.uint8)
    np.testing.assert_array_equal(draw_hands(image, back, K), draw_hands(image, hands, K))
    # without vertices (publish_vertices off) a hand has no mesh to draw, whatever faces are known
    bare = convert.hands_to_msg(Header(), hands, publish_vertices=False)
    assert all(convert.hand_from_msg(m, faces).faces is None for m in bare.hands)
    with pytest.raises(ValueError, match="not triangles of vertices below 100"):
        convert.faces_from_msg(convert.mesh_faces_msg(faces_right, faces_left, 100))


def test_tf_live_hands_per_side_and_joint_frames():
    convert = _convert()
    from std_msgs.msg import Header
    header = Header(frame_id="cam")
    header.stamp.sec = 7
    hands = [_hand(True, 0.6, seed=1), _hand(True, 0.9, seed=2), _hand(False, 0.7, seed=3)]
    for i, h in enumerate(hands):
        h.track_id = i
    selected = messages.tf_hands(hands)
    tfs = convert.hand_transforms(header, selected, prefix="r1/")
    assert sorted(t.child_frame_id for t in tfs) == ["r1/left_hand/wrist", "r1/right_hand/wrist"]
    right = next(t for t in tfs if t.child_frame_id == "r1/right_hand/wrist")
    assert right.header.frame_id == "cam" and right.header.stamp.sec == 7
    assert right.transform.translation.x == pytest.approx(hands[1].wrist_position[0])   # the 0.9 one
    tfs = convert.hand_transforms(header, selected, joint_frames=True)
    assert len(tfs) == 2 * 22
    j5 = next(t for t in tfs if t.child_frame_id == "left_hand/joint_5")
    assert j5.transform.translation.z == pytest.approx(hands[2].joints[5, 2]) and j5.transform.rotation.w == 1.0


def test_tf_never_shows_a_held_or_broken_hand_and_sticks_to_its_track():
    live, other, held = _hand(True, 0.6, seed=1), _hand(True, 0.9, seed=2), _hand(True, 0.99, seed=3)
    live.track_id, other.track_id, held.track_id = 1, 2, 3
    held.held = True
    # a held hand never, whatever its score; the best live one otherwise
    assert messages.tf_hands([held, live])["right"] is live
    assert messages.tf_hands([held]) == {}
    assert messages.tf_hands([live, other])["right"] is other
    # the track the frame showed last, while it is seen, even beside a higher score
    assert messages.tf_hands([live, other], previous={"right": 1})["right"] is live
    assert messages.tf_hands([other], previous={"right": 1})["right"] is other
    bad = _hand(True, 0.99, seed=4)
    bad.joints[3] = np.nan
    assert messages.tf_hands([bad]) == {}
    bad = _hand(True, 0.99, seed=5)
    bad.vertices[0, 0] = np.inf
    assert messages.tf_hands([bad, live])["right"] is live


def test_marker_cdr_equals_message_objects():
    """The fast path (serialized bytes) must be read back by rclpy as exactly the slow path."""
    convert = _convert()
    from rclpy.serialization import deserialize_message, serialize_message
    from std_msgs.msg import Header
    from visualization_msgs.msg import Marker, MarkerArray
    assert convert.cdr_self_check() is None
    header = Header(frame_id="camera_color_optical_frame_odd")   # odd lengths exercise the padding
    header.stamp.sec, header.stamp.nanosec = 1_700_000_000, 5
    hands = [_hand(False, seed=1), _hand(True, seed=2, with_mesh=False)]
    specs = convert.marker_specs(hands)
    fast = deserialize_message(convert.marker_array_cdr(1_700_000_000, 5, header.frame_id, specs), MarkerArray)
    slow = deserialize_message(serialize_message(convert.marker_array_msg(header, specs)), MarkerArray)
    assert fast == slow
    kinds = [(m.ns, m.id, m.type, m.action, len(m.points)) for m in fast.markers]
    assert kinds == [("", 0, Marker.CUBE, Marker.DELETEALL, 0),
                     ("mesh", 0, Marker.TRIANGLE_LIST, Marker.ADD, 4614),
                     ("skeleton", 0, Marker.LINE_LIST, Marker.ADD, 40),
                     ("skeleton", 1, Marker.LINE_LIST, Marker.ADD, 40)]
    assert fast.markers[1].color != fast.markers[3].color            # left and right differ
    assert all(m.header.frame_id == header.frame_id and m.header.stamp.nanosec == 5 for m in fast.markers)
    p = fast.markers[1].points[4]   # triangle 1, corner 1
    np.testing.assert_allclose([p.x, p.y, p.z], hands[0].vertices[hands[0].faces[1, 1]], rtol=1e-6)
    assert len(convert.SKELETON) == 20
    assert [s.ns for s in convert.marker_specs(hands, with_mesh=False)] == ["", "skeleton", "skeleton"]


def test_image_cdr_and_overlay():
    convert = _convert()
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image
    rgb = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    from hamer_ros.perception.overlay import draw_hands
    K = np.array([[60.0, 0, 32], [0, 60, 24], [0, 0, 1]])
    out = draw_hands(rgb, [_hand(True), _hand(False, seed=3)], K)
    assert out.shape == rgb.shape and out.dtype == np.uint8 and not np.shares_memory(out, rgb)
    msg = deserialize_message(convert.image_cdr(3, 4, "cam_x", out), Image)
    assert (msg.height, msg.width, msg.encoding, msg.step) == (48, 64, "rgb8", 192)
    assert msg.header.frame_id == "cam_x" and msg.header.stamp.sec == 3 and msg.header.stamp.nanosec == 4
    np.testing.assert_array_equal(np.frombuffer(msg.data, np.uint8).reshape(48, 64, 3), out)
