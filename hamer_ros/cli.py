"""`hamer-ros`: offline use of the ROS-free core.

    hamer-ros infer PATH... --out DIR [--checkpoint hamer.ckpt [--mano MANO_RIGHT.pkl]]
                   [--intrinsics fx,fy,cx,cy | --hfov DEG] [--device auto|cpu|cuda|cuda:N] [--roi x1,y1,x2,y2,side]
                   [--depth [--depth-suffix _depth] [--depth-scale 0.001]]

Images, folders of images and videos in; per frame an overlay PNG, one OBJ per hand (camera
optical frame, metres, outward-facing winding) and one line of `hands.jsonl`, written as soon as
the frame is done. A user error never ends in a traceback: one line on stderr and exit status 2
for a bad command line (checked before anything loads), 1 for weights that cannot be used or
frames that failed (each reported and skipped; the others are kept), 130 when interrupted.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from .settings import PARAMETER_SPECS, default, pipeline_config

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}
DEFAULT_HFOV = 60.0   # degrees: a typical webcam / RealSense colour camera
RESULTS = "hands.jsonl"
# Options named, and meaning, as hand_mesh_node's parameters of the same name.
SHARED_SETTINGS = ("device", "precision", "backend", "max_hands", "rescale", "filter_min_cutoff", "filter_beta",
                   "filter_d_cutoff", "hold_time", "side_switch_frames")

INFER_EXAMPLES = """examples:
  hamer-ros infer photo.jpg --out out/                     joints only (MediaPipe), guessed camera
  hamer-ros infer clips/ video.mp4 --out out/ --checkpoint _DATA/hamer_ckpts/checkpoints/hamer.ckpt \\
      --intrinsics 615.2,615.4,320.1,241.7                 meshes, metric with the real camera
  hamer-ros infer frame.png --out out/ --checkpoint hamer.ckpt --roi 100,120,260,300,right
  hamer-ros infer rgbd/ --out out/ --depth --intrinsics 615.2,615.4,320.1,241.7
                                                           RGB-D: rgbd/x.jpg with rgbd/x_depth.png (16-bit, mm)

exit status: 0 all done; 1 weights unusable or some input failed (the rest is written); 2 bad
command line; 130 interrupted (finished frames stay in hands.jsonl)."""


class CliError(Exception):
    """A user error found after parsing: printed as one line, exit status `code`."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block), exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


# ----------------------------------------------------------------------------- option types
def intrinsics(text: str) -> tuple[float, float, float, float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"'{text}': expected four numbers fx,fy,cx,cy in pixels, "
                                         "e.g. 615.2,615.4,320.1,241.7")
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"'{text}': fx,fy,cx,cy must be finite numbers")
    if values[0] <= 0 or values[1] <= 0:
        raise argparse.ArgumentTypeError(f"'{text}': the focal lengths fx, fy must be positive (pixels)")
    return values[0], values[1], values[2], values[3]


def hfov(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 < value < 180.0:   # also refuses NaN
        raise argparse.ArgumentTypeError(f"'{text}': expected degrees between 0 and 180 (exclusive), e.g. 60")
    return value


def device(text: str) -> str:
    from .perception.pipeline import resolve_device

    try:
        resolve_device(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def out_folder(text: str) -> Path:
    p = Path(text).expanduser()
    if p.exists() and not p.is_dir():
        raise argparse.ArgumentTypeError(f"'{text}' is a file; give a folder (it is created if missing)")
    return p


def input_path(text: str) -> Path:
    p = Path(text).expanduser()
    if not p.exists():
        raise argparse.ArgumentTypeError(f"no such file or folder: '{text}'")
    if p.is_file() and p.suffix.lower() not in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not an image ({', '.join(sorted(IMAGE_SUFFIXES))}) or a video "
            f"({', '.join(sorted(VIDEO_SUFFIXES))})")
    return p


def checkpoint_file(text: str) -> Path:
    from .weights import WEIGHTS_HINT

    p = Path(text).expanduser()
    if not p.is_file():
        what = "is a folder, not the checkpoint file" if p.is_dir() else "not found"
        raise argparse.ArgumentTypeError(f"'{text}' {what}. {WEIGHTS_HINT}")
    return p


def mano_file(text: str) -> Path:
    from .model.mano import ManoModelError, resolve_mano_path

    try:
        return resolve_mano_path(text)
    except ManoModelError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 10:
        raise argparse.ArgumentTypeError(f"'{text}': expected a whole number from 1 to 10")
    return value


def whole_number(low: int, high: int) -> Any:
    """An argparse type: a whole number from low to high."""
    def parse(text: str) -> int:
        value = _number(text, low, high, f"a whole number from {low} to {high}")
        if value != int(value):
            raise argparse.ArgumentTypeError(f"'{text}': expected a whole number from {low} to {high}")
        return int(value)
    return parse


def _number(text: str, low: float, high: float, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"'{text}': expected {what}")
    return value


def positive_float(text: str) -> float:
    value = _number(text, 0.0, 1000.0, "a number above 0, e.g. 0.5")
    if value == 0.0:
        raise argparse.ArgumentTypeError(f"'{text}': expected a number above 0, e.g. 0.5")
    return value


def non_negative_float(text: str) -> float:
    return _number(text, 0.0, 1000.0, "a number from 0 to 1000, e.g. 0.1")


def depth_suffix(text: str) -> str:
    if not text or "/" in text or "\\" in text:
        raise argparse.ArgumentTypeError(f"'{text}' is not a file-name suffix, e.g. _depth")
    return text


def frame_count(text: str) -> int:
    value = _number(text, 1, 100, "a whole number of frames from 1 to 100, e.g. 5")
    if value != int(value):
        raise argparse.ArgumentTypeError(f"'{text}': expected a whole number of frames from 1 to 100, e.g. 5")
    return int(value)


def rescale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 1.0 <= value <= 4.0:
        raise argparse.ArgumentTypeError(f"'{text}': expected a number from 1 to 4, e.g. 2.0")
    return value


def parse_roi(text: str) -> dict:
    *box, side = text.split(",")
    try:
        numbers = [float(v) for v in box]
    except ValueError:
        numbers = []
    if len(numbers) != 4 or side not in ("left", "right") or not all(map(math.isfinite, numbers)):
        raise argparse.ArgumentTypeError(f"'{text}': expected x1,y1,x2,y2,left|right in pixels, "
                                         "e.g. 100,120,260,300,right")
    if numbers[2] <= numbers[0] or numbers[3] <= numbers[1]:
        raise argparse.ArgumentTypeError(f"'{text}': needs x2 > x1 and y2 > y1 (x1,y1 = top-left corner)")
    return {"box": numbers, "side": side}


# ----------------------------------------------------------------------------- inputs
@dataclass
class Frame:
    name: str          # unique stem for output files
    source: str
    index: int         # frame number in a video, 0 for images
    rgb: np.ndarray
    time: float | None = None   # s, a video frame's time (tracks and filters run on it); None for images
    depth: np.ndarray | None = None   # aligned depth, float metres (NaN: no measurement), with --depth
    depth_source: str | None = None


class InputError(Exception):
    """An input that cannot be read: reported, counted, skipped."""


def collect_inputs(paths: list[Path], depth_suffix: str | None = None) -> tuple[list[Path], list[Path]]:
    """(images, videos) from files and folders, in a stable order; other files in folders are
    ignored, and so are depth images (stem ending in `depth_suffix`) when depth is paired."""
    images, videos = [], []
    for p in paths:
        for f in sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p]:
            suffix = f.suffix.lower()
            if depth_suffix and f.stem.endswith(depth_suffix) and p.is_dir():
                continue
            if suffix in IMAGE_SUFFIXES:
                images.append(f)
            elif suffix in VIDEO_SUFFIXES:
                videos.append(f)
    return images, videos


def depth_path(image: Path, suffix: str) -> Path:
    """The depth image paired with a colour image: x.jpg -> x<suffix>.png beside it."""
    return image.with_name(image.stem + suffix + ".png")


def read_depth(path: Path, scale: float, size: tuple[int, int]) -> np.ndarray:
    """A single-channel depth image (16-bit PNG: raw units × scale = metres) as float metres;
    InputError saying why it cannot be used."""
    from .perception.depth import depth_to_metres

    if not path.is_file():
        raise InputError(f"{path}: no such file; --depth needs a depth image beside every colour image "
                         "(named by --depth-suffix)")
    raw = cv2.imread(str(path), cv2.IMREAD_ANYDEPTH)
    if raw is None or raw.ndim != 2:
        raise InputError(f"{path}: cannot read it as a single-channel depth image (16-bit PNG)")
    if raw.dtype == np.uint8:
        raise InputError(f"{path}: an 8-bit image holds no metric depth; write the depth as a 16-bit PNG")
    if raw.shape[::-1] != size:
        raise InputError(f"{path}: depth is {raw.shape[1]}x{raw.shape[0]} but its colour image "
                         f"{size[0]}x{size[1]}; use depth aligned to the colour camera")
    return depth_to_metres(raw, scale)


def image_frames(paths: list[Path], names: "UniqueNames", depth_suffix: str | None = None,
                 depth_scale: float = 0.001) -> Iterator[Frame | InputError]:
    for path in paths:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            yield InputError(f"{path}: cannot read it as an image (corrupt, or not really a "
                             f"{path.suffix} file)")
            continue
        frame = Frame(names(path.stem), str(path), 0, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        if depth_suffix is not None:
            d = depth_path(path, depth_suffix)
            try:
                frame.depth = read_depth(d, depth_scale, (bgr.shape[1], bgr.shape[0]))
            except InputError as e:
                yield e
                continue
            frame.depth_source = str(d)
        yield frame


def video_frames(path: Path, names: "UniqueNames") -> Iterator[Frame | InputError]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        yield InputError(f"{path}: cannot open it as a video (corrupt, or a codec OpenCV lacks)")
        return
    stem = names(path.stem)
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    try:
        i = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            # the container's presentation time where it has one, else the frame rate's
            ms = cap.get(cv2.CAP_PROP_POS_MSEC)
            t = ms / 1000.0 if ms > 0 or i == 0 else i / fps
            yield Frame(f"{stem}_{i:06d}", str(path), i, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), t)
            i += 1
    finally:
        cap.release()


class UniqueNames:
    """a/x.jpg and b/x.png both write x_*: the second becomes x-2_*."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def __call__(self, stem: str) -> str:
        name, k = stem, 1
        while name in self.used:
            k += 1
            name = f"{stem}-{k}"
        self.used.add(name)
        return name


# ----------------------------------------------------------------------------- outputs
def camera_matrix(args: argparse.Namespace, width: int, height: int) -> np.ndarray:
    from .perception.camera import fov_camera

    if args.intrinsics:
        fx, fy, cx, cy = args.intrinsics
        return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)
    return fov_camera(width, height, args.hfov)


def write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    lines = ["# hamer_ros hand mesh: camera optical frame (x right, y down, z forward), metres"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    path.write_text("\n".join(lines) + "\n")


def hand_record(hand: Any, obj_name: str | None) -> dict:
    def arr(a):
        return None if a is None else np.round(np.asarray(a, dtype=np.float64), 6).tolist()
    return {"side": hand.side, "score": round(hand.score, 4), "side_score": round(hand.side_score, 4),
            "track_id": hand.track_id, "held": hand.held,
            "box_xyxy": arr(hand.box), "joints_m": arr(hand.joints), "keypoints_px": arr(hand.keypoints_2d),
            "wrist_position_m": arr(hand.wrist_position), "wrist_orientation": arr(hand.wrist_orientation),
            "joints_local_m": arr(hand.joints_local),
            "reprojection_error_px": round(hand.reprojection_error, 3),
            "placement": hand.placement, "scale": round(float(hand.scale), 6),
            "depth_residual_m": None if not math.isfinite(hand.depth_residual) else round(hand.depth_residual, 6),
            "mano": None if hand.global_orient is None else {
                "global_orient": arr(hand.global_orient), "hand_pose": arr(hand.hand_pose),
                "betas": arr(hand.betas)},
            "mesh_obj": obj_name}


# ----------------------------------------------------------------------------- the run
class StreamDetector:
    """The pipeline's detector, started afresh for each input stream: in video mode MediaPipe
    seeds a frame's search with the previous frame's hands, which must not carry over from one
    video into the next. Images share one detector in image mode."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.current: Any = None

    def start(self, video: bool) -> None:
        from .perception.detect import make_detector
        from .perception.pipeline import resolve_device

        self.close()
        device = str(resolve_device(self.args.device))     # the pipeline's: "auto" made concrete
        if self.args.roi:
            self.current = make_detector("fixed", rois=self.args.roi)
            return
        if self.args.wholebody:
            person, pose = self.args.wholebody
            try:
                self.current = make_detector("wholebody", person_model=person, pose_model=pose,
                                             max_hands=self.args.max_hands, device=device)
            except RuntimeError as e:
                raise CliError(str(e)) from None
            return
        try:
            # photos: more views than MediaPipe's one 192-pixel look at the whole frame (hand_models/detector.py)
            self.current = make_detector("mediapipe", max_hands=self.args.max_hands, video_mode=video,
                                         proposals=not video, device=device)
        except (ImportError, RuntimeError) as e:
            raise CliError(f"{e}; or give --checkpoint with --roi boxes instead of MediaPipe") from None

    def __call__(self, image_rgb: np.ndarray) -> list:
        return self.current(image_rgb)

    def reset(self) -> None:
        if self.current is not None:
            self.current.reset()

    def follow(self, keypoints: list) -> None:
        if hasattr(self.current, "follow"):
            self.current.follow(keypoints)

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None


def load_model(args: argparse.Namespace) -> Any:
    """The HaMeR model, or None without --checkpoint; CliError when the given weights cannot be used."""
    if not args.checkpoint:
        return None
    from .model import CheckpointError, HaMeR, ManoModelError

    try:
        return HaMeR.from_checkpoint(args.checkpoint, args.mano, device="cpu")
    except (CheckpointError, ManoModelError, ValueError, OSError) as e:
        raise CliError(f"cannot use the HaMeR weights: {e}") from None


def cmd_infer(args: argparse.Namespace) -> int:
    if args.roi and args.wholebody:
        raise CliError("give --roi boxes or --wholebody models, not both", code=2)
    if args.mano and not args.checkpoint:
        raise CliError("--mano needs --checkpoint: MANO alone gives no hands", code=2)
    images, videos = collect_inputs(args.paths, args.depth_suffix if args.depth else None)
    if not images and not videos:
        raise CliError("no images or videos in " + " ".join(map(str, args.paths)), code=2)
    if args.depth and videos:
        raise CliError(f"--depth pairs images only (x.jpg with x{args.depth_suffix}.png); "
                       f"{videos[0]} is a video: export its frames as images", code=2)
    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CliError(f"cannot create the output folder {out}: {e.strerror}", code=2) from None

    _opencv_errors_only()   # an unreadable file gets our one line, not also OpenCV's warning
    detector = StreamDetector(args)
    try:
        return _infer(args, out, images, videos, detector)
    finally:
        detector.close()


def _infer(args: argparse.Namespace, out: Path, images: list[Path], videos: list[Path],
           detector: StreamDetector) -> int:
    from tqdm import tqdm

    from .perception.overlay import draw_hands
    from .perception.pipeline import HandPipeline

    detector.start(video=False)             # fails here, before the model loads, without MediaPipe
    # The options named as the node's parameters map to the pipeline as the node's do.
    cfg = pipeline_config({**{name: getattr(args, name) for name in SHARED_SETTINGS},
                           "tracking": False, "filter": not args.no_filter})
    model = load_model(args)
    try:
        pipeline = HandPipeline(cfg, model=model, detector=detector)   # once, for every input
    except (RuntimeError, ValueError, OSError) as e:   # e.g. out of device memory
        raise CliError(f"cannot start the hand pipeline on {args.device}: {e}") from None
    if not args.intrinsics:
        print(f"note: no --intrinsics given; assuming a {args.hfov:g}° horizontal field of view. "
              "Depths scale with the focal length: pass the real fx,fy,cx,cy for metric hands.",
              file=sys.stderr)
    names = UniqueNames()
    done = hands_total = failed = 0

    def report(message: str) -> None:
        nonlocal failed
        failed += 1
        tqdm.write(f"skipped {message}", file=sys.stderr)

    def run(items: Iterator[Frame | InputError], total: int | None, desc: str, results: Any) -> None:
        nonlocal done, hands_total
        bar = tqdm(items, total=total, desc=desc, unit="frame", disable=total is not None and total <= 1)
        for item in bar:
            if isinstance(item, InputError):
                report(str(item))
                continue
            try:
                record = infer_frame(item)
            except Exception as e:   # one frame's failure must not cost the others
                detail = str(e).strip().splitlines()[-1] if str(e).strip() else ""
                report(f"{item.source} (frame {item.index}): {type(e).__name__}: {detail}")
                continue
            results.write(json.dumps(record) + "\n")
            results.flush()          # an interrupted run keeps every finished frame
            done += 1
            hands_total += len(record["hands"])

    def infer_frame(frame: Frame) -> dict:
        h, w = frame.rgb.shape[:2]
        K = camera_matrix(args, w, h)
        hands = pipeline(frame.rgb, K, stamp=frame.time, depth=frame.depth)
        overlay = out / f"{frame.name}_overlay.png"
        if not cv2.imwrite(str(overlay), cv2.cvtColor(draw_hands(frame.rgb, hands, K), cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write {overlay}")
        records = []
        for k, hand in enumerate(hands):
            obj = None
            if hand.vertices is not None:
                obj = f"{frame.name}_{k}_{hand.side}.obj"
                write_obj(out / obj, hand.vertices, hand.faces)
            records.append(hand_record(hand, obj))
        return {"source": frame.source, "frame": frame.index, "time_s": frame.time, "depth": frame.depth_source,
                "width": w, "height": h, "K": K.tolist(), "hands": records}

    with open(out / RESULTS, "w", encoding="utf-8") as results:
        if images:
            run(image_frames(images, names, args.depth_suffix if args.depth else None, args.depth_scale),
                len(images), "images", results)
        for video in videos:
            detector.start(video=True)
            pipeline.reconfigure(tracking=True)
            pipeline.reset_tracking()
            count = int(cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_COUNT)) or None
            run(video_frames(video, names), count, video.name, results)
    summary = f"{done} frame(s), {hands_total} hand(s) → {out / RESULTS}"
    if failed:
        print(f"{summary}; {failed} input(s) failed and were skipped (see above)", file=sys.stderr)
        return 1
    print(summary)
    return 0


def wholebody_models(text: str) -> tuple[Path, Path]:
    from .perception.wholebody import parse_models
    try:
        person, pose = parse_models(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    for p in (person, pose):
        if not p.is_file():
            raise argparse.ArgumentTypeError(f"{p} not found")
    return person, pose


def _opencv_errors_only() -> None:
    # cv2.utils.logging in current OpenCV builds; cv2.setLogLevel in older ones (and some contrib builds)
    logging_ = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging_ is not None and hasattr(logging_, "setLogLevel"):
        logging_.setLogLevel(logging_.LOG_LEVEL_ERROR)
    elif hasattr(cv2, "setLogLevel"):
        cv2.setLogLevel(2)


def build_parser() -> argparse.ArgumentParser:
    ap = Parser(prog="hamer-ros", description="HaMeR hands from images and videos")
    sub = ap.add_subparsers(dest="command", required=True)
    inf = sub.add_parser(
        "infer", help="overlays, OBJ meshes and hands.jsonl for images/folders/videos",
        description="Per frame: <frame>_overlay.png (mesh and skeleton), <frame>_<k>_<side>.obj per hand "
                    "(camera optical frame, metres) and one line of hands.jsonl, written as it finishes.",
        epilog=INFER_EXAMPLES, formatter_class=HelpFormatter)
    inf.add_argument("paths", nargs="+", type=input_path, metavar="PATH",
                     help="images, folders of images and videos, e.g. photo.jpg clips/ video.mp4")
    inf.add_argument("--out", required=True, type=out_folder,
                     help="output folder, created if missing, e.g. out/")
    inf.add_argument("--checkpoint", type=checkpoint_file,
                     help="HaMeR checkpoint, e.g. _DATA/hamer_ckpts/checkpoints/hamer.ckpt (model_config.yaml "
                          "one folder up); it holds MANO too. Without it: joints only, from MediaPipe")
    inf.add_argument("--mano", type=mano_file,
                     help="MANO_RIGHT.pkl or its folder, e.g. mano_v1_2/models/, used instead of the "
                          "checkpoint's copy of MANO (optional; needs --checkpoint)")
    cam = inf.add_mutually_exclusive_group()
    cam.add_argument("--intrinsics", type=intrinsics, metavar="FX,FY,CX,CY",
                     help="the camera's focal lengths and principal point in pixels (CameraInfo K), "
                          "e.g. 615.2,615.4,320.1,241.7. Default: a guess from --hfov")
    cam.add_argument("--hfov", type=hfov, default=DEFAULT_HFOV, metavar="DEG",
                     help="horizontal field of view guess in degrees when --intrinsics is not known, e.g. 69")
    inf.add_argument("--device", type=device, default=default("device"),
                     help="auto (cuda when available), cpu, cuda or cuda:N, e.g. cuda:0")
    inf.add_argument("--precision", default=default("precision"), choices=PARAMETER_SPECS["precision"].choices,
                     help="network precision; fp16 on NVIDIA GPUs")
    inf.add_argument("--backend", default=default("backend"), choices=PARAMETER_SPECS["backend"].choices,
                     help="inference engine; unavailable or inaccurate ones fall back to eager, logged")
    inf.add_argument("--max-hands", type=positive_int, default=4, metavar="N",
                     help="most hands per frame, 1 to 10, e.g. 2")
    inf.add_argument("--rescale", type=rescale, default=default("rescale"),
                     help="crop padding factor around the detected box, 1 to 4, e.g. 2.5 (the reference uses 2.0)")
    inf.add_argument("--roi", action="append", type=parse_roi, metavar="X1,Y1,X2,Y2,SIDE",
                     help="fixed hand box in pixels instead of MediaPipe, repeatable (without --checkpoint the "
                          "landmark model finds the hand in each box), e.g. 100,120,260,300,right")
    inf.add_argument("--wholebody", type=wholebody_models, metavar="PERSON.onnx,POSE.onnx",
                     help="find hands from whole-body keypoints: a person detector and a whole-body pose model "
                          "(ONNX; see the README), e.g. yolox_m.onnx,rtmw.onnx")
    rgbd = inf.add_argument_group("depth", "hands anchored on an aligned depth image (RGB-D cameras): depth sets "
                                           "their distance along their rays (their size); each hand's placement "
                                           "says rgbd or rgb, its scale the size found")
    rgbd.add_argument("--depth", action="store_true",
                      help="pair every image x.jpg with the depth image x<suffix>.png beside it (16-bit, "
                           "aligned to the colour camera, same size), e.g. rgbd/x.jpg with rgbd/x_depth.png; depth "
                           "images in folders are not inputs")
    rgbd.add_argument("--depth-suffix", default="_depth", metavar="SUFFIX", type=depth_suffix,
                      help="the depth image's name is the colour image's stem plus this, e.g. _aligned_depth")
    rgbd.add_argument("--depth-scale", type=positive_float, default=0.001, metavar="M",
                      help="metres per depth unit: 0.001 for millimetres (RealSense, Azure Kinect), e.g. 0.0001")

    vid = inf.add_argument_group("videos", "frames of a video are tracked (stable ids, sides voted over frames) "
                                        "and smoothed on their timestamps; images are independent")
    vid.add_argument("--no-filter", action="store_true", help="keep tracking, but do not smooth the hands, e.g. to see the raw per-frame output")
    vid.add_argument("--filter-min-cutoff", type=positive_float, default=default("filter_min_cutoff"),
                     metavar="HZ", help="One-Euro cutoff of a still hand (lower: steadier, laggier), e.g. 0.5")
    vid.add_argument("--filter-beta", type=non_negative_float, default=default("filter_beta"),
                     help="how fast the cutoff rises with speed, Hz per m/s (higher: less lag), e.g. 15")
    vid.add_argument("--filter-d-cutoff", type=positive_float, default=default("filter_d_cutoff"),
                     metavar="HZ", help="cutoff of the speed estimate, e.g. 1.0")
    vid.add_argument("--hold-time", type=non_negative_float, default=default("hold_time"), metavar="S",
                     help="seconds a tracked hand the detector misses is still written, flagged held; 0: never, e.g. 0.2")
    vid.add_argument("--side-switch-frames", type=frame_count, default=default("side_switch_frames"),
                     metavar="N", help="consecutive frames that disagree with a hand's side before it changes, e.g. 5")
    inf.set_defaults(func=cmd_infer)
    add_bag_parser(sub)
    from . import bench
    bench.add_parser(sub)
    return ap


BAG_EXAMPLES = """examples:
  hamer-ros bag session_01/ --out session_01_hands.mcap --checkpoint _DATA/hamer_ckpts/checkpoints/hamer.ckpt
  hamer-ros bag a.mcap b/ --out hands.mcap --image /camera/color/image_raw --overlay
  hamer-ros bag day1/*/ --out day1.mcap --checkpoint hamer.ckpt --ray auto --workers 8
Run it again with the same arguments after an interruption: finished windows are kept."""


def add_bag_parser(sub: Any) -> None:
    bag = sub.add_parser(
        "bag", help="annotate rosbag2 recordings (MCAP, sqlite3) with hands into one MCAP",
        description="Reads the recordings (no ROS install needed), runs the node's pipeline on their own stamps "
                    "(tracking and filtering; one camera per frame id) and writes HandArray on /hands, /tf and "
                    "optionally the overlay on /hands/debug_image/compressed, under each image's header and log "
                    "time, as an MCAP in ROS 2's form for ros2 bag play (and RViz through it) and Foxglove.",
        epilog=BAG_EXAMPLES, formatter_class=HelpFormatter)
    bag.add_argument("inputs", nargs="+", type=Path, metavar="RECORDING",
                     help="rosbag2 folders or .mcap files, e.g. session_01/ take2.mcap")
    bag.add_argument("--out", required=True, type=mcap_out, help="the MCAP to write, e.g. hands.mcap")
    bag.add_argument("--image", default="", metavar="TOPIC",
                     help="colour image topic (Image or CompressedImage); default: every image topic not named depth")
    bag.add_argument("--depth", default="", metavar="TOPIC",
                     help="aligned depth topic; default: one named aligned depth if the recording has it; none: off")
    bag.add_argument("--image-is-rectified", action="store_true",
                     help="the images are rectified (image_rect*): CameraInfo's P applies, no distortion")
    bag.add_argument("--checkpoint", type=checkpoint_file,
                     help="HaMeR checkpoint, e.g. _DATA/hamer_ckpts/checkpoints/hamer.ckpt; without it: joints only")
    bag.add_argument("--mano", type=mano_file, help="MANO_RIGHT.pkl or its folder (optional; needs --checkpoint)")
    bag.add_argument("--device", type=device, default=default("device"), help="auto, cpu, cuda or cuda:N")
    bag.add_argument("--precision", default=default("precision"), choices=PARAMETER_SPECS["precision"].choices,
                     help="network precision; fp16 on NVIDIA GPUs")
    bag.add_argument("--backend", default=default("backend"), choices=PARAMETER_SPECS["backend"].choices,
                     help="inference engine")
    bag.add_argument("--max-hands", type=positive_int, default=default("max_hands"), metavar="N",
                     help="most hands per frame and camera")
    bag.add_argument("--roi", action="append", type=parse_roi, metavar="X1,Y1,X2,Y2,SIDE",
                     help="fixed hand box in pixels instead of MediaPipe, repeatable, e.g. 100,120,260,300,right")
    bag.add_argument("--batch", type=whole_number(1, 256), default=8, metavar="N",
                     help="frames per HaMeR batch (throughput; 1 follows HaMeR's keypoints every frame, as the node)")
    bag.add_argument("--overlay", action="store_true", help="also write the drawn hands as JPEG images")
    bag.add_argument("--no-vertices", action="store_true", help="leave the 778 mesh vertices out of HandArray")
    bag.add_argument("--window", type=positive_float, default=60.0, metavar="S",
                     help="seconds of recording per unit of work (a worker's share; what an interruption redoes)")
    bag.add_argument("--warmup", type=non_negative_float, default=2.0, metavar="S",
                     help="seconds before each window run to settle tracking and filters (not written)")
    bag.add_argument("--ray", default="", metavar="ADDRESS",
                     help="run the windows on a Ray cluster: auto (the running one), local, or ray://host:10001")
    bag.add_argument("--workers", type=whole_number(1, 4096), default=1, metavar="N",
                     help="Ray workers (one GPU each on a GPU device)")
    bag.add_argument("--threads", type=whole_number(0, 4096), default=0, metavar="N",
                     help="CPU threads per process; 0: all cores (with --ray: shared among the workers). The same N "
                          "gives the same file from one process and from Ray, to the last bit")
    bag.add_argument("--quiet", action="store_true", help="no progress bar")
    bag.set_defaults(func=cmd_bag)


def mcap_out(text: str) -> Path:
    p = Path(text).expanduser()
    if p.suffix != ".mcap":
        raise argparse.ArgumentTypeError(f"'{text}': the output is one MCAP file, e.g. hands.mcap")
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"'{text}' is a folder")
    return p


def cmd_bag(args: argparse.Namespace) -> int:
    try:
        from .bag.job import BagError, Settings
        from .bag.run import annotate
    except ImportError as e:
        raise CliError(f"{e.name} is missing: pip install 'hamer_ros[bag]' (rosbags, mcap)") from None
    if args.mano and not args.checkpoint:
        raise CliError("--mano needs --checkpoint: MANO alone gives no hands", code=2)
    for p in args.inputs:
        if not p.exists():
            raise CliError(f"no such recording: {p}", code=2)
    pipeline = {"device": args.device, "precision": args.precision, "backend": args.backend,
                "max_hands": args.max_hands, "checkpoint": str(args.checkpoint or ""), "mano": str(args.mano or "")}
    if args.roi:
        pipeline.update(detector="fixed", rois=args.roi)
    settings = Settings(pipeline=pipeline, image_topic=args.image, depth_topic=args.depth,
                        image_is_rectified=args.image_is_rectified, batch=args.batch, overlay=args.overlay,
                        publish_vertices=not args.no_vertices, window_s=args.window, warmup_s=args.warmup,
                        threads=args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    try:
        summary = annotate(list(args.inputs), args.out, settings, ray_address=args.ray, workers=args.workers,
                           show_progress=not args.quiet)
    except BagError as e:
        raise CliError(str(e)) from None
    for line in summary.lines():
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CliError as e:
        print(f"hamer-ros {args.command}: error: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        kept = "finished windows are kept: run it again to go on" if args.command == "bag" else "finished frames are kept"
        print(f"hamer-ros {args.command}: interrupted ({kept})", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
