#!/usr/bin/env python3
"""hand_mesh_node's own cost per frame on the inference thread, beyond the pipeline: image
conversion, CameraInfo pairing, HandArray and TF building and publishing (real rclpy publishers,
real DDS, a HandArray subscriber attached), and the building blocks, hand_viz_node's markers
from a HandArray included. The latency the robot sees with a viewer attached:
benchmarks/node_latency.py.

In-process: the node runs with a stand-in pipeline that returns two hands with full meshes
(778 vertices, 1538 faces) at once, so everything measured is node overhead.

    bash scripts/build_ros.sh && source scripts/env.sh && python -m benchmarks node [--frames 200]

Prints markdown tables (median and p95, milliseconds).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the repository: hamer_ros_testing

import argparse
import array
import os
import statistics
import time

import numpy as np


def _hands(width: int, height: int) -> list:
    from hamer_ros.perception.types import Hand
    from hamer_ros_testing import synthetic_mano_arrays

    faces = synthetic_mano_arrays(0)["f"].astype(np.int64)
    rng = np.random.default_rng(0)
    hands = []
    for i, is_right in enumerate((False, True)):
        centre = np.array([-0.15 + 0.3 * i, 0.0, 0.6])
        joints = centre + rng.normal(0, 0.03, (21, 3))
        R = np.linalg.qr(rng.normal(size=(3, 3)))[0]
        R *= np.linalg.det(R)
        kp = joints[:, :2] / joints[:, 2:] * 500 + [width / 2, height / 2]
        hands.append(Hand(
            is_right=is_right, score=0.9, box=np.array([*kp.min(0), *kp.max(0)], np.float32), joints=joints,
            keypoints_2d=kp, wrist_position=joints[0], wrist_orientation=R, reprojection_error=1.0,
            vertices=(centre + rng.normal(0, 0.03, (778, 3))).astype(np.float32),
            faces=faces if is_right else faces[:, [0, 2, 1]], global_orient=R.astype(np.float32),
            hand_pose=np.tile(np.eye(3, dtype=np.float32), (15, 1, 1)), betas=np.zeros(10, np.float32),
            track_id=i))
    return hands


class FakePipeline:
    """Answers instantly with fixed hands: what remains is the node's own work."""

    has_mesh = True
    device = "cpu"
    backend = "none (stand-in)"
    engine = None
    model_error = ""
    tracker = None

    def __init__(self, hands: list) -> None:
        from hamer_ros.perception.pipeline import PipelineConfig
        from hamer_ros.perception.types import StageTimes

        self.hands = hands
        self.config = PipelineConfig(detector="fixed")
        self.last_times = StageTimes()
        self.faces_right = hands[1].faces
        self.faces_left = hands[0].faces

    def __call__(self, image, K, dist=None, stamp=None):
        return self.hands

    def reset_tracking(self) -> None:
        pass

    def close(self) -> None:
        pass


def _image_msg(width: int, height: int, encoding: str, stamp_ns: int):
    from sensor_msgs.msg import Image

    channels = 3
    msg = Image(width=width, height=height, encoding=encoding, step=width * channels)
    msg.data = array.array("B", np.random.default_rng(1).integers(0, 256, width * height * channels,
                                                                   dtype=np.uint8).tobytes())
    msg.header.frame_id = "camera_color_optical_frame"
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    return msg


def _camera_info(width: int, height: int):
    from hamer_ros.ros.sync import Intrinsics

    K = np.array([[500.0, 0, width / 2], [0, 500.0, height / 2], [0, 0, 1]])
    return Intrinsics(K=K, D=None, stamp_ns=0, frame_id="camera_color_optical_frame", width=width, height=height)


def _stats(xs: list[float]) -> tuple[float, float]:
    xs = sorted(xs)
    return statistics.median(xs), xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=200)
    args = ap.parse_args()
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 100 + 1))
    os.environ.pop("ROS_LOCALHOST_ONLY", None)

    import rclpy
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Header

    from hamer_ros_msgs.msg import HandArray
    from hamer_ros import messages
    from hamer_ros.ros import convert
    from hamer_ros.ros.node import HandMeshNode

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    ns = f"/bench{os.getpid()}"
    rows = []
    try:
        for width, height in ((640, 480), (1280, 720)):
            hands = _hands(width, height)
            node = HandMeshNode(pipeline=FakePipeline(hands), context=ctx, namespace=ns,
                                parameter_overrides=[Parameter("detector", value="fixed"),
                                                     Parameter("rois", value="[{box: [0, 0, 10, 10], side: right}]")])
            node.start()
            sub = rclpy.create_node("bench_sub", context=ctx, namespace=ns)
            qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
            sub.create_subscription(HandArray, "hands", lambda m: None, qos)
            node._ctx.sync.add(_camera_info(width, height))
            for encoding in ("rgb8", "bgr8"):
                over, conv = [], []
                for i in range(args.frames + 10):
                    msg = _image_msg(width, height, encoding, 10**18 + i * 10**7)
                    t = node._worker.process(msg, time.monotonic())
                    if i >= 10:   # warm-up
                        over.append(t["convert"] + t["publish"])
                        conv.append(t["convert"])
                rows.append((f"{width}x{height}", encoding, "hands + TF", *_stats(over), *_stats(conv)))
            node.close()
            node.destroy_node()
            sub.destroy_node()

        print("\n### hand_mesh_node overhead per frame (two hands with meshes; ms)\n")
        print("| image | encoding | outputs built | overhead median | overhead p95 | of which image+sync median |")
        print("|---|---|---|---:|---:|---:|")
        for r in rows:
            print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.3f} | {r[4]:.3f} | {r[5]:.3f} |")

        # The two choices the fast paths rest on, measured alone.
        header = Header(frame_id="camera_color_optical_frame")
        hands = _hands(1280, 720)
        specs = convert.marker_specs(hands)
        vert = hands[0].vertices.ravel()
        from hamer_ros_msgs.msg import Hand as HandMsg
        sent = convert.hands_to_msg(header, hands, True)
        faces = {True: hands[1].faces, False: hands[0].faces}

        def viz_markers() -> bytes:
            back = [convert.hand_from_msg(m, faces) for m in sent.hands]
            return convert.marker_array_cdr(0, 0, header.frame_id, convert.marker_specs(back))
        micro = {
            "MarkerArray as message objects (rclpy serializes)": lambda: convert.marker_array_msg(header, specs),
            "MarkerArray as CDR bytes (numpy)": lambda: convert.marker_array_cdr(0, 0, header.frame_id, specs),
            "Hand.vertices = numpy float32 array": lambda: setattr(HandMsg(), "vertices", vert),
            "Hand.vertices = array.array('f', bytes)": lambda: setattr(HandMsg(), "vertices",
                                                                     array.array("f", vert.tobytes())),
            "HandArray of 2 hands (with vertices)": lambda: convert.hands_to_msg(header, hands, True),
            "TF for 2 hands (+ 42 joint frames)": lambda: convert.hand_transforms(header, messages.tf_hands(hands), "", True),
            "hand_viz_node: markers from a HandArray of 2 hands (read back + CDR)": viz_markers,
        }
        print("\n### building blocks (ms, median of 50)\n")
        print("| step | median |")
        print("|---|---:|")
        for name, fn in micro.items():
            ts = []
            for _ in range(50):
                t0 = time.perf_counter()
                fn()
                ts.append((time.perf_counter() - t0) * 1e3)
            print(f"| {name} | {statistics.median(ts):.3f} |")
    finally:
        rclpy.try_shutdown(context=ctx)


def _wait(pred, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit("bench_node: a subscriber was not matched within 10 s")
        time.sleep(0.05)


if __name__ == "__main__":
    main()
