#!/usr/bin/env python3
"""How many best-effort rgb8 images reach another process, with and without hamer_ros's Fast DDS
profile (config/fastdds_large_images.xml).

Two processes per run, both real rclpy over Fast DDS on this machine: a publisher sends --frames
images at --rate Hz (best effort, keep last 1, as camera drivers do) once it sees the subscriber;
the subscriber (best effort, keep last 10) counts the distinct frames that arrive.

    bash scripts/build_ros.sh && source scripts/env.sh && python -m benchmarks dds_images
        [--frames 100] [--rate 30] [--sizes 1280x720,1920x1080]

Prints a markdown table: frames delivered out of --frames per size, without and with the profile.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "config" / "fastdds_large_images.xml"
PROFILE_ENV = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")
TOPIC = "/hamer_ros_bench/image"


def _qos(best_effort_depth: int):
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=best_effort_depth,
                      reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)


def _subscribe(width: int, height: int) -> None:
    """Counts distinct frames of the expected size until SIGINT/SIGTERM, printing the count at each new
    frame and at the end."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("bench_dds_sub")
    seen: set[int] = set()

    def on_image(msg: Image) -> None:
        if (msg.width, msg.height) == (width, height) and len(msg.data) == width * height * 3:
            if msg.header.stamp.nanosec not in seen:
                seen.add(msg.header.stamp.nanosec)
                # as it goes: a count printed only at exit is lost if the DDS shutdown hangs
                print(f"received {len(seen)}", flush=True)

    node.create_subscription(Image, TOPIC, on_image, _qos(10))
    print("ready", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    print(f"received {len(seen)}", flush=True)
    rclpy.try_shutdown()


def _publish(width: int, height: int, frames: int, rate: float) -> None:
    import array

    import numpy as np
    import rclpy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("bench_dds_pub")
    pub = node.create_publisher(Image, TOPIC, _qos(1))
    deadline = time.monotonic() + 20
    while pub.get_subscription_count() == 0:
        if time.monotonic() > deadline:
            raise SystemExit("bench_dds_images: the subscriber was not matched within 20 s")
        time.sleep(0.05)
    time.sleep(1.0)    # let the subscriber's side of the discovery finish too
    msg = Image(width=width, height=height, encoding="rgb8", step=width * 3)
    msg.data = array.array("B", np.random.default_rng(0).integers(0, 256, width * height * 3, np.uint8).tobytes())
    msg.header.frame_id = "camera_color_optical_frame"
    start = time.monotonic()
    for i in range(frames):
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
        msg.header.stamp.sec, msg.header.stamp.nanosec = 1, i
        pub.publish(msg)
    time.sleep(0.5)
    node.destroy_node()
    rclpy.try_shutdown()


def delivered(width: int, height: int, frames: int, rate: float, profile: Path | None,
              env: dict[str, str] | None = None) -> int:
    """Frames of `frames` that reach a subscriber in another process, with the given profile (None:
    Fast DDS defaults)."""
    env = dict(os.environ if env is None else env)
    for k in PROFILE_ENV:
        env.pop(k, None)
        if profile is not None:
            env[k] = str(profile)
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    me = [sys.executable, "-m", __spec__.name if __spec__ else "hamer_ros_testing.dds_images"]
    size = f"{width}x{height}"
    sub = subprocess.Popen(me + ["--role", "sub", "--sizes", size], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert sub.stdout is not None
        if sub.stdout.readline().strip() != "ready":
            raise RuntimeError("the subscriber did not start")
        subprocess.run(me + ["--role", "pub", "--sizes", size, "--frames", str(frames), "--rate", str(rate)],
                       env=env, check=True, timeout=120)
        time.sleep(1.0)    # the last frames in flight
        sub.send_signal(signal.SIGINT)
        try:
            out, _ = sub.communicate(timeout=15)
        except subprocess.TimeoutExpired:    # a hung DDS shutdown: the counts so far are on stdout
            sub.kill()
            out, _ = sub.communicate()
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    counts = [int(line.split()[1]) for line in out.splitlines() if line.startswith("received ")]
    if not counts:
        raise RuntimeError(f"the subscriber printed no count: {out!r}")
    return counts[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--rate", type=float, default=30.0, help="publishing rate, Hz")
    ap.add_argument("--sizes", default="1280x720,1920x1080")
    ap.add_argument("--role", choices=("bench", "pub", "sub"), default="bench", help=argparse.SUPPRESS)
    args = ap.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 100 + 1))
    if args.role == "sub":
        _subscribe(*sizes[0])
        return
    if args.role == "pub":
        _publish(*sizes[0], args.frames, args.rate)
        return
    print(f"\n### best-effort rgb8 images delivered between two processes ({args.frames} sent at "
          f"{args.rate:g} Hz, Fast DDS, {os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']} discovery)\n")
    print("| image | MB | without profile | with config/fastdds_large_images.xml |")
    print("|---|---:|---:|---:|")
    for w, h in sizes:
        without = delivered(w, h, args.frames, args.rate, None)
        with_profile = delivered(w, h, args.frames, args.rate, PROFILE)
        print(f"| {w}x{h} | {w * h * 3 / 1e6:.1f} | {without}/{args.frames} | {with_profile}/{args.frames} |",
              flush=True)


if __name__ == "__main__":
    main()
