"""`hamer-ros`: offline use of the ROS-free core.

    hamer-ros infer PATH... --out DIR [--checkpoint hamer.ckpt --mano MANO_RIGHT.pkl]
                   [--intrinsics fx,fy,cx,cy | --hfov DEG] [--device cpu|cuda] [--roi x1,y1,x2,y2,side]

Images, folders of images and videos in; per frame an overlay PNG, one OBJ per hand (camera
optical frame, metres, outward-facing winding) and one `hands.json` for the whole run.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}
DEFAULT_HFOV = 60.0   # degrees: a typical webcam / RealSense colour camera


@dataclass
class Frame:
    name: str          # unique stem for output files
    source: str
    index: int         # frame number in a video, 0 for images
    rgb: np.ndarray


def _video_frames(path: Path) -> Iterator[Frame]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SystemExit(f"cannot open video {path}")
    try:
        i = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            yield Frame(f"{path.stem}_{i:06d}", str(path), i, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            i += 1
    finally:
        cap.release()


def _read_image(path: Path) -> Frame:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"cannot read image {path}")
    return Frame(path.stem, str(path), 0, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def collect_inputs(paths: list[str]) -> tuple[list[Path], list[Path]]:
    """(images, videos) from files and folders, in a stable order."""
    images, videos = [], []
    for p in map(Path, paths):
        if not p.exists():
            raise SystemExit(f"no such file or folder: {p}")
        files = sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p]
        for f in files:
            suffix = f.suffix.lower()
            if suffix in IMAGE_SUFFIXES:
                images.append(f)
            elif suffix in VIDEO_SUFFIXES:
                videos.append(f)
            elif not p.is_dir():
                raise SystemExit(f"{f}: not an image ({', '.join(sorted(IMAGE_SUFFIXES))}) or a video")
    return images, videos


def camera_matrix(args: argparse.Namespace, width: int, height: int) -> np.ndarray:
    from .perception.camera import fov_camera

    if args.intrinsics:
        fx, fy, cx, cy = (float(v) for v in args.intrinsics.split(","))
        return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)
    return fov_camera(width, height, args.hfov)


def write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    lines = [f"# hamer_ros hand mesh: camera optical frame (x right, y down, z forward), metres"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    path.write_text("\n".join(lines) + "\n")


def hand_record(hand, obj_name: str | None) -> dict:
    def arr(a):
        return None if a is None else np.round(np.asarray(a, dtype=np.float64), 6).tolist()
    return {"side": hand.side, "score": round(hand.score, 4), "track_id": hand.track_id,
            "box_xyxy": arr(hand.box), "joints_m": arr(hand.joints), "keypoints_px": arr(hand.keypoints_2d),
            "wrist_position_m": arr(hand.wrist_position), "wrist_orientation": arr(hand.wrist_orientation),
            "reprojection_error_px": round(hand.reprojection_error, 3),
            "mano": None if hand.global_orient is None else {
                "global_orient": arr(hand.global_orient), "hand_pose": arr(hand.hand_pose),
                "betas": arr(hand.betas)},
            "mesh_obj": obj_name}


def parse_roi(text: str) -> dict:
    *box, side = text.split(",")
    if len(box) != 4 or side not in ("left", "right"):
        raise argparse.ArgumentTypeError(f"--roi {text!r}: expected x1,y1,x2,y2,left|right")
    return {"box": [float(v) for v in box], "side": side}


def cmd_infer(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .perception.overlay import draw_hands
    from .perception.pipeline import HandPipeline, PipelineConfig

    images, videos = collect_inputs(args.paths)
    if not images and not videos:
        raise SystemExit("no images or videos found in " + " ".join(args.paths))
    if not args.intrinsics:
        print(f"note: no --intrinsics given; assuming a {args.hfov:g}° horizontal field of view. "
              "Depths scale with the focal length: pass the real fx,fy,cx,cy for metric hands.",
              file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = dict(checkpoint=args.checkpoint or "", mano=args.mano or "", device=args.device,
               precision=args.precision, backend=args.backend, max_hands=args.max_hands, rescale=args.rescale,
               detector="fixed" if args.roi else "mediapipe", rois=args.roi or [])
    records = []

    def run(pipeline: HandPipeline, frames: Iterator[Frame], total: int | None, desc: str) -> None:
        bar = tqdm(frames, total=total, desc=desc, unit="frame", disable=total is not None and total <= 1)
        for frame in bar:
            h, w = frame.rgb.shape[:2]
            K = camera_matrix(args, w, h)
            hands = pipeline(frame.rgb, K)
            cv2.imwrite(str(out / f"{frame.name}_overlay.png"),
                        cv2.cvtColor(draw_hands(frame.rgb, hands, K), cv2.COLOR_RGB2BGR))
            hand_records = []
            for k, hand in enumerate(hands):
                obj = None
                if hand.vertices is not None:
                    obj = f"{frame.name}_{k}_{hand.side}.obj"
                    write_obj(out / obj, hand.vertices, hand.faces)
                hand_records.append(hand_record(hand, obj))
            records.append({"source": frame.source, "frame": frame.index, "width": w, "height": h,
                            "K": K.tolist(), "hands": hand_records})

    if images:
        pipeline = HandPipeline(PipelineConfig(**cfg, static_images=True, tracking=False))
        run(pipeline, map(_read_image, images), len(images), "images")
        pipeline.close()
    for video in videos:
        pipeline = HandPipeline(PipelineConfig(**cfg, static_images=False, tracking=True))
        count = int(cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_COUNT)) or None
        run(pipeline, _video_frames(video), count, video.name)
        pipeline.close()
    (out / "hands.json").write_text(json.dumps({"frames": records}, indent=1))
    n = sum(len(r["hands"]) for r in records)
    print(f"{len(records)} frame(s), {n} hand(s) → {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="hamer-ros", description="HaMeR hands from images and videos")
    sub = ap.add_subparsers(dest="command", required=True)
    inf = sub.add_parser("infer", help="overlays, OBJ meshes and hands.json for images/folders/videos")
    inf.add_argument("paths", nargs="+", help="images, folders of images, videos")
    inf.add_argument("--out", required=True, help="output folder")
    inf.add_argument("--checkpoint", help="HaMeR checkpoint (_DATA/hamer_ckpts/checkpoints/hamer.ckpt); "
                     "without it: joints only from MediaPipe")
    inf.add_argument("--mano", help="MANO_RIGHT.pkl or its folder")
    cam = inf.add_mutually_exclusive_group()
    cam.add_argument("--intrinsics", help="fx,fy,cx,cy of the camera, pixels")
    cam.add_argument("--hfov", type=float, default=DEFAULT_HFOV, help="horizontal field of view guess, degrees")
    inf.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    inf.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    inf.add_argument("--backend", default="eager", choices=("eager", "compile", "tensorrt", "onnx"),
                     help="inference engine; unavailable or inaccurate ones fall back to eager, logged")
    inf.add_argument("--max-hands", type=int, default=4)
    inf.add_argument("--rescale", type=float, default=2.0, help="crop padding factor (reference: 2.0)")
    inf.add_argument("--roi", action="append", type=parse_roi,
                     help="fixed hand box x1,y1,x2,y2,left|right instead of MediaPipe (repeatable)")
    inf.set_defaults(func=cmd_infer)
    from . import bench
    bench.add_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
