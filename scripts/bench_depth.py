#!/usr/bin/env python3
"""How close to the truth a hand's wrist lands from RGB alone and anchored on aligned depth, on
synthetic hands with known truth seen by a synthetic RGB-D camera; and what the fusion costs.

    python scripts/bench_depth.py [--hands 400] [--seed 0]

Scene: a RealSense-like colour camera (1280x720, f 910 px) and hands 0.3-1.5 m away in front of
a wall at 2.5 m. Depth: the hands rendered as thick skeletons (capsules of 9 mm radius and a palm
slab, z-buffered) through hamer_ros.testing's sensor model: noise growing with z², quantised to
1 mm, holes at edges and in random blobs (`hole ratio`), flying pixels at silhouettes and a
colour/depth misregistration of (2, 1) px. The RGB placement is the pipeline's: a realistic
network (8° rotation error, 4 mm per-joint shape noise about the wrist, MANO's root joint, and 5 %
error in its distance) posed by fit_pose on the detector's keypoints (truth + Gaussian noise).
RGB-D: the same hand anchored by anchor_on_depth on its skin points (joint_surface_points), as
in the out-of-the-box mode; the "mesh" row renders a 1440-face tube mesh instead (testing's
tube_mesh, the size of MANO's) and samples its placed front faces, as with the HaMeR checkpoint.

Reported: median and 90th-percentile wrist error in mm, by distance, keypoint noise and hole
ratio; the share of hands depth placed; with an occluder (a flat object held 4-8 cm in front of
part of the hand) and with a body (a wall) 3-20 cm behind the hand; and the fusion's thread time
per hand.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hamer_ros.perception.camera import fit_pose, project_points  # noqa: E402
from hamer_ros.perception.depth import anchor_on_depth, front_faces, joint_surface_points  # noqa: E402
from hamer_ros.testing import (SensorModel, add_occluder, hand_in_view, render_mesh_depth,  # noqa: E402
                               render_skeleton_depth, rotations_by, simulate_sensor, tube_mesh)

WIDTH, HEIGHT = 1280, 720
K = np.array([[910.0, 0.0, 640.0], [0.0, 910.0, 360.0], [0.0, 0.0, 1.0]])
DISTANCE_BINS = ((0.3, 0.5), (0.5, 0.8), (0.8, 1.1), (1.1, 1.5))


def rgb_placement(rng: np.random.Generator, truth: np.ndarray,
                  keypoints: np.ndarray) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """The hand as the pipeline places it from RGB: a realistic network's joints posed by fit_pose.
    Its shape noise is relative to the wrist, the root of MANO's joints (root-relative, as hand
    networks are scored). Returns the placed joints and the placement of any true points (a mesh)."""
    centroid = truth.mean(0)
    turn = rotations_by(rng, 1, 8.0)[0]
    shape = rng.normal(0.0, 0.004, truth.shape)
    shape[0] = 0.0
    net = (truth - centroid) @ turn.T + shape
    t0 = centroid * (1.0 + rng.normal(0.0, 0.05))          # the network's distance error
    R, t = fit_pose(net[None], keypoints[None], K, t0=t0[None])
    return net @ R[0].T + t[0], lambda points: (points - centroid) @ turn.T @ R[0].T + t[0]


def run(rng: np.random.Generator, n: int, distance: tuple[float, float], noise_px: float, hole_ratio: float,
        occluder: bool = False, wall_behind: tuple[float, float] | None = None,
        mesh: bool = False) -> dict[str, np.ndarray]:
    err_rgb, err_rgbd, used, cost = [], [], [], []
    model = SensorModel(hole_ratio=hole_ratio)
    for _ in range(n):
        truth = hand_in_view(rng, rng.uniform(*distance), K, (WIDTH, HEIGHT))
        wall = 2.5 if wall_behind is None else truth[:, 2].max() + rng.uniform(*wall_behind)
        if mesh:
            verts, faces = tube_mesh(truth)
            depth_true, labels = render_mesh_depth(verts[None], faces, K, (WIDTH, HEIGHT), background=wall)
        else:
            depth_true, labels = render_skeleton_depth(truth[None], K, (WIDTH, HEIGHT), background=wall)
        if occluder:
            uv = project_points(truth, K)
            lo, hi = uv.min(0), uv.max(0)
            x0 = rng.uniform(lo[0], (lo[0] + hi[0]) / 2)
            box = np.array([x0, lo[1], x0 + 0.5 * (hi[0] - lo[0]), hi[1]])
            depth_true, labels = add_occluder(depth_true, labels, box, truth[:, 2].min() - rng.uniform(0.04, 0.08))
        depth = simulate_sensor(depth_true, rng, model, labels=labels)
        keypoints = project_points(truth, K) + rng.normal(0.0, noise_px, (21, 2))
        placed, place = rgb_placement(rng, truth, keypoints)
        t0 = time.thread_time()
        surface = front_faces(place(verts), faces) if mesh else joint_surface_points(placed[None])[0]
        anchor = anchor_on_depth([surface], placed[None], keypoints[None], depth, K)
        cost.append((time.thread_time() - t0) * 1000.0)
        err_rgb.append(np.linalg.norm(placed[0] - truth[0]) * 1000.0)
        err_rgbd.append(np.linalg.norm(placed[0] + anchor.shift[0] - truth[0]) * 1000.0)
        used.append(anchor.used[0])
    return {"rgb": np.array(err_rgb), "rgbd": np.array(err_rgbd), "used": np.array(used), "ms": np.array(cost)}


def row(label: str, r: dict[str, np.ndarray]) -> str:
    return (f"| {label} | {np.median(r['rgb']):.1f} | {np.percentile(r['rgb'], 90):.1f} | "
            f"{np.median(r['rgbd']):.1f} | {np.percentile(r['rgbd'], 90):.1f} | {100 * r['used'].mean():.0f} % |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hands", type=int, default=400, help="hands per table row")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    header = ("| {} | RGB median mm | RGB p90 mm | RGB-D median mm | RGB-D p90 mm | placed on depth |\n"
              "|---|---|---|---|---|---|")
    costs = []

    print("By distance (2 px keypoint noise, no extra holes):\n" + header.format("distance"))
    for lo, hi in DISTANCE_BINS:
        r = run(rng, args.hands, (lo, hi), 2.0, 0.0)
        costs.append(r["ms"])
        print(row(f"{lo:.1f}-{hi:.1f} m", r))
    mesh = run(rng, args.hands, (0.3, 1.5), 2.0, 0.0, mesh=True)
    print(row("0.3-1.5 m, mesh", mesh))

    print("\nBy keypoint noise (0.3-1.5 m):\n" + header.format("noise"))
    for noise in (0.0, 2.0, 4.0):
        print(row(f"{noise:g} px", run(rng, args.hands, (0.3, 1.5), noise, 0.0)))

    print("\nBy hole ratio (0.3-1.5 m, 2 px):\n" + header.format("holes"))
    for holes in (0.0, 0.5, 0.8, 0.95):
        print(row(f"{holes:.0%}", run(rng, args.hands, (0.3, 1.5), 2.0, holes)))

    print("\nCluttered (0.3-1.5 m, 2 px): an occluder 4-8 cm in front of half the hand; a body (a wall) 3-20 cm\n"
          "behind the hand instead of 2.5 m:\n" + header.format("scene"))
    print(row("occluded", run(rng, args.hands, (0.3, 1.5), 2.0, 0.0, occluder=True)))
    print(row("body 3-20 cm behind", run(rng, args.hands, (0.3, 1.5), 2.0, 0.0, wall_behind=(0.03, 0.2))))

    print("\nFusion cost per hand (thread time, surface points included):")
    for mode, ms in (("joints", np.concatenate(costs)), ("mesh", mesh["ms"])):
        print(f"  {mode}: median {np.median(ms):.3f} ms, p95 {np.percentile(ms, 95):.3f} ms")


if __name__ == "__main__":
    main()
