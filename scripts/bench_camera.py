#!/usr/bin/env python3
"""Benchmarks of hamer_ros.perception.camera: speed of refine_translation, and how far each way
of placing a hand in the camera lands from the truth on synthetic hands.

    python scripts/bench_camera.py [--hands 2000] [--seed 0]

Placements compared (camera-frame joint error, mm):
  reference demo  weak_perspective_to_translation with the demo's invented camera
                  (F = 5000/256 max(W, H), principal point at the image centre), read as if it
                  were the real camera -- what the HaMeR demo outputs
  weak-persp. K   weak_perspective_to_translation with the real K
  refined         refine_translation against the (noisy) 2D keypoints of a keypoint detector,
                  started from the above
  refined, own 2D refine_translation against the network's own 2D keypoints (its crop-camera
                  projection, crop_keypoints_to_image): no detector keypoints needed; it places
                  the hand so that the real K reproduces what the network drew in the crop

Simulation of the network's camera output. HaMeR's crop camera (reference §2.3, §5.1) puts the
hand at t_crop = (tx, ty, tz = 2*5000/(256 s)) in front of a focal 5000/256 (normalised crop
units, crop px = (k + 0.5) 256) camera whose axis goes through the crop centre; training
fits its 2D keypoints to the crop. A network that is perfect in 2D therefore outputs the
(s, tx, ty) whose crop-camera projection best matches the hand's true keypoints in crop units,
k = (u - c) / S (x mirrored for left hands). For a distant hand on the optical axis that fit is
exactly the §5.2 relation F / T_z = S s / 2, i.e. s = 2 f / (S T_z), tx = T_x - (c_x - c_x0) T_z / f;
for near or off-axis hands it differs (the real camera's perspective and obliqueness are not in
the crop model), which is the error weak-perspective placement really has. The fit is itself a
pinhole translation least-squares problem (camera K_crop = diag(5000/256, 5000/256, 1)), so it
is solved with refine_translation(robust=False) on the exact keypoints.
The box is the tight box of the observed (noisy) keypoints, as a keypoint detector gives it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hamer_ros.perception.camera import (  # noqa: E402
    crop_keypoints_to_image, mirror_points, project_points, reference_camera, refine_translation,
    weak_perspective_to_translation)
from hamer_ros.perception.crop import crop_boxes  # noqa: E402
from hamer_ros.testing import hand_skeletons, random_rotations  # noqa: E402,F401

WIDTH, HEIGHT = 1280, 720
CROP_F = 5000.0 / 256.0   # the crop camera's focal in normalised crop units


def simulate_network_cam(joints: np.ndarray, kp_true: np.ndarray, centers: np.ndarray, sizes: np.ndarray,
                         is_right: np.ndarray) -> np.ndarray:
    """(s, tx, ty) of a network that is perfect in 2D (see the module docstring)."""
    sign = np.where(is_right, 1.0, -1.0)
    k_crop = (kp_true - centers[:, None, :]) / sizes[:, None, None]
    k_crop[..., 0] *= sign[:, None]                       # the left hand's crop is mirrored
    seen = np.where(is_right[:, None, None], joints, mirror_points(joints))
    t_crop = refine_translation(seen, k_crop, np.diag([CROP_F, CROP_F, 1.0]), robust=False)
    return np.stack([2.0 * CROP_F / t_crop[:, 2], t_crop[:, 0], t_crop[:, 1]], -1)


def network_keypoints(joints: np.ndarray, cam: np.ndarray, centers: np.ndarray, sizes: np.ndarray,
                      is_right: np.ndarray) -> np.ndarray:
    """The network's own 2D keypoints in image px: its joints (mirrored for left hands, as it
    sees them) through its crop camera (reference §5.1), then crop -> image."""
    seen = np.where(is_right[:, None, None], joints, mirror_points(joints))
    t_crop = np.stack([cam[:, 1], cam[:, 2], 2.0 * CROP_F / cam[:, 0]], -1)
    q = seen + t_crop[:, None]
    k_crop = CROP_F * q[..., :2] / q[..., 2:3]
    return crop_keypoints_to_image(k_crop, centers, sizes, is_right)


def joint_error_mm(joints_est: np.ndarray, t_est: np.ndarray, joints_true: np.ndarray, t_true: np.ndarray) -> np.ndarray:
    return 1e3 * np.linalg.norm((joints_est + t_est[:, None]) - (joints_true + t_true[:, None]), axis=-1).mean(-1)


def run(rng: np.random.Generator, hands: int, noise_px: float, net_error: bool, per_camera: int = 50) -> dict[str, np.ndarray]:
    errors: dict[str, list[np.ndarray]] = {"reference demo": [], "weak-persp. K": [], "refined": [],
                                           "refined, own 2D": []}
    for _ in range(max(1, hands // per_camera)):
        f = rng.uniform(600, 1400)
        k = np.array([[f, 0, WIDTH / 2 + rng.uniform(-20, 20)], [0, f, HEIGHT / 2 + rng.uniform(-20, 20)], [0, 0, 1]])
        n = per_camera
        joints = hand_skeletons(rng, n)
        depth = rng.uniform(0.2, 2.0, n)
        u, v = rng.uniform(100, WIDTH - 100, n), rng.uniform(80, HEIGHT - 80, n)
        t_true = np.stack([(u - k[0, 2]) * depth / f, (v - k[1, 2]) * depth / f, depth], -1)
        t_true[:, 2] += np.clip(0.08 - (joints[..., 2].min(1) + t_true[:, 2]), 0, None)  # all joints >= 8 cm away
        is_right = rng.random(n) < 0.5

        kp_true = project_points(joints + t_true[:, None], k)
        kp_obs = kp_true + rng.normal(0.0, noise_px, kp_true.shape) if noise_px > 0 else kp_true
        boxes = np.concatenate([kp_obs.min(1), kp_obs.max(1)], -1)
        centers, sizes = crop_boxes(boxes, rescale=2.0)
        centers, sizes = centers.astype(np.float64), sizes.astype(np.float64)
        cam = simulate_network_cam(joints, kp_true, centers, sizes, is_right)
        joints_net = joints
        if net_error:   # an imperfect network: 5 % scale (depth) error, 5 mm offsets, 4 mm per joint
            cam[:, 0] *= 1.0 + rng.normal(0.0, 0.05, n)
            cam[:, 1:] += rng.normal(0.0, 0.005, (n, 2))
            joints_net = joints + rng.normal(0.0, 0.004, joints.shape)

        t_ref = weak_perspective_to_translation(cam, centers, sizes, reference_camera(WIDTH, HEIGHT), is_right)
        t_wp = weak_perspective_to_translation(cam, centers, sizes, k, is_right)
        t_ls = refine_translation(joints_net, kp_obs, k, t0=t_wp)
        errors["reference demo"].append(joint_error_mm(joints_net, t_ref, joints, t_true))
        errors["weak-persp. K"].append(joint_error_mm(joints_net, t_wp, joints, t_true))
        errors["refined"].append(joint_error_mm(joints_net, t_ls, joints, t_true))
        kp_net = network_keypoints(joints_net, cam, centers, sizes, is_right)
        t_own = refine_translation(joints_net, kp_net, k, t0=t_wp)
        errors["refined, own 2D"].append(joint_error_mm(joints_net, t_own, joints, t_true))
    return {name: np.concatenate(v) for name, v in errors.items()}


def time_refine(rng: np.random.Generator, runs: int = 2000) -> None:
    k = np.array([[900.0, 0, 640], [0, 900, 360], [0, 0, 1]])
    dist = np.array([-0.28, 0.09, 0.0012, -0.0008, -0.012])
    joints = hand_skeletons(rng, 2)
    t_true = np.array([[0.15, 0.05, 0.6], [-0.12, 0.08, 0.7]])
    kp = project_points(joints + t_true[:, None], k) + rng.normal(0, 2.0, (2, 21, 2))
    kp_out = kp.copy()
    kp_out[:, :3] += 80.0
    cam = np.array([[8.0, 0.01, 0.02], [7.0, -0.01, 0.0]])
    cases = [
        ("refine_translation, 2 hands, 2 px noise, t0 given", lambda: refine_translation(joints, kp, k, t0=t_true)),
        ("refine_translation, 2 hands, 3 outliers each", lambda: refine_translation(joints, kp_out, k, t0=t_true)),
        ("refine_translation, 2 hands, with distortion", lambda: refine_translation(joints, kp, k, dist=dist, t0=t_true)),
        ("refine_translation, 2 hands, robust=False", lambda: refine_translation(joints, kp, k, t0=t_true, robust=False)),
        ("weak_perspective_to_translation, 2 hands",
         lambda: weak_perspective_to_translation(cam, np.array([[600.0, 300], [700, 400]]), np.array([250.0, 260]), k,
                                                 np.array([True, False]))),
    ]
    print("| call | median µs | p90 µs |")
    print("|---|---:|---:|")
    for name, fn in cases:
        for _ in range(50):
            fn()
        ts = np.empty(runs)
        for i in range(runs):
            t0 = time.perf_counter()
            fn()
            ts[i] = time.perf_counter() - t0
        print(f"| {name} | {np.median(ts) * 1e6:.0f} | {np.percentile(ts, 90) * 1e6:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hands", type=int, default=2000, help="hands per noise level")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", type=int, default=2000, help="timing repetitions")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)

    print("## (a) speed (CPU, numpy)\n")
    time_refine(rng, args.runs)

    for net_error in (False, True):
        title = ("network perfect in 2D and 3D shape" if not net_error else
                 "imperfect network: 5 % scale, 5 mm offset, 4 mm per-joint shape noise")
        print(f"\n## (b) camera-frame joint error, mm -- {title}")
        print(f"{args.hands} hands per row, {WIDTH}x{HEIGHT}, f 600-1400 px, depth 0.2-2 m; mean (median)\n")
        print("| keypoint noise | reference demo | weak-persp. K | refined | refined, own 2D |")
        print("|---:|---:|---:|---:|---:|")
        for noise in (0.0, 2.0, 5.0):
            errs = run(rng, args.hands, noise, net_error)
            cells = [f"{errs[name].mean():.1f} ({np.median(errs[name]):.1f})" for name in errs]
            print(f"| {noise:.0f} px | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
