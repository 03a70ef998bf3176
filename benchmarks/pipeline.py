"""Per-stage latency of HandPipeline on a 1280×720 frame with two hands.

The tiny random-weight model keeps the network out of the way, so the figures are the pipeline's
own overhead (detection, crop, MANO, camera); `--full` uses the ViT-H size instead.

    python -m benchmarks pipeline [--frames 30] [--full] [--detector mediapipe|fixed]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the repository: hamer_ros_testing

import argparse
import statistics
import tempfile

import cv2
import numpy as np

from hamer_ros.examples import ensure_examples
from hamer_ros.perception import HandPipeline, PipelineConfig, fov_camera
from hamer_ros_testing import make_tiny_model, write_synthetic_mano

# test1.jpg's two right hands, scaled to 1280×720
ROIS = [{"box": [398, 209, 565, 419], "side": "right"}, {"box": [564, 371, 738, 545], "side": "right"}]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--detector", default="mediapipe", choices=("mediapipe", "fixed"))
    ap.add_argument("--full", action="store_true", help="ViT-H instead of the tiny model (slow on a CPU)")
    args = ap.parse_args()
    image = cv2.cvtColor(cv2.resize(cv2.imread(str(ensure_examples() / "test1.jpg")), (1280, 720)), cv2.COLOR_BGR2RGB)
    K = fov_camera(1280, 720, 60.0)
    with tempfile.TemporaryDirectory() as d:
        mano = write_synthetic_mano(Path(d) / "MANO_RIGHT.pkl")
        model = make_tiny_model(0, mano)
    if args.full:
        import torch
        from hamer_ros.model import HaMeR, HaMeRConfig
        with torch.device("meta"):
            full = HaMeR(HaMeRConfig(), torch.nn.Identity())
        full = full.to_empty(device="cpu")
        for p in full.parameters():
            p.data.normal_(0, 0.02)
        full.head.load_state_dict({**full.head.state_dict(), **{k: v for k, v in model.head.state_dict().items()
                                                               if k.startswith("init_")}})
        full.mano = model.mano
        model = full.eval()
    cfg = PipelineConfig(device="cpu", detector=args.detector, rois=ROIS, max_hands=2)
    pipe = HandPipeline(cfg, model=model)
    stages = {k: [] for k in ("detect", "crop", "forward", "mano", "camera", "total")}
    counts = []
    for i in range(args.frames + 3):
        hands = pipe(image, K)
        if i >= 3:   # warm-up
            t = pipe.last_times
            for k in stages:
                stages[k].append(t.total if k == "total" else getattr(t, k))
            counts.append(len(hands))
    pipe.close()
    print(f"HandPipeline, 1280×720, {args.detector} detector, {'ViT-H' if args.full else 'tiny'} model, "
          f"CPU, {args.frames} frames, hands per frame: {min(counts)}–{max(counts)}")
    print("| stage | median ms | p90 ms |")
    print("|---|---|---|")
    for k, v in stages.items():
        print(f"| {k} | {statistics.median(v):.2f} | {np.percentile(v, 90):.2f} |")


if __name__ == "__main__":
    main()
