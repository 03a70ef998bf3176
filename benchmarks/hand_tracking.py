#!/usr/bin/env python3
"""The hand detector's cost per frame on a stream: hands tracked by their landmarks (the landmark
model on each hand's region from the last frame) against looking for hands (palm detector +
landmarks), and the mediapipe package's own graph for comparison where it is installed.

    python -m benchmarks hand_tracking [--frames 50] [--examples DIR]

On test1.jpg (two hands MediaPipe finds) scaled to 1280x720, the same frame over and over, and its
left part with one hand; this machine's CPU (torch's default threads). Prints a markdown table (median and p95, ms).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from hamer_ros.examples import find_examples, not_found_message  # noqa: E402
from hamer_ros.perception.detect import make_detector  # noqa: E402


def _times(call, frame: np.ndarray, frames: int) -> tuple[float, float, int]:
    call(frame)                                           # warm-up (and, tracking, the first find)
    ts, hands = [], 0
    for _ in range(frames):
        t0 = time.perf_counter()
        hands = len(call(frame))
        ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    return statistics.median(ts), ts[int(round(0.95 * (len(ts) - 1)))], hands


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--examples", type=Path, default=None)
    args = ap.parse_args()
    folder = args.examples or find_examples()
    if folder is None or not (folder / "test1.jpg").is_file():
        print(not_found_message(), file=sys.stderr)
        return 1
    frame = cv2.resize(cv2.imread(str(folder / "test1.jpg"))[..., ::-1], (1280, 720), interpolation=cv2.INTER_LINEAR)
    frame = np.ascontiguousarray(frame)
    # the OK-sign hand alone (test1.jpg's left part), for a stream that holds one hand of two allowed
    one = np.ascontiguousarray(cv2.resize(cv2.imread(str(folder / "test1.jpg"))[:, :400, ::-1], (1280, 720)))
    rows = [("tracking 2 hands (landmarks on 2 regions)", make_detector("mediapipe", max_hands=2)),
            ("tracking 1 hand, max_hands 2 (palm detector every 3rd frame)", (make_detector("mediapipe", max_hands=2), one)),
            ("looking for hands (palm detector + landmarks), each frame",
             make_detector("mediapipe", max_hands=2, video_mode=False))]
    try:
        import mediapipe as mp
        hands = mp.solutions.hands.Hands(static_image_mode=False, max_num_hands=2, model_complexity=1)
        rows.append(("mediapipe package 0.10.x, video mode, 2 hands tracked",
                     lambda f: hands.process(f).multi_hand_landmarks or []))
    except (ImportError, AttributeError):
        pass
    print(f"\n### hand detector per 1280x720 frame, CPU ({args.frames} frames; ms)\n")
    print("| detector | median | p95 | hands |")
    print("|---|---:|---:|---:|")
    for name, det in rows:
        det, image = det if isinstance(det, tuple) else (det, frame)
        med, p95, n = _times(det, image, args.frames)
        print(f"| {name} | {med:.1f} | {p95:.1f} | {n} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
