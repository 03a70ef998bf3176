"""The colcon workspace: hamer_ros_msgs (generated message types) and hamer_ros (the Python
package, the node), a consumer that builds against hamer_ros_msgs alone, and a real DDS round
trip of a HandArray.

Needs the built environment: `bash scripts/build_ros.sh && source scripts/env.sh`.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

try:
    import rclpy
except ImportError as exc:  # a ROS-free checkout: only the core's tests apply
    pytest.skip(f"rclpy not importable ({exc}); run `bash scripts/build_ros.sh && "
                "source scripts/env.sh` first", allow_module_level=True)


try:
    from hamer_ros_msgs.msg import Hand, HandArray
except ImportError as exc:
    pytest.skip(f"hamer_ros_msgs not importable ({exc}); run `bash scripts/build_ros.sh && "
                "source scripts/env.sh` first", allow_module_level=True)

from tf2_msgs.msg import TFMessage  # noqa: E402  (after the skips above)

# tf2_msgs/msg/TFMessage's type hash in ROS 2 Jazzy: the test stand-in must be the same type.
TF_MESSAGE_HASH = "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087"


def test_hand_fields():
    # The wire contract, field by field and in order; a change here breaks every consumer.
    assert Hand.get_fields_and_field_types() == {
        "side": "uint8",
        "track_id": "int32",
        "score": "float",
        "box": "float[4]",
        "joints": "geometry_msgs/Point[21]",
        "keypoints_2d": "float[42]",
        "wrist": "geometry_msgs/Pose",
        "joints_local": "geometry_msgs/Point[21]",
        "global_orient": "float[9]",
        "hand_pose": "float[135]",
        "betas": "float[10]",
        "reprojection_error": "float",
        "vertices": "sequence<float>",
        "has_mesh": "boolean",
        "held": "boolean",
        "side_score": "float",
        "placement": "uint8",
        "scale": "float",
        "depth_residual": "float",
    }
    assert (Hand.LEFT, Hand.RIGHT) == (0, 1)
    assert (Hand.PLACEMENT_RGB, Hand.PLACEMENT_RGBD, Hand.PLACEMENT_RGBD_HELD) == (0, 1, 2)

    hand = Hand()
    assert len(hand.joints) == 21
    assert hand.joints[0].__class__.__name__ == "Point"
    sizes = {"box": 4, "keypoints_2d": 42, "global_orient": 9, "hand_pose": 135, "betas": 10}
    for name, size in sizes.items():
        assert len(getattr(hand, name)) == size, name
    assert len(hand.vertices) == 0
    assert hand.has_mesh is False


def test_hand_array_and_tf_message_fields():
    assert HandArray.get_fields_and_field_types() == {
        "header": "std_msgs/Header",
        "hands": "sequence<hamer_ros_msgs/Hand>",
    }
    assert TFMessage.get_fields_and_field_types() == {
        "transforms": "sequence<geometry_msgs/TransformStamped>",
    }


def test_tf_message_is_the_real_type():
    from ament_index_python.packages import get_package_share_directory

    description = Path(get_package_share_directory("tf2_msgs"), "msg", "TFMessage.json")
    hashes = json.loads(description.read_text())["type_hashes"]
    assert hashes[0] == {"type_name": "tf2_msgs/msg/TFMessage", "hash_string": TF_MESSAGE_HASH}


def test_messages_and_code_are_two_packages(tmp_path):
    # Run from an empty directory so no checkout on sys.path can stand in for the install space.
    probe = ("import hamer_ros, hamer_ros.ros, hamer_ros_msgs.msg; "
             "print(hamer_ros.__file__); print(hamer_ros_msgs.msg.__file__); print(hamer_ros.__version__)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    init, msg_init, version = out.stdout.split()
    assert Path(msg_init).parent.parent.name == "hamer_ros_msgs" and Path(init).parent.name == "hamer_ros"
    assert not Path(init).parent.joinpath("msg").exists()      # no generated code inside hamer_ros
    assert version


def test_a_consumer_builds_and_runs_against_the_messages_alone(tmp_path):
    """A robot-side package that needs only Hand/HandArray: its package.xml and CMake find
    hamer_ros_msgs; built and run with only hamer_ros_msgs's install prefix (and ROS) on the paths,
    not hamer_ros, torch or anything else of the perception package."""
    from ament_index_python.packages import get_package_prefix
    msgs_prefix = Path(get_package_prefix("hamer_ros_msgs"))
    ours = Path(get_package_prefix("hamer_ros"))
    consumer = Path(__file__).resolve().parent.parent / "ros_interfaces" / "hand_consumer"
    env = dict(os.environ)
    for var in ("AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH", "PYTHONPATH"):
        env[var] = os.pathsep.join(p for p in env.get(var, "").split(os.pathsep)
                                   if p and Path(p) != ours and ours not in Path(p).parents)
    colcon = Path(sys.executable).with_name("colcon")
    cmd = [str(colcon) if colcon.exists() else "colcon", "--log-base", str(tmp_path / "log"), "build",
           "--base-paths", str(consumer), "--build-base", str(tmp_path / "build"),
           "--install-base", str(tmp_path / "install"), "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}",
           "-DBUILD_TESTING=OFF"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    site = next((tmp_path / "install" / "hand_consumer").glob("lib/python3*/site-packages"))
    run_env = dict(env, PYTHONPATH=os.pathsep.join([str(site), env.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-m", "hand_consumer"], env=run_env, capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "hands", str(msgs_prefix)], out.stdout


def test_hand_mesh_node_is_installed():
    from ament_index_python.packages import get_package_prefix

    node = Path(get_package_prefix("hamer_ros"), "lib", "hamer_ros", "hand_mesh_node")
    assert node.is_file() and os.access(node, os.X_OK)
    assert "hamer_ros.ros.node" in node.read_text()


def _sample_hand_array():
    msg = HandArray()
    msg.header.stamp.sec = 1_700_000_000
    msg.header.stamp.nanosec = 123_456_789
    msg.header.frame_id = "camera_color_optical_frame"
    for side in (Hand.LEFT, Hand.RIGHT):
        hand = Hand(side=side, track_id=7 + side, score=0.9, has_mesh=True)
        hand.box = np.array([10, 20, 110, 140], dtype=np.float32)
        for i, p in enumerate(hand.joints):
            p.x, p.y, p.z = 0.01 * i, -0.02 * i, 0.5 + 0.001 * i
        hand.keypoints_2d = np.arange(42, dtype=np.float32) + 100 * side
        hand.wrist.position = hand.joints[0]
        hand.wrist.orientation.w = 1.0
        hand.global_orient = np.eye(3, dtype=np.float32).ravel()
        hand.hand_pose = np.tile(np.eye(3, dtype=np.float32).ravel(), 15)
        hand.betas = np.linspace(-1, 1, 10, dtype=np.float32)
        hand.reprojection_error = 1.5
        hand.vertices = np.random.default_rng(side).random(778 * 3, dtype=np.float32).tolist()
        msg.hands.append(hand)
    return msg


@pytest.mark.ros
def test_dds_round_trip(monkeypatch):
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.serialization import serialize_message

    # Read by rcl at init: keep discovery off the network, and away from parallel test runs.
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("ROS_DOMAIN_ID", str(os.getpid() % 100 + 1))
    monkeypatch.delenv("ROS_LOCALHOST_ONLY", raising=False)

    sent = _sample_hand_array()
    received = []
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        pub_node = rclpy.create_node("hand_pub", context=context)
        sub_node = rclpy.create_node("hand_sub", context=context)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        pub = pub_node.create_publisher(HandArray, "hands", qos)
        sub_node.create_subscription(HandArray, "hands", received.append, qos)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(pub_node)
        executor.add_node(sub_node)
        # Discovery takes a moment; publish until the first message lands.
        deadline = time.monotonic() + 15.0
        while not received and time.monotonic() < deadline:
            pub.publish(sent)
            executor.spin_once(timeout_sec=0.1)
        executor.shutdown()
        pub_node.destroy_node()
        sub_node.destroy_node()
    finally:
        rclpy.shutdown(context=context)

    assert received, "no HandArray came back within 15 s"
    got = received[0]
    # Compared on the wire: the float32 fields hold `sent`'s Python floats only after rounding.
    assert serialize_message(got) == serialize_message(sent)
    assert got.header.stamp.sec == 1_700_000_000 and got.header.stamp.nanosec == 123_456_789
    assert got.header.frame_id == "camera_color_optical_frame"
    assert [h.side for h in got.hands] == [Hand.LEFT, Hand.RIGHT]
    assert len(got.hands[1].vertices) == 778 * 3
    np.testing.assert_array_equal(got.hands[1].keypoints_2d, sent.hands[1].keypoints_2d)
