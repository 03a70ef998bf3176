#!/usr/bin/env python3
"""A scene cut after a pause: does the first frame after it hold exactly the new scene's hands?

    python -m benchmarks scene_cut

The example photos (resized to 640x480, f 640 px), MediaPipe in video mode, the out-of-the-box
pipeline with tracking and filtering on the stamps: photo A for 10 frames at 30 Hz, a 2 s pause,
then photo B. The first frame after the cut is compared with photo B's hands found afresh
(static mode): hand count, box IoU with the best fresh box, 3D joints reprojected against the
hand's own keypoints (px), and hands whose side and box match a fresh one. Every ordered pair.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from hamer_ros.examples import find_examples, not_found_message  # noqa: E402
from hamer_ros.perception import HandPipeline, PipelineConfig, project_points  # noqa: E402
from hamer_ros.perception.track import iou_matrix  # noqa: E402

W, H = 640, 480
K = np.array([[640.0, 0, W / 2], [0, 640.0, H / 2], [0, 0, 1]])


def main() -> int:
    folder = find_examples()
    if folder is None:
        print(not_found_message(), file=sys.stderr)
        return 1
    files = sorted(Path(folder).glob("*.jpg"))
    images = [cv2.resize(cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB), (W, H)) for f in files]
    print("| cut | fresh hands | after the cut | box IoU | reprojection px | side and box match |\n|---|---|---|---|---|---|")
    for a, first_image in enumerate(images):
        for b, second_image in enumerate(images):
            if a == b:
                continue
            fresh = HandPipeline(PipelineConfig(device="cpu", static_images=True, tracking=False))(second_image, K)
            pipe = HandPipeline(PipelineConfig(device="cpu"))
            for k in range(10):
                pipe(first_image, K, stamp=k / 30)
            after = pipe(second_image, K, stamp=9 / 30 + 2.0)
            fresh_boxes = np.stack([f.box for f in fresh]) if fresh else np.zeros((0, 4))
            iou = [float(iou_matrix(h.box[None], fresh_boxes).max()) if fresh else 0.0 for h in after]
            reproj = [float(np.sqrt(np.mean(np.sum((project_points(h.joints, K) - h.keypoints_2d) ** 2, -1))))
                      for h in after]
            same = sum(any(h.is_right == f.is_right and iou_matrix(h.box[None], f.box[None])[0, 0] > 0.5 for f in fresh)
                       for h in after)
            print(f"| {files[a].stem} -> {files[b].stem} | {len(fresh)} | {len(after)} | "
                  f"{', '.join(f'{x:.2f}' for x in iou) or '-'} | {', '.join(f'{x:.1f}' for x in reproj) or '-'} | "
                  f"{same} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
