#!/usr/bin/env python3
"""Does someone watching delay the robot? HandArray and marker latency of the installed nodes
(hand_mesh_node and hand_viz_node, each its own process, real DDS), without and with a viewer
process subscribed to hands/debug_image and hands/debug_image/compressed.

Two ways to start the nodes: `executables` (the installed executables with the environment as
it is, no Fast DDS profile set: as `ros2 run` starts them) and `run.sh` (`bash scripts/run.sh node`
with launch arguments: env.sh, the launch table). The perception node runs a small random-weight
HaMeR (hamer_ros_testing) on fixed boxes on the CPU, so meshes are full size (778 vertices per
hand) while inference stays quick. Latency = arrival in this process - the image stamp (taken
when the frame is published), for the same frames; markers also against their own HandArray.

    bash scripts/build_ros.sh && source scripts/env.sh && python -m benchmarks node_latency
        [--frames 100] [--rate 10] [--size 1280x720] [--start executables|run.sh|both]

Prints a markdown table (median and p95, ms).
"""
from __future__ import annotations

import argparse
import array
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ROIS = "[{box: [100, 100, 400, 500], side: left}, {box: [700, 100, 1000, 500], side: right}]"
PHASES = ("none", "raw + compressed, another process")
STARTS = ("executables", "run.sh")
PROFILE_ENV = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")


def _executable(name: str) -> str:
    from ament_index_python.packages import get_package_prefix
    return str(Path(get_package_prefix("hamer_ros"), "lib", "hamer_ros", name))


def _weights(folder: Path) -> tuple[Path, Path]:
    from hamer_ros_testing import make_tiny_model, write_checkpoint, write_synthetic_mano
    mano = write_synthetic_mano(folder / "MANO_RIGHT.pkl")
    return write_checkpoint(folder / "hamer_ckpts", make_tiny_model(seed=0, mano_path=mano)), mano


def stats(xs: list[float]) -> tuple[float, float]:
    """(median, p95) of xs; NaN when empty."""
    if not xs:
        return float("nan"), float("nan")
    xs = sorted(xs)
    return statistics.median(xs), xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]


def _view(ns: str) -> None:
    """A viewer in its own process, as RViz would be: subscribes to both debug images; on
    SIGINT prints, as JSON, the raw ones' latencies (ms) and stamps and how many JPEGs arrived."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image

    rclpy.init()
    node = rclpy.create_node("latency_bench_viewer")
    raw: list[float] = []
    stamps: list[int] = []
    jpeg = [0]

    def on_raw(msg: Image) -> None:
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        raw.append((time.time_ns() - stamp) / 1e6)
        stamps.append(stamp)

    def on_jpeg(msg: CompressedImage) -> None:
        jpeg[0] += 1
        stamps.append(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)

    viewer = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
    node.create_subscription(Image, f"{ns}/hands/debug_image", on_raw, viewer)
    node.create_subscription(CompressedImage, f"{ns}/hands/debug_image/compressed", on_jpeg, viewer)
    print("ready", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    print(json.dumps({"debug": raw, "compressed": jpeg[0], "stamps": stamps}), flush=True)
    rclpy.try_shutdown()


def _start_nodes(start: str, tmp: Path, ns: str, ckpt: Path, mano: Path, env: dict[str, str],
                 log) -> subprocess.Popen:
    """The perception and visualisation nodes in namespace `ns`, images on {ns}/image. Returns
    the process to stop with SIGINT (run.sh, or the perception node with the viewer node as its
    `viz` attribute)."""
    import yaml

    mesh = dict(checkpoint=str(ckpt), mano=str(mano), device="cpu", detector="fixed", rois=ROIS, image_timeout=60.0)
    params = tmp / "params.yaml"
    params.write_text(yaml.safe_dump({"/**/hand_mesh_node": {"ros__parameters": mesh},
                                      "/**/hand_viz_node": {"ros__parameters": {"pair_window": 2.0}}}))
    if start == "run.sh":
        return subprocess.Popen(["bash", str(ROOT / "scripts" / "run.sh"), "node", f"namespace:={ns}",
                                 f"image_topic:={ns}/image", f"camera_info_topic:={ns}/camera_info",
                                 f"params_file:={params}"], stdout=log, stderr=subprocess.STDOUT, env=env)
    # As `ros2 run` starts them: no profile in the environment (each node applies the shipped one)
    bare = {k: v for k, v in env.items() if k not in PROFILE_ENV}
    args = ["--ros-args", "--params-file", str(params), "-r", f"__ns:={ns}"]
    proc = subprocess.Popen([_executable("hand_mesh_node"), *args], stdout=log, stderr=subprocess.STDOUT, env=bare)
    proc.viz = subprocess.Popen([_executable("hand_viz_node"), *args], stdout=log, stderr=subprocess.STDOUT,
                                env=bare)
    return proc


def _stop(proc: subprocess.Popen) -> int:
    """SIGINT, then the exit code (the viewer node of `executables` too: the worse of the two)."""
    rcs = []
    for p in (proc, getattr(proc, "viz", None)):
        if p is None:
            continue
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
        try:
            rcs.append(p.wait(30))
        except subprocess.TimeoutExpired:
            p.kill()
            rcs.append(p.wait())
    return max(rcs, key=abs)


def measure(frames: int = 100, rate: float = 10.0, width: int = 1280, height: int = 720, start: str = "executables",
            workdir: Path | None = None, log=None, rounds: int = 4) -> dict[str, dict[str, list]]:
    """{phase: {"hands": [ms...], "markers": [ms...], "markers_after_hands": [ms...], "debug": [ms...],
    "compressed": [count], "overlay_stamps": [ns...], "sent": [ns...]}} for `frames` frames per phase
    (in `rounds` alternating blocks), published at `rate` Hz (best effort, as a camera does), and
    {"exit": {"code": [rc]}} for the nodes' exit code after SIGINT. The debug images go to a viewer
    in a third process, so this one measures only what the robot gets (and the markers)."""
    import rclpy
    from builtin_interfaces.msg import Time
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image
    from visualization_msgs.msg import MarkerArray

    from hamer_ros_msgs.msg import HandArray

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(workdir or tmp_s)
        tmp.mkdir(parents=True, exist_ok=True)
        ckpt, mano = _weights(tmp)
        ns = f"/latency{os.getpid()}_{start.replace('.', '_')}"
        env = dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0",
                   PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        node_log = open(tmp / "nodes.log", "wb")
        proc = _start_nodes(start, tmp, ns, ckpt, mano, env, node_log)
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
        arrivals: dict[str, dict[int, int]] = {"hands": {}, "markers": {}}
        viewer_proc = None
        lock = threading.Lock()

        def keep(kind: str):
            def cb(msg) -> None:
                t = time.time_ns()
                header = msg.markers[0].header if kind == "markers" else msg.header
                with lock:
                    arrivals[kind].setdefault(header.stamp.sec * 10**9 + header.stamp.nanosec, t)
            return cb

        results: dict[str, dict[str, list]] = {}
        try:
            reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
            node.create_subscription(HandArray, f"{ns}/hands", keep("hands"), reliable)
            node.create_subscription(MarkerArray, f"{ns}/hands/markers", keep("markers"), reliable)
            image_pub = node.create_publisher(Image, f"{ns}/image",
                                              QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
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

            # warm up until both nodes answer (model load, discovery, first-frame costs)
            deadline = time.monotonic() + 240
            while True:
                sent = send()
                time.sleep(0.3)
                with lock:
                    if sent in arrivals["markers"]:
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the nodes did not answer:\n{(tmp / 'nodes.log').read_text()[-3000:]}")
            # Phases alternate in blocks, so a change in the machine's other load hits both alike.
            results = {phase: {"hands": [], "markers": [], "markers_after_hands": [], "debug": [], "compressed": [0],
                               "overlay_stamps": [], "sent": []} for phase in PHASES}
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
                        time.sleep(2.0)   # discovery, and the viz node notices new subscribers within 0.5 s
                    stamps = []
                    t_start = time.monotonic()
                    for i in range(block):
                        time.sleep(max(0.0, t_start + i / rate - time.monotonic()))
                        stamps.append(send())
                    time.sleep(1.5)
                    r = results[phase]
                    r["sent"] += stamps
                    with lock:
                        for kind, got in arrivals.items():
                            r[kind] += [(got[s] - s) / 1e6 for s in stamps if s in got]
                        r["markers_after_hands"] += [(arrivals["markers"][s] - arrivals["hands"][s]) / 1e6
                                                     for s in stamps if s in arrivals["markers"] and s in arrivals["hands"]]
                    if viewer_proc is not None:
                        viewer_proc.send_signal(signal.SIGINT)
                        out, _ = viewer_proc.communicate(timeout=30)
                        seen = json.loads(out.strip().splitlines()[-1])
                        r["debug"] += seen["debug"]
                        r["compressed"][0] += seen["compressed"]
                        r["overlay_stamps"] += seen["stamps"]
                        time.sleep(1.0)   # the viz node notices the viewer is gone
                    if log:
                        log(f"{start} / {phase}: " + ", ".join(f"{k} {len(v)}" for k, v in r.items()))
            return results
        finally:
            stop.set()
            if viewer_proc is not None and viewer_proc.poll() is None:
                viewer_proc.kill()
                viewer_proc.wait()
            if spinner.is_alive():
                spinner.join(5)
            results["exit"] = {"code": [_stop(proc)]}
            node_log.close()
            results["exit"]["log"] = [(tmp / "nodes.log").read_text(errors="replace")[-4000:]]
            executor.shutdown()
            node.destroy_node()
            rclpy.try_shutdown(context=ctx)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--rounds", type=int, default=4, help="alternating blocks per phase")
    ap.add_argument("--start", choices=(*STARTS, "both"), default="both", help="how the nodes are started")
    ap.add_argument("--role", choices=("bench", "viewer"), default="bench", help=argparse.SUPPRESS)
    ap.add_argument("--ns", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 100 + 1))
    if args.role == "viewer":
        _view(args.ns)
        return
    w, h = (int(v) for v in args.size.split("x"))
    print(f"\n### HandArray and marker latency, image stamp -> arrival in another process ({w}x{h} rgb8 at "
          f"{args.rate:g} Hz, {args.frames} frames per row in {args.rounds} alternating blocks, tiny HaMeR on "
          "fixed boxes, CPU; ms)\n")
    print("| start | viewer of the debug images | HandArray median | HandArray p95 | markers median | markers p95 "
          "| markers after their HandArray, median / p95 | debug image median | frames (hands/markers/debug/jpeg) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for start in (STARTS if args.start == "both" else (args.start,)):
        results = measure(args.frames, args.rate, w, h, start=start, rounds=args.rounds)
        for phase in PHASES:
            r = results[phase]
            (hm, hp), (mm, mp), (am, ap_), (dm, _) = (stats(r[k]) for k in ("hands", "markers", "markers_after_hands",
                                                                               "debug"))
            debug = f"{dm:.1f}" if r["debug"] else "-"
            print(f"| {start} | {phase} | {hm:.1f} | {hp:.1f} | {mm:.1f} | {mp:.1f} | {am:.1f} / {ap_:.1f} | {debug} | "
                  f"{len(r['hands'])}/{len(r['markers'])}/{len(r['debug'])}/{r['compressed'][0]} of {len(r['sent'])} |")


if __name__ == "__main__":
    main()
