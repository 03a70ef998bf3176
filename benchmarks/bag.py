"""hamer-ros bag throughput: frames/s of the node's path (one frame at a time) against the batched
job, in one process and on Ray workers, and each one's peak memory.

A recording is written first (test1.jpg's hands in a 1280x720 view that pans, raw rgb8 at 15 Hz,
with CameraInfo); each mode then runs in its own process (its peak RSS is its own). The model is
tiny HaMeR with random weights unless --checkpoint names the real one (on a CPU the real ViT-H
takes seconds a frame); MediaPipe's hand models find the hands.

    python -m benchmarks bag [--frames 150] [--checkpoint hamer.ckpt] [--device cpu] [--workers 2]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODES = ("node-path", "batch-1", "batch-8", "ray")


def write_inputs(folder: Path, frames: int) -> tuple[Path, Path, Path]:
    import cv2
    import numpy as np

    from hamer_ros.examples import find_examples
    from hamer_ros_testing import make_tiny_model, write_checkpoint, write_synthetic_mano
    from hamer_ros_testing.recordings import Camera, Plan, write_recording

    examples = find_examples()
    if examples is None:
        sys.exit("needs the example photos: set HAMER_ROS_EXAMPLES (see README)")
    img = cv2.imread(str(examples / "test1.jpg"))[..., ::-1]
    big = cv2.resize(img, (1600, 1066), interpolation=cv2.INTER_LINEAR)
    views = [np.ascontiguousarray(big[100 + k % 60: 820 + k % 60, 40 + 2 * (k % 100): 1320 + 2 * (k % 100)])
             for k in range(frames)]
    rec = write_recording(folder / "rec", Plan(views, [10.0 + k / 15 for k in range(frames)],
                                               camera=Camera(K=(900.0, 900.0, 640.0, 360.0))))
    mano = write_synthetic_mano(folder / "mano" / "MANO_RIGHT.pkl")
    ckpt = write_checkpoint(folder / "ckpt", make_tiny_model(seed=0, mano_path=mano))
    return rec, ckpt, mano


def run_mode(mode: str, rec: Path, out: Path, checkpoint: str, mano: str, device: str, workers: int) -> dict:
    from hamer_ros.bag.job import Settings
    from hamer_ros.bag.run import annotate

    pipeline = {"device": device, "checkpoint": checkpoint, "mano": mano}
    t = time.perf_counter()
    if mode == "node-path":
        n = node_path(rec, pipeline)
    else:
        # Ray: windows of 10 s so that two workers have work (each but the first runs 2 s of warm-up
        # more); one process: the default 60 s windows
        s = Settings(pipeline=pipeline, batch=1 if mode == "batch-1" else 8, window_s=10.0 if mode == "ray" else 60.0,
                     warmup_s=2.0)
        summary = annotate([rec], out, s, ray_address="local" if mode == "ray" else "", workers=workers,
                           show_progress=False)
        n = summary.stats.annotated
    seconds = time.perf_counter() - t
    return {"mode": mode, "frames": n, "seconds": seconds, "peak_mib": peak_rss_mib()}


def peak_rss_mib() -> float:
    """This process's peak resident memory. VmHWM, not getrusage's ru_maxrss: Linux carries
    ru_maxrss over from the parent through fork and exec (here: the parent that held every frame)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def node_path(rec: Path, pipeline: dict) -> int:
    """What the node does per frame, in order and one at a time: decode the image, pair it with
    its CameraInfo, run the pipeline, build the HandArray."""
    from hamer_ros.bag.output import hand_array, header
    from hamer_ros.bag.recording import decode, open_recording
    from hamer_ros.perception import HandPipeline
    from hamer_ros.ros.image import image_to_rgb
    from hamer_ros.ros.sync import CameraInfoSync, intrinsics_from_camera_info, stamp_to_ns
    from hamer_ros.settings import pipeline_config

    r = open_recording(rec)
    pipe = HandPipeline(pipeline_config({**pipeline, "tracking": True}))
    sync = CameraInfoSync(stale_after=0.0)
    n = 0
    for m in r.messages(r.topics):
        msg = decode(m)
        if m.msgtype.endswith("CameraInfo"):
            sync.add(intrinsics_from_camera_info(msg))
            continue
        rgb = image_to_rgb(msg)
        ns = stamp_to_ns(msg.header.stamp)
        match = sync.match(ns, msg.header.frame_id, rgb.shape[1], rgb.shape[0])
        hands = pipe(rgb, match.intrinsics.K, match.intrinsics.D, stamp=ns * 1e-9)
        hand_array(header(ns, msg.header.frame_id), hands)
        n += 1
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--checkpoint", default="", help="the real hamer.ckpt (default: tiny random weights)")
    ap.add_argument("--mano", default="")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=2, help="Ray workers for the ray mode")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)    # mode rec out: one mode, in this process
    args = ap.parse_args()
    if args._child:
        mode, rec, out = args._child
        print(json.dumps(run_mode(mode, Path(rec), Path(out), args.checkpoint, args.mano, args.device, args.workers)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rec, ckpt, mano = write_inputs(folder, args.frames)
        checkpoint, mano_path = (args.checkpoint, args.mano) if args.checkpoint else (str(ckpt), str(mano))
        rows = []
        for mode in args.modes.split(","):
            cmd = [sys.executable, __file__, "--_child", mode, str(rec), str(folder / f"{mode}.mcap"),
                   "--checkpoint", checkpoint, "--mano", mano_path, "--device", args.device,
                   "--workers", str(args.workers)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{mode}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
                continue
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        model = "HaMeR checkpoint " + args.checkpoint if args.checkpoint else "tiny HaMeR, random weights"
        print(f"{args.frames} frames 1280x720 rgb8, MediaPipe hand models + {model}, device {args.device}")
        print("| mode | frames | s | frames/s | vs node path | peak RSS MiB (the job's process) |")
        print("|---|---:|---:|---:|---:|---:|")
        base = next((r["frames"] / r["seconds"] for r in rows if r["mode"] == "node-path"), None)
        for r in rows:
            fps = r["frames"] / r["seconds"]
            ratio = f"{fps / base:.2f}x" if base else "-"
            print(f"| {r['mode']} | {r['frames']} | {r['seconds']:.1f} | {fps:.1f} | {ratio} | {r['peak_mib']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
