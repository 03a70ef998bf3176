"""One camera per image, over real DDS with the installed node: an image is placed only with a
CameraInfo of its own frame_id; another camera's CameraInfo never leaks into its frames; binning
and ROI CameraInfos place hands exactly as the equivalent plain intrinsics do."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

try:
    from sensor_msgs.msg import CameraInfo

    from test_node import H, K, ROIS, W, Camera, NodeProcess, tester, _ns, _serve_good_frame, _stamp, _test_pattern
except ImportError as exc:  # a ROS-free checkout: only the core's tests apply
    pytest.skip(f"ROS 2 not importable ({exc}); run `bash scripts/build_ros.sh && source scripts/env.sh` first",
                allow_module_level=True)

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def node(tester, tmp_path_factory, tiny_checkpoint, mano_path):
    proc = NodeProcess("cams", dict(checkpoint=str(tiny_checkpoint), mano=str(mano_path), device="cpu",
                                    detector="fixed", rois=ROIS, tracking=False, image_timeout=30.0),
                       tmp_path_factory.mktemp("cams"))
    tester.subscribe(proc.ns, markers=False, debug=False)
    yield proc
    proc.stop()


def publish_info(camera: Camera, frame: str, K_full: np.ndarray, size: tuple[int, int],
                 binning: tuple[int, int] = (0, 0), roi: tuple[int, int, int, int] = (0, 0, 0, 0)) -> None:
    msg = CameraInfo(width=size[0], height=size[1], distortion_model="plumb_bob", binning_x=binning[0],
                     binning_y=binning[1])
    msg.header.frame_id = frame
    msg.header.stamp = _stamp(camera.stamp_now())
    msg.k = np.asarray(K_full, dtype=np.float64).ravel()
    msg.d = [0.0] * 5
    msg.p = np.hstack([np.asarray(K_full, dtype=np.float64), np.zeros((3, 1))]).ravel()
    msg.roi.x_offset, msg.roi.y_offset, msg.roi.width, msg.roi.height = roi
    camera.info_pub.publish(msg)


def joints_of(msg) -> np.ndarray:
    return np.array([[(p.x, p.y, p.z) for p in h.joints] for h in msg.hands])


def test_each_image_is_placed_with_its_own_camera_only(tester, node):
    node.wait_log(r"ready|active", timeout=60)
    camera = Camera(tester, node.ns)
    pixels = _test_pattern(7)
    publish_info(camera, "cam_a", K, (W, H))
    a = _serve_good_frame(tester, camera, node, pixels=pixels, frame="cam_a")
    assert a.header.frame_id == "cam_a" and len(a.hands) == 2

    # an image of a camera that has no CameraInfo: skipped, with both ids and the fix in the log
    topic = f"{node.ns}/hands"
    stamps = {camera.image(pixels=pixels, frame="cam_c") for _ in range(5)}
    line = node.wait_log(r"no CameraInfo on \S+ for the image's frame 'cam_c'", timeout=10)
    assert "'cam_a'" in line and "camera_info_any_frame" in line
    _serve_good_frame(tester, camera, node, pixels=pixels, frame="cam_a")     # later frames still served
    assert not {_ns(m.header) for m in tester.received(topic)} & stamps, "an image was placed with a foreign CameraInfo"

    # a second camera (fx = 450) on the same topic: its frames use its K, cam_a's keep theirs
    K_b = K * [[1.5], [1.5], [1.0]]
    publish_info(camera, "cam_b", K_b, (W, H))
    b = _serve_good_frame(tester, camera, node, pixels=pixels, frame="cam_b")
    a2 = _serve_good_frame(tester, camera, node, pixels=pixels, frame="cam_a")
    np.testing.assert_allclose(joints_of(a2), joints_of(a), atol=1e-6)
    assert b.header.frame_id == "cam_b"
    # the same pixels through a 1.5x longer lens: the hands are about 1.5x as far away (not exactly:
    # the rays through the crops and the perspective change too)
    ratio = joints_of(b)[:, :, 2].mean() / joints_of(a)[:, :, 2].mean()
    assert 1.35 < ratio < 1.65, ratio
    node.assert_alive()


def test_binning_and_roi_place_hands_as_the_plain_intrinsics(tester, node):
    node.wait_log(r"ready|active", timeout=60)
    camera = Camera(tester, node.ns)
    pixels = _test_pattern(11)
    publish_info(camera, "cam_plain", K, (W, H))
    plain = _serve_good_frame(tester, camera, node, pixels=pixels, frame="cam_plain")
    # the same W x H image as a 2x2-binned ROI of a 1280 x 960 sensor, offset (40, 20)
    K_full = np.array([[2 * K[0, 0], 0, 2 * K[0, 2] + 40], [0, 2 * K[1, 1], 2 * K[1, 2] + 20], [0, 0, 1]])
    publish_info(camera, "cam_binned", K_full, (1280, 960), binning=(2, 2), roi=(40, 20, 2 * W, 2 * H))
    binned = _serve_good_frame(tester, camera, node, pixels=pixels, frame="cam_binned")
    np.testing.assert_allclose(joints_of(binned), joints_of(plain), atol=1e-6)
    # no size warning: the ROI and binning explain the image size
    assert "cam_binned' is for" not in node.output()


def test_a_fisheye_camera_is_never_placed_with_the_wrong_lens_model(tester, node):
    """equidistant distortion: its frames are skipped with one clear error naming the fix; a
    pinhole camera on the same topic is still served."""
    node.wait_log(r"ready|active", timeout=60)
    camera = Camera(tester, node.ns)
    pixels = _test_pattern(13)
    msg = CameraInfo(width=W, height=H, distortion_model="equidistant")
    msg.header.frame_id = "cam_fish"
    msg.header.stamp = _stamp(camera.stamp_now())
    msg.k = np.asarray(K, dtype=np.float64).ravel()
    msg.d = [0.08, -0.02, 0.004, -0.001]
    msg.p = np.hstack([np.asarray(K, dtype=np.float64), np.zeros((3, 1))]).ravel()
    camera.info_pub.publish(msg)
    topic = f"{node.ns}/hands"
    mark = len(node.output())
    stamps = set()
    deadline = time.monotonic() + 15
    while "distortion model 'equidistant'" not in node.output()[mark:] and time.monotonic() < deadline:
        stamps.add(camera.image(pixels=pixels, frame="cam_fish"))
        time.sleep(0.2)
    line = node.wait_log(r"distortion model 'equidistant'", timeout=1, after=mark)
    assert "skipping the frame" in line and "image_is_rectified:=true" in line
    publish_info(camera, "cam_pin", K, (W, H))
    _serve_good_frame(tester, camera, node, pixels=pixels, frame="cam_pin")
    assert not {_ns(m.header) for m in tester.received(topic)} & stamps, "a fisheye frame was placed"
