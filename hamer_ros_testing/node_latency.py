#!/usr/bin/env python3
"""Does someone watching the debug image delay the robot? HandArray and marker latency of the
installed hand_mesh_node (a separate process, real DDS), without and with a viewer process
subscribed to hands/debug_image and hands/debug_image/compressed.

The node runs a small random-weight HaMeR (hamer_ros_testing) on fixed boxes on the CPU, so the
meshes are full size (778 vertices per hand) while inference stays quick. Latency = arrival in
this process - the image stamp (taken when the frame is published), for the same frames.

    bash scripts/build_ros.sh && source scripts/env.sh && python -m benchmarks node_latency
        [--frames 100] [--rate 10] [--size 1280x720]

Prints a markdown table (median and p95, ms).
"""
from __future__ import annotations

import sys
from pathlib import Path


import argparse
import array
import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time

import numpy as np

ROIS = "[{box: [100, 100, 400, 500], side: left}, {box: [700, 100, 1000, 500], side: right}]"
PHASES = ("none", "raw + compressed, another process")


def _node_executable() -> Path:
    from ament_index_python.packages import get_package_prefix
    return Path(get_package_prefix("hamer_ros"), "lib", "hamer_ros", "hand_mesh_node")


def _weights(folder: Path) -> tuple[Path, Path]:
    from hamer_ros_testing import make_tiny_model, write_checkpoint, write_synthetic_mano
    mano = write_synthetic_mano(folder / "MANO_RIGHT.pkl")
    return write_checkpoint(folder / "hamer_ckpts", make_tiny_model(seed=0, mano_path=mano)), mano


def _stats(xs: list[float]) -> tuple[float, float]:
    if not xs:
        return float("nan"), float("nan")
    xs = sorted(xs)
    return statistics.median(xs), xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]


def _view(ns: str) -> None:
    """A viewer in its own process, as RViz would be: subscribes to both debug images; on
    SIGINT prints the raw ones' latencies (ms) as JSON and how many JPEGs arrived."""
    import json

    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image

    rclpy.init()
    node = rclpy.create_node("latency_bench_viewer")
    raw: list[float] = []
    jpeg = [0]

    def on_raw(msg: Image) -> None:
        raw.append((time.time_ns() - (msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)) / 1e6)

    def on_jpeg(msg: CompressedImage) -> None:
        jpeg[0] += 1

    viewer = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
    node.create_subscription(Image, f"{ns}/hands/debug_image", on_raw, viewer)
    node.create_subscription(CompressedImage, f"{ns}/hands/debug_image/compressed", on_jpeg, viewer)
    print("ready", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    print(json.dumps({"debug": raw, "compressed": jpeg[0]}), flush=True)
    rclpy.try_shutdown()


def measure(frames: int = 100, rate: float = 10.0, width: int = 1280, height: int = 720,
            workdir: Path | None = None, log=None, rounds: int = 4) -> dict[str, dict[str, list[float]]]:
    """{phase: {"hands": [ms...], "markers": [ms...], "debug": [ms...], "compressed": [count]}} for
    `frames` frames per phase (in `rounds` alternating blocks), published at `rate` Hz (best effort, as a camera does). The debug
    images go to a viewer in a third process, so this one measures only what the robot gets."""
    import json
    import sys

    import rclpy
    import yaml
    from builtin_interfaces.msg import Time
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image
    from visualization_msgs.msg import MarkerArray

    from hamer_ros_msgs.msg import HandArray

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(workdir or tmp_s)
        ckpt, mano = _weights(tmp)
        ns = f"/latency{os.getpid()}"
        params = tmp / "params.yaml"
        params.write_text(yaml.safe_dump({"/**": {"ros__parameters": dict(
            checkpoint=str(ckpt), mano=str(mano), device="cpu", detector="fixed", rois=ROIS,
            image_timeout=60.0)}}))
        env = dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0",
                   PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
        node_log = open(tmp / "node.log", "wb")
        proc = subprocess.Popen([str(_node_executable()), "--ros-args", "--params-file", str(params),
                                 "-r", f"__ns:={ns}"], stdout=node_log, stderr=subprocess.STDOUT, env=env)
        ctx = rclpy.Context()
        rclpy.init(context=ctx)
        node = rclpy.create_node("latency_bench", context=ctx)
        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(node)
        stop = threading.Event()

        def spin() -> None:
            while not stop.is_set():
                executor.spin_once(timeout_sec=0.05)

        spinner = threading.Thread(target=spin, daemon=True)
        arrivals: dict[str, dict[int, float]] = {"hands": {}, "markers": {}}
        viewer_proc = None
        lock = threading.Lock()

        def keep(kind: str):
            def cb(msg) -> None:
                t = time.time_ns()
                header = msg.markers[0].header if kind == "markers" else msg.header
                with lock:
                    arrivals[kind].setdefault(header.stamp.sec * 10**9 + header.stamp.nanosec, t)
            return cb

        try:
            reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
            node.create_subscription(HandArray, f"{ns}/hands", keep("hands"), reliable)
            node.create_subscription(MarkerArray, f"{ns}/hands/markers", keep("markers"), reliable)
            image_pub = node.create_publisher(Image, f"{ns}/image", QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
            info_pub = node.create_publisher(CameraInfo, f"{ns}/camera_info", QoSProfile(
                depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
            spinner.start()
            info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
            info.header.frame_id = "camera_color_optical_frame"
            K = np.array([[900.0, 0, width / 2], [0, 900.0, height / 2], [0, 0, 1]])
            info.k, info.d = K.ravel(), [0.0] * 5
            info_pub.publish(info)
            img = Image(width=width, height=height, encoding="rgb8", step=width * 3)
            img.data = array.array("B", np.random.default_rng(0).integers(0, 256, width * height * 3, np.uint8).tobytes())
            img.header.frame_id = info.header.frame_id

            def send() -> int:
                stamp = time.time_ns()
                img.header.stamp = Time(sec=stamp // 10**9, nanosec=stamp % 10**9)
                image_pub.publish(img)
                return stamp

            # warm up until the node answers (model load, discovery, first-frame costs)
            deadline = time.monotonic() + 120
            while True:
                sent = send()
                time.sleep(0.3)
                with lock:
                    if sent in arrivals["markers"]:
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"hand_mesh_node did not answer:\n{(tmp / 'node.log').read_text()[-3000:]}")
            # Phases alternate in blocks, so a change in the machine's other load hits both alike.
            results = {phase: {"hands": [], "markers": [], "debug": [], "compressed": [0]} for phase in PHASES}
            block = max(1, frames // rounds)
            for _ in range(rounds):
                for phase in PHASES:
                    viewer_proc = None
                    if phase == PHASES[1]:
                        viewer_proc = subprocess.Popen([sys.executable, "-m", "hamer_ros_testing.node_latency",
                                                        "--role", "viewer", "--ns", ns], stdout=subprocess.PIPE,
                                                       text=True, env=env)
                        if viewer_proc.stdout.readline().strip() != "ready":
                            raise RuntimeError("the viewer process did not start")
                        time.sleep(2.0)   # discovery, and the node notices new subscribers within 0.5 s
                    stamps = []
                    start = time.monotonic()
                    for i in range(block):
                        time.sleep(max(0.0, start + i / rate - time.monotonic()))
                        stamps.append(send())
                    time.sleep(1.5)
                    r = results[phase]
                    with lock:
                        for kind, got in arrivals.items():
                            r[kind] += [(got[s] - s) / 1e6 for s in stamps if s in got]
                    if viewer_proc is not None:
                        viewer_proc.send_signal(signal.SIGINT)
                        out, _ = viewer_proc.communicate(timeout=30)
                        seen = json.loads(out.strip().splitlines()[-1])
                        r["debug"] += seen["debug"]
                        r["compressed"][0] += seen["compressed"]
                        time.sleep(1.0)   # the node notices the viewer is gone
                    if log:
                        log(f"{phase}: " + ", ".join(f"{k} {len(v)}" for k, v in r.items()))
            return results
        finally:
            stop.set()
            if viewer_proc is not None and viewer_proc.poll() is None:
                viewer_proc.kill()
                viewer_proc.wait()
            if spinner.is_alive():
                spinner.join(5)
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            node_log.close()
            executor.shutdown()
            node.destroy_node()
            rclpy.try_shutdown(context=ctx)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--rounds", type=int, default=4, help="alternating blocks per phase")
    ap.add_argument("--role", choices=("bench", "viewer"), default="bench", help=argparse.SUPPRESS)
    ap.add_argument("--ns", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 100 + 1))
    if args.role == "viewer":
        _view(args.ns)
        return
    w, h = (int(v) for v in args.size.split("x"))
    results = measure(args.frames, args.rate, w, h, rounds=args.rounds)
    print(f"\n### hand_mesh_node latency, image stamp -> arrival in another process ({w}x{h} rgb8 at "
          f"{args.rate:g} Hz, {args.frames} frames per row in {args.rounds} alternating blocks, tiny HaMeR on fixed boxes, CPU; ms)\n")
    print("| debug-image viewer | HandArray median | HandArray p95 | markers median | markers p95 | debug image median "
          "| frames (hands/markers/debug/jpeg) |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for phase, r in results.items():
        (hm, hp), (mm, mp), (dm, _) = _stats(r["hands"]), _stats(r["markers"]), _stats(r["debug"])
        debug = f"{dm:.1f}" if r["debug"] else "-"
        print(f"| {phase} | {hm:.1f} | {hp:.1f} | {mm:.1f} | {mp:.1f} | {debug} | "
              f"{len(r['hands'])}/{len(r['markers'])}/{len(r['debug'])}/{r['compressed'][0]} of {args.frames} |")


if __name__ == "__main__":
    main()
