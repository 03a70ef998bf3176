#!/usr/bin/env python3
"""How far each way of placing a hand in the camera lands from the truth, by angle off the optical
axis, on synthetic hands seen by a synthetic network; and what the placement costs.

    python -m benchmarks camera [--hands 2000] [--seed 0] [--runs 2000]

The network. A crop-based network (HaMeR, MediaPipe's world landmarks) sees the hand through a
camera that looks at the crop, so it predicts the hand *relative to the ray through the crop
centre*: here its joints are the true ones turned by R^T, R = crop_ray_rotations(centre), and
its crop camera (s, tx, ty) is the one that is perfect in 2D: HaMeR's crop camera (reference
§2.3, §5.1: focal 5000/256 in normalised crop units, axis through the crop centre) fitted to
the hand's true keypoints in crop units, k = (u - c) / S (x mirrored for left hands), which is a
pinhole translation least-squares problem solved with refine_translation(robust=False).
"Realistic" adds what a trained network gets wrong: 5 % scale (depth) error, 5 mm offsets of
(tx, ty), 4 mm per-joint shape noise and an 8 deg rotation error.

Placements compared (camera-frame joint error in mm, mean; palm-frame orientation error in deg):
  before      the pipeline before ray correction: the network's joints taken as camera-frame,
              T_z K^-1 (c, 1) + (tx, ty, 0), then refine_translation on the detector keypoints
  wp          ray-corrected, weak perspective only (weak_perspective_to_translation)
  translation ray-corrected, refine_translation on the detector keypoints
  pose fit    ray-corrected, fit_pose (rotation + translation) on the detector keypoints
  own 2D      ray-corrected, refine_translation on the network's own 2D keypoints (its joints
              through its crop camera), i.e. without a keypoint detector
Detector keypoints are the true projections plus Gaussian noise; the box is their tight box.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hamer_ros.perception.camera import (  # noqa: E402
    crop_keypoints_to_image, crop_ray_rotations, fit_pose, mirror_points, project_points, refine_translation,
    weak_perspective_to_translation)
from hamer_ros.perception.crop import crop_boxes  # noqa: E402
from hamer_ros.perception.hand_frame import hand_frame  # noqa: E402
from hamer_ros_testing import hand_skeletons, rotations_by  # noqa: E402

WIDTH, HEIGHT = 1280, 720
CROP_F = 5000.0 / 256.0   # the crop camera's focal in normalised crop units
ANGLE_BINS = (0, 10, 20, 30, 40)
METHODS = ("before", "wp", "translation", "pose fit", "own 2D")


def turn(points: np.ndarray, R: np.ndarray) -> np.ndarray:
    return points @ np.swapaxes(R, -1, -2)


def simulate_network_cam(seen: np.ndarray, kp_true: np.ndarray, centers: np.ndarray, sizes: np.ndarray,
                         is_right: np.ndarray) -> np.ndarray:
    """(s, tx, ty) of a network perfect in 2D; `seen` are its joints as it sees them (crop camera,
    mirrored for left hands)."""
    sign = np.where(is_right, 1.0, -1.0)
    k_crop = (kp_true - centers[:, None, :]) / sizes[:, None, None]
    k_crop[..., 0] *= sign[:, None]
    t_crop = refine_translation(seen, k_crop, np.diag([CROP_F, CROP_F, 1.0]), robust=False)
    return np.stack([2.0 * CROP_F / t_crop[:, 2], t_crop[:, 0], t_crop[:, 1]], -1)


def network_keypoints(seen: np.ndarray, cam: np.ndarray, centers: np.ndarray, sizes: np.ndarray,
                      is_right: np.ndarray) -> np.ndarray:
    """The network's own 2D keypoints in image px: its joints through its crop camera."""
    t_crop = np.stack([cam[:, 1], cam[:, 2], 2.0 * CROP_F / cam[:, 0]], -1)
    q = seen + t_crop[:, None]
    return crop_keypoints_to_image(CROP_F * q[..., :2] / q[..., 2:3], centers, sizes, is_right)


def angle_deg(Ra: np.ndarray, Rb: np.ndarray) -> np.ndarray:
    c = (np.trace(Ra @ np.swapaxes(Rb, -1, -2), axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(c, -1.0, 1.0)))


def scene(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A wide camera (f 450-900 px at 1280x720, up to 55 deg off axis at the corners) and n hands
    0.3-1.5 m away, their wrists spread evenly over 0-40 deg off the optical axis, inside the image."""
    f = rng.uniform(450, 900)
    k = np.array([[f, 0, WIDTH / 2 + rng.uniform(-20, 20)], [0, f, HEIGHT / 2 + rng.uniform(-20, 20)], [0, 0, 1]])
    wrists = []
    while len(wrists) < n:
        off, az = np.radians(rng.uniform(0, 40)), rng.uniform(0, 2 * np.pi)
        d = np.array([np.sin(off) * np.cos(az), np.sin(off) * np.sin(az), np.cos(off)])
        u, v = k[0, 0] * d[0] / d[2] + k[0, 2], k[1, 1] * d[1] / d[2] + k[1, 2]
        if 60 < u < WIDTH - 60 and 60 < v < HEIGHT - 60:
            wrists.append(d * rng.uniform(0.3, 1.5))
    joints = hand_skeletons(rng, n)
    t_true = np.array(wrists)
    t_true += np.clip(0.08 - (joints[..., 2].min(1) + t_true[:, 2]), 0, None)[:, None] * t_true / t_true[:, 2:3]
    return k, joints, t_true, rng.random(n) < 0.5


def run(rng: np.random.Generator, hands: int, noise_px: float, realistic: bool, per_camera: int = 50) -> dict:
    out: dict[str, list] = {"angle": [], **{f"mm {m}": [] for m in METHODS}, **{f"deg {m}": [] for m in METHODS}}
    for _ in range(max(1, hands // per_camera)):
        k, joints, t_true, is_right = scene(rng, per_camera)
        n = per_camera
        truth = joints + t_true[:, None]
        frame_true = hand_frame(truth, is_right)
        kp_true = project_points(truth, k)
        kp_obs = kp_true + rng.normal(0.0, noise_px, kp_true.shape) if noise_px > 0 else kp_true
        centers, sizes = crop_boxes(np.concatenate([kp_obs.min(1), kp_obs.max(1)], -1), rescale=2.0)
        centers, sizes = centers.astype(np.float64), sizes.astype(np.float64)
        rays = crop_ray_rotations(centers, k)
        net = turn(joints, np.swapaxes(rays, -1, -2))          # what the network sees: ray-relative
        seen = np.where(is_right[:, None, None], net, mirror_points(net))
        cam = simulate_network_cam(seen, kp_true, centers, sizes, is_right)
        if realistic:
            cam[:, 0] *= 1.0 + rng.normal(0.0, 0.05, n)
            cam[:, 1:] += rng.normal(0.0, 0.005, (n, 2))
            centroid = net.mean(1, keepdims=True)
            net = turn(net - centroid, rotations_by(rng, n, 8.0)) + centroid + rng.normal(0.0, 0.004, net.shape)
            seen = np.where(is_right[:, None, None], net, mirror_points(net))

        tx = np.where(is_right, cam[:, 1], -cam[:, 1])
        offset = np.stack([tx, cam[:, 2], np.zeros(n)], -1)
        t_wp = weak_perspective_to_translation(cam, centers, sizes, k, is_right)
        t_old = t_wp - np.einsum("nij,nj->ni", rays - np.eye(3), offset)   # (tx, ty, 0) unturned
        placed = {"before": (net, refine_translation(net, kp_obs, k, t0=t_old))}
        fixed = turn(net, rays)
        placed["wp"] = (fixed, t_wp)
        placed["translation"] = (fixed, refine_translation(fixed, kp_obs, k, t0=t_wp))
        R, t = fit_pose(fixed, kp_obs, k, t0=t_wp)
        placed["pose fit"] = (turn(fixed, R), t)
        kp_net = network_keypoints(seen, cam, centers, sizes, is_right)
        placed["own 2D"] = (fixed, refine_translation(fixed, kp_net, k, t0=t_wp))

        for name, (j, t) in placed.items():
            est = j + t[:, None]
            out[f"mm {name}"].append(1e3 * np.linalg.norm(est - truth, axis=-1).mean(-1))
            out[f"deg {name}"].append(angle_deg(hand_frame(est, is_right), frame_true))
        out["angle"].append(np.degrees(np.arccos(t_true[:, 2] / np.linalg.norm(t_true, axis=1))))
    return {key: np.concatenate(v) for key, v in out.items()}


def table(res: dict, methods: tuple[str, ...]) -> None:
    print("| off axis | " + " | ".join(f"{m} mm" for m in methods) + " | " + " | ".join(f"{m} deg" for m in methods) + " |")
    print("|---|" + "---:|" * (2 * len(methods)))
    for lo, hi in zip(ANGLE_BINS[:-1], ANGLE_BINS[1:]):
        sel = (res["angle"] >= lo) & (res["angle"] < hi)
        mm = [f"{res[f'mm {m}'][sel].mean():.1f}" for m in methods]
        deg = [f"{res[f'deg {m}'][sel].mean():.1f}" for m in methods]
        print(f"| {lo}-{hi} deg | " + " | ".join(mm) + " | " + " | ".join(deg) + " |")


def time_fits(rng: np.random.Generator, runs: int) -> None:
    k = np.array([[900.0, 0, 640], [0, 900, 360], [0, 0, 1]])
    dist = np.array([-0.28, 0.09, 0.0012, -0.0008, -0.012])
    joints = hand_skeletons(rng, 2)
    t_true = np.array([[0.15, 0.05, 0.6], [-0.12, 0.08, 0.7]])
    kp = project_points(joints + t_true[:, None], k) + rng.normal(0, 2.0, (2, 21, 2))
    kp_out = kp.copy()
    kp_out[:, :3] += 80.0
    cases = [
        ("refine_translation, 2 px noise", lambda: refine_translation(joints, kp, k, t0=t_true)),
        ("refine_translation, 3 outliers each", lambda: refine_translation(joints, kp_out, k, t0=t_true)),
        ("refine_translation, with distortion", lambda: refine_translation(joints, kp, k, dist=dist, t0=t_true)),
        ("fit_pose, 2 px noise", lambda: fit_pose(joints, kp, k, t0=t_true)),
        ("fit_pose, 3 outliers each", lambda: fit_pose(joints, kp_out, k, t0=t_true)),
        ("fit_pose, with distortion", lambda: fit_pose(joints, kp, k, dist=dist, t0=t_true)),
        ("crop_ray_rotations", lambda: crop_ray_rotations(kp[:, 0], k)),
    ]
    print("| call, 2 hands | median µs | p90 µs | per hand µs |")
    print("|---|---:|---:|---:|")
    for name, fn in cases:
        for _ in range(50):
            fn()
        ts = np.empty(runs)
        for i in range(runs):
            t0 = time.perf_counter()
            fn()
            ts[i] = time.perf_counter() - t0
        print(f"| {name} | {np.median(ts) * 1e6:.0f} | {np.percentile(ts, 90) * 1e6:.0f} | {np.median(ts) * 5e5:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hands", type=int, default=2000, help="hands per table")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", type=int, default=2000, help="timing repetitions")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)

    print("## Cost (CPU, numpy)\n")
    time_fits(rng, args.runs)
    for realistic in (False, True):
        for noise in (0.0, 2.0):
            kind = "realistic network (5 % scale, 5 mm, 4 mm shape, 8 deg)" if realistic else "network perfect in 2D and 3D"
            print(f"\n## {kind}, keypoint noise {noise:.0f} px; {args.hands} hands, mean per bin\n")
            table(run(rng, args.hands, noise, realistic), METHODS)


if __name__ == "__main__":
    main()
