#!/usr/bin/env python3
"""Hand detectors on the annotated example photos: recall, precision, side agreement and CPU time.

    python -m benchmarks recall [--modes mediapipe ...] [--repeat 5] [--examples DIR] [--out out/recall]

Truth: benchmarks/data/example_hands.json, a tight box from wrist to fingertips and the person's
own side for every clearly visible hand of test1.jpg ... test4.jpg (the HaMeR project's example
photos, found as `python -m hamer_ros.examples` finds them; each photo's SHA-256 is checked, so
a different photo is refused rather than scored against the wrong boxes). Hands flagged
`partial` (heavily cut off or occluded) are counted on their own: found, they count as found;
missed, they are not a miss.

Matching: detections and annotated hands are paired one to one with the Hungarian method
(scipy's linear_sum_assignment) on box IoU, as many pairs at IoU >= 0.3 as possible, and among
those the largest total IoU. Why 0.3 and not COCO's 0.5: the two boxes are drawn differently. A
keypoint detector's box is the box of its 21 landmarks, which sit on the joint centres, so it is
inset from a human box by about half a finger width at the tips and sides and ends at the
wrist's centre rather than its edge; a detector that pads its crop (MediaPipe's palm box is
scaled 2.6x) is looser. A box inset by a fraction f of its size on every side has IoU (1 - 2f)^2
(f = 0.2: 0.36) and one s times as large has IoU 1/s^2 (s = 1.8: 0.31), so a keypoint box of a
curled or foreshortened hand, or a padded box, still matches at 0.3 and would not at 0.5. A
same-size box slid by d of its width has IoU (1 - d)/(1 + d), 0.33 at half a width: 0.3 still
needs the detection to sit on the hand. Where two hands' boxes overlap (test3's interlaced
hands overlap each other at IoU ~0.6), the one-to-one pairing stops one detection counting
twice, and the side agreement column shows a detection credited to the other hand.

Columns: found/visible (visible = annotated, not partial); partial found/partial; false =
detections paired with no annotated hand; precision = paired detections / detections; recall =
found / visible; side = pairs whose side agrees / pairs; IoU = mean over pairs; ms = median
wall time per photo over --repeat calls after one warm-up call (this machine's CPU; a mode whose
detector would use an accelerator says so in its note). The "all" row of a mode sums the counts
and takes the median over all its timed calls.

Modes are rows of MODES, one line each: a factory (the photo's annotated hands in, a
HandDetector out) and a note. A mode that cannot start (a missing dependency, a detector name
make_detector does not know yet) is printed as a row saying why. Overlays go to --out, one per
photo and mode: annotated boxes green (thin: partial), detections in their side's colour
(right orange, left blue, as the package's overlays), labelled with the IoU of their pair, or
FALSE; a visible hand not found is crossed out in red and labelled MISS.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402

from hamer_ros.examples import find_examples, not_found_message  # noqa: E402
from hamer_ros.perception.detect import HandDetector, make_detector  # noqa: E402
from hamer_ros.perception.track import iou_matrix  # noqa: E402

ANNOTATIONS = REPO / "benchmarks" / "data" / "example_hands.json"
MIN_IOU = 0.3
MAX_HANDS = 10      # more than any photo holds, so MediaPipe's hand limit never hides a hand


@dataclass(frozen=True)
class Box:
    """An annotated hand or a detection: x1, y1, x2, y2 in pixels and the person's own side."""

    box: tuple[float, float, float, float]
    side: str                       # "right" or "left"
    partial: bool = False           # annotations only: heavily cut off or occluded


@dataclass
class Counts:
    """The tallies of one photo (or, added up, of several) for one detector."""

    visible: int = 0                # annotated hands not flagged partial
    found: int = 0                  # of those, paired with a detection
    partial: int = 0
    partial_found: int = 0
    detections: int = 0
    false: int = 0                  # detections paired with no annotated hand
    side_agree: int = 0             # pairs (visible or partial) whose sides agree
    iou_sum: float = 0.0            # over all pairs

    @property
    def pairs(self) -> int:
        return self.found + self.partial_found

    @property
    def precision(self) -> float:
        return self.pairs / self.detections if self.detections else float("nan")

    @property
    def recall(self) -> float:
        return self.found / self.visible if self.visible else float("nan")

    def __add__(self, other: Counts) -> Counts:
        return Counts(**{k: getattr(self, k) + getattr(other, k) for k in self.__dataclass_fields__})


@dataclass
class Match:
    """The outcome of pairing one photo's detections with its annotated hands."""

    pairs: list[tuple[int, int, float]]       # (hand index, detection index, IoU)
    counts: Counts
    missed: list[int] = field(default_factory=list)      # visible hands left unpaired
    false: list[int] = field(default_factory=list)       # detections left unpaired


def match(hands: Sequence[Box], detections: Sequence[Box], min_iou: float = MIN_IOU) -> Match:
    """Pair detections with annotated hands one to one and count what was found.

    The most pairs at IoU >= min_iou, then the largest total IoU: every eligible pair gets a
    bonus larger than any sum of IoUs, so the assignment never trades a pair for a better IoU
    elsewhere (maximising IoU alone can leave a hand unpaired that a legal pairing covers)."""
    iou = iou_matrix(np.array([h.box for h in hands], dtype=np.float64).reshape(-1, 4),
                     np.array([d.box for d in detections], dtype=np.float64).reshape(-1, 4))
    eligible = iou >= min_iou
    bonus = 1.0 + min(iou.shape)
    rows, cols = linear_sum_assignment(np.where(eligible, bonus + iou, 0.0), maximize=True)
    pairs = [(int(r), int(c), float(iou[r, c])) for r, c in zip(rows, cols) if eligible[r, c]]

    counts = Counts(detections=len(detections))
    for h in hands:
        if h.partial:
            counts.partial += 1
        else:
            counts.visible += 1
    for r, c, v in pairs:
        if hands[r].partial:
            counts.partial_found += 1
        else:
            counts.found += 1
        counts.side_agree += hands[r].side == detections[c].side
        counts.iou_sum += v
    paired_hands = {r for r, _, _ in pairs}
    paired_dets = {c for _, c, _ in pairs}
    counts.false = len(detections) - len(paired_dets)
    missed = [i for i, h in enumerate(hands) if not h.partial and i not in paired_hands]
    false = [j for j in range(len(detections)) if j not in paired_dets]
    return Match(pairs, counts, missed, false)


# ---------------------------------------------------------------- modes

Factory = Callable[[Sequence[Box]], HandDetector]


@dataclass(frozen=True)
class Mode:
    make: Factory                   # the photo's annotated hands in (only an oracle looks), a detector out
    note: str


def registered(name: str, **kwargs: object) -> Factory:
    """A detector that make_detector builds by name; the annotation is not shown to it."""
    return lambda _hands: make_detector(name, **kwargs)


def wholebody() -> HandDetector:
    """The whole-body detector on the models HAMER_ROS_WHOLEBODY names (RuntimeError saying so if unset)."""
    from hamer_ros.perception.wholebody import parse_models
    text = os.environ.get("HAMER_ROS_WHOLEBODY", "")
    if not text:
        raise RuntimeError("set HAMER_ROS_WHOLEBODY='PERSON_DETECTOR.onnx,WHOLEBODY_POSE.onnx' (README: Finding the hands)")
    person, pose = parse_models(text)
    return make_detector("wholebody", person_model=person, pose_model=pose, max_hands=MAX_HANDS)


def annotated_rois(hands: Sequence[Box]) -> HandDetector:
    """The fixed-ROI detector given the annotation itself: must score 100 %, or the harness is wrong."""
    return make_detector("fixed", rois=[{"box": list(h.box), "side": h.side} for h in hands])


# One line per mode. A new detector (a whole-body detector, a user's ONNX model) is one more
# line: registered("its make_detector name", ...), or any factory.
MODES: dict[str, Mode] = {
    "mediapipe": Mode(registered("mediapipe", video_mode=False, max_hands=MAX_HANDS),
                      "MediaPipe Hands' static graph (palm detector + full landmark model) on this package's "
                      "runtime: what the node's first frame sees"),
    "mediapipe+views": Mode(registered("mediapipe", video_mode=False, max_hands=MAX_HANDS, proposals=True),
                            "the same, plus tiles and a shrunk canvas for the palm detector: `hamer-ros infer` "
                            "on photos"),
    "wholebody": Mode(lambda _hands: wholebody(), "a person detector + whole-body keypoints, the ONNX models "
                                                  "named by HAMER_ROS_WHOLEBODY='PERSON.onnx,POSE.onnx'"),
    "fixed-annotated": Mode(annotated_rois, "fixed ROIs set to the annotation: the harness's self-check"),
}


# ---------------------------------------------------------------- running

@dataclass
class Photo:
    name: str
    rgb: np.ndarray
    hands: list[Box]


class BenchError(RuntimeError):
    """A one-line reason the benchmark cannot run (printed, exit status 1)."""


def load_photos(folder: Path, annotations: Path = ANNOTATIONS) -> list[Photo]:
    """The annotated photos from `folder`, each checked against the annotation's SHA-256 and size."""
    doc = json.loads(annotations.read_text())
    photos = []
    for name, entry in doc["images"].items():
        path = folder / name
        if not path.is_file():
            raise BenchError(f"{path} is missing (the annotation covers {', '.join(doc['images'])})")
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry["sha256"]:
            raise BenchError(f"{path} has SHA-256 {digest}, not the annotated photo's {entry['sha256']}: "
                             f"its boxes would be scored against the wrong picture")
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None or [bgr.shape[1], bgr.shape[0]] != list(entry["size"]):
            raise BenchError(f"{path} does not decode to the annotated size {entry['size']}")
        hands = [Box(tuple(map(float, h["box"])), h["side"], bool(h.get("partial", False))) for h in entry["hands"]]
        photos.append(Photo(name, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), hands))
    return photos


def as_boxes(detections: Sequence) -> list[Box]:
    return [Box(tuple(float(v) for v in d.box), "right" if d.is_right else "left") for d in detections]


def run_photo(detector: HandDetector, photo: Photo, repeat: int) -> tuple[list[Box], list[float]]:
    """The warm-up call's detections (static mode: every call gives the same) and the timed calls' ms."""
    found = as_boxes(detector(photo.rgb))
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        detector(photo.rgb)
        times.append((time.perf_counter() - t0) * 1e3)
    return found, times


# ---------------------------------------------------------------- output

GREEN, RED = (0, 200, 0), (230, 0, 0)
SIDE_RGB = {"right": (255, 128, 40), "left": (40, 150, 255)}     # hamer_ros.perception.overlay.COLOURS


def overlay(photo: Photo, detections: list[Box], result: Match) -> np.ndarray:
    """A BGR copy of the photo with the annotation, the detections and the misses drawn on it."""
    out = photo.rgb.copy()
    thick = max(1, round(max(out.shape[:2]) / 500))
    font = 0.45 * thick

    def rect(b: Box, colour: tuple[int, int, int], width: int) -> tuple[int, int, int, int]:
        x1, y1, x2, y2 = (int(round(v)) for v in b.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, width)
        return x1, y1, x2, y2

    for h in photo.hands:
        rect(h, GREEN, 1 if h.partial else thick + 1)
    iou_of = {c: v for _, c, v in result.pairs}
    for j, d in enumerate(detections):
        x1, y1, _, _ = rect(d, SIDE_RGB[d.side], thick)
        label = f"{d.side} {iou_of[j]:.2f}" if j in iou_of else f"{d.side} FALSE"
        cv2.putText(out, label, (x1 + 2, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, font, SIDE_RGB[d.side], thick)
    for i in result.missed:
        x1, y1, x2, y2 = rect(photo.hands[i], GREEN, thick + 1)
        cv2.line(out, (x1, y1), (x2, y2), RED, thick)
        cv2.line(out, (x1, y2), (x2, y1), RED, thick)
        cv2.putText(out, "MISS", (x1 + 2, y2 - 4), cv2.FONT_HERSHEY_SIMPLEX, font, RED, thick)
    return cv2.cvtColor(out, cv2.COLOR_RGB2BGR)


def fmt(x: float, spec: str = ".2f") -> str:
    return "-" if x != x else format(x, spec)      # NaN (nothing to divide by) prints as "-"


def row(mode: str, photo: str, c: Counts, ms: float) -> str:
    iou = c.iou_sum / c.pairs if c.pairs else float("nan")
    return (f"| {mode} | {photo} | {c.found}/{c.visible} | {c.partial_found}/{c.partial} | {c.false} | "
            f"{fmt(c.precision)} | {fmt(c.recall)} | {c.side_agree}/{c.pairs} | {fmt(iou)} | {fmt(ms, '.1f')} |")


def bench_mode(name: str, photos: list[Photo], repeat: int, out: Path) -> list[str]:
    """The table rows of one mode: one per photo and its total, or one saying why it did not run."""
    mode, lines, total, all_times = MODES[name], [], Counts(), []
    for photo in photos:
        try:
            detector = mode.make(photo.hands)
        except (ImportError, RuntimeError, ValueError, OSError) as e:
            # A missing optional dependency or an unregistered detector: a row, not a crash.
            reason = str(e).replace("|", "/").splitlines()[0]
            return [f"| {name} | unavailable: {reason} |" + " |" * 8]
        try:
            detections, times = run_photo(detector, photo, repeat)
        finally:
            detector.close()
        result = match(photo.hands, detections)
        cv2.imwrite(str(out / f"{Path(photo.name).stem}_{name}.jpg"), overlay(photo, detections, result))
        lines.append(row(name, photo.name, result.counts, float(np.median(times))))
        total, all_times = total + result.counts, all_times + times
    lines.append(row(f"**{name}**", "**all**", total, float(np.median(all_times))))
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--examples", type=Path, default=None,
                    help="folder holding test1.jpg ... test4.jpg (default: where hamer_ros.examples finds them)")
    ap.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES), help="detector modes to run")
    ap.add_argument("--repeat", type=int, default=5, help="timed calls per photo, after one warm-up call")
    ap.add_argument("--out", type=Path, default=REPO / "out" / "recall", help="folder for the overlays")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")

    folder = args.examples if args.examples is not None else find_examples()
    if folder is None:
        print(f"error: {not_found_message()}", file=sys.stderr)
        return 1
    try:
        photos = load_photos(folder)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)

    print(f"Photos: {folder}; CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"IoU >= {MIN_IOU}; ms = median of {args.repeat} calls after a warm-up\n")
    print("| mode | photo | found/visible | partial | false | precision | recall | side | IoU | ms |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.modes:
        print("\n".join(bench_mode(name, photos, args.repeat, args.out)), flush=True)
    print("\nModes: " + "; ".join(f"{n}: {MODES[n].note}" for n in args.modes))
    print(f"Overlays: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
