"""The installed node on Humble's rclpy API, over real DDS: every rclpy name newer than Humble is
hidden before the node is imported (run_node_as_humble.py, from the inventory of Humble's rclpy),
then the node starts, receives CameraInfo from latched and from volatile publishers (reliable and
best effort), serves frames, takes parameter changes at run time and shuts down cleanly."""
from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

try:
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo

    from test_node import ROIS, Camera, NodeProcess, tester, _serve_good_frame   # noqa: F401 -- fixture
except ImportError as exc:  # a ROS-free checkout: only the core's tests apply
    pytest.skip(f"ROS 2 not importable ({exc}); run `bash scripts/build_ros.sh && source scripts/env.sh` first",
                allow_module_level=True)

pytestmark = pytest.mark.ros

AS_HUMBLE = [sys.executable, str(Path(__file__).resolve().parent / "run_node_as_humble.py")]


@pytest.fixture(scope="module")
def node(tester, tmp_path_factory, tiny_checkpoint, mano_path):
    proc = NodeProcess("humble", dict(checkpoint=str(tiny_checkpoint), mano=str(mano_path), device="cpu",
                                      detector="fixed", rois=ROIS, tracking=False, image_timeout=30.0,
                                      qos_reliability="reliable"),
                       tmp_path_factory.mktemp("humble"), command=AS_HUMBLE)
    tester.subscribe(proc.ns, markers=False, debug=False)
    yield proc
    proc.stop()


def test_newer_apis_are_hidden(node):
    line = node.wait_log(r"run_node_as_humble: hid", timeout=30)
    from hamer_ros.ros.compat import NEWER_THAN_HUMBLE
    for name in NEWER_THAN_HUMBLE:
        assert name in line, line
    node.wait_log(r"\]: active", timeout=60)


@pytest.mark.parametrize("frame, reliability, durability", [
    ("latched_cam", ReliabilityPolicy.RELIABLE, DurabilityPolicy.TRANSIENT_LOCAL),
    ("volatile_reliable_cam", ReliabilityPolicy.RELIABLE, DurabilityPolicy.VOLATILE),
    ("volatile_best_effort_cam", ReliabilityPolicy.BEST_EFFORT, DurabilityPolicy.VOLATILE),
])
def test_camera_info_from_each_kind_of_publisher(tester, node, frame, reliability, durability):
    """Each publisher alone on the topic, one camera (frame_id) each: a frame of that camera is
    placed only once its own CameraInfo arrived (the one-camera rule), so hands back mean the
    CameraInfo came through this QoS."""
    node.wait_log(r"\]: active", timeout=60)
    camera = Camera(tester, node.ns)
    tester.node.destroy_publisher(camera.info_pub)
    camera.info_pub = tester.node.create_publisher(
        CameraInfo, f"{node.ns}/camera_info", QoSProfile(depth=1, reliability=reliability, durability=durability))
    try:
        if durability == DurabilityPolicy.TRANSIENT_LOCAL:
            camera.info(frame=frame)   # once, before the node has subscribed: latched delivery

            def tick():
                return camera.image(frame=frame)
        else:
            def tick():                # volatile: only what is published after the match arrives
                camera.info(frame=frame)
                return camera.image(frame=frame)
        msg = _serve_good_frame(tester, camera, node, timeout=30, frame=frame) if durability == \
            DurabilityPolicy.TRANSIENT_LOCAL else _serve_volatile(tester, camera, node, tick)
        assert msg.header.frame_id == frame and len(msg.hands) == 2
    finally:
        tester.node.destroy_publisher(camera.info_pub)
        tester.node.destroy_publisher(camera.image_pub)
    assert "incompatible QoS" not in node.output()


def _serve_volatile(tester, camera, node, tick):
    from test_node import _ns
    topic = f"{node.ns}/hands"
    sent: set[int] = set()
    got = tester.wait(lambda: next((m for _, m in tester.inbox[topic] if _ns(m.header) in sent), None), 30,
                      "a HandArray for a frame with volatile CameraInfo", tick=lambda: sent.add(tick()))
    node.assert_alive()
    return got


def test_parameters_at_run_time(tester, node):
    node.wait_log(r"\]: active", timeout=60)
    (ok,) = tester.set_parameters(node.fqn, min_score=0.3)
    assert ok.successful, ok.reason
    node.wait_log(r"parameter min_score = 0\.3", timeout=10)
    (bad,) = tester.set_parameters(node.fqn, min_score=2.0)
    assert not bad.successful and "min_score" in bad.reason
    (read_only,) = tester.set_parameters(node.fqn, device="cuda")
    assert not read_only.successful
    (bad_rois,) = tester.set_parameters(node.fqn, rois="[{box: [1, 2], side: left}]")
    assert not bad_rois.successful and "box" in bad_rois.reason
    node.assert_alive()


def test_incompatible_qos_is_reported(tester, node):
    """The node asks for reliable images here: a best-effort camera can never reach it, and the
    warning (Humble's event callbacks, Humble's qos_policy_name_from_kind) says so."""
    node.wait_log(r"\]: active", timeout=60)
    camera = Camera(tester, node.ns, image_reliability=ReliabilityPolicy.BEST_EFFORT)
    try:
        line = node.wait_log(r"a publisher on \S+ has incompatible QoS", timeout=20)
    finally:
        tester.node.destroy_publisher(camera.image_pub)
        tester.node.destroy_publisher(camera.info_pub)
    assert f"{node.ns}/image" in line and "RELIABILITY" in line and "best_effort" in line, line


def test_clean_shutdown(node):
    node.wait_log(r"\]: active", timeout=60)
    assert node.stop(signal.SIGINT) == 0
    out = node.output()
    assert "Traceback" not in out and "AttributeError" not in out and "ImportError" not in out, out[-3000:]


@pytest.mark.parametrize("offered, reliability, durability", [
    ([], ReliabilityPolicy.RELIABLE, DurabilityPolicy.VOLATILE),
    ([(ReliabilityPolicy.RELIABLE, DurabilityPolicy.TRANSIENT_LOCAL)],
     ReliabilityPolicy.RELIABLE, DurabilityPolicy.TRANSIENT_LOCAL),
    ([(ReliabilityPolicy.BEST_EFFORT, DurabilityPolicy.VOLATILE)], ReliabilityPolicy.BEST_EFFORT, DurabilityPolicy.VOLATILE),
    ([(ReliabilityPolicy.RELIABLE, DurabilityPolicy.TRANSIENT_LOCAL), (ReliabilityPolicy.RELIABLE, DurabilityPolicy.VOLATILE)],
     ReliabilityPolicy.RELIABLE, DurabilityPolicy.VOLATILE),
    ([(ReliabilityPolicy.RELIABLE, DurabilityPolicy.TRANSIENT_LOCAL), (ReliabilityPolicy.BEST_EFFORT, DurabilityPolicy.TRANSIENT_LOCAL)],
     ReliabilityPolicy.BEST_EFFORT, DurabilityPolicy.TRANSIENT_LOCAL),
])
def test_matching_qos_is_compatible_with_every_publisher(offered, reliability, durability):
    from hamer_ros.ros.compat import matching_qos
    qos = matching_qos(QoSProfile(depth=1, reliability=r, durability=d) for r, d in offered)
    assert (qos.reliability, qos.durability) == (reliability, durability)
    for r, d in offered:   # a subscription may not ask for more than any publisher offers
        assert not (qos.reliability == ReliabilityPolicy.RELIABLE and r == ReliabilityPolicy.BEST_EFFORT)
        assert not (qos.durability == DurabilityPolicy.TRANSIENT_LOCAL and d == DurabilityPolicy.VOLATILE)
