#!/usr/bin/env python3
"""Jitter and lag of the published hands with temporal filtering off and on, in the out-of-the-box
mode (MediaPipe), on sequences made from one real photo by exact homographies; and the per-frame
cost of tracking and filtering.

    python -m benchmarks temporal [--image test1.jpg] [--fps 30]

Sequences (every frame gets sensor noise: Gaussian grey-level noise, sigma 3, and a random
sub-pixel shift, |d| <= 0.5 px):
  static      the photo, 60 frames: jitter = RMS deviation from the sequence mean
  pan N deg/s the camera turns about its centre (yaw) through 20 deg at N deg/s after 1 s still,
              then stops for 1.5 s. The truth is exact up to the hand's first pose X0: at yaw(t) the
              hand is R(t)^T X0. X0 is the unfiltered mean of the first still second.
              lag = the time shift that best aligns the output with R(t)^T X0 during the pan
              (filtered minus unfiltered); settle = frames after the stop until the wrist stays
              within 2 mm (or 3x its static jitter) of where it comes to rest.
Sides and counts are compared with the first frame: a side flip or an extra hand is counted.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

try:
    from hamer_ros.examples import find_examples  # noqa: E402
except ImportError:
    find_examples = lambda: None  # noqa: E731
from hamer_ros.perception import Detection, Hand, HandPipeline, PipelineConfig, hand_frame  # noqa: E402
from hamer_ros.perception.filter import FilterConfig, HandSmoother  # noqa: E402
from hamer_ros.perception.track import HandTracker  # noqa: E402
from hamer_ros_testing import hand_skeletons, rotated_view, rotation_yaw_pitch  # noqa: E402

TIPS = [4, 8, 12, 16, 20]


def noisy(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    shift = rng.uniform(-0.5, 0.5, 2)
    moved = cv2.warpAffine(image, np.array([[1, 0, shift[0]], [0, 1, shift[1]]]), image.shape[1::-1],
                           flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return np.clip(moved + rng.normal(0, 3.0, image.shape), 0, 255).astype(np.uint8)


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(a.T @ b) - 1) / 2, -1, 1))))


def run(pipe: HandPipeline, frames: list[tuple[np.ndarray, np.ndarray, float]]) -> list[list[Hand]]:
    pipe.reset_tracking()
    return [pipe(img, K, stamp=t) for img, K, t in frames]


def pick(hands: list[Hand], expected: np.ndarray) -> Hand | None:
    """The hand (not a held one) whose wrist ray is nearest the expected one, within 5 deg (a ray
    is robust to the depth differences MediaPipe has between its first and its tracked frames)."""
    def off(h: Hand) -> float:
        c = h.wrist_position @ expected / np.linalg.norm(h.wrist_position) / np.linalg.norm(expected)
        return float(np.degrees(np.arccos(np.clip(c, -1, 1))))
    live = [h for h in hands if not h.held]
    best = min(live, key=off, default=None)
    return best if best is not None and off(best) < 5.0 else None


def static_jitter(seq: list[list[Hand]], base: list[Hand]) -> tuple[float, float, float]:
    wrist, tips, orient = [], [], []
    for b in base:
        hs = [pick(hands, b.wrist_position) for hands in seq[10:]]          # after the filters' warm-up
        hs = [h for h in hs if h is not None]
        w = np.array([h.wrist_position for h in hs])
        t = np.array([h.joints[TIPS] for h in hs])
        wrist.append(np.sqrt(((w - w.mean(0)) ** 2).sum(-1).mean()))
        tips.append(np.sqrt(((t - t.mean(0)) ** 2).sum(-1).mean()))
        mean_R = hs[len(hs) // 2].wrist_orientation
        orient.append(np.sqrt(np.mean([angle_deg(h.wrist_orientation, mean_R) ** 2 for h in hs])))
    return 1e3 * float(np.mean(wrist)), 1e3 * float(np.mean(tips)), float(np.mean(orient))


def pan_frames(image, K, keep, rng, speed, fps):
    still, sweep, rest = int(fps), int(round(20.0 / speed * fps)), int(1.5 * fps)
    yaws = [-10.0] * still + list(np.linspace(-10.0, 10.0, sweep)) + [10.0] * rest
    frames, rotations = [], []
    for k, yaw in enumerate(yaws):
        R = rotation_yaw_pitch(yaw, 0.0)
        view, K2 = rotated_view(image, K, R, keep)
        frames.append((noisy(view, rng), K2, k / fps))
        rotations.append(R)
    return frames, rotations, still, still + sweep


def lag_and_settle(seq, rotations, start, stop, fps, base_hand, base_jitter_m):
    hs = [pick(hands, R.T @ base_hand.wrist_position) for hands, R in zip(seq, rotations)]
    ok = [h is not None for h in hs]
    w = np.array([h.wrist_position if h is not None else np.full(3, np.nan) for h in hs])
    x0 = np.nanmean(w[5:start], axis=0) @ rotations[0].T     # the still second, back in the photo's camera
    truth = np.array([R.T @ x0 for R in rotations])
    t = np.arange(len(seq)) / fps
    pan = np.arange(start + 5, stop)
    shifts = np.arange(-20, 121) / 1000.0
    errs = []
    for s in shifts:
        shifted = np.array([np.interp(t[pan] - s, t, truth[:, i]) for i in range(3)]).T
        errs.append(np.nanmean(np.linalg.norm(w[pan] - shifted, axis=-1)))
    lag_ms = 1e3 * shifts[int(np.argmin(errs))]
    rest = w[stop:]
    final = np.nanmean(rest[-10:], axis=0)
    thr = max(0.002, 3 * base_jitter_m)
    err = np.linalg.norm(rest - final, axis=-1)
    settle = next((i for i in range(len(err)) if np.all(err[i:] < thr)), len(err))
    return lag_ms, settle, int(np.sum(~np.array(ok)))


def count_flips_and_duplicates(seq: list[list[Hand]], base: list[Hand],
                               rotations: list[np.ndarray] | None = None) -> tuple[int, int]:
    """Frames where a hand has another side than in the photo, and frames with more hands."""
    flips = dup = 0
    for k, hands in enumerate(seq):
        R = np.eye(3) if rotations is None else rotations[k]
        dup += len([h for h in hands if not h.held]) > len(base)
        for b in base:
            h = pick(hands, R.T @ b.wrist_position)
            flips += h is not None and h.is_right != b.is_right
    return flips, dup


def cost(runs: int = 2000) -> tuple[float, float]:
    """Per-frame CPU time of tracking + filtering two hands (thread time: robust to other load)."""
    rng = np.random.default_rng(0)
    joints = hand_skeletons(rng, 2) + np.array([[[0.1, 0, 0.6]], [[-0.15, 0, 0.6]]])
    kps = [rng.uniform(100, 300, (21, 2)).astype(np.float32), rng.uniform(400, 600, (21, 2)).astype(np.float32)]
    tracker = HandTracker(filter_config=FilterConfig())
    smoother = HandSmoother(FilterConfig())
    times_track, times_filter = [], []
    for k in range(runs):
        dets = [Detection(box=np.r_[kp.min(0), kp.max(0)] + rng.normal(0, 1, 4).astype(np.float32), is_right=i == 0,
                          score=0.9, keypoints=kp) for i, kp in enumerate(kps)]
        t0 = time.thread_time()
        dets = tracker.update(dets, k / 30)
        t1 = time.thread_time()
        hands = [Hand(is_right=d.is_right, score=d.score, box=d.box, joints=j, keypoints_2d=d.keypoints,
                      wrist_position=j[0], wrist_orientation=hand_frame(j, d.is_right), reprojection_error=0.0,
                      track_id=d.track_id) for d, j in zip(dets, joints + rng.normal(0, 0.002, joints.shape))]
        t2 = time.thread_time()
        smoother(hands, k / 30)
        smoother.held(tracker.missed_ids, k / 30)
        t3 = time.thread_time()
        times_track.append(t1 - t0)
        times_filter.append(t3 - t2)
    return 1e3 * float(np.median(times_track[100:])), 1e3 * float(np.median(times_filter[100:]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--image", default="test1.jpg", help="a photo, or the name of one in the example set "
                    "(default test1.jpg)")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-cutoff", type=float, default=PipelineConfig.filter_min_cutoff)
    ap.add_argument("--beta", type=float, default=PipelineConfig.filter_beta)
    ap.add_argument("--d-cutoff", type=float, default=PipelineConfig.filter_d_cutoff)
    ap.add_argument("--speeds", default="5,10,20", help="pan speeds, deg/s")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    path = Path(args.image)
    if not path.is_file():
        path = (find_examples() or Path(".")) / args.image
    image = np.ascontiguousarray(cv2.imread(str(path))[:, :, ::-1])
    h, w = image.shape[:2]
    f = (w / 2) / np.tan(np.radians(35))
    K = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]])

    pipes = {name: HandPipeline(PipelineConfig(device="cpu", max_hands=2, filter=on, filter_min_cutoff=args.min_cutoff,
                                               filter_beta=args.beta, filter_d_cutoff=args.d_cutoff))
             for name, on in (("off", False), ("on", True))}
    base = pipes["off"](image, K)
    keep = np.mean([hd.keypoints_2d.mean(0) for hd in base], 0)
    print(f"{args.image}: {len(base)} hands ({', '.join(hd.side for hd in base)}), K from a 70 deg lens; filter "
          f"min_cutoff {args.min_cutoff} Hz, beta {args.beta}, d_cutoff {args.d_cutoff} Hz\n")

    static = [(noisy(image, rng), K, k / args.fps) for k in range(60)]
    rows = {}
    for name, pipe in pipes.items():
        seq = run(pipe, static)
        rows[name] = static_jitter(seq, base) + count_flips_and_duplicates(seq, base)
    print("## static scene with sensor noise (60 frames)\n")
    print("| filter | wrist jitter mm | fingertip jitter mm | orientation jitter deg | side flips | duplicates |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r[0]:.2f} | {r[1]:.2f} | {r[2]:.2f} | {r[3]} | {r[4]} |")
    print(f"| ratio off/on | {rows['off'][0] / rows['on'][0]:.1f} | {rows['off'][1] / rows['on'][1]:.1f} | "
          f"{rows['off'][2] / rows['on'][2]:.1f} | | |")

    print("\n## camera pans through 20 deg, then stops (lag: on minus off)\n")
    print("| pan deg/s | hand | lag off ms | lag on ms | added lag ms | settle off / on (frames) | side flips | duplicates |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for speed in (float(v) for v in args.speeds.split(",")):
        frames, rotations, start, stop = pan_frames(image, K, keep, rng, speed, args.fps)
        seqs = {name: run(pipe, frames) for name, pipe in pipes.items()}
        for i, b in enumerate(base):
            lo = lag_and_settle(seqs["off"], rotations, start, stop, args.fps, b, rows["off"][0] / 1e3)
            ln = lag_and_settle(seqs["on"], rotations, start, stop, args.fps, b, rows["on"][0] / 1e3)
            fl, _ = count_flips_and_duplicates(seqs["on"], [b], rotations)
            _, du = count_flips_and_duplicates(seqs["on"], base, rotations)
            print(f"| {speed:.0f} | {i} ({b.side}) | {lo[0]:.0f} | {ln[0]:.0f} | {ln[0] - lo[0]:.0f} | "
                  f"{lo[1]} / {ln[1]} | {fl} | {du} |")

    track_ms, filter_ms = cost()
    print(f"\n## cost per frame, two hands (CPU thread time, median)\n\n| tracking ms | filtering ms | total ms |\n"
          f"|---:|---:|---:|\n| {track_ms:.3f} | {filter_ms:.3f} | {track_ms + filter_ms:.3f} |")
    for pipe in pipes.values():
        pipe.close()


if __name__ == "__main__":
    main()
